//! Errors in words and by kind, for the messages the library answers with: an error and
//! its causes, a failed connect in words and its [`ConnectProblem`] (told from the
//! error's types, never its text), and whether a failed call shows the server gone.

use std::{error::Error, io};

use temporalio_client::{errors::ClientConnectError, tonic};

use crate::ConnectProblem;

/// A failed connect in words: the gRPC code and message the server answered, or the
/// transport failure and its causes (the SDK's own text is a `Debug` dump; it is logged at
/// debug level).
pub(crate) fn connect_failure(e: &ClientConnectError) -> String {
    match e {
        ClientConnectError::SystemInfoCallError(status) => format!(
            "the server answered the first call (GetSystemInfo) with {}",
            status_in_words(status)
        ),
        ClientConnectError::TonicTransportError(t) => {
            format!("the connection failed: {}", causes(t))
        }
        other => causes(other),
    }
}

/// What kind of failure a failed connect is: from the types in its chain, then, for any
/// other failure, whether `host` resolves ([`ConnectProblem::Dns`] when it does not).
pub(crate) async fn connect_failure_kind(
    e: &ClientConnectError,
    host: Option<&str>,
) -> ConnectProblem {
    let found = match e {
        ClientConnectError::SystemInfoCallError(status) => problem_in(status),
        other => problem_in(other),
    };
    or_dns(found, host).await
}

/// `found`, else [`ConnectProblem::Dns`] when `host` does not resolve, else
/// [`ConnectProblem::Other`].
async fn or_dns(found: Option<ConnectProblem>, host: Option<&str>) -> ConnectProblem {
    match (found, host) {
        (Some(kind), _) => kind,
        (None, Some(host)) if !resolves(host).await => ConnectProblem::Dns,
        (None, _) => ConnectProblem::Other,
    }
}

/// The metadata key that carries a [`ConnectProblem`] on a status the wire made from a
/// transport error: the client's `service_override` passes a status on without its
/// source, so the kind told from the source's types travels beside it.
const PROBLEM_KEY: &str = "tlw-connect-problem";

/// Every kind with its tag, for [`PROBLEM_KEY`].
const TAGS: [(ConnectProblem, &str); 6] = [
    (ConnectProblem::NotTls, "not-tls"),
    (ConnectProblem::Certificate, "certificate"),
    (ConnectProblem::Credentials, "credentials"),
    (ConnectProblem::Refused, "refused"),
    (ConnectProblem::Dns, "dns"),
    (ConnectProblem::Other, "other"),
];

/// `status` with the kind of `cause` (told from its types) in its metadata.
pub(crate) fn tagged(mut status: tonic::Status, cause: &(dyn Error + 'static)) -> tonic::Status {
    let kind = problem_in(cause).unwrap_or_default();
    if let Some((_, tag)) = TAGS.iter().find(|(k, _)| *k == kind) {
        status.metadata_mut().insert(
            PROBLEM_KEY,
            tonic::metadata::MetadataValue::from_static(tag),
        );
    }
    status
}

/// The kind of the first error in `e`'s chain that has one: a TLS error (the endpoint
/// answered in plaintext, or its certificate was refused), a refused connection, a
/// refused credential, or the kind a status was [`tagged`] with.
pub(crate) fn problem_in(e: &(dyn Error + 'static)) -> Option<ConnectProblem> {
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        if matches!(
            status.code(),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
        ) {
            return Some(ConnectProblem::Credentials);
        }
        let tag = status.metadata().get(PROBLEM_KEY);
        let tagged = tag.and_then(|t| TAGS.iter().find(|(_, name)| t == *name));
        if let Some((kind, _)) = tagged {
            return Some(*kind);
        }
    }
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return match tls {
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. } => Some(ConnectProblem::NotTls),
            rustls::Error::InvalidCertificate(_) => Some(ConnectProblem::Certificate),
            _ => None,
        };
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        if io.kind() == io::ErrorKind::ConnectionRefused {
            return Some(ConnectProblem::Refused);
        }
        // An I/O error's `source` skips the error it wraps (a TLS error, say).
        if let Some(kind) = io.get_ref().and_then(|inner| problem_in(inner)) {
            return Some(kind);
        }
    }
    e.source().and_then(problem_in)
}

