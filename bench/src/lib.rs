//! Shared pieces of the benchmark tools that `./bench/run` drives: a minimal
//! HTTP/1.1 client (the loaders must cost as little as possible, so no
//! general-purpose client), rustls client configurations for mTLS, and
//! percentiles.

pub mod http;
pub mod objects;
pub mod stats;
pub mod tls;
