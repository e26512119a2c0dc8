//! Connection-level checks a request passes before routing: the handshake
//! still judged under the current client-certificate policy, the client
//! certificate a path needs (`skip_mtls_uri_regex`), and Host ≠ SNI.

use crate::context::{ClientCert, ConnInfo, MtlsPolicy, TlsInfo};
use crate::tls::SniTable;

use super::error::ProxyError;

/// Refuses (421, closing an HTTP/1.1 connection) a request on a connection
/// whose handshake was judged under another client-certificate policy than
/// the one now serving its SNI: an SSL object given a `client.ca`, a
/// narrower `skip_mtls_uri_regex`, a CRL, another CA, or deleted. The
/// client's next connection is judged afresh. A change that leaves the
/// `client` section alone (a renewed server certificate) disturbs nothing.
///
/// Costs one SNI-table lookup and one comparison of two 32-byte ids.
pub(super) fn refuse_stale_policy(conn: &ConnInfo, snis: &SniTable) -> Result<(), ProxyError> {
    let Some(tls) = &conn.tls else {
        return Ok(());
    };
    if crate::tls::client_policy_is_current(tls, snis) {
        return Ok(());
    }
    let current = snis.for_sni(tls.server_name.as_deref());
    Err(ProxyError::PolicyChanged {
        conn_ssl: tls.ssl_id.to_string(),
        sni: tls.server_name.as_ref().map_or_else(
            || "none, fallback_sni".to_owned(),
            |name| format!("{name:?}"),
        ),
        now: match current {
            Some(entry) => format!(
                "SSL object {} serves it with another `client` section",
                entry.id
            ),
            None => "no SSL object serves it any more".to_owned(),
        },
    })
}

/// Refuses (400, as APISIX) a request without a verified client certificate
/// on an SSL object that verifies them, unless its path matches one of the
/// object's `skip_mtls_uri_regex` (unanchored, on the decoded path).
pub(super) fn require_client_cert(conn: &ConnInfo, path: &str) -> Result<(), ProxyError> {
    let Some(tls) = &conn.tls else {
        return Ok(());
    };
    if tls.client_cert.verified().is_some() {
        return Ok(());
    }
    let exempt = match &tls.mtls {
        MtlsPolicy::Off => true,
        MtlsPolicy::Optional { skip } => skip.is_match(path),
        // The handshake already refused such clients; should a connection
        // get here anyway, fail closed.
        MtlsPolicy::Required => false,
    };
    if exempt {
        return Ok(());
    }
    Err(ProxyError::ClientCertRequired {
        ssl_id: tls.ssl_id.to_string(),
        path: path.to_owned(),
        presented: presented(tls),
    })
}

fn presented(tls: &TlsInfo) -> String {
    match &tls.client_cert {
        ClientCert::None => "none".to_owned(),
        ClientCert::Verified(_) => "verified".to_owned(),
        ClientCert::Failed { reason, .. } => format!("not trusted: {reason}"),
    }
}

/// Refuses (421) a request whose `Host` belongs to another SSL object than
/// the one that served the handshake, when either of the two verifies client
/// certificates: the certificate (or its absence) was judged by the SNI's
/// SSL object, so it says nothing about what the host's SSL object demands.
/// As APISIX, the check looks at the host's object too: a connection to a
/// certificate-free SNI cannot reach a host that requires certificates.
pub(super) fn refuse_misdirected(
    conn: &ConnInfo,
    host: Option<&str>,
    snis: &SniTable,
) -> Result<(), ProxyError> {
    let Some(host) = host else {
        return Ok(());
    };
    let host_ssl = snis
        .for_sni(Some(host))
        .map(|entry| (&*entry.id, &entry.mtls));
    let Some(tls) = &conn.tls else {
        return refuse_plaintext(host, host_ssl);
    };
    if !is_misdirected(tls, host_ssl) {
        return Ok(());
    }
    Err(ProxyError::Misdirected {
        host: host.to_owned(),
        host_ssl: host_ssl.map(|(id, _)| id.to_owned()).unwrap_or_default(),
        conn_ssl: tls.ssl_id.to_string(),
    })
}

/// Plain HTTP cannot carry a client certificate, so a host whose SSL object
/// verifies them is not served over it: the certificate requirement must not
/// be bypassable by switching to the HTTP listener.
fn refuse_plaintext(host: &str, host_ssl: Option<(&str, &MtlsPolicy)>) -> Result<(), ProxyError> {
    match host_ssl {
        Some((id, policy)) if !matches!(policy, MtlsPolicy::Off) => {
            Err(ProxyError::PlaintextToMtlsHost {
                host: host.to_owned(),
                host_ssl: id.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// The decision of [`refuse_misdirected`], given the SSL object the host
/// resolves to (id and client policy), if any.
fn is_misdirected(tls: &TlsInfo, host_ssl: Option<(&str, &MtlsPolicy)>) -> bool {
    let Some((host_id, host_mtls)) = host_ssl else {
        return false;
    };
    let verifies = |policy: &MtlsPolicy| !matches!(policy, MtlsPolicy::Off);
    host_id != &*tls.ssl_id && (verifies(&tls.mtls) || verifies(host_mtls))
}

#[cfg(test)]
mod tests;
