//! A plain TCP listener on 127.0.0.1 that records every byte a client sends it: what a
//! network observer between the function and Temporal would see.
//!
//! gRPC over plaintext HTTP/2 compresses header values (HPACK Huffman coding), so a key
//! sent in the clear need not appear byte for byte. The recorder therefore also speaks
//! plaintext HTTP/2 to whoever offers it and records the request headers it decodes; a
//! TLS client sends a `ClientHello` instead, which HTTP/2 rejects, and only its bytes are
//! recorded.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, server::conn::http2, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

#[derive(Default)]
struct Seen {
    bytes: Vec<u8>,
    headers: Vec<(String, String)>,
    connections: usize,
}

/// The recording listener; stops when dropped.
pub struct WireRecorder {
    address: String,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl WireRecorder {
    /// Listens on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                s.lock().unwrap().connections += 1;
                let io = Recording {
                    inner: stream,
                    seen: s.clone(),
                };
                let headers = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let mut seen = headers.lock().unwrap();
                        for (name, value) in req.headers() {
                            seen.headers.push((
                                name.to_string(),
                                String::from_utf8_lossy(value.as_bytes()).into_owned(),
                            ));
                        }
                        let mut r = Response::new(Full::new(Bytes::new()));
                        // gRPC UNAVAILABLE: the client gives up on this server.
                        r.headers_mut()
                            .insert("grpc-status", hyper::header::HeaderValue::from_static("14"));
                        r.headers_mut().insert(
                            "content-type",
                            hyper::header::HeaderValue::from_static("application/grpc"),
                        );
                        std::future::ready(Ok::<_, Infallible>(r))
                    });
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            address,
            seen,
            task,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Every byte received, all connections in arrival order.
    pub fn bytes(&self) -> Vec<u8> {
        self.seen.lock().unwrap().bytes.clone()
    }

    /// [`bytes`](Self::bytes), once at least `n` arrived or `within` passed: a client that
    /// gave up (a connect timeout under load) may have left its bytes unread in the socket.
    pub async fn bytes_at_least(&self, n: usize, within: std::time::Duration) -> Vec<u8> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let bytes = self.bytes();
            if bytes.len() >= n || tokio::time::Instant::now() >= until {
                return bytes;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    /// Request headers decoded from plaintext HTTP/2 (none for a TLS client).
    pub fn plaintext_headers(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().headers.clone()
    }

    /// Whether `secret` went over the wire readable: in the raw bytes or in a decoded header.
    pub fn saw(&self, secret: &str) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.bytes
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
            || seen.headers.iter().any(|(_, v)| v.contains(secret))
    }
}

impl Drop for WireRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Recording {
    inner: TcpStream,
    seen: Arc<Mutex<Seen>>,
}

impl AsyncRead for Recording {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            self.seen.lock().unwrap().bytes.extend_from_slice(new);
        }
        r
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
