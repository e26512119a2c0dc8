//! Certificates and keys that `config.yaml` names by file path (admin API
//! TLS, etcd client TLS), and that follow those files when they change.
//!
//! cert-manager (and Kubernetes in general) updates a mounted Secret by
//! writing a new timestamped directory and swapping a `..data` symlink to it,
//! so the files we were told about are never modified in place and inotify on
//! them says nothing. [`Reloading`] therefore polls: every second it reads the
//! files again (through the symlinks, as `open` does), and only when their
//! bytes differ from what it last saw does it parse, validate and build.
//!
//! Fail closed: a file that cannot be read, parsed, or whose key does not
//! match its certificate is refused with a logged error naming the file and
//! the reason, and the material in use stays in use. Nothing here ever falls
//! back to "no TLS".
//!
//! * `material`: which files, reading them, validating them into [`TlsMaterial`];
//! * `reload`: the polling task and the [`Reloading`] handle consumers read.

mod material;
mod reload;
#[cfg(test)]
mod tests;

pub use material::{CertFileError, PemFile, TlsFiles, TlsMaterial};
pub use reload::{Reloading, POLL_INTERVAL};
