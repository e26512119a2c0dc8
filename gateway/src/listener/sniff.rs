//! HTTP/1 or HTTP/2? Read from the client's first bytes (the HTTP/2
//! connection preface), under a deadline the caller sets, then hand hyper the
//! stream with those bytes put back.
//!
//! hyper-util's automatic detection has no deadline of its own, so a client
//! that connects and sends nothing would hold its connection forever; and it
//! cannot be told to finish that step during a graceful shutdown. Doing it
//! here bounds the first and lets the second serve the request.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a client speaks on its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HttpVersion {
    Http1,
    Http2,
}

/// Reads until the bytes either are the whole HTTP/2 preface or stop
/// matching it (the first byte of any HTTP/1 request decides).
pub(crate) async fn sniff<IO>(mut io: IO) -> io::Result<(HttpVersion, Prefixed<IO>)>
where
    IO: AsyncRead + Unpin,
{
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < buf.len() {
        let read = io.read(&mut buf[filled..]).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before sending a request",
            ));
        }
        filled += read;
        if buf[..filled] != H2_PREFACE[..filled] {
            return Ok((HttpVersion::Http1, Prefixed::new(&buf[..filled], io)));
        }
    }
    Ok((HttpVersion::Http2, Prefixed::new(&buf, io)))
}

/// A stream whose first reads return `prefix`.
#[derive(Debug)]
pub(crate) struct Prefixed<IO> {
    prefix: Vec<u8>,
    /// How much of `prefix` was read already.
    consumed: usize,
    io: IO,
}

impl<IO> Prefixed<IO> {
    fn new(prefix: &[u8], io: IO) -> Prefixed<IO> {
        Prefixed {
            prefix: prefix.to_vec(),
            consumed: 0,
            io,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Prefixed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let rest = &this.prefix[this.consumed..];
        if rest.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        this.consumed += n;
        if this.consumed == this.prefix.len() {
            this.prefix = Vec::new();
            this.consumed = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Prefixed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(chunks: &[&[u8]]) -> io::Result<(HttpVersion, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(1024);
        for chunk in chunks {
            client.write_all(chunk).await?;
        }
        drop(client);
        let (version, mut stream) = sniff(server).await?;
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await?;
        Ok((version, all))
    }

    #[tokio::test]
    async fn tells_the_versions_apart_and_loses_no_byte() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(
            sniffed(&[get]).await.expect("h1"),
            (HttpVersion::Http1, get.to_vec())
        );
        // POST shares its first letter with the preface.
        let post: &[u8] = b"POST /x HTTP/1.1\r\n\r\n";
        assert_eq!(
            sniffed(&[&post[..1], &post[1..]]).await.expect("h1").1,
            post
        );
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let (version, bytes) = sniffed(&[&h2[..5], &h2[5..]]).await.expect("h2");
        assert_eq!((version, bytes), (HttpVersion::Http2, h2));
    }

    #[tokio::test]
    async fn a_client_that_leaves_early_is_an_error() {
        let err = sniffed(&[b"PRI * HT"]).await.expect_err("eof");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(sniffed(&[]).await.is_err());
    }
}
