//! TLS termination for the HTTPS listeners.
//!
//! Everything that can be derived from the SSL objects is built once per
//! change of each object, in [`SniTable::build`] and [`SniTable::update`]:
//! one rustls `ServerConfig` per SSL object, with its own certificate
//! resolver, client-certificate verifier and session ticket key. The table
//! is persistent, so an update costs what changed, not what the table holds.
//! Per connection, [`accept`] does one hash lookup on the ClientHello's SNI,
//! the handshake with that object's configuration, and one parse of the
//! client's leaf certificate.
//!
//! Module map:
//! * `table`: the SNI table (exact, one-label wildcard, `*`, fallback) and
//!   its updates;
//! * `entry`: one SSL object turned into a `ServerConfig`;
//! * `resolve`: certificate selection by signature scheme (RSA and ECDSA
//!   side by side), for SSL objects and upstream client identities;
//! * `verify`, `trust`, `revocation` and `v1`: client-certificate
//!   verification (trust anchors, depth, CRLs), including the X.509 v1
//!   certificates that the common `openssl x509 -req` recipes produce and
//!   that webpki refuses to parse; a [`TrustSet`] is also what a route's
//!   `client-cert-auth` verifies against;
//! * `requests`: which handshakes ask for a certificate on behalf of routes
//!   that verify it themselves;
//! * `signature`: handshake signatures by v1 or v3 certificates;
//! * `online`: online revocation checks of client certificates (OCSP,
//!   CRL distribution points), answered from a cache at the handshake;
//! * `ocsp` and `stapling`: OCSP requests and response checks, and the
//!   stapling of each server certificate's response (fetched on the control
//!   runtime, swapped into the certificate, never fetched by a handshake);
//! * `policy`: the identity of an object's client-certificate policy, by
//!   which a request tells whether its connection's handshake was judged
//!   under the current one;
//! * `accept`: the per-connection path and its errors.

mod accept;
mod cert_error;
mod cert_requests;
mod entry;
mod ocsp;
mod online;
mod policy;
mod resolve;
mod revocation;
// Also checks upstream handshake signatures under `tls.verify: false`.
pub(crate) mod signature;
mod stapling;
mod table;
mod trust;
mod v1;
mod verify;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::sync::{Arc, LazyLock};

use rustls::crypto::CryptoProvider;

pub use accept::{accept, AcceptError};
pub use cert_requests::RouteCertRequests;
pub use table::{SniTable, UnservedSsl};

pub(crate) use cert_error::ClientCertError;
pub(crate) use resolve::CertResolver;
pub(crate) use table::is_current as client_policy_is_current;
pub(crate) use trust::TrustSet;
pub use trust::{AnchorError, TrustError};

/// The data plane's crypto provider, chosen explicitly rather than relying on
/// a process-wide default that another crate could install.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: LazyLock<Arc<CryptoProvider>> =
        LazyLock::new(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    Arc::clone(&PROVIDER)
}
