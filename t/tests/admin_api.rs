//! The admin API end to end: a real etcd, the real `gateway` binary, requests
//! as an operator's curl sends them.
//!
//! Every refusal is checked twice: the answer (HTTP 400 and an `error_msg`
//! naming the field) and the store (nothing was written: the admin API still
//! answers with the previous object or 404, and etcd holds no new key).

use std::time::{Duration, Instant};

use harness::pki::{Ca, OpensslPki};
use harness::{curl, AdminClient, AdminResponse, Etcd, Gateway, Result};
use serde_json::{json, Value};

/// Past the 1.5 MiB body limit.
const TOO_LARGE: usize = 1536 * 1024 + 1024;

/// A real etcd and a traditional gateway on it.
struct Setup {
    etcd: Etcd,
    gateway: Gateway,
    admin: AdminClient,
}

async fn setup() -> Result<Setup> {
    let etcd = Etcd::start().await?;
    let gateway = Gateway::start(&etcd).await?;
    let admin = gateway.admin();
    Ok(Setup {
        etcd,
        gateway,
        admin,
    })
}

impl Setup {
    /// Keys stored under `<prefix>/<kind>/`, read straight from etcd.
    fn stored_keys(&self, kind: &str) -> Result<Vec<String>> {
        let dir = format!("{}/{kind}/", self.gateway.prefix());
        let out = self
            .etcd
            .etcdctl(&["get", "--prefix", "--keys-only", &dir])?;
        Ok(out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The whole etcd value of one object.
    fn stored_value(&self, kind: &str, id: &str) -> Result<String> {
        let key = format!("{}/{kind}/{id}", self.gateway.prefix());
        self.etcd.etcdctl(&["get", "--print-value-only", &key])
    }
}

fn upstream(node: &str) -> Value {
    json!({"type": "roundrobin", "nodes": {node: 1}})
}

fn route(uri: &str) -> Value {
    json!({"uri": uri, "upstream": upstream("127.0.0.1:1980")})
}

fn server_ssl(ca: &Ca, sni: &str) -> Value {
    let leaf = ca.server(sni, &[sni]);
    json!({"sni": sni, "cert": leaf.cert_pem, "key": leaf.key_pem, "client": {"ca": ca.cert_pem}})
}

fn error_msg(response: &AdminResponse) -> String {
    response.body["error_msg"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// HTTP 400 with an `error_msg` mentioning every one of `words`.
#[track_caller]
fn assert_refused(response: &AdminResponse, words: &[&str]) {
    assert_eq!(response.status, 400, "expected 400, got: {}", response.text);
    let msg = error_msg(response);
    for word in words {
        assert!(
            msg.to_lowercase().contains(&word.to_lowercase()),
            "error_msg should mention {word:?}: {msg:?}"
        );
    }
}

async fn assert_absent(admin: &AdminClient, path: &str) -> Result<()> {
    let response = admin.get(path).await?;
    assert_eq!(
        response.status, 404,
        "{path} should not exist: {}",
        response.text
    );
    Ok(())
}

#[tokio::test]
async fn requests_without_the_admin_key_are_refused() -> Result<()> {
    let s = setup().await?;
    let path = "/apisix/admin/routes";
    for client in [s.admin.with_key(None), s.admin.with_key(Some("wrong-key"))] {
        for response in [
            client.get(path).await?,
            client.put("/apisix/admin/routes/1", route("/a")).await?,
            client.delete("/apisix/admin/routes/1").await?,
            client.get("/apisix/admin/nothing-here").await?,
        ] {
            assert_eq!(response.status, 401, "{}", response.text);
            assert_eq!(error_msg(&response), "failed to check token");
        }
    }
    // A prefix of the right key is a wrong key.
    let prefix = s.admin.with_key(Some("test-admin-ke")).get(path).await?;
    assert_eq!(prefix.status, 401);
    assert!(s.stored_keys("routes")?.is_empty());
    assert_eq!(s.admin.get(path).await?.status, 200);
    Ok(())
}

#[tokio::test]
async fn put_get_list_post_delete_have_apisix_shapes() -> Result<()> {
    let s = setup().await?;
    let prefix = s.gateway.prefix().to_owned();

    let created = s
        .admin
        .put("/apisix/admin/upstreams/u1", upstream("127.0.0.1:1980"))
        .await?;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["key"], format!("{prefix}/upstreams/u1"));
    let value = &created.body["value"];
    assert_eq!(value["id"], "u1");
    assert_eq!(value["nodes"], json!({"127.0.0.1:1980": 1}));
    let create_time = value["create_time"].as_i64().expect("create_time");
    assert!(value["update_time"].as_i64().expect("update_time") >= create_time);

    // Replacing answers 200 and keeps create_time; the body's own times are ignored.
    let mut replacement = upstream("127.0.0.1:1981");
    replacement["create_time"] = json!(1);
    replacement["update_time"] = json!(2);
    let replaced = s
        .admin
        .put("/apisix/admin/upstreams/u1", replacement)
        .await?;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.body["value"]["create_time"], create_time);
    assert!(replaced.body["value"]["update_time"].as_i64() >= Some(create_time));
    assert_eq!(
        replaced.body["value"]["nodes"],
        json!({"127.0.0.1:1981": 1})
    );

    let got = s.admin.get("/apisix/admin/upstreams/u1").await?;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["key"], format!("{prefix}/upstreams/u1"));
    assert_eq!(got.body["value"], replaced.body["value"]);

    // The /admin alias serves the same objects.
    let alias = s.admin.get("/admin/upstreams/u1").await?;
    assert_eq!(alias.body["value"], got.body["value"]);

    // POST generates an id.
    let posted = s
        .admin
        .post(
            "/apisix/admin/routes",
            json!({"uri": "/p", "upstream_id": "u1"}),
        )
        .await?;
    assert_eq!(posted.status, 201, "{}", posted.text);
    let id = posted.body["value"]["id"]
        .as_str()
        .expect("generated id")
        .to_owned();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    assert_eq!(posted.body["key"], format!("{prefix}/routes/{id}"));
    let second = s.admin.post("/admin/routes", route("/q")).await?;
    assert_eq!(second.status, 201, "{}", second.text);
    assert_ne!(second.body["value"]["id"], posted.body["value"]["id"]);
    let refused = s
        .admin
        .post(
            "/apisix/admin/routes",
            json!({"id": "x", "uri": "/r", "upstream_id": "u1"}),
        )
        .await?;
    assert_refused(&refused, &["id"]);

    let list = s.admin.get("/apisix/admin/routes").await?;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total"], 2, "{}", list.text);
    let listed: Vec<&Value> = list.body["list"].as_array().expect("list").iter().collect();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|item| item["key"].is_string() && item["value"]["uri"].is_string()));
    let empty = s.admin.get("/apisix/admin/ssls").await?;
    assert_eq!(
        empty.body,
        json!({"list": [], "total": 0}),
        "{}",
        empty.text
    );

    let path = format!("/apisix/admin/routes/{id}");
    let deleted = s.admin.delete(&path).await?;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(
        deleted.body,
        json!({"deleted": "1", "key": format!("{prefix}/routes/{id}")})
    );
    let gone = s.admin.get(&path).await?;
    assert_eq!(gone.status, 404);
    assert!(error_msg(&gone).contains("not found"), "{}", gone.text);
    assert_eq!(s.admin.delete(&path).await?.status, 404);
    assert_eq!(s.admin.get("/apisix/admin/routes").await?.body["total"], 1);

    // Unknown resources and paths.
    for path in [
        "/apisix/admin/plugins/1",
        "/apisix/admin/consumers",
        "/elsewhere",
    ] {
        let response = s.admin.get(path).await?;
        assert_eq!(response.status, 404, "{path}: {}", response.text);
        assert!(!error_msg(&response).is_empty(), "{}", response.text);
    }
    Ok(())
}

