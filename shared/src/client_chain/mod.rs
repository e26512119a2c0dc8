//! Client-certificate chain settings shared by an SSL object's `client`
//! section and the `client-cert-auth` plugin: `depth`, `crl`, `crl_mode`,
//! `unknown_status` ([`Revocation`]) and `revocation`, the online checks
//! ([`OnlineRevocation`]). Checked here for both, so the two verifiers
//! cannot drift apart.
//!
//! Below both [`crate::validate`] and [`crate::plugins`], which use it.

mod crl;
mod online;

pub use crl::Revocation;
pub(crate) use crl::{revocation, verify_depth, RevocationSpec};
pub(crate) use online::online_revocation;
pub use online::OnlineRevocation;
