//! `revocation` of an SSL object's `client` section and of `client-cert-auth`:
//! online revocation checks. Checked here for both, so the two cannot drift
//! apart.

use std::time::Duration;

use crate::error::ValidationError;
use crate::resource::{OnlineRevocationSettings, RevocationMode};

/// How long a handshake waits for an answer under `hard_fail` by default.
const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// How long an answer is used at most by default (sooner at its
/// `nextUpdate`).
const DEFAULT_CACHE_TTL: u64 = 3600;

/// Validated `revocation` with a mode other than `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnlineRevocation {
    /// `soft_fail` (default) or `hard_fail`.
    pub mode: RevocationMode,
    /// Ask the OCSP responder of the certificate's Authority Information
    /// Access (default true).
    pub ocsp: bool,
    /// Fetch the CRLs of the certificate's CRL Distribution Points (default
    /// true).
    pub crl_distribution_points: bool,
    /// Check the client's own certificate only, not its intermediates
    /// (default true).
    pub leaf_only: bool,
    /// `timeout_ms` (default 2000).
    pub timeout: Duration,
    /// `cache_ttl` in seconds (default 3600).
    pub cache_ttl: Duration,
}

impl OnlineRevocation {
    /// Whether a certificate without an answer is refused.
    pub fn hard(&self) -> bool {
        self.mode == RevocationMode::HardFail
    }
}

/// `None` for `mode: off`. `prefix` prefixes the field names in errors
/// (`client` gives `client.revocation`).
pub(crate) fn online_revocation(
    prefix: &str,
    settings: Option<&OnlineRevocationSettings>,
) -> Result<Option<OnlineRevocation>, ValidationError> {
    let Some(settings) = settings else {
        return Ok(None);
    };
    let mode = settings.mode.unwrap_or_default();
    if mode == RevocationMode::Off {
        return Ok(None);
    }
    let ocsp = settings.ocsp.unwrap_or(true);
    let crl_distribution_points = settings.crl_distribution_points.unwrap_or(true);
    if !ocsp && !crl_distribution_points {
        let field = if prefix.is_empty() {
            "revocation".to_owned()
        } else {
            format!("{prefix}.revocation")
        };
        return Err(ValidationError::field(
            field,
            "enable `ocsp` and/or `crl_distribution_points`, or set `mode: off`",
        ));
    }
    Ok(Some(OnlineRevocation {
        mode,
        ocsp,
        crl_distribution_points,
        leaf_only: settings.leaf_only.unwrap_or(true),
        timeout: Duration::from_millis(settings.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        cache_ttl: Duration::from_secs(settings.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL)),
    }))
}
