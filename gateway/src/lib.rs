//! The Portcullis data plane: everything between a client's TCP connection
//! and the upstream.
//!
//! A connection walks the modules in request order: [`listener`] accepts it,
//! [`tls`] resolves the SNI and finishes the handshake with that SSL object's
//! pre-built configuration, [`proxy`] runs each request through the phases
//! (mTLS gate, [`router`], [`plugins`], [`upstream`]). All configuration comes
//! from one immutable [`snapshot::Snapshot`], rebuilt off the hot path when
//! etcd (or a standalone file, see [`source`]) changes and swapped whole.
//! [`status`] serves `/healthz`, `/readyz` and `/status` on a listener of its
//! own, with the Prometheus [`metrics`]; [`access_log`] writes one line per
//! request. [`DataPlane`] assembles them, from a read-only source: the data
//! plane cannot write to etcd, and does not link the admin API.

pub mod access_log;
pub mod build_error;
pub mod context;
pub mod data_plane;
pub mod json_text;
pub mod listener;
pub mod metrics;
pub(crate) mod path;
pub mod plugins;
pub mod proxy;
pub mod reply;
pub mod router;
pub mod shutdown;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod tls;
pub mod upstream;

pub use data_plane::DataPlane;
