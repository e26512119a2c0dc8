//! The process configuration: the documented `conf/config.yaml` starts a
//! gateway, and bad configs stop it at once with a message naming the problem.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use harness::{free_port, gateway_bin, wait_until, Etcd};

/// Kills the child when the test ends, also on panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the gateway on `yaml`; it must exit by itself (killed after 20 s).
fn run_to_exit(yaml: &str) -> harness::Result<Output> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml)?;
    let output = Command::new("timeout")
        .arg("20")
        .arg(gateway_bin()?)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()?;
    Ok(output)
}

fn assert_refused(yaml: &str, mentions: &str) -> harness::Result<()> {
    let out = run_to_exit(yaml)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad config must stop the gateway: {stderr}"
    );
    assert!(
        stderr.contains(mentions),
        "the message must mention {mentions:?}: {stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn documented_config_starts_a_gateway() -> harness::Result<()> {
    let etcd = Etcd::start().await?;
    let documented =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/config.yaml"))?;
    let admin_port = free_port();
    let yaml = documented
        .replace("http://127.0.0.1:2379", &etcd.endpoint())
        .replace("127.0.0.1:9180", &format!("127.0.0.1:{admin_port}"))
        .replace("0.0.0.0:9080", &format!("127.0.0.1:{}", free_port()))
        .replace("0.0.0.0:9443", &format!("127.0.0.1:{}", free_port()));
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml)?;
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path)?;
    let _gateway = KillOnDrop(
        Command::new(gateway_bin()?)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    let url = format!("http://127.0.0.1:{admin_port}/apisix/admin/routes");
    wait_until(
        "the documented admin key to be accepted",
        Duration::from_secs(20),
        || {
            let ok =
                harness::curl(&[&url, "-H", "X-API-KEY: change-me"]).is_ok_and(|o| o.status == 200);
            async move { ok }
        },
    )
    .await?;
    let out = harness::curl(&[&url, "-H", "X-API-KEY: wrong"])?;
    assert_eq!(out.status, 401, "{out:?}");
    // The sample key works, and the operator is told to replace it.
    let logged = std::fs::read_to_string(&log_path)?;
    assert!(
        logged.contains(r#"this key is the sample value "change-me""#),
        "{logged}"
    );
    Ok(())
}

#[test]
fn a_missing_config_file_is_named() -> harness::Result<()> {
    let out = Command::new(gateway_bin()?)
        .args(["-c", "/nonexistent/portcullis.yaml"])
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/portcullis.yaml"), "{stderr}");
    Ok(())
}

#[test]
fn an_admin_api_without_a_key_is_refused() -> harness::Result<()> {
    assert_refused(
        "deployment:\n  admin:\n    listen: \"127.0.0.1:1\"\n",
        "admin.keys",
    )?;
    assert_refused(
        "deployment:\n  admin:\n    keys:\n      - name: admin\n        key: \"\"\n",
        "admin.keys",
    )
}

#[test]
fn unknown_keys_are_refused() -> harness::Result<()> {
    assert_refused(
        "deployment:\n  admin:\n    keys: [{name: a, key: k}]\nproxy:\n  https_listn: [\"127.0.0.1:1\"]\n",
        "https_listn",
    )
}
