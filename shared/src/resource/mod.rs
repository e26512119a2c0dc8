//! Stored resources, exactly as they are written to etcd and returned by the
//! admin API (minus private keys). These types are the *unvalidated* shape:
//! [`crate::validate`] turns them into the `Valid*` types the gateway uses.

mod route;
mod ssl;
mod upstream;

pub use route::Route;
pub use ssl::{ClientSettings, CrlMode, Ssl, SslType, UnknownStatus};
pub use upstream::{Node, Nodes, PassHost, Scheme, Timeout, Upstream, UpstreamTls};

use std::fmt;

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

/// Fields the admin API manages on every object.
pub const READ_ONLY_FIELDS: [&str; 3] = ["id", "create_time", "update_time"];
