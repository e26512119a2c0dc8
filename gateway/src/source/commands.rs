//! Offline commands for standalone files: `gateway validate` (for CI
//! pipelines) and `gateway seal-key` (a private key sealed with the keyring,
//! to paste into a file).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use shared::keyring::Keyring;

/// Checks the file at `path` as the gateway would load it; writes every
/// problem (`routes[3].upstream.nodes: ...`) to `out`. `Ok(false)` when
/// there is any.
pub fn validate_file(path: &Path, keyring: &Keyring, out: &mut dyn Write) -> std::io::Result<bool> {
    match shared::standalone::load(path, keyring, None, 1) {
        Ok(state) => {
            writeln!(
                out,
                "{}: ok ({} routes, {} upstreams, {} ssls)",
                path.display(),
                state.routes.len(),
                state.upstreams.len(),
                state.ssls.len()
            )?;
            Ok(true)
        }
        Err(err) => {
            let problems = err.problems();
            writeln!(out, "{}: {} problem(s)", path.display(), problems.len())?;
            for problem in problems {
                writeln!(out, "{problem}")?;
            }
            Ok(false)
        }
    }
}

/// Seals the PEM private key read from `input` with the keyring's first key.
pub fn seal_key(keyring: &Keyring, input: &mut dyn Read) -> anyhow::Result<String> {
    if !keyring.is_enabled() {
        bail!("deployment.data_encryption.keyring is empty: there is no key to seal with");
    }
    let mut pem = String::new();
    input
        .read_to_string(&mut pem)
        .context("cannot read the private key from standard input")?;
    if !pem.contains("PRIVATE KEY-----") {
        bail!("standard input is not a PEM private key");
    }
    Ok(keyring.seal(pem.trim_end())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_lists_every_problem_and_says_ok_otherwise() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("apisix.yaml");
        std::fs::write(
            &path,
            "routes:\n  - {id: 1, uri: /a, upstream_id: missing}\n  - {id: 2, uri: /b, upstream: {type: roundrobin, nodes: {}}}\n#END\n",
        )
        .expect("write");
        let mut out = Vec::new();
        assert!(!validate_file(&path, &Keyring::default(), &mut out).expect("io"));
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("2 problem(s)"), "{text}");
        assert!(text.contains("routes[0].upstream_id: "), "{text}");
        assert!(text.contains("routes[1]"), "{text}");

        std::fs::write(&path, "routes:\n  - {id: 1, uri: /a, upstream: {type: roundrobin, nodes: {'127.0.0.1:1': 1}}}\n#END\n")
            .expect("write");
        let mut out = Vec::new();
        assert!(validate_file(&path, &Keyring::default(), &mut out).expect("io"));
        assert!(String::from_utf8(out)
            .expect("utf-8")
            .contains("ok (1 routes"));
    }

    #[test]
    fn seal_key_needs_a_keyring_and_a_pem_key() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let err = seal_key(&Keyring::default(), &mut pem.as_bytes()).expect_err("no keyring");
        assert!(err.to_string().contains("keyring is empty"), "{err}");
        let keyring =
            Keyring::from_base64(&["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]).expect("key");
        let sealed = seal_key(&keyring, &mut pem.as_bytes()).expect("sealed");
        assert!(sealed.starts_with(shared::keyring::SEALED_PREFIX));
        assert_eq!(keyring.open(&sealed).expect("opens"), pem.trim_end());
        assert!(seal_key(&keyring, &mut "hello".as_bytes()).is_err());
    }
}