#[tokio::test]
async fn patch_merges_and_revalidates() -> Result<()> {
    let s = setup().await?;
    let path = "/apisix/admin/routes/r1";
    let mut body = route("/old");
    body["desc"] = json!("first");
    assert_eq!(s.admin.put(path, body).await?.status, 201);
    let before = s.admin.get(path).await?.body["value"].clone();

    let patched = s
        .admin
        .patch(
            path,
            json!({"uri": "/new", "desc": null, "upstream": {"nodes": {"127.0.0.1:1981": 2}}}),
        )
        .await?;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let value = &patched.body["value"];
    assert_eq!(value["uri"], "/new");
    assert!(value.get("desc").is_none(), "null removes: {value}");
    assert_eq!(
        value["upstream"]["type"], "roundrobin",
        "siblings are kept: {value}"
    );
    assert_eq!(
        value["upstream"]["nodes"],
        json!({"127.0.0.1:1980": 1, "127.0.0.1:1981": 2})
    );
    assert_eq!(value["create_time"], before["create_time"]);
    assert_eq!(s.admin.get(path).await?.body["value"], *value);

    // A patch that makes the route invalid is refused and changes nothing.
    let stored = s.stored_value("routes", "r1")?;
    for (patch, field) in [
        (json!({"plugins": {"no-such-plugin": {}}}), "no-such-plugin"),
        (
            json!({"upstream": null, "upstream_id": "missing"}),
            "upstream_id",
        ),
        (json!({"uri": 42}), "uri"),
    ] {
        let refused = s.admin.patch(path, patch).await?;
        assert_refused(&refused, &[field]);
        assert_eq!(s.stored_value("routes", "r1")?, stored, "nothing written");
    }
    let invalid_json = s.admin.put_raw(path, "{\"uri\": ").await?;
    assert_refused(&invalid_json, &["JSON"]);
    assert_eq!(s.stored_value("routes", "r1")?, stored);

    // Concurrent patches never lose each other's changes (compare-and-swap):
    // every patch that was acknowledged is in the final object.
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let admin = s.admin.clone();
            tokio::spawn(async move {
                let label = format!("writer{i}");
                let response = admin.patch(path, json!({"labels": {&label: "yes"}})).await;
                (label, response)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    for writer in writers {
        let (label, response) = writer.await?;
        let response = response?;
        assert!([200, 409].contains(&response.status), "{}", response.text);
        if response.status == 200 {
            acknowledged.push(label);
        }
    }
    assert!(!acknowledged.is_empty());
    let labels = s.admin.get(path).await?.body["value"]["labels"].clone();
    for label in acknowledged {
        assert_eq!(labels[&label], "yes", "{label} was lost: {labels}");
    }

    let absent = s
        .admin
        .patch("/apisix/admin/routes/none", json!({"uri": "/x"}))
        .await?;
    assert_eq!(absent.status, 404, "{}", absent.text);
    assert!(s.stored_keys("routes")?.len() == 1);
    Ok(())
}

#[tokio::test]
async fn invalid_ssl_objects_are_refused_and_nothing_is_written() -> Result<()> {
    let s = setup().await?;
    let ca = Ca::new("Admin Test CA");
    let other = Ca::new("Another CA");
    let valid = server_ssl(&ca, "test.com");
    let path = "/apisix/admin/ssls/1";
    let fresh = "/apisix/admin/ssls/2";
    assert_eq!(s.admin.put(path, valid.clone()).await?.status, 201);
    let stored = s.stored_value("ssls", "1")?;

    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let mismatched_key = other.server("test.com", &["test.com"]).key_pem;
    let cases = [
        (
            "garbage cert",
            with(
                "cert",
                json!("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"),
            ),
            "cert",
        ),
        ("cert not PEM", with("cert", json!("hello")), "cert"),
        (
            "key of another cert",
            with("key", json!(mismatched_key)),
            "key",
        ),
        ("garbage key", with("key", json!("not a key")), "key"),
        (
            "bad CA",
            with("client", json!({"ca": "not a certificate"})),
            "ca",
        ),
        ("CA missing", with("client", json!({"depth": 1})), "ca"),
        (
            "bad regex",
            with(
                "client",
                json!({"ca": ca.cert_pem, "skip_mtls_uri_regex": ["/anything/(unclosed"]}),
            ),
            "skip_mtls_uri_regex",
        ),
        ("bad SNI", with("sni", json!("bad sni!")), "sni"),
        (
            "two-label wildcard",
            with("sni", json!("*.*.test.com")),
            "sni",
        ),
        ("sni and snis", with("snis", json!(["test.com"])), "sni"),
        (
            "no sni",
            {
                let mut body = valid.clone();
                body.as_object_mut().expect("object").remove("sni");
                body
            },
            "sni",
        ),
    ];
    for (what, body, field) in cases {
        for target in [path, fresh] {
            let refused = s.admin.put(target, body.clone()).await?;
            assert_eq!(refused.status, 400, "{what}: {}", refused.text);
            assert_refused(&refused, &[field]);
            assert!(
                !refused.text.contains("PRIVATE KEY"),
                "{what}: the error echoes a key"
            );
        }
        let posted = s.admin.post("/apisix/admin/ssls", body).await?;
        assert_eq!(posted.status, 400, "{what}: {}", posted.text);
        assert_eq!(
            s.stored_value("ssls", "1")?,
            stored,
            "{what}: the old object is unchanged"
        );
        assert_absent(&s.admin, fresh).await?;
        assert_eq!(
            s.stored_keys("ssls")?.len(),
            1,
            "{what}: nothing new in etcd"
        );
    }

    // PATCH to a mismatching key is refused too.
    let refused = s.admin.patch(path, json!({"key": mismatched_key})).await?;
    assert_refused(&refused, &["key"]);
    assert_eq!(s.stored_value("ssls", "1")?, stored);
    Ok(())
}

#[tokio::test]
async fn invalid_routes_and_bodies_are_refused_and_nothing_is_written() -> Result<()> {
    let s = setup().await?;
    let path = "/apisix/admin/routes/1";

    let missing = s
        .admin
        .put(path, json!({"uri": "/a", "upstream_id": "nope"}))
        .await?;
    assert_refused(&missing, &["upstream_id", "nope"]);

    let mut unknown_plugin = route("/a");
    unknown_plugin["plugins"] = json!({"no-such-plugin": {}});
    assert_refused(
        &s.admin.put(path, unknown_plugin).await?,
        &["no-such-plugin"],
    );

    for raw in ["{\"uri\": \"/a\",", "uri=/a", "", "[1, 2]"] {
        let refused = s.admin.put_raw(path, raw).await?;
        assert_refused(&refused, &["JSON"]);
    }

    let mut huge = route("/a");
    huge["labels"] = json!({"padding": "x".repeat(TOO_LARGE)});
    for refused in [
        s.admin.put(path, huge.clone()).await?,
        s.admin.post("/apisix/admin/routes", huge).await?,
    ] {
        assert_eq!(refused.status, 413, "{}", refused.text);
        assert_eq!(
            refused.body,
            json!({"error_msg": "request body larger than 1.5 MiB"})
        );
    }

    assert_absent(&s.admin, path).await?;
    assert!(s.stored_keys("routes")?.is_empty());

    // A valid route then an invalid replacement: the old one stays.
    assert_eq!(s.admin.put(path, route("/a")).await?.status, 201);
    let stored = s.stored_value("routes", "1")?;
    assert_refused(
        &s.admin
            .put(path, json!({"uri": "/b", "upstream_id": "nope"}))
            .await?,
        &["upstream_id"],
    );
    assert_refused(&s.admin.put_raw(path, "{").await?, &["JSON"]);
    assert_eq!(s.stored_value("routes", "1")?, stored);
    Ok(())
}

/// The admin API refuses exactly what the gateway could not build: a
/// `proxy-rewrite` URI with a space or a `#` passes the JSON schema but
/// cannot be sent, so it is refused here rather than stored and then left
/// unbuilt by every data plane.
#[tokio::test]
async fn a_proxy_rewrite_uri_the_gateway_cannot_send_is_refused() -> Result<()> {
    let s = setup().await?;
    let path = "/apisix/admin/routes/rewrite";
    for uri in ["/a b", "/a#fragment", "/$uri x"] {
        let mut body = route("/a");
        body["plugins"] = json!({"proxy-rewrite": {"uri": uri}});
        let refused = s.admin.put(path, body).await?;
        assert_eq!(
            refused.body,
            json!({"error_msg": "invalid plugins.proxy-rewrite.uri: contains characters not \
                   allowed in a URI (such as a space, `#` or a control character); \
                   percent-encode them"}),
            "{uri:?}: {}",
            refused.text
        );
        assert_refused(&refused, &["plugins.proxy-rewrite.uri"]);
    }
    assert_absent(&s.admin, path).await?;
    assert!(s.stored_keys("routes")?.is_empty());

    let mut encoded = route("/a");
    encoded["plugins"] = json!({"proxy-rewrite": {"uri": "/a%20b/$uri"}});
    assert_eq!(s.admin.put(path, encoded).await?.status, 201);
    Ok(())
}

#[tokio::test]
async fn referenced_upstreams_are_deleted_only_with_force() -> Result<()> {
    let s = setup().await?;
    let upstream_path = "/apisix/admin/upstreams/u1";
    s.admin
        .create_all([
            ("upstreams/u1", upstream("127.0.0.1:1980")),
            ("routes/r1", json!({"uri": "/r1", "upstream_id": "u1"})),
            ("routes/r2", json!({"uri": "/r2", "upstream_id": "u1"})),
        ])
        .await?;

    let refused = s.admin.delete(upstream_path).await?;
    assert_refused(&refused, &["u1", "r1", "r2", "force=true"]);
    assert_eq!(s.admin.get(upstream_path).await?.status, 200);
    let refused = s
        .admin
        .delete(&format!("{upstream_path}?force=false"))
        .await?;
    assert_eq!(refused.status, 400);

    let forced = s
        .admin
        .delete(&format!("{upstream_path}?force=true"))
        .await?;
    assert_eq!(forced.status, 200, "{}", forced.text);
    assert_eq!(forced.body["deleted"], "1");
    assert_absent(&s.admin, upstream_path).await?;
    Ok(())
}

#[tokio::test]
async fn private_keys_are_never_returned() -> Result<()> {
    let s = setup().await?;
    let pki = OpensslPki::walkthrough()?;
    let ssl = json!({
        "sni": "test.com",
        "cert": pki.read("server.cer"),
        "key": pki.read("server.key"),
        "client": {"ca": pki.read("ca.cer")},
    });
    let ca = Ca::new("Second CA");
    let leaf = ca.server("*.example.com", &["*.example.com"]);
    let multi = json!({
        "snis": ["*.example.com"],
        "cert": leaf.cert_pem,
        "key": leaf.key_pem,
        "certs": [leaf.cert_pem],
        "keys": [leaf.key_pem],
    });

    let mut answers = vec![
        s.admin.put("/apisix/admin/ssls/1", ssl).await?,
        s.admin.post("/apisix/admin/ssls", multi).await?,
        s.admin
            .patch("/apisix/admin/ssls/1", json!({"desc": "walkthrough"}))
            .await?,
    ];
    let posted_id = answers[1].body["value"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    answers.push(s.admin.get("/apisix/admin/ssls/1").await?);
    answers.push(s.admin.get(&format!("/admin/ssls/{posted_id}")).await?);
    answers.push(s.admin.get("/apisix/admin/ssls").await?);
    for answer in &answers {
        assert!((200..300).contains(&answer.status), "{}", answer.text);
        assert!(
            !answer.text.contains("PRIVATE KEY"),
            "a private key was returned: {}",
            answer.text
        );
        assert!(!answer.text.contains("\"key\":\"-"), "{}", answer.text);
    }

    // Read-only certificate details help operators; the stored object keeps its key.
    let got = &answers[3].body["value"];
    assert_eq!(got["desc"], "walkthrough");
    assert_eq!(got["info"]["cert"]["subject"], "CN=test.com", "{got}");
    assert_eq!(got["info"]["client_ca"][0]["subject"], "CN=ROOTCA", "{got}");
    assert!(
        got["info"]["cert"]["fingerprint_sha256"].is_string(),
        "{got}"
    );
    assert!(
        got["warnings"].is_array(),
        "v1 certificates deserve a warning: {got}"
    );
    assert!(s.stored_value("ssls", "1")?.contains("PRIVATE KEY"));
    assert_eq!(answers[5].body["total"], 2);
    Ok(())
}

#[tokio::test]
async fn curl_with_a_form_content_type_works() -> Result<()> {
    let s = setup().await?;
    let url = format!("http://{}/apisix/admin/upstreams/1", s.gateway.admin_addr());
    let body = upstream("127.0.0.1:1980").to_string();
    // `curl -d` sends `Content-Type: application/x-www-form-urlencoded`.
    let out = curl(&[
        "-X",
        "PUT",
        &url,
        "-H",
        "X-API-KEY: test-admin-key",
        "-d",
        &body,
    ])?;
    assert_eq!(out.status, 201, "{}", out.body);
    let out = curl(&[&url, "-H", "X-API-KEY: test-admin-key"])?;
    assert_eq!(out.status, 200, "{}", out.body);
    Ok(())
}

#[tokio::test]
async fn etcd_down_is_503_within_seconds() -> Result<()> {
    let mut s = setup().await?;
    assert_eq!(
        s.admin
            .put("/apisix/admin/upstreams/1", upstream("127.0.0.1:1980"))
            .await?
            .status,
        201
    );
    s.etcd.stop().await;

    let started = Instant::now();
    let list = s.admin.get("/apisix/admin/upstreams").await?;
    let elapsed = started.elapsed();
    assert_eq!(list.status, 503, "{}", list.text);
    assert!(
        error_msg(&list).starts_with("etcd unavailable"),
        "{}",
        list.text
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?}"
    );

    let put = s
        .admin
        .put("/apisix/admin/upstreams/2", upstream("127.0.0.1:1980"))
        .await?;
    assert_eq!(put.status, 503, "{}", put.text);
    // Validation needs no etcd: an invalid body is still a 400.
    assert_refused(
        &s.admin.put_raw("/apisix/admin/upstreams/2", "{").await?,
        &["JSON"],
    );

    s.etcd.restart().await?;
    harness::wait_until(
        "the admin API reaches etcd again",
        Duration::from_secs(20),
        || async {
            s.admin
                .get("/apisix/admin/upstreams/1")
                .await
                .is_ok_and(|r| r.status == 200)
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_private_key_pasted_into_a_certificate_field_is_refused() -> Result<()> {
    let s = setup().await?;
    let ca = Ca::new("Pasted Key CA");
    let valid = server_ssl(&ca, "test.com");
    let (path, fresh) = ("/apisix/admin/ssls/1", "/apisix/admin/ssls/2");
    assert_eq!(s.admin.put(path, valid.clone()).await?.status, 201);
    let before = s.admin.get(path).await?;
    assert_eq!(before.status, 200, "{}", before.text);
    let stored = s.stored_value("ssls", "1")?;

    let leaf = ca.server("test.com", &["test.com"]);
    let cert_and_key = format!("{}{}", leaf.cert_pem, leaf.key_pem);
    let ca_and_key = format!("{}{}", ca.cert_pem, leaf.key_pem);
    let mut pasted_cert = valid.clone();
    pasted_cert["cert"] = json!(cert_and_key);
    pasted_cert["key"] = json!(leaf.key_pem);
    let mut pasted_ca = valid.clone();
    pasted_ca["client"] = json!({"ca": ca_and_key});
    for (body, field, advice) in [
        (&pasted_cert, "cert", "give it in `key`"),
        (&pasted_ca, "client.ca", "give only certificates here"),
    ] {
        for target in [path, fresh] {
            let refused = s.admin.put(target, body.clone()).await?;
            assert_refused(&refused, &[field, "holds a private key", advice]);
            assert!(!refused.text.contains("PRIVATE KEY"), "{}", refused.text);
        }
        let patch = json!({"client": body["client"], "cert": body["cert"]});
        let refused = s.admin.patch(path, patch).await?;
        assert_refused(&refused, &[field, "holds a private key"]);
        assert!(!refused.text.contains("PRIVATE KEY"), "{}", refused.text);
    }
    let after = s.admin.get(path).await?;
    assert_eq!(after.status, 200, "{}", after.text);
    assert_eq!(after.body, before.body, "the stored object is unchanged");
    assert_eq!(s.stored_value("ssls", "1")?, stored);
    assert_absent(&s.admin, fresh).await?;
    assert_eq!(s.stored_keys("ssls")?.len(), 1, "nothing new in etcd");
    Ok(())
}

#[tokio::test]
async fn a_private_key_written_straight_into_etcd_is_never_returned() -> Result<()> {
    let s = setup().await?;
    let ca = Ca::new("Hand Written CA");
    let leaf = ca.server("test.com", &["test.com"]);
    // Written by hand, a script or an older version: never validated.
    let by_hand = json!({
        "id": "9",
        "sni": "test.com",
        "cert": format!("{}{}", leaf.cert_pem, leaf.key_pem),
        "key": leaf.key_pem,
        "labels": {"note": leaf.key_pem},
    });
    let key = format!("{}/ssls/9", s.gateway.prefix());
    s.etcd.etcdctl(&["put", &key, &by_hand.to_string()])?;

    let got = s.admin.get("/apisix/admin/ssls/9").await?;
    let listed = s.admin.get("/apisix/admin/ssls").await?;
    for answer in [&got, &listed] {
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert!(
            !answer.text.contains("PRIVATE KEY"),
            "a private key was returned: {}",
            answer.text
        );
    }
    for value in [&got.body["value"], &listed.body["list"][0]["value"]] {
        let cert = value["cert"].as_str().unwrap_or_default();
        assert!(
            cert.starts_with(&leaf.cert_pem),
            "the certificate stays: {value}"
        );
        assert!(cert.contains("[private key removed]"), "{value}");
        let warnings = value["warnings"].to_string();
        for field in [
            "cert holds a private key",
            "labels.note holds a private key",
        ] {
            assert!(warnings.contains(field), "{field}: {warnings}");
        }
    }
    assert!(
        s.stored_value("ssls", "9")?.contains("PRIVATE KEY"),
        "etcd is left alone"
    );
    Ok(())
}

/// `n` PATCHes of `path` sent at once, `body(i)` each.
async fn concurrent_patches(
    admin: &AdminClient,
    path: &str,
    n: usize,
    body: impl Fn(usize) -> Value,
) -> Result<Vec<AdminResponse>> {
    let patches = (0..n).map(|i| {
        let (admin, body) = (admin.clone(), body(i));
        let path = path.to_owned();
        tokio::spawn(async move { admin.patch(&path, body).await })
    });
    let mut answers = Vec::new();
    for patch in patches.collect::<Vec<_>>() {
        answers.push(patch.await??);
    }
    Ok(answers)
}

#[tokio::test]
async fn concurrent_patches_of_different_fields_all_succeed() -> Result<()> {
    let s = setup().await?;
    let path = "/apisix/admin/routes/1";
    assert_eq!(s.admin.put(path, route("/a")).await?.status, 201);

    let started = Instant::now();
    let answers = concurrent_patches(
        &s.admin,
        path,
        20,
        |i| json!({"labels": {format!("k{i}"): format!("v{i}")}}),
    )
    .await?;
    eprintln!(
        "20 concurrent PATCHes of different fields answered in {:?}",
        started.elapsed()
    );
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text);
    }
    let labels = &s.admin.get(path).await?.body["value"]["labels"];
    for i in 0..20 {
        assert_eq!(labels[format!("k{i}")], format!("v{i}"), "{labels}");
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_patches_of_one_field_keep_a_409_for_the_losers() -> Result<()> {
    let s = setup().await?;
    let path = "/apisix/admin/routes/1";
    assert_eq!(s.admin.put(path, route("/a")).await?.status, 201);

    let answers = concurrent_patches(
        &s.admin,
        path,
        10,
        |i| json!({"labels": {"owner": format!("team-{i}")}}),
    )
    .await?;
    let won: Vec<&AdminResponse> = answers.iter().filter(|a| a.status == 200).collect();
    eprintln!(
        "10 concurrent PATCHes of one field: {} × 200, {} × 409",
        won.len(),
        answers.len() - won.len()
    );
    assert!(!won.is_empty(), "one of them wins");
    for answer in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(answer.status, 409, "{}", answer.text);
        assert!(
            error_msg(answer).contains("`labels.owner`"),
            "{}",
            answer.text
        );
    }
    let owner = &s.admin.get(path).await?.body["value"]["labels"]["owner"];
    assert!(
        won.iter()
            .any(|a| &a.body["value"]["labels"]["owner"] == owner),
        "the stored value is one that was acknowledged: {owner}"
    );
    Ok(())
}
