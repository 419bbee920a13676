//! The wire's way to the server: a tonic channel of its own, made from the connection's
//! options as the client makes its own (target, TLS, origin, connect timeout, keepalive,
//! compression).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use temporalio_client::{
    ConnectionOptions, GrpcCompression,
    callback_based::{GrpcRequest, GrpcSuccessResponse},
    tonic::{
        self, Status,
        codec::CompressionEncoding,
        metadata::MetadataMap,
        transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    },
};

use super::{Upstream, codec::BytesCodec};

/// The server, over the wire's own channel.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    channel: Channel,
    gzip: bool,
}

/// Why the wire is not used for a connection: it cannot carry what the options ask for,
/// so the client's own transport does (and the boundary rules it adds do not apply).
pub(crate) fn unsupported(options: &ConnectionOptions) -> Option<&'static str> {
    if options.service_override.is_some() {
        return Some("the options carry a service override of their own");
    }
    if options.http_connect_proxy.is_some() {
        return Some("an HTTP CONNECT proxy is set");
    }
    if options
        .tls_options
        .as_ref()
        .is_some_and(|t| t.server_cert_verifier.is_some())
    {
        return Some("a custom server certificate verifier is set");
    }
    None
}

impl Server {
    /// Connects to `options.target` as the client would.
    pub(crate) async fn connect(
        options: &ConnectionOptions,
    ) -> Result<Self, tonic::transport::Error> {
        let mut endpoint = Endpoint::from_shared(options.target.to_string())?;
        if let Some(timeout) = options.connect_timeout {
            endpoint = endpoint.connect_timeout(timeout);
        }
        if let Some(tls) = &options.tls_options {
            let mut config = ClientTlsConfig::new();
            config = match &tls.server_root_ca_cert {
                Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
                None => config.with_native_roots(),
            };
            if let Some(domain) = &tls.domain {
                if let Ok(origin) = format!("https://{domain}").parse::<http::Uri>() {
                    endpoint = endpoint.origin(origin);
                }
                config = config.domain_name(domain);
            }
            if let Some(client) = &tls.client_tls_options {
                config = config.identity(Identity::from_pem(
                    &client.client_cert,
                    &client.client_private_key,
                ));
            }
            endpoint = endpoint.tls_config(config)?;
        }
        if let Some(keep_alive) = &options.keep_alive {
            endpoint = endpoint
                .keep_alive_while_idle(true)
                .http2_keep_alive_interval(keep_alive.interval)
                .keep_alive_timeout(keep_alive.timeout);
        }
        if let Some(origin) = options.override_origin.clone() {
            endpoint = endpoint.origin(origin);
        }
        Ok(Self {
            channel: endpoint.connect().await?,
            gzip: options.grpc_compression == GrpcCompression::Gzip,
        })
    }
}

impl Upstream for Server {
    fn call(
        &self,
        request: GrpcRequest,
    ) -> BoxFuture<'static, Result<GrpcSuccessResponse, Status>> {
        // A gzipped answer is always read: the server may compress one this side did not
        // ask for (seen under load with the client's gzip off), and the client gets every
        // message decompressed either way.
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .accept_compressed(CompressionEncoding::Gzip);
        if self.gzip {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        Box::pin(async move {
            let rpc = request.rpc.clone();
            let answer = Self::send(grpc, request).await;
            if let Err(status) = &answer {
                tracing::debug!(rpc, code = ?status.code(), message = status.message(), "the wire: an RPC failed upstream");
            }
            answer
        })
    }
}

impl Server {
    /// Sends `request` on `grpc`.
    async fn send(
        mut grpc: tonic::client::Grpc<Channel>,
        request: GrpcRequest,
    ) -> Result<GrpcSuccessResponse, Status> {
        {
            let path = format!("/{}/{}", request.service, request.rpc)
                .parse()
                .map_err(|_| Status::internal("not an RPC path"))?;
            grpc.ready().await.map_err(|e| transport_status(&e))?;
            let call = tonic::Request::from_parts(
                MetadataMap::from_headers(request.headers),
                Default::default(),
                request.proto,
            );
            match grpc.unary::<Bytes, Bytes, _>(call, path, BytesCodec).await {
                Ok(answer) => {
                    let (metadata, proto, _) = answer.into_parts();
                    let mut headers = metadata.into_headers();
                    // Decompressed here: the client gets the message as it is.
                    headers.remove("grpc-encoding");
                    headers.remove("grpc-accept-encoding");
                    Ok(GrpcSuccessResponse {
                        headers,
                        proto: proto.into(),
                    })
                }
                // A status made on this side from a transport error (the server is not
                // there) keeps that meaning across the client's override, which carries
                // no error source: Unavailable, with the causes in its message.
                Err(status) if std::error::Error::source(&status).is_some() => {
                    let words = crate::diagnosis::status_in_words(&status);
                    Err(crate::diagnosis::tagged(
                        Status::unavailable(words),
                        &status,
                    ))
                }
                Err(status) => Err(without_encoding(status)),
            }
        }
    }
}

