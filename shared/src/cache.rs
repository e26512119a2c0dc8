//! The last-known-good configuration on disk (`deployment.etcd.cache_dir`).
//!
//! After every applied change a data plane writes the objects it serves —
//! exactly as etcd stores them, with their `mod_revision` and the store
//! revision — to one file. A data plane that starts while etcd is unreachable
//! reads that file back, validates every object again, and serves it until
//! etcd answers (see [`crate::watch`]).
//!
//! Values are cached as stored: a private key that etcd holds encrypted stays
//! encrypted here. The file is written atomically (a new file in the same
//! directory, fsync, rename) with mode 0600, and carries a SHA-256 checksum of
//! its content, so a truncated, hand-edited or otherwise damaged file is
//! refused with the reason instead of being served.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::etcd_layout::KeyLayout;
use crate::store::{Listing, RawEntry};

/// Bumped when the file layout changes; other formats are refused.
const FORMAT: u32 = 1;
/// A larger file is refused unread: no configuration is that big, and the
/// whole file is held in memory while it is checked.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Why the cache file cannot be used (or written).
#[derive(Debug, Error)]
pub enum CacheError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes; refusing to load it")]
    TooLarge { path: String },
    #[error("{path} is not a Portcullis cache file: {reason}")]
    Malformed { path: String, reason: String },
    #[error("{path} has format {found}; this version reads format {FORMAT} only")]
    Format { path: String, found: u32 },
    #[error("{path} holds the configuration of prefix {found:?}, not of {expected:?}")]
    OtherPrefix {
        path: String,
        found: String,
        expected: String,
    },
    #[error("{path} is damaged: its SHA-256 checksum does not match its content")]
    Checksum { path: String },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: io::Error },
}

/// The cache file of one etcd prefix in `deployment.etcd.cache_dir`.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    path: PathBuf,
    prefix: String,
}

/// The file as stored: a header, the entries, and the checksum over both.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    format: u32,
    prefix: String,
    revision: i64,
    /// Seconds since the Unix epoch; for operators, not checked.
    written_at: u64,
    /// Lowercase hex SHA-256 of [`digest`] over the fields above and `entries`.
    sha256: String,
    entries: Vec<CachedEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CachedEntry {
    key: String,
    mod_revision: i64,
    /// The stored bytes, which are JSON text (a valid object parsed as JSON).
    value: String,
}

impl Cache {
    /// The cache of `layout`'s prefix in `dir`. Each prefix has its own file,
    /// so gateways of different prefixes may share a directory.
    pub fn new(dir: &Path, layout: &KeyLayout) -> Cache {
        let prefix = layout.prefix().to_owned();
        Cache {
            dir: dir.to_owned(),
            path: dir.join(file_name(&prefix)),
            prefix,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and checks the file; `Ok(None)` when there is none yet. The
    /// entries are not validated here: they go through the same validation
    /// as anything read from etcd.
    pub fn load(&self) -> Result<Option<Listing>, CacheError> {
        let Some(bytes) = self.read()? else {
            return Ok(None);
        };
        let malformed = |reason: String| CacheError::Malformed {
            path: self.display(),
            reason,
        };
        let file: CacheFile =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if file.format != FORMAT {
            return Err(CacheError::Format {
                path: self.display(),
                found: file.format,
            });
        }
        if file.sha256 != digest(&file.prefix, file.revision, file.written_at, &file.entries) {
            return Err(CacheError::Checksum {
                path: self.display(),
            });
        }
        if file.prefix != self.prefix {
            return Err(CacheError::OtherPrefix {
                path: self.display(),
                found: file.prefix,
                expected: self.prefix.clone(),
            });
        }
        if file.revision < 1 {
            return Err(malformed(format!(
                "revision {} is not an etcd revision",
                file.revision
            )));
        }
        let kvs = file
            .entries
            .into_iter()
            .map(|e| RawEntry {
                key: e.key,
                value: e.value.into_bytes(),
                mod_revision: e.mod_revision,
            })
            .collect();
        Ok(Some(Listing {
            revision: file.revision,
            kvs,
        }))
    }

    /// Replaces the file with `entries` at `revision`, atomically: readers
    /// (and a crash at any point) see the old file or the new one, whole.
    pub fn save(&self, revision: i64, entries: &[RawEntry]) -> Result<(), CacheError> {
        let entries: Vec<CachedEntry> = entries.iter().filter_map(cached).collect();
        let written_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let file = CacheFile {
            format: FORMAT,
            prefix: self.prefix.clone(),
            revision,
            written_at,
            sha256: digest(&self.prefix, revision, written_at, &entries),
            entries,
        };
        self.replace_with(&file)
            .map_err(|source| CacheError::Write {
                path: self.display(),
                source,
            })
    }

    fn read(&self) -> Result<Option<Vec<u8>>, CacheError> {
        let read_error = |source| CacheError::Read {
            path: self.display(),
            source,
        };
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(read_error(err)),
        };
        let mut bytes = Vec::new();
        // One byte more than allowed tells "at the limit" from "over it".
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(CacheError::TooLarge {
                path: self.display(),
            });
        }
        Ok(Some(bytes))
    }

