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
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if self.gzip {
            grpc = grpc
                .send_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Gzip);
        }
        Box::pin(async move {
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
                Err(status) => Err(status),
            }
        })
    }
}

/// A channel that could not be made ready, as the client reports one.
fn transport_status(e: &tonic::transport::Error) -> Status {
    crate::diagnosis::tagged(Status::unavailable(crate::diagnosis::causes(e)), e)
}

/// The wire's upstream as the trait object the wire holds.
pub(crate) fn shared(server: Server) -> Arc<dyn Upstream> {
    Arc::new(server)
}
