//! The Portcullis model, shared by the control plane (`admin`) and the data
//! plane (`gateway`).
//!
//! This crate owns everything both sides must agree on:
//!
//! * [`resource`]: the stored objects (`Ssl`, `Route`, `Upstream`) as they are
//!   written to etcd and returned by the admin API;
//! * [`schema`] and [`validate`]: the single place where a JSON object becomes
//!   a validated value (JSON schema first, then semantic checks such as "the
//!   private key matches the certificate"). The admin API and the etcd watcher
//!   call the same functions, so whatever the gateway loads, the admin API
//!   would have accepted;
//! * [`plugins`]: one module per built-in plugin (its schema, typed
//!   configuration and semantic checks), used by [`validate`];
//! * [`x509`]: PEM and X.509 helpers (parsing, key/cert matching, the
//!   operator-facing certificate summary);
//! * [`etcd_layout`]: the etcd key layout under the configured prefix;
//! * [`store`] and [`watch`]: the etcd client wrapper and the list-then-watch
//!   loop that keeps a [`state::ConfigState`] up to date;
//! * [`cache`]: the last-known-good configuration on disk, served when a data
//!   plane starts while etcd is unreachable;
//! * [`config`]: the `config.yaml` file types;
//! * [`certfile`]: certificates and keys named by path in `config.yaml`
//!   (admin API TLS, etcd TLS), re-read when the files are rotated;
//! * [`keyring`]: private keys sealed at rest with the operator's keyring;
//! * [`standalone`]: the configuration read from a file instead of etcd.

pub mod cache;
pub mod certfile;
pub mod client_chain;
pub mod config;
pub mod error;
pub mod etcd_layout;
pub mod keyring;
pub mod plugins;
pub mod resource;
pub mod schema;
pub mod standalone;
pub mod state;
pub mod store;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
pub mod validate;
pub mod watch;
pub mod x509;

pub use resource::Kind;