/// Whether `host` resolves to an address (an address is one).
async fn resolves(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    tokio::net::lookup_host((host, 0))
        .await
        .is_ok_and(|mut addresses| addresses.next().is_some())
}

/// `Code: message`, then the causes a transport-made status carries.
pub(crate) fn status_in_words(status: &tonic::Status) -> String {
    let head = format!(
        "{:?}: {}",
        status.code(),
        status.message().trim_end_matches('.')
    );
    joined(head, Error::source(status))
}

/// An error and its sources, each once, joined by `: `.
pub(crate) fn causes(e: &(dyn Error + 'static)) -> String {
    joined(e.to_string(), e.source())
}

/// `head`, then each error of the chain from `next` whose text it does not hold yet.
fn joined(head: String, mut next: Option<&(dyn Error + 'static)>) -> String {
    let mut words = head;
    while let Some(e) = next {
        let text = e.to_string();
        if !words.contains(&text) {
            words.push_str(": ");
            words.push_str(&text);
        }
        next = e.source();
    }
    words
}

/// Why a failed call shows the server gone (in words, and its kind), or `None` when the
/// server answered it: any status it sent, even an error, proves it is there. A status
/// with a source was made on this side from a transport error, whatever its code: a
/// connection refused (Unavailable), or one the killed server closed under the call
/// (Cancelled, "connection closed"), is not an answer.
pub(crate) fn server_gone(status: &tonic::Status) -> Option<(String, ConnectProblem)> {
    let sent_by_server = Error::source(status).is_none();
    if sent_by_server
        && !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        )
    {
        return None;
    }
    let kind = problem_in(status).unwrap_or_default();
    Some((status_in_words(status), kind))
}

#[cfg(test)]
mod tests {
    use std::io;

    use temporalio_client::errors::ClientConnectError;
    use temporalio_client::tonic::{Code, Status};

    use super::*;

    /// A status tonic makes from a transport error (it keeps the error as its source).
    fn from_transport(kind: io::ErrorKind, what: &str) -> Status {
        Status::from_error(Box::new(io::Error::new(kind, what.to_owned())))
    }

    #[test]
    fn a_connection_the_killed_server_closed_under_the_call_is_not_an_answer() {
        // What a reused connection gives the first call after the server died: hyper's
        // "connection closed", which tonic reports as Cancelled or Unknown.
        let closed = from_transport(io::ErrorKind::ConnectionReset, "connection closed");
        assert_ne!(closed.code(), Code::Unavailable);
        let (why, _) = server_gone(&closed).expect("a closed connection means the server is gone");
        assert!(why.contains("connection closed"), "{why}");
        let cancelled = Status::from_error(Box::new(Status::cancelled("operation was canceled")));
        assert!(
            server_gone(&cancelled).is_none(),
            "a status sent as such (no transport error behind it) is an answer"
        );
    }

    #[test]
    fn a_refused_connection_or_no_answer_means_gone_and_an_error_answer_does_not() {
        let refused = from_transport(io::ErrorKind::ConnectionRefused, "Connection refused");
        let (why, kind) = server_gone(&refused).unwrap();
        assert!(why.contains("Connection refused"), "{why}");
        assert_eq!(kind, ConnectProblem::Refused);
        assert!(server_gone(&Status::unavailable("no healthy upstream")).is_some());
        assert!(server_gone(&Status::deadline_exceeded("timeout")).is_some());
        for answered in [
            Status::permission_denied("bad API key"),
            Status::unimplemented("GetSystemInfo"),
            Status::cancelled("by the server"),
            Status::unknown("something"),
        ] {
            assert!(server_gone(&answered).is_none(), "{answered:?}");
        }
    }

    #[test]
    fn a_refused_api_key_reads_as_its_code_and_message() {
        let mut status = Status::new(Code::Unauthenticated, "Request unauthorized.");
        status
            .metadata_mut()
            .insert("server", "envoy".parse().unwrap());
        let words = connect_failure(&ClientConnectError::SystemInfoCallError(status));
        assert_eq!(
            words,
            "the server answered the first call (GetSystemInfo) with Unauthenticated: Request \
             unauthorized"
        );
    }

    #[tokio::test]
    async fn a_closed_port_reads_as_the_transport_failure_and_its_cause() {
        // Port 1 on loopback: nothing listens there.
        let refused =
            temporalio_client::tonic::transport::Endpoint::from_static("http://127.0.0.1:1")
                .connect()
                .await
                .unwrap_err();
        let words = connect_failure(&ClientConnectError::TonicTransportError(refused));
        assert!(
            words.starts_with("the connection failed: transport error: tcp connect error"),
            "{words}"
        );
        assert!(words.contains("Connection refused"), "{words}");
        for dump in ["Os {", "ConnectError(", "kind:", "Transport,"] {
            assert!(!words.contains(dump), "{words}");
        }
    }

    /// An error with a source, as the transport's layers wrap one another.
    #[derive(Debug)]
    struct Wrapped(&'static str, Box<dyn Error + Send + Sync>);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.1.as_ref())
        }
    }

    #[test]
    fn a_failure_is_told_by_its_types_however_deep() {
        // tokio-rustls wraps a TLS error in an I/O error, whose `source` skips it.
        let tls = |e: rustls::Error| {
            Wrapped(
                "transport error",
                Box::new(io::Error::new(io::ErrorKind::InvalidData, e)),
            )
        };
        let plaintext = tls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        assert_eq!(problem_in(&plaintext), Some(ConnectProblem::NotTls));
        let issuer = tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(problem_in(&issuer), Some(ConnectProblem::Certificate));
        let refused = Wrapped(
            "tcp connect error",
            Box::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(problem_in(&refused), Some(ConnectProblem::Refused));
        let denied = Status::unauthenticated("Request unauthorized.");
        assert_eq!(problem_in(&denied), Some(ConnectProblem::Credentials));
        // The words do not matter: the same text with no type behind it is no kind.
        let words = Wrapped(
            "Connection refused",
            Box::new(io::Error::other("InvalidContentType UnknownIssuer")),
        );
        assert_eq!(problem_in(&words), None);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_told_apart_from_a_refusal() {
        let refused =
            temporalio_client::tonic::transport::Endpoint::from_static("http://127.0.0.1:1")
                .connect()
                .await
                .unwrap_err();
        let refused = ClientConnectError::TonicTransportError(refused);
        assert_eq!(
            connect_failure_kind(&refused, Some("127.0.0.1")).await,
            ConnectProblem::Refused
        );
        // `.invalid` never resolves (RFC 6761).
        assert_eq!(
            or_dns(None, Some("temporal.invalid")).await,
            ConnectProblem::Dns
        );
        assert_eq!(or_dns(None, Some("127.0.0.1")).await, ConnectProblem::Other);
        assert_eq!(or_dns(None, Some("[::1]")).await, ConnectProblem::Other);
    }

    #[test]
    fn a_kind_survives_the_overrides_status_without_its_source() {
        // The wire makes a status from a transport error; the client's override passes it
        // on as HTTP headers (its source is lost), and the client reads it back.
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let status = tagged(Status::unavailable("tcp connect error"), &refused);
        let http = status.into_http::<()>();
        let back = Status::from_header_map(http.headers()).expect("a status");
        assert!(Error::source(&back).is_none());
        let (_, kind) = server_gone(&back).expect("a transport-made status means gone");
        assert_eq!(kind, ConnectProblem::Refused);
    }
}
