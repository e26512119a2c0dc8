//! A standalone echo upstream (the one the e2e tests use), for the quickstart:
//! `cargo run -p portcullis-e2e --example echo -- 127.0.0.1:9900`.
//! Answers every request with a JSON echo of its method, URI, headers and body.

use std::net::SocketAddr;

use anyhow::Context;
use harness::EchoServer;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9900".to_owned())
        .parse()
        .context("usage: echo [ADDR:PORT]")?;
    let echo = EchoServer::bind(addr).await?;
    eprintln!("echo upstream listening on http://{}", echo.addr());
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    Ok(())
}
