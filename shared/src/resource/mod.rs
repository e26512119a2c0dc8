//! Stored resources, exactly as they are written to etcd and returned by the
//! admin API (minus private keys). These types are the *unvalidated* shape:
//! [`crate::validate`] turns them into the `Valid*` types the gateway uses.

mod metadata;
mod route;
mod ssl;
mod upstream;

pub use metadata::Metadata;
pub use route::Route;
pub use ssl::{
    ClientSettings, CrlMode, OcspStaplingSettings, OnlineRevocationSettings, RevocationMode, Ssl,
    SslType, UnknownStatus,
};
pub use upstream::{Node, Nodes, PassHost, Scheme, Timeout, Upstream, UpstreamTls};

use std::fmt;

use serde::{Deserialize, Deserializer};

/// The kinds of object the admin API stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ssls,
    Routes,
    Upstreams,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Ssls, Kind::Routes, Kind::Upstreams];

    /// The plural used in URLs and etcd keys (`ssls`, `routes`, `upstreams`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ssls => "ssls",
            Kind::Routes => "routes",
            Kind::Upstreams => "upstreams",
        }
    }

    pub fn from_plural(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object id (`id`, `upstream_id`, `client_cert_id`, `ca_id`) given as a
/// string or, as APISIX allows, an integer.
fn optional_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(Option::<Id>::deserialize(deserializer)?.map(|id| match id {
        Id::Text(text) => text,
        Id::Number(n) => n.to_string(),
    }))
}

#[cfg(test)]
mod tests;
