//! The identity of an SSL object's client-certificate policy: a digest of
//! everything its `client` section makes a handshake verify, and nothing
//! else. A renewed server certificate keeps the identity, so connections
//! opened before the renewal keep being served; a new CA, depth, skip regex
//! or CRL changes it, so they are not (see `proxy::gate`).

use sha2::{Digest, Sha256};
use shared::resource::{CrlMode, RevocationMode, UnknownStatus};
use shared::validate::ClientAuth;

use crate::context::ClientPolicyId;

/// The identity of `client`; `None` (no `client` section) is the default.
/// Computed once per build of the SSL object.
pub(crate) fn client_policy_id(client: Option<&ClientAuth>) -> ClientPolicyId {
    let Some(auth) = client else {
        return ClientPolicyId::default();
    };
    let mut digest = Fields(Sha256::new());
    digest.items(auth.ca.iter().map(|der| der.as_ref()));
    digest.number(u64::from(auth.depth));
    match &auth.skip_mtls_uri_regex {
        None => digest.number(0),
        Some(skip) => {
            digest.number(1);
            digest.items(skip.patterns().iter().map(String::as_bytes));
        }
    }
    match &auth.revocation {
        None => digest.number(0),
        Some(revocation) => {
            digest.number(1);
            digest.items(revocation.crls.iter().map(|der| der.as_ref()));
            digest.number(match revocation.mode {
                CrlMode::Strict => 0,
                CrlMode::LeafOnly => 1,
            });
            digest.number(match revocation.unknown_status {
                UnknownStatus::Allow => 0,
                UnknownStatus::Deny => 1,
            });
        }
    }
    match &auth.online_revocation {
        None => digest.number(0),
        Some(online) => {
            digest.number(1);
            digest.number(match online.mode {
                RevocationMode::Off => 0,
                RevocationMode::SoftFail => 1,
                RevocationMode::HardFail => 2,
            });
            for flag in [
                online.ocsp,
                online.crl_distribution_points,
                online.leaf_only,
            ] {
                digest.number(u64::from(flag));
            }
            // Timings change no verdict on a known status: left out.
        }
    }
    ClientPolicyId(digest.0.finalize().into())
}

/// Feeds fields to the digest unambiguously: every variable-length value is
/// prefixed by its length, every list by its count.
struct Fields(Sha256);

impl Fields {
    fn number(&mut self, value: u64) {
        self.0.update(value.to_be_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        self.number(value.len() as u64);
        self.0.update(value);
    }

    fn items<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.number(items.len() as u64);
        for item in items {
            self.bytes(item);
        }
    }
}
