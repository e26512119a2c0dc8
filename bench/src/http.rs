//! A minimal HTTP/1.1 client over any byte stream: one request at a time on
//! a keep-alive connection, `Content-Length` or chunked responses. Enough
//! for the admin API, the gateway and nginx, and cheap enough that the
//! loader is never what a measurement measures.

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// A response, body read whole.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The server announced `Connection: close`.
    pub closing: bool,
}

/// One client connection.
pub struct Conn<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            io: BufReader::new(stream),
        }
    }

    /// The underlying stream (e.g. to read the TLS session).
    pub fn get_ref(&self) -> &S {
        self.io.get_ref()
    }

    /// Sends one request and reads its response. `headers` are added as
    /// given; `Content-Length` is set when `body` is not empty.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        host: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.io
            .write_all(&request)
            .await
            .context("writing the request")?;
        self.io.flush().await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            bail!("connection closed before a response");
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let (mut length, mut chunked, mut closing) = (None, false, false);
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("connection closed in the response head");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => closing = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let body = match (chunked, length) {
            (true, _) => self.read_chunked().await?,
            (false, Some(length)) => {
                let mut body = vec![0; length];
                self.io.read_exact(&mut body).await?;
                body
            }
            (false, None) => Vec::new(),
        };
        Ok(Response {
            status,
            body,
            closing,
        })
    }

    async fn read_chunked(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.io.read_line(&mut line).await?;
            let size_text = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if self.io.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.io.read_exact(&mut body[start..]).await?;
            line.clear();
            self.io.read_line(&mut line).await?;
        }
    }
}
