//! Flink's `'table.exec.state.ttl'` for state kept per key: a key's state
//! leaves once it has not been written for the TTL, in processing time. The
//! operators ask [`IdleExpiry::expired`] which keys to drop, so the bookkeeping
//! lives here once.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::rows::{RowBytes, RowMap};

/// Where an operator reads the time its state TTL counts in (ms since the epoch).
pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// The wall clock, in milliseconds since the epoch.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// When each key was last written, and which keys to look at when.
pub struct IdleExpiry {
    ttl_ms: i64,
    written: RowMap<i64>,
    /// Keys to look at once the clock passes a time, by that time.
    due: BTreeMap<i64, Vec<RowBytes>>,
}

impl IdleExpiry {
    /// Keys expire `ttl_ms` after their last write.
    pub fn new(ttl_ms: i64) -> Self {
        IdleExpiry { ttl_ms, written: RowMap::default(), due: BTreeMap::new() }
    }

    /// `key` was written at `now`.
    pub fn touch(&mut self, key: &[u8], now: i64) {
        match self.written.get_mut(key) {
            Some(written) if *written == now => return,
            Some(written) => *written = now,
            None => {
                self.written.insert(key.into(), now);
            }
        }
        self.due.entry(now.saturating_add(self.ttl_ms)).or_default().push(key.into());
    }

    /// The keys not written for the TTL by `now`, forgotten here too.
    pub fn expired(&mut self, now: i64) -> Vec<RowBytes> {
        let mut out = Vec::new();
        while let Some(entry) = self.due.first_entry() {
            if *entry.key() > now {
                break;
            }
            for key in entry.remove() {
                if self.written.get(&key).is_some_and(|&w| w.saturating_add(self.ttl_ms) <= now) {
                    self.written.remove(&key);
                    out.push(key);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> RowBytes {
        Box::from(k.as_bytes())
    }

    #[test]
    fn a_key_expires_a_ttl_after_its_last_write_once() {
        let mut expiry = IdleExpiry::new(100);
        expiry.touch(&key("a"), 0);
        expiry.touch(&key("b"), 0);
        expiry.touch(&key("a"), 50);
        assert!(expiry.expired(99).is_empty());
        assert_eq!(expiry.expired(100), vec![key("b")], "b idle for 100 ms; a written again at 50");
        assert!(expiry.expired(149).is_empty());
        assert_eq!(expiry.expired(150), vec![key("a")]);
        assert!(expiry.expired(1_000).is_empty(), "each key once");
        expiry.touch(&key("b"), 1_000);
        assert_eq!(expiry.expired(1_100), vec![key("b")], "a key written again after expiring expires again");
    }
}
