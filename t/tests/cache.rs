//! The last-known-good cache (`deployment.etcd.cache_dir`): a gateway that
//! starts while etcd is down serves the configuration it last applied,
//! reports itself stale, and catches up when etcd returns; a damaged cache
//! file is refused with the reason, never served.

use std::path::{Path, PathBuf};
use std::time::Instant;

use harness::fixtures::{curl_http, route_to, until_served_by, PROPAGATION_TIMEOUT};
use harness::{wait_until, EchoServer, Etcd, Gateway, GatewayOptions};

fn with_cache(dir: &Path) -> GatewayOptions {
    GatewayOptions {
        status: true,
        cache_dir: Some(dir.to_owned()),
        ..GatewayOptions::default()
    }
}

/// Waits until the cache file holds the revision the gateway serves.
async fn until_cached(gw: &Gateway) -> harness::Result<()> {
    wait_until(
        "the cache to hold the served revision",
        PROPAGATION_TIMEOUT,
        || async {
            gw.status().await.is_ok_and(|s| {
                s["cache"]["written_revision"] == s["config"]["revision"]
                    && s["config"]["source"] == "etcd"
            })
        },
    )
    .await
}

/// The one cache file in `dir`.
fn cache_file(dir: &Path) -> harness::Result<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    match files.as_slice() {
        [file] => Ok(file.clone()),
        _ => anyhow::bail!(
            "expected one cache file in {}, found {files:?}",
            dir.display()
        ),
    }
}

#[tokio::test]
async fn serves_the_cached_config_while_etcd_is_down_then_catches_up() -> harness::Result<()> {
    let mut etcd = Etcd::start().await?;
    let cache_dir = tempfile::tempdir()?;
    let mut gw = Gateway::start_with(&etcd, with_cache(cache_dir.path())).await?;
    let (old, new) = (EchoServer::start().await?, EchoServer::start().await?);
    let put = gw
        .admin()
        .put("/apisix/admin/routes/1", route_to("/cached", &old))
        .await?;
    assert_eq!(put.status, 201, "{}", put.text);
    until_served_by(&gw, "/cached", &old).await?;
    until_cached(&gw).await?;
    let file = cache_file(cache_dir.path())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} may hold private keys", file.display());
    }

    // A change the stopped gateway misses, then etcd goes away too.
    gw.stop().await;
    let key = format!("{}/routes/1", gw.prefix());
    etcd.etcdctl(&["put", &key, &route_to("/cached", &new).to_string()])?;
    etcd.stop().await;

    let started = Instant::now();
    gw.restart().await?;
    until_served_by(&gw, "/cached", &old).await?;
    eprintln!(
        "etcd down: serving the cached config {:?} after the restart",
        started.elapsed()
    );
    let status = gw.status().await?;
    assert_eq!(status["stale"], true, "{status:#}");
    assert_eq!(status["ready"], true);
    assert_eq!(status["config"]["source"], "cache");
    assert_eq!(status["etcd"]["connected"], false);
    assert_eq!(gw.status_code("/readyz").await?, 200);
    assert!(gw
        .log()
        .contains("serving the last-known-good configuration from the cache"));

    let back = Instant::now();
    etcd.restart().await?;
    until_served_by(&gw, "/cached", &new).await?;
    eprintln!(
        "etcd back: serving the newer config {:?} after etcd answered",
        back.elapsed()
    );
    let status = gw.status().await?;
    assert_eq!(status["stale"], false, "{status:#}");
    assert_eq!(status["config"]["source"], "etcd");
    Ok(())
}

#[tokio::test]
async fn a_damaged_cache_is_ignored_with_the_reason() -> harness::Result<()> {
    let mut etcd = Etcd::start().await?;
    let cache_dir = tempfile::tempdir()?;
    let mut gw = Gateway::start_with(&etcd, with_cache(cache_dir.path())).await?;
    let echo = EchoServer::start().await?;
    let put = gw
        .admin()
        .put("/apisix/admin/routes/1", route_to("/damaged", &echo))
        .await?;
    assert_eq!(put.status, 201, "{}", put.text);
    until_served_by(&gw, "/damaged", &echo).await?;
    until_cached(&gw).await?;
    gw.stop().await;
    etcd.stop().await;
    let file = cache_file(cache_dir.path())?;
    let good = std::fs::read_to_string(&file)?;

    let damages = [
        (
            "an edited value",
            good.replace("/damaged", "/damagex"),
            "checksum does not match",
        ),
        (
            "a truncated file",
            good[..good.len() / 2].to_owned(),
            "is not a Portcullis cache file",
        ),
    ];
    for (what, content, reason) in damages {
        std::fs::write(&file, content)?;
        gw.restart().await?;
        wait_until(
            &format!("the gateway to refuse {what}"),
            PROPAGATION_TIMEOUT,
            || async { gw.log().contains(reason) },
        )
        .await?;
        let out = curl_http(&gw, "/damaged", &[])?;
        assert_eq!(out.status, 404, "{what} must not be served: {out:?}");
        assert_eq!(gw.status_code("/readyz").await?, 503, "{what}: not ready");
        let line = gw
            .log()
            .lines()
            .rev()
            .find(|l| l.contains(reason))
            .unwrap_or_default()
            .to_owned();
        eprintln!("{what}: {line}");
        assert!(
            line.contains("ignoring the last-known-good cache"),
            "{line}"
        );
        gw.stop().await;
    }
    Ok(())
}
