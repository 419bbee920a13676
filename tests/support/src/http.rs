//! The HTTP plumbing both loopback servers share: hyper http1 with tower-http's trace,
//! request-id and catch-panic middleware around a handler.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, header::HeaderValue};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

/// A response body.
pub type Body = Full<Bytes>;

#[derive(Clone)]
struct Counter {
    prefix: &'static str,
    next: Arc<AtomicU64>,
}

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// Serves `handler` on `listener` until the returned task is aborted. Every request gets
/// an `x-request-id` (`{prefix}-{n}`), a trace span, and a 500 answer if the handler panics.
pub(crate) fn serve<H, F>(
    listener: TcpListener,
    prefix: &'static str,
    handler: H,
) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let ids = Counter {
        prefix,
        next: Arc::default(),
    };
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handler = handler.clone();
            let svc = ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(ids.clone()))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http())
                .layer(CatchPanicLayer::new())
                .service_fn(move |req| {
                    let fut = handler(req);
                    async move {
                        let r = fut.await;
                        if r.extensions().get::<Reset>().is_some() {
                            // hyper drops the connection without an answer.
                            return Err(Reset);
                        }
                        Ok(r)
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
                    .await;
            });
        }
    })
}

/// Marks a response that is never sent: the connection is dropped instead, as a reset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reset;

impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the test server")
    }
}

impl std::error::Error for Reset {}

/// Drops the connection instead of answering.
pub(crate) fn reset() -> Response<Body> {
    let mut r = reply(StatusCode::INTERNAL_SERVER_ERROR, "");
    r.extensions_mut().insert(Reset);
    r
}

/// A response with this status and body.
pub(crate) fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

/// The whole request body (empty when the connection broke mid-body).
pub(crate) async fn read_body(req: Request<Incoming>) -> Bytes {
    req.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}
