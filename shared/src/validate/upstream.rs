//! Upstreams: nodes parsed into `host`/`port`/`weight`, timeouts into
//! durations, `tls` into the policy for `https` nodes ([`tls`]).

mod tls;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use serde_json::Value;

use super::{deserialize, pattern, ValidationError};
use crate::resource::{Nodes, PassHost, Scheme, Timeout, Upstream};

pub use tls::{ClientIdentity, Trust, UpstreamTlsPolicy};

/// A validated upstream. The typed object it was validated from is not
/// kept: nothing reads it afterwards, and every route with an inline
/// upstream would pay for it.
#[derive(Debug)]
pub struct ValidUpstream {
    /// `None` for an upstream inline in a route.
    pub id: Option<String>,
    /// Nodes with a weight above zero, in a stable order.
    pub nodes: Vec<UpstreamNode>,
    pub scheme: Scheme,
    pub pass_host: PassHost,
    /// Required when `pass_host` is `rewrite`.
    pub upstream_host: Option<String>,
    pub timeouts: Timeouts,
    /// Extra attempts on another node after a connect failure.
    pub retries: u32,
    /// `Some` exactly for `scheme: https`. Boxed: most upstreams are plain
    /// `http`, and every route with an inline upstream would otherwise
    /// carry the policy's size (~0.25 KB) whether it has one or not.
    pub tls: Option<Box<UpstreamTlsPolicy>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamNode {
    /// A DNS name or an IP address; IPv6 without brackets (`::1`).
    pub host: String,
    /// Defaults to 80 for http, 443 for https.
    pub port: u16,
    pub weight: u32,
}

impl UpstreamNode {
    /// `host:port`, with brackets around an IPv6 address (`[::1]:8080`): the
    /// form of a `Host` header or a URL authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Defaults as APISIX: 60 s each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub send: Duration,
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Timeouts {
            connect: minute,
            send: minute,
            read: minute,
        }
    }
}

/// Validates an upstream that already passed the schema (its own, or the
/// route's for an inline upstream). Field names in errors are relative to
/// the upstream object.
pub(super) fn validate(id: Option<&str>, value: &Value) -> Result<ValidUpstream, ValidationError> {
    let spec: Upstream = deserialize(value, id)?;
    let default_port = match spec.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    let nodes = nodes(&spec.nodes, default_port)?;
    let upstream_host = spec
        .upstream_host
        .as_deref()
        .map(upstream_host)
        .transpose()?;
    if spec.pass_host == PassHost::Rewrite && upstream_host.is_none() {
        return Err(ValidationError::field(
            "upstream_host",
            "is required when pass_host is \"rewrite\"",
        ));
    }
    let tls = tls::validate(&spec, upstream_host.as_deref())?.map(Box::new);
    let timeouts = spec.timeout.map(timeouts).transpose()?.unwrap_or_default();
    let retries = spec
        .retries
        .unwrap_or_else(|| u32::try_from(nodes.len().saturating_sub(1)).unwrap_or(u32::MAX));
    Ok(ValidUpstream {
        id: id.map(str::to_owned),
        scheme: spec.scheme,
        pass_host: spec.pass_host,
        upstream_host,
        nodes,
        timeouts,
        retries,
        tls,
    })
}

/// Every node parsed; those with weight 0 (drained) left out; at least one
/// left.
fn nodes(nodes: &Nodes, default_port: u16) -> Result<Vec<UpstreamNode>, ValidationError> {
    let all = match nodes {
        Nodes::Map(map) => map
            .iter()
            .map(|(addr, &weight)| {
                let (host, port) = split_host_port(addr)
                    .map_err(|reason| ValidationError::field(format!("nodes[{addr}]"), reason))?;
                Ok(UpstreamNode {
                    host,
                    port: port.unwrap_or(default_port),
                    weight,
                })
            })
            .collect::<Result<Vec<_>, ValidationError>>()?,
        Nodes::List(list) => list
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let field = || format!("nodes[{i}].host");
                let host = node_host(&node.host)
                    .map_err(|reason| ValidationError::field(field(), reason))?;
                if node.port == Some(0) {
                    return Err(ValidationError::field(
                        format!("nodes[{i}].port"),
                        "must be 1-65535",
                    ));
                }
                Ok(UpstreamNode {
                    host,
                    port: node.port.unwrap_or(default_port),
                    weight: node.weight,
                })
            })
            .collect::<Result<Vec<_>, ValidationError>>()?,
    };
    let mut live: Vec<UpstreamNode> = all.into_iter().filter(|n| n.weight > 0).collect();
    // Kept by every route with an inline upstream: no room for more.
    live.shrink_to_fit();
    if live.is_empty() {
        return Err(ValidationError::field(
            "nodes",
            "needs at least one node with a weight above 0",
        ));
    }
    Ok(live)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(addr: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{addr:?}: missing `]` after the IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{addr:?}: expected `:port` after `]`"))?,
            ),
        };
        (format!("[{v6}]"), port)
    } else if addr.matches(':').count() > 1 {
        return Err(format!(
            "{addr:?}: write IPv6 addresses in brackets, e.g. \"[::1]:8080\""
        ));
    } else {
        match addr.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (addr.to_owned(), None),
        }
    };
    let host = node_host(&host)?;
    let port = port.map(|p| parse_port(addr, p)).transpose()?;
    Ok((host, port))
}

fn parse_port(addr: &str, port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("{addr:?}: the port must be a number in 1-65535")),
    }
}

/// A node host: an IP address (IPv6 with or without brackets; stored
/// without) or a DNS name; lowercased.
fn node_host(raw: &str) -> Result<String, String> {
    let unbracketed = raw
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'));
    if let Some(v6) = unbracketed {
        return v6
            .parse::<Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| format!("{raw:?} is not an IPv6 address"));
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let lower = raw.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    pattern::check_dns_name(name, raw)?;
    Ok(name.to_owned())
}

/// `upstream_host` becomes a `Host` header: `host` or `host:port`, nothing
/// that could split or smuggle a header.
fn upstream_host(raw: &str) -> Result<String, ValidationError> {
    let bad = raw.is_empty()
        || raw.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '?' | '#' | ',')
        });
    if bad {
        return Err(ValidationError::field(
            "upstream_host",
            format!("{raw:?} is not a host[:port]"),
        ));
    }
    Ok(raw.to_owned())
}

fn timeouts(t: Timeout) -> Result<Timeouts, ValidationError> {
    let seconds = |name: &str, value: f64| {
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                ValidationError::field(
                    format!("timeout.{name}"),
                    "must be a positive number of seconds",
                )
            })
    };
    Ok(Timeouts {
        connect: seconds("connect", t.connect)?,
        send: seconds("send", t.send)?,
        read: seconds("read", t.read)?,
    })
}
