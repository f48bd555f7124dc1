//! In-process counters in fixed windows, for throttling: failed authentications per client and
//! username, and checkout API calls per client address and per session. Bounded in memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};

/// At most this many keys are tracked; past it, expired windows are dropped first, then (under a
/// flood of distinct keys) everything, so memory stays bounded.
const MAX_KEYS: usize = 100_000;

/// Counts events per key in fixed windows of `window`; a key that reached `limit` in its current
/// window is throttled until the window ends.
#[derive(Debug)]
pub struct Throttle<K> {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<K, (u32, Instant)>>,
}

impl<K: Hash + Eq> Throttle<K> {
    pub fn new(limit: u32, window: Duration) -> Throttle<K> {
        Throttle { limit, window, counts: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` while `key` has used up its window.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        let map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((n, start)) if *n >= self.limit && start.elapsed() < self.window => {
                Err(self.window.saturating_sub(start.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Events counted for `key` in its current window.
    pub fn count(&self, key: &K) -> u32 {
        let map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((n, start)) if start.elapsed() < self.window => *n,
            _ => 0,
        }
    }

    /// What is left of `key`'s window, in whole seconds (at least 1).
    pub fn retry_after(&self, key: &K) -> u64 {
        let map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).map_or(1, |(_, start)| self.window.saturating_sub(start.elapsed()).as_secs().max(1))
    }

    /// Counts one event for `key`.
    pub fn record(&self, key: K) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, (_, start)| start.elapsed() < window);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let entry = map.entry(key).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// Checks and counts in one step: `Err(seconds)` if `key` is over its limit.
    pub fn hit(&self, key: K) -> Result<(), u64> {
        self.check(&key)?;
        self.record(key);
        Ok(())
    }

    /// Forgets `key` (a successful authentication clears its failures).
    pub fn clear(&self, key: &K) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// The client's address: as the server found it (behind `trusted_proxies`, from
/// `X-Forwarded-For`), else the connection's.
pub fn client_ip(req: &Request) -> IpAddr {
    client_ip_of(req.extensions())
}

/// [`client_ip`] from a request's extensions.
pub fn client_ip_of(ext: &axum::http::Extensions) -> IpAddr {
    if let Some(c) = ext.get::<super::server::ClientAddr>() {
        return c.0;
    }
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_within_window_per_key() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let a = (IpAddr::V4(Ipv4Addr::LOCALHOST), "alice".to_owned());
        let b = (IpAddr::V4(Ipv4Addr::LOCALHOST), "bob".to_owned());
        for _ in 0..3 {
            assert!(t.check(&a).is_ok());
            t.record(a.clone());
        }
        assert!(t.check(&a).is_err());
        assert!(t.check(&b).is_ok(), "another username from the same address is not throttled");
        t.clear(&a);
        assert!(t.check(&a).is_ok());
    }

    #[test]
    fn a_new_window_starts_over() {
        let t = Throttle::new(1, Duration::from_millis(20));
        assert!(t.hit(1u8).is_ok());
        assert!(t.hit(1u8).is_err());
        std::thread::sleep(Duration::from_millis(30));
        assert!(t.hit(1u8).is_ok());
    }
}
