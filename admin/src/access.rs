//! `deployment.admin.allow`: which source addresses may use the admin API.
//!
//! Checked before the API key, on the TCP peer address (never on a header a
//! client could forge), with or without TLS.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;

use crate::error::AdminError;

/// The allowed networks; `None` allows every address.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllowList(Option<Arc<[IpNet]>>);

impl AllowList {
    pub(crate) fn new(nets: Option<Vec<IpNet>>) -> Self {
        AllowList(nets.map(Into::into))
    }

    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        let Some(nets) = &self.0 else {
            return true;
        };
        // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        nets.iter().any(|net| net.contains(&ip))
    }

    fn is_open(&self) -> bool {
        self.0.is_none()
    }
}

/// Middleware: refuses peers outside the allow-list with 403. A request
/// without a known peer address is refused too (fail closed).
pub(crate) async fn require_allowed_peer(
    State(allow): State<AllowList>,
    request: Request,
    next: Next,
) -> Response {
    if allow.is_open() {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match peer {
        Some(ip) if allow.allows(ip) => next.run(request).await,
        _ => {
            tracing::info!(
                ?peer,
                "admin request refused: source address outside deployment.admin.allow"
            );
            AdminError::Forbidden(peer).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> AllowList {
        AllowList::new(Some(
            nets.iter().map(|n| n.parse().expect("CIDR")).collect(),
        ))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("IP")
    }

    #[test]
    fn absent_allows_everyone() {
        assert!(AllowList::default().allows(ip("203.0.113.9")));
        assert!(AllowList::new(None).allows(ip("::1")));
    }

    #[test]
    fn allows_only_listed_networks() {
        let allow = list(&["10.0.0.0/8", "192.168.1.7/32", "fd00::/8"]);
        assert!(allow.allows(ip("10.255.0.1")));
        assert!(allow.allows(ip("192.168.1.7")));
        assert!(allow.allows(ip("fd12::1")));
        assert!(!allow.allows(ip("127.0.0.1")));
        assert!(!allow.allows(ip("192.168.1.8")));
        assert!(!allow.allows(ip("::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_ipv4() {
        let allow = list(&["127.0.0.0/8"]);
        assert!(allow.allows(ip("::ffff:127.0.0.1")));
        assert!(!allow.allows(ip("::ffff:10.0.0.1")));
    }
}
