//! Bulk loader: writes SSL objects and routes straight into etcd, in the
//! JSON the admin API stores, in transactions of up to 128 puts (etcd's
//! default `--max-txn-ops`) with several in flight. Loading 100,000 routes
//! through the admin API one by one would take minutes; this takes seconds.
//!
//! SSL object `load-<i>` serves `s<i>.load.test` (its own ECDSA P-256
//! certificate, client certificates required from the bench CA); route
//! `load-<j>` serves host `s<j mod ssls>.load.test` (any host when there are
//! no SSL objects), URI `/r/<j>` (even j) or the prefix `/p/<j>/*` (odd j).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use benchkit::objects::{self, Signer};
use clap::Parser;
use etcd_client::{Client, Txn, TxnOp};
use serde_json::Value;
use shared::Kind;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// etcd's default `--max-txn-ops`.
const TXN_OPS: usize = 128;
const IN_FLIGHT: usize = 8;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:2379")]
    etcd: String,
    #[arg(long, default_value = "/portcullis")]
    prefix: String,
    #[arg(long)]
    ssls: usize,
    #[arg(long)]
    routes: usize,
    /// CA (PEM) that signs the server certificates and that the SSL objects
    /// require client certificates from.
    #[arg(long)]
    ca_cert: PathBuf,
    /// Its key, PKCS#8 PEM.
    #[arg(long)]
    ca_key: PathBuf,
    /// `host:port` every route proxies to.
    #[arg(long)]
    upstream: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let objects = build_objects(&args)?;
    let generated = started.elapsed();
    let client = Client::connect([args.etcd.as_str()], None)
        .await
        .with_context(|| format!("connecting to etcd at {}", args.etcd))?;
    let bytes: usize = objects.iter().map(|(_, value)| value.len()).sum();
    write_all(client, objects).await?;
    eprintln!(
        "bench-load: {} SSL objects + {} routes ({:.1} MB of JSON) generated in {:.1} s, written in {:.1} s",
        args.ssls,
        args.routes,
        bytes as f64 / 1e6,
        generated.as_secs_f64(),
        (started.elapsed() - generated).as_secs_f64()
    );
    Ok(())
}

/// Every object as (key, JSON), the first of each kind checked as the
/// gateway will check it.
fn build_objects(args: &Args) -> anyhow::Result<Vec<(String, String)>> {
    let prefix = args.prefix.trim_end_matches('/');
    let signer = Signer::load(&args.ca_cert, &args.ca_key)?;
    let mut out = Vec::with_capacity(args.ssls + args.routes);
    let mut push = |kind: Kind, id: String, value: Value| -> anyhow::Result<()> {
        if out.is_empty() || id.ends_with("-0") {
            objects::check(kind, &id, &value)?;
        }
        out.push((
            format!("{prefix}/{}/{id}", kind.as_str()),
            value.to_string(),
        ));
        Ok(())
    };
    for i in 0..args.ssls {
        let sni = format!("s{i}.load.test");
        let leaf = signer.server(&sni)?;
        push(
            Kind::Ssls,
            format!("load-{i}"),
            objects::ssl(&format!("load-{i}"), &sni, &leaf, &signer.ca_pem),
        )?;
    }
    for j in 0..args.routes {
        let id = format!("load-{j}");
        let uri = if j & 1 == 0 {
            format!("/r/{j}")
        } else {
            format!("/p/{j}/*")
        };
        let hosts: Vec<String> = match args.ssls {
            0 => Vec::new(),
            n => vec![format!("s{}.load.test", j % n)],
        };
        push(
            Kind::Routes,
            id.clone(),
            objects::route(&id, &uri, &hosts, &args.upstream),
        )?;
    }
    Ok(out)
}

async fn write_all(client: Client, objects: Vec<(String, String)>) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut writes = JoinSet::new();
    for batch in objects.chunks(TXN_OPS) {
        let ops: Vec<TxnOp> = batch
            .iter()
            .map(|(key, value)| TxnOp::put(key.as_str(), value.as_str(), None))
            .collect();
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let mut kv = client.kv_client();
        writes.spawn(async move {
            let _permit = permit;
            kv.txn(Txn::new().and_then(ops)).await
        });
        while let Some(done) = writes.try_join_next() {
            done??;
        }
    }
    while let Some(done) = writes.join_next().await {
        done??;
    }
    Ok(())
}
