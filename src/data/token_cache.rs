//! Per-worker verified-token cache (DESIGN §5): token -> what its verification proved, so a
//! reconnect storm does not redo signature checks. Bounded (oldest entries evicted first),
//! entries dropped at the token's `exp`, everything dropped when the key set generation
//! changes. Lives in one worker (`RefCell`), never shared, never locked. Keys are the full
//! token text, so two tokens never share an entry.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::data::verify::Verified;

/// Default bound per worker: ~10k tokens of ~1 KiB = ~10 MiB worst case per worker.
pub const DEFAULT_CAPACITY: usize = 10_000;

pub struct TokenCache {
    capacity: usize,
    /// Key set generation the entries were verified against.
    key_generation: u64,
    map: HashMap<Rc<str>, Rc<Verified>>,
    /// Insertion order, for eviction (may hold tokens already removed).
    order: VecDeque<Rc<str>>,
    pub hits: u64,
    pub misses: u64,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            key_generation: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
            hits: 0,
            misses: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drop everything when the keys changed since the entries were made.
    fn sync_generation(&mut self, key_generation: u64) {
        if self.key_generation != key_generation {
            self.map.clear();
            self.order.clear();
            self.key_generation = key_generation;
        }
    }

    /// The cached verification of `token`, if any and not past its `exp` at `now` (seconds).
    pub fn get(&mut self, token: &str, key_generation: u64, now: u64) -> Option<Rc<Verified>> {
        if self.capacity == 0 {
            return None;
        }
        self.sync_generation(key_generation);
        match self.map.get(token) {
            Some(v) if now < v.exp => {
                self.hits += 1;
                Some(Rc::clone(v))
            }
            Some(_) => {
                self.map.remove(token);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Remember a successful verification made against `key_generation`.
    pub fn insert(&mut self, token: &str, key_generation: u64, verified: Rc<Verified>) {
        if self.capacity == 0 {
            return;
        }
        self.sync_generation(key_generation);
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        // The order queue may hold stale names (expired and removed entries): keep it bounded.
        if self.order.len() >= self.capacity.saturating_mul(2) {
            let map = &self.map;
            self.order.retain(|t| map.contains_key(t));
        }
        let key: Rc<str> = Rc::from(token);
        if self.map.insert(Rc::clone(&key), verified).is_none() {
            self.order.push_back(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(exp: u64) -> Rc<Verified> {
        Rc::new(Verified {
            exp,
            nbf: None,
            subscriptions: vec![],
        })
    }

    #[test]
    fn hit_miss_expiry_generation() {
        // 1. a stored token is found while before its exp;
        // 2. at exp it is gone;
        // 3. a new key generation drops everything.
        let mut c = TokenCache::new(4);
        assert!(c.get("a", 1, 0).is_none());
        c.insert("a", 1, v(100));
        c.insert("b", 1, v(100));
        assert_eq!(c.get("a", 1, 99).map(|x| x.exp), Some(100));
        assert!(c.get("a", 1, 100).is_none(), "expired at exp");
        assert_eq!(c.len(), 1);
        assert!(c.get("b", 2, 0).is_none(), "key generation changed");
        assert!(c.is_empty());
        assert_eq!((c.hits, c.misses), (1, 3));
    }

    #[test]
    fn bounded_oldest_first() {
        let mut c = TokenCache::new(3);
        for t in ["t1", "t2", "t3", "t4"] {
            c.insert(t, 1, v(100));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get("t1", 1, 0).is_none(), "oldest evicted");
        assert!(c.get("t4", 1, 0).is_some());
        // Re-inserting an existing token does not grow the order queue without bound.
        for _ in 0..100 {
            c.insert("t4", 1, v(100));
        }
        assert!(c.order.len() <= 6);
    }

    #[test]
    fn stale_order_entries_are_pruned() {
        let mut c = TokenCache::new(2);
        for i in 0..50 {
            let t = format!("t{i}");
            c.insert(&t, 1, v(10));
            assert!(c.get(&t, 1, 20).is_none(), "expired on lookup");
        }
        assert!(c.order.len() <= 4, "order queue bounded: {}", c.order.len());
    }

    #[test]
    fn capacity_zero_disables() {
        let mut c = TokenCache::new(0);
        c.insert("a", 1, v(100));
        assert!(c.get("a", 1, 0).is_none());
    }
}
