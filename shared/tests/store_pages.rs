//! A full read of a configuration larger than one gRPC response may be
//! (4 MiB): `StoreReader::load_all` reads it in pages, at one revision. Runs a
//! real `etcd` (installed by `./scripts/deps`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, Txn, TxnOp};
use shared::config::EtcdConfig;
use shared::store::StoreReader;

/// A throw-away single-node etcd, stopped when dropped.
struct Etcd {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn etcd() -> Etcd {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .args(["--name", "pages", "--data-dir"])
        .arg(dir.path())
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args(["--initial-cluster", &format!("pages={peer_url}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd must be installed (./scripts/deps)");
    let etcd = Etcd {
        child,
        url,
        _dir: dir,
    };
    let started = Instant::now();
    loop {
        if let Ok(mut client) = Client::connect([etcd.url.as_str()], None).await {
            if client.get("probe", None).await.is_ok() {
                return etcd;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "etcd did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_configuration_larger_than_one_response_is_read_whole() {
    let etcd = etcd().await;
    let mut client = Client::connect([etcd.url.as_str()], None).await.unwrap();
    // 1,200 values of 8 KiB: ~10 MB, more than twice the 4 MiB a single
    // response may hold; keys outside the prefix must not be read.
    let value = format!("{{\"pad\":\"{}\"}}", "x".repeat(8 * 1024));
    let keys: Vec<String> = (0..1200).map(|i| format!("/big/routes/r{i:04}")).collect();
    for batch in keys.chunks(100) {
        let puts: Vec<TxnOp> = batch
            .iter()
            .map(|k| TxnOp::put(k.as_str(), value.as_str(), None))
            .collect();
        client.txn(Txn::new().and_then(puts)).await.unwrap();
    }
    client.put("/big0", "outside", None).await.unwrap();
    client.put("/bi", "outside", None).await.unwrap();
    let written = client
        .get("probe", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let config = EtcdConfig {
        endpoints: vec![etcd.url.clone()],
        prefix: "/big".to_owned(),
        ..EtcdConfig::default()
    };
    let store = StoreReader::connect(&config).await.unwrap();
    let listing = store.load_all().await.unwrap();
    let read: Vec<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(read, keys, "every key under the prefix, in order, once");
    assert_eq!(listing.revision, written);
}
