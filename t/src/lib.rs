//! The end-to-end harness: a real `etcd`, the real `gateway` binary, a real
//! upstream and real TLS clients (the `curl` and `openssl` CLIs), so that every
//! test in `t/tests/` exercises Portcullis exactly as an operator would.
//!
//! Every process is started on free loopback ports with its files in a
//! temporary directory, and is killed when its handle is dropped (also when a
//! test panics), so tests are independent and may run in parallel.

mod admin;
pub mod cert_text;
pub mod client_pki;
mod cluster;
mod curl;
mod echo;
mod etcd;
pub mod fixtures;
mod fleet;
mod gateway;
mod http;
pub mod load;
mod net;
pub mod ocsp;
pub mod pki;
mod process;
pub mod revocation;
mod server_thread;
mod tls_echo;
pub mod tls_setup;
mod wait;

pub use admin::{AdminClient, AdminResponse};
pub use cluster::EtcdCluster;
pub use curl::{curl, openssl, openssl_output, CommandOutput, CurlOutput};
pub use echo::EchoServer;
pub use etcd::Etcd;
pub use fleet::Fleet;
pub use gateway::{gateway_bin, Gateway, GatewayOptions};
pub use net::free_port;
pub use tls_echo::{TlsEchoOptions, TlsEchoServer};
pub use wait::wait_until;

/// Every harness operation reports failures with enough context to act on.
pub type Result<T> = anyhow::Result<T>;