    fn replace_with(&self, file: &CacheFile) -> io::Result<()> {
        create_private_dir(&self.dir)?;
        let temp = self.dir.join(format!(
            ".{}.{}.tmp",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("cache"),
            std::process::id()
        ));
        let written = write_new_private(&temp, file).and_then(|()| fs::rename(&temp, &self.path));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        // Make the rename itself durable; not every filesystem allows
        // syncing a directory, and the file is complete either way.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }
}

/// A value that is not UTF-8 was not a valid object; it is never cached.
fn cached(entry: &RawEntry) -> Option<CachedEntry> {
    let value = String::from_utf8(entry.value.clone()).ok()?;
    Some(CachedEntry {
        key: entry.key.clone(),
        mod_revision: entry.mod_revision,
        value,
    })
}

/// Writes `file` to a new file at `path` (mode 0600), synced to disk.
fn write_new_private(path: &Path, file: &CacheFile) -> io::Result<()> {
    // A leftover from a crash would make `create_new` fail.
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let out = options.open(path)?;
    let mut writer = BufWriter::new(out);
    serde_json::to_writer(&mut writer, file)?;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// `portcullis-<prefix, readable>-<hash of prefix>.json`: readable for
/// operators, and distinct for prefixes that read alike (`/a/b`, `/a_b`).
fn file_name(prefix: &str) -> String {
    let readable: String = prefix
        .trim_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = hex::encode(&Sha256::digest(prefix.as_bytes())[..4]);
    format!("portcullis-{readable}-{hash}.json")
}

/// The checksum over everything the file says, each field length-prefixed
/// so that no two different contents hash alike by concatenation.
fn digest(prefix: &str, revision: i64, written_at: u64, entries: &[CachedEntry]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(&FORMAT.to_be_bytes());
    field(prefix.as_bytes());
    field(&revision.to_be_bytes());
    field(&written_at.to_be_bytes());
    for entry in entries {
        field(entry.key.as_bytes());
        field(&entry.mod_revision.to_be_bytes());
        field(entry.value.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str, rev: i64) -> RawEntry {
        RawEntry {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            mod_revision: rev,
        }
    }

    fn cache(dir: &Path, prefix: &str) -> Cache {
        Cache::new(dir, &KeyLayout::new(prefix))
    }

    #[test]
    fn saves_and_loads_exactly_what_was_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = cache(&dir.path().join("nested/cache"), "/p");
        assert!(cache.load().expect("no file is fine").is_none());
        let entries = [
            entry("/p/routes/1", r#"{"uri":"/a","upstream_id":"1"}"#, 7),
            entry(
                "/p/upstreams/1",
                "{\"nodes\":{\"127.0.0.1:80\":1},\n \"desc\":\"é\"}",
                5,
            ),
        ];
        cache.save(9, &entries).expect("save");
        let listing = cache.load().expect("load").expect("a file");
        assert_eq!(listing.revision, 9);
        assert_eq!(listing.kvs.len(), 2);
        for (got, want) in listing.kvs.iter().zip(&entries) {
            assert_eq!(
                (&got.key, &got.value, got.mod_revision),
                (&want.key, &want.value, want.mod_revision)
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(cache.path())
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the cache may hold private keys");
        }
        let leftovers: Vec<_> = fs::read_dir(cache.path().parent().expect("dir"))
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
    }

    #[test]
    fn refuses_damaged_or_foreign_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = cache(dir.path(), "/p");
        cache
            .save(
                3,
                &[entry(
                    "/p/upstreams/1",
                    r#"{"nodes":{"127.0.0.1:80":1}}"#,
                    2,
                )],
            )
            .expect("save");
        let good = fs::read_to_string(cache.path()).expect("read");

        let edited = good.replace("127.0.0.1:80", "10.0.0.1:80");
        fs::write(cache.path(), edited).expect("write");
        assert!(
            matches!(cache.load(), Err(CacheError::Checksum { .. })),
            "an edited value is refused"
        );

        fs::write(cache.path(), &good[..good.len() / 2]).expect("write");
        let err = cache.load().expect_err("truncated");
        assert!(matches!(err, CacheError::Malformed { .. }), "{err}");
        assert!(
            err.to_string().contains("is not a Portcullis cache file"),
            "{err}"
        );

        fs::write(cache.path(), good.replace("\"format\":1", "\"format\":2")).expect("write");
        assert!(matches!(
            cache.load(),
            Err(CacheError::Format { found: 2, .. })
        ));

        // Another prefix's file, under this prefix's name.
        fs::write(cache.path(), &good).expect("write");
        let other = cache_for_prefix_file(dir.path(), "/q", cache.path());
        let err = other.load().expect_err("other prefix");
        assert!(matches!(err, CacheError::OtherPrefix { .. }), "{err}");
    }

    /// A cache of `prefix` whose file is `path` (as if two prefixes collided).
    fn cache_for_prefix_file(dir: &Path, prefix: &str, path: &Path) -> Cache {
        let mut cache = cache(dir, prefix);
        cache.path = path.to_owned();
        cache
    }

    #[test]
    fn prefixes_get_distinct_readable_files() {
        let a = file_name("/a/b");
        let b = file_name("/a_b");
        assert_ne!(a, b);
        assert!(
            a.starts_with("portcullis-a_b-") && a.ends_with(".json"),
            "{a}"
        );
        assert!(!file_name("/../../etc").contains('/'));
    }
}
