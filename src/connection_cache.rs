//! Connection reuse across warm invocations.
//!
//! A Lambda container serves many invocations in one process. Reconnecting to Temporal
//! on every invocation costs a TLS handshake and, with the Rust SDK, leaks a gRPC
//! connection each time (workers are never deregistered from it), so the connection is
//! kept while the options it was made from stay the same, and dropped when they change
//! or a session on it failed.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
};

use temporalio_client::ConnectionOptions;

/// A fingerprint of the connection options that decide which connection is made.
/// Secrets go into the hash, never into a log.
pub(crate) fn fingerprint(options: &ConnectionOptions) -> u64 {
    let mut h = DefaultHasher::new();
    options.target.as_str().hash(&mut h);
    options.identity.hash(&mut h);
    options.api_key.hash(&mut h);
    options
        .override_origin
        .as_ref()
        .map(|u| u.to_string())
        .hash(&mut h);
    options.connect_timeout.hash(&mut h);
    match &options.tls_options {
        None => 0u8.hash(&mut h),
        Some(tls) => {
            1u8.hash(&mut h);
            tls.server_root_ca_cert.hash(&mut h);
            tls.domain.hash(&mut h);
            tls.client_tls_options
                .as_ref()
                .map(|c| (&c.client_cert, &c.client_private_key))
                .hash(&mut h);
        }
    }
    let mut headers: Vec<_> = options.headers.iter().flatten().collect();
    headers.sort();
    headers.hash(&mut h);
    let mut binary: Vec<_> = options.binary_headers.iter().flatten().collect();
    binary.sort();
    binary.hash(&mut h);
    h.finish()
}

/// Holds at most one connection, keyed by the [`fingerprint`] of its options.
#[derive(Debug)]
pub(crate) struct ConnectionCache<C> {
    current: Option<(u64, C)>,
}

impl<C> Default for ConnectionCache<C> {
    fn default() -> Self {
        Self { current: None }
    }
}

impl<C: Clone> ConnectionCache<C> {
    /// The cached connection, when it was made from options with this fingerprint.
    pub(crate) fn get(&self, key: u64) -> Option<C> {
        match &self.current {
            Some((k, c)) if *k == key => Some(c.clone()),
            _ => None,
        }
    }
    /// Keeps `connection` (replacing any other).
    pub(crate) fn put(&mut self, key: u64, connection: C) {
        self.current = Some((key, connection));
    }
    /// Drops the connection, so the next session reconnects.
    pub(crate) fn invalidate(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn opts(url: &str) -> ConnectionOptions {
        ConnectionOptions::new(temporalio_client::Url::parse(url).unwrap()).build()
    }

    #[test]
    fn same_options_same_fingerprint_any_change_differs() {
        let base = opts("http://localhost:7233");
        assert_eq!(
            fingerprint(&base),
            fingerprint(&opts("http://localhost:7233"))
        );
        assert_ne!(
            fingerprint(&base),
            fingerprint(&opts("http://localhost:7234"))
        );
        let mut with_key = opts("http://localhost:7233");
        with_key.api_key = Some("k1".into());
        assert_ne!(fingerprint(&base), fingerprint(&with_key));
        let mut other_key = with_key.clone();
        other_key.api_key = Some("k2".into());
        assert_ne!(fingerprint(&with_key), fingerprint(&other_key));
        let mut h1 = opts("http://localhost:7233");
        h1.headers = Some(HashMap::from([
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
        ]));
        let mut h2 = opts("http://localhost:7233");
        h2.headers = Some(HashMap::from([
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
        ]));
        assert_eq!(
            fingerprint(&h1),
            fingerprint(&h2),
            "header order does not matter"
        );
        assert_ne!(fingerprint(&h1), fingerprint(&base));
    }

    #[test]
    fn cache_reuses_only_for_the_same_key_and_forgets_when_invalidated() {
        let mut cache = ConnectionCache::default();
        assert_eq!(cache.get(1), None);
        cache.put(1, "conn-a");
        assert_eq!(cache.get(1), Some("conn-a"));
        assert_eq!(cache.get(2), None);
        cache.put(2, "conn-b");
        assert_eq!(cache.get(1), None);
        cache.invalidate();
        assert_eq!(cache.get(2), None);
    }
}
