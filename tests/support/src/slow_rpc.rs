//! A gRPC proxy on 127.0.0.1 in front of the dev server that holds one RPC for a while
//! before it forwards it: a server slow to answer that call, as a saturated one is.
//!
//! Plaintext HTTP/2 both ways (the dev server's own); every other call, polls among them,
//! passes at once, its answer and trailers as the server sent them.

use std::{
    convert::Infallible,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; stops accepting when dropped.
pub struct SlowRpc {
    address: String,
    target: Arc<OnceLock<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowRpc {
    /// Listens on a free loopback port; calls of `rpc` (the method's name, say
    /// `ShutdownWorker`) wait `delay` before they are forwarded. Nothing is forwarded before
    /// [`forward_to`](Self::forward_to).
    pub async fn start(rpc: &'static str, delay: Duration) -> std::io::Result<Self> {
        Self::start_after(rpc, delay, 0).await
    }

    /// As [`start`](Self::start), but the first `spared` calls of `rpc` (over every
    /// connection) pass at once: say, the first worker's `DescribeNamespace`.
    pub async fn start_after(
        rpc: &'static str,
        delay: Duration,
        spared: usize,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let target = Arc::new(OnceLock::<String>::new());
        let t = target.clone();
        let seen = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(server) = t.get().cloned() else {
                    continue;
                };
                let held = Held {
                    rpc,
                    delay,
                    spared,
                    seen: seen.clone(),
                };
                tokio::spawn(async move {
                    let _ = proxy(client, &server, held).await;
                });
            }
        });
        Ok(Self {
            address,
            target,
            task,
        })
    }

    /// Where the proxy forwards to (`host:port`); set once.
    pub fn forward_to(&self, server: &str) {
        let _ = self.target.set(server.to_owned());
    }

    /// `host:port` to connect to.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for SlowRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which calls the proxy holds, and for how long.
#[derive(Clone)]
struct Held {
    rpc: &'static str,
    delay: Duration,
    /// Calls of `rpc` that pass at once, before any is held.
    spared: usize,
    /// Calls of `rpc` seen so far, over every connection.
    seen: Arc<AtomicUsize>,
}

/// One client connection, over one connection of its own to `server`.
async fn proxy(
    client: TcpStream,
    server: &str,
    held: Held,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let upstream = TcpStream::connect(server).await?;
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(upstream)).await?;
    tokio::spawn(connection);
    let service = service_fn(move |request: Request<Incoming>| {
        let mut sender = sender.clone();
        let held = held.clone();
        async move {
            if request.uri().path().rsplit('/').next() == Some(held.rpc)
                && held.seen.fetch_add(1, Ordering::SeqCst) >= held.spared
            {
                tokio::time::sleep(held.delay).await;
            }
            let answer = match sender.send_request(request).await {
                Ok(answer) => answer.map(http_body_util::Either::Left),
                Err(e) => Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "14")
                    .header("grpc-message", format!("proxy: {e}"))
                    .body(http_body_util::Either::Right(http_body_util::Empty::new()))
                    .expect("a response"),
            };
            Ok::<_, Infallible>(answer)
        }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(client), service)
        .await?;
    Ok(())
}
