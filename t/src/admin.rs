//! A client for the admin API, authenticated like an operator's curl.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::Value;

use crate::fixtures::PROPAGATION_TIMEOUT;

/// Admin API client (plain HTTP/1.1 to the admin listener).
#[derive(Clone, Debug)]
pub struct AdminClient {
    addr: SocketAddr,
    key: Option<String>,
}

/// One admin API response.
#[derive(Clone, Debug)]
pub struct AdminResponse {
    pub status: u16,
    /// The JSON body; `Null` when the body is empty or not JSON.
    pub body: Value,
    pub text: String,
}

impl AdminClient {
    pub(crate) fn new(addr: SocketAddr, key: &str) -> AdminClient {
        AdminClient {
            addr,
            key: Some(key.to_owned()),
        }
    }

    /// The same client with another `X-API-KEY`, or none.
    pub fn with_key(&self, key: Option<&str>) -> AdminClient {
        AdminClient {
            addr: self.addr,
            key: key.map(str::to_owned),
        }
    }

    /// `path` is like `/apisix/admin/ssls/1`.
    pub async fn put(&self, path: &str, body: Value) -> crate::Result<AdminResponse> {
        self.send(Method::PUT, path, Some(body.to_string())).await
    }

    /// PUT with a body sent verbatim (for invalid JSON).
    pub async fn put_raw(&self, path: &str, body: &str) -> crate::Result<AdminResponse> {
        self.send(Method::PUT, path, Some(body.to_owned())).await
    }

    pub async fn post(&self, path: &str, body: Value) -> crate::Result<AdminResponse> {
        self.send(Method::POST, path, Some(body.to_string())).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> crate::Result<AdminResponse> {
        self.send(Method::PATCH, path, Some(body.to_string())).await
    }

    pub async fn get(&self, path: &str) -> crate::Result<AdminResponse> {
        self.send(Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> crate::Result<AdminResponse> {
        self.send(Method::DELETE, path, None).await
    }

    /// PUT that fails unless the reply is `status` (201: created, 200: replaced).
    pub async fn put_expecting(
        &self,
        path: &str,
        body: Value,
        status: u16,
    ) -> crate::Result<AdminResponse> {
        expect("PUT", path, self.put(path, body).await?, status)
    }

    /// PUTs each `(path under /apisix/admin/, object)` in order; each must be
    /// new (201).
    pub async fn create_all<'a>(
        &self,
        objects: impl IntoIterator<Item = (&'a str, Value)>,
    ) -> crate::Result<()> {
        for (path, object) in objects {
            self.create(path, object).await?;
        }
        Ok(())
    }

    /// PUTs `object` at `/apisix/admin/<path>`; it must be new (201).
    pub async fn create(&self, path: &str, object: Value) -> crate::Result<AdminResponse> {
        self.put_expecting(&format!("/apisix/admin/{path}"), object, 201)
            .await
    }

    /// PUT that retries while etcd cannot take the write (503, e.g. during an
    /// election or just after a member went away), for up to
    /// [`PROPAGATION_TIMEOUT`]; any other refusal fails. Returns the attempts made.
    pub async fn put_until_stored(&self, path: &str, body: Value) -> crate::Result<usize> {
        let began = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let reply = self.put(path, body.clone()).await?;
            match reply.status {
                200 | 201 => return Ok(attempts),
                503 if began.elapsed() < PROPAGATION_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => anyhow::bail!("PUT {path} answered {other}: {}", reply.text),
            }
        }
    }

    /// DELETE that fails unless the reply is `status`.
    pub async fn delete_expecting(&self, path: &str, status: u16) -> crate::Result<AdminResponse> {
        expect("DELETE", path, self.delete(path).await?, status)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> crate::Result<AdminResponse> {
        let headers: Vec<(&str, &str)> =
            self.key.iter().map(|k| ("X-API-KEY", k.as_str())).collect();
        let reply = crate::http::send(self.addr, method, path, &headers, body).await?;
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(AdminResponse {
            status: reply.status,
            body,
            text,
        })
    }
}

fn expect(
    method: &str,
    path: &str,
    reply: AdminResponse,
    status: u16,
) -> crate::Result<AdminResponse> {
    if reply.status != status {
        anyhow::bail!(
            "{method} {path}: wanted HTTP {status}, got {}: {}",
            reply.status,
            reply.text
        );
    }
    Ok(reply)
}