/// A failure the server answered, without the headers that describe the answer's encoding
/// (`grpc-encoding`, `grpc-accept-encoding`): carried in its metadata into the client's
/// own decoding, a `grpc-encoding: gzip` made the client read any failure as
/// "Unimplemented: Content is compressed with `gzip` which isn't supported" (seen for a
/// throttled call under load, which is to be tried again, not given up).
fn without_encoding(status: Status) -> Status {
    let mut headers = status.metadata().clone().into_headers();
    let encoding = headers.remove("grpc-encoding").is_some();
    let accept = headers.remove("grpc-accept-encoding").is_some();
    if !(encoding || accept) {
        return status;
    }
    Status::with_details_and_metadata(
        status.code(),
        status.message(),
        status.details().to_vec().into(),
        MetadataMap::from_headers(headers),
    )
}

/// A channel that could not be made ready, as the client reports one.
fn transport_status(e: &tonic::transport::Error) -> Status {
    crate::diagnosis::tagged(Status::unavailable(crate::diagnosis::causes(e)), e)
}

/// The wire's upstream as the trait object the wire holds.
pub(crate) fn shared(server: Server) -> Arc<dyn Upstream> {
    Arc::new(server)
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, io::Write};

    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;

    type Answer = http::Response<
        StreamBody<
            futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
        >,
    >;

    /// A gRPC server on 127.0.0.1 that answers every call with `answer()`.
    async fn server(answer: fn() -> Answer) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service =
                hyper::service::service_fn(move |_| async move { Ok::<_, Infallible>(answer()) });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        addr
    }

    const MESSAGE: &[u8] = b"\x0a\x05hello";

    /// [`MESSAGE`], gzipped.
    fn gzipped() -> Answer {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), Default::default());
        gz.write_all(MESSAGE).unwrap();
        let compressed = gz.finish().unwrap();
        let mut frame = vec![1u8];
        frame.extend((compressed.len() as u32).to_be_bytes());
        frame.extend(compressed);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = vec![
            Ok(Frame::data(Bytes::from(frame))),
            Ok(Frame::trailers(trailers)),
        ];
        http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-encoding", "gzip")
            .body(StreamBody::new(futures_util::stream::iter(frames)))
            .unwrap()
    }

    /// A throttled call, as the server answers it under load: trailers only, with the
    /// encoding it would have used.
    fn throttled() -> Answer {
        http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-encoding", "gzip")
            .header("grpc-status", "8")
            .header("grpc-message", "too many requests. Please try again later")
            .body(StreamBody::new(futures_util::stream::iter(Vec::new())))
            .unwrap()
    }

    async fn call(answer: fn() -> Answer) -> Result<GrpcSuccessResponse, Status> {
        let addr = server(answer).await;
        let url = temporalio_client::Url::parse(&format!("http://{addr}")).unwrap();
        let mut options = ConnectionOptions::new(url).build();
        options.grpc_compression = GrpcCompression::None;
        let upstream = Server::connect(&options).await.unwrap();
        upstream
            .call(GrpcRequest {
                service: "temporal.api.workflowservice.v1.WorkflowService".into(),
                rpc: "DescribeWorkerDeploymentVersion".into(),
                headers: http::HeaderMap::new(),
                proto: Bytes::new(),
            })
            .await
    }

    #[tokio::test]
    async fn a_failure_reaches_the_client_as_the_server_said_it() {
        // Seen under load: the server throttled a DescribeWorkerDeploymentVersion
        // (ResourceExhausted, to be tried again), and the client read "Unimplemented:
        // Content is compressed with `gzip` which isn't supported" instead: the failure's
        // metadata carried the server's `grpc-encoding` into the client's decoding. The
        // rollout hold took it for a refusal and let the idle exit go.
        let status = call(throttled).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("try again later"), "{status:?}");
        assert!(
            status.metadata().get("grpc-encoding").is_none(),
            "{status:?}"
        );
        let http = status.into_http::<tonic::body::Body>();
        assert!(http.headers().get("grpc-encoding").is_none());
    }

    #[tokio::test]
    async fn an_answer_the_server_gzipped_reaches_the_client_as_it_is() {
        // A gzipped answer on a connection without the client's gzip: read and handed to
        // the client decompressed.
        let answer = call(gzipped).await.unwrap();
        assert_eq!(answer.proto, MESSAGE);
        assert!(answer.headers.get("grpc-encoding").is_none());
    }
}
