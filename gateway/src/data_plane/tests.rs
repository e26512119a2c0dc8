//! The data plane assembled in-process, from a standalone file on free
//! ports, as the binary assembles it.

use std::path::Path;

use shared::config::Config;
use shared::keyring::Keyring;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// An upstream answering every connection with one `200 upstream`.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0; 4096];
                let _ = conn.read(&mut request).await;
                let reply =
                    "HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream";
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// A data plane reading `routes` (YAML) from a standalone file, with one
/// HTTP listener on a free port.
fn config(dir: &Path, routes: &str) -> Config {
    let file = dir.join("apisix.yaml");
    std::fs::write(&file, format!("{routes}#END\n")).expect("write file");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "deployment:\n  role: data_plane\n  config_provider: yaml\n  standalone:\n    file: {file:?}\n\
             proxy:\n  http_listen: [\"127.0.0.1:0\"]\n  https_listen: []\n  worker_threads: 1\n"
        ),
    )
    .expect("write config");
    Config::load(&config).expect("config")
}

/// The status line of `GET path` through the proxy at `addr`.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    conn.read_to_string(&mut response).await.expect("read");
    response.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn serves_a_standalone_file_on_free_ports() {
    let upstream = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let routes = format!(
        "routes:\n  - {{id: 1, uri: /hello, upstream: {{type: roundrobin, nodes: {{'{upstream}': 1}}}}}}\n"
    );
    let config = config(dir.path(), &routes);
    let file = config
        .deployment
        .standalone
        .path(&dir.path().join("config.yaml"));
    let source = ConfigSource::standalone(&file, Keyring::default())
        .await
        .expect("source");

    let mut data_plane = DataPlane::start(&config, source);
    data_plane.listen().await.expect("listen");
    assert!(data_plane.status().sync.borrow().loaded());
    let [(addr, Protocol::Http)] = data_plane.local_addrs() else {
        panic!("one HTTP listener: {:?}", data_plane.local_addrs());
    };
    assert_ne!(addr.port(), 0, "the port the system chose");

    assert_eq!(get(*addr, "/hello").await, "HTTP/1.1 200 OK");
    assert_eq!(get(*addr, "/nowhere").await, "HTTP/1.1 404 Not Found");

    let addr = *addr;
    data_plane.shutdown();
    data_plane.wait().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "closed after the drain"
    );
}
