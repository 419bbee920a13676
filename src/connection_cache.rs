//! Connection reuse across warm invocations.
//!
//! A Lambda container serves many invocations in one process. Reconnecting to Temporal
//! on every invocation costs a TLS handshake (and a new channel, whose workers the backend
//! deregisters when each session ends), so the connection is kept while the options it
//! was made from stay the same, and dropped when they change or a session on it failed.

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

/// The idle connections for one [`fingerprint`], each lent to one session at a time.
///
/// The SDK refuses a second worker for the same namespace, task queue and build on one
/// connection (its `ClientWorkerSet`), so sessions that overlap (a managed instance's
/// concurrent invocations) each need a connection of their own. A session takes one
/// ([`take`](Self::take), or connects when none is idle) and gives it back when its worker
/// has stopped. One invocation at a time keeps one connection, as before: it is taken,
/// then given back.
#[derive(Debug)]
pub(crate) struct ConnectionCache<C> {
    /// The fingerprint the idle connections were made for.
    key: Option<u64>,
    idle: Vec<C>,
    /// Bumped by [`invalidate`](Self::invalidate): a connection lent before is not taken
    /// back.
    generation: u64,
}

impl<C> Default for ConnectionCache<C> {
    fn default() -> Self {
        Self {
            key: None,
            idle: Vec::new(),
            generation: 0,
        }
    }
}

/// What a session must show to give its connection back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    key: u64,
    generation: u64,
}

impl<C> ConnectionCache<C> {
    /// An idle connection made from options with this fingerprint, if any, and the lease
    /// to give it (or the one made instead) back with. Options that changed drop the idle
    /// connections made from the old ones.
    pub(crate) fn take(&mut self, key: u64) -> (Option<C>, Lease) {
        if self.key != Some(key) {
            self.key = Some(key);
            self.idle.clear();
        }
        let lease = Lease {
            key,
            generation: self.generation,
        };
        (self.idle.pop(), lease)
    }
    /// Keeps `connection` for the next session, unless the cache was invalidated or the
    /// options changed since it was lent.
    pub(crate) fn give_back(&mut self, lease: Lease, connection: C) {
        if lease.generation == self.generation && self.key == Some(lease.key) {
            self.idle.push(connection);
        }
    }
    /// Drops every idle connection, and those lent now when they come back: the next
    /// sessions reconnect.
    pub(crate) fn invalidate(&mut self) {
        self.generation += 1;
        self.idle.clear();
    }
    /// How many connections are idle.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.len()
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
    fn one_session_at_a_time_reuses_one_connection() {
        let mut cache = ConnectionCache::default();
        let (none, lease) = cache.take(1);
        assert_eq!(none, None, "nothing is cached before the first session");
        cache.give_back(lease, "conn-a");
        for _ in 0..3 {
            let (conn, lease) = cache.take(1);
            assert_eq!(conn, Some("conn-a"));
            cache.give_back(lease, conn.unwrap());
        }
        assert_eq!(cache.idle(), 1);
    }

    #[test]
    fn overlapping_sessions_each_get_a_connection_of_their_own() {
        let mut cache = ConnectionCache::default();
        let (_, lease) = cache.take(1);
        cache.give_back(lease, "conn-a");
        let (first, first_lease) = cache.take(1);
        let (second, second_lease) = cache.take(1);
        assert_eq!(first, Some("conn-a"));
        assert_eq!(
            second, None,
            "the one connection is lent: the second session connects"
        );
        cache.give_back(second_lease, "conn-b");
        cache.give_back(first_lease, "conn-a");
        let (a, _) = cache.take(1);
        let (b, _) = cache.take(1);
        assert_eq!([a, b], [Some("conn-a"), Some("conn-b")]);
    }

    #[test]
    fn changed_options_and_an_invalidation_drop_the_connections() {
        let mut cache = ConnectionCache::default();
        let (_, lease) = cache.take(1);
        cache.give_back(lease, "conn-a");
        let (other, lease_2) = cache.take(2);
        assert_eq!(
            other, None,
            "a connection made from other options is not reused"
        );
        assert_eq!(cache.idle(), 0, "and it is dropped");
        cache.give_back(lease, "conn-a");
        assert_eq!(
            cache.idle(),
            0,
            "a connection of the old options is not taken back"
        );
        cache.give_back(lease_2, "conn-b");
        let (lent, lease) = cache.take(2);
        assert_eq!(lent, Some("conn-b"));
        let (_, lease_c) = cache.take(2);
        cache.give_back(lease_c, "conn-c");
        cache.invalidate();
        assert_eq!(cache.idle(), 0);
        cache.give_back(lease, "conn-b");
        assert_eq!(
            cache.take(2).0,
            None,
            "a connection lent before the invalidation is not taken back"
        );
    }
}
