//! The limiter's two bounded tables: flow ids seen, and one window per key.
//!
//! Both use the standard library's SipHash maps: flow ids and addresses
//! come from the traffic, so an attacker could otherwise pick colliding
//! keys and slow the alert stage down.

use std::collections::{HashMap, HashSet, VecDeque};

/// Flow ids seen, at most `capacity`, the oldest forgotten first.
#[derive(Debug)]
pub(super) struct SeenIds {
    ids: HashSet<u64>,
    /// Insertion order, oldest first; holds exactly the ids in `ids`.
    order: VecDeque<u64>,
    capacity: usize,
}

impl SeenIds {
    pub(super) fn new(capacity: usize) -> Self {
        SeenIds {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// True when `id` was seen before; otherwise remembers it (forgetting
    /// the oldest id if full) and returns false.
    pub(super) fn check_insert(&mut self, id: u64) -> bool {
        if self.ids.contains(&id) {
            return true;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        self.ids.insert(id);
        self.order.push_back(id);
        false
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// What a rate limit counts alerts by: addresses (zero where not tracked)
/// and the class index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Key {
    pub(super) src: [u8; 16],
    pub(super) dst: [u8; 16],
    /// Tells an IPv4 address from the IPv6 address with the same bytes.
    pub(super) v6: bool,
    pub(super) class: u16,
}

/// A key's current window.
#[derive(Clone, Copy, Debug)]
struct Window {
    start_us: i64,
    count: u32,
}

/// One fixed window per key, at most `max_keys` keys.
///
/// `order` lists window starts in the order they happened, with entries a
/// later start of the same key made stale; eviction skips stale entries,
/// and the list is compacted once it holds twice the live keys, so each
/// call costs O(1) amortised and memory stays proportional to the keys.
#[derive(Debug)]
pub(super) struct RateTable {
    windows: HashMap<Key, Window>,
    order: VecDeque<(Key, i64)>,
    count: u32,
    window_us: i64,
    max_keys: usize,
}

/// Stale entries allowed in `order` beyond twice the live keys.
const ORDER_SLACK: usize = 64;

impl RateTable {
    pub(super) fn new(count: u32, window_us: i64, max_keys: usize) -> Self {
        RateTable {
            windows: HashMap::new(),
            order: VecDeque::new(),
            count: count.max(1),
            window_us: window_us.max(1),
            max_keys: max_keys.max(1),
        }
    }

    /// Counts an alert of `key` at packet time `t_us`; false when the key's
    /// window already had `count` alerts.
    pub(super) fn admit(&mut self, key: Key, t_us: i64) -> bool {
        let admitted = match self.windows.get_mut(&key) {
            Some(w) if t_us.saturating_sub(w.start_us) >= self.window_us => {
                // The window is over: the next one starts with this alert.
                *w = Window {
                    start_us: t_us,
                    count: 1,
                };
                self.order.push_back((key, t_us));
                true
            }
            Some(w) if w.count < self.count => {
                w.count += 1;
                true
            }
            Some(_) => false,
            None => {
                if self.windows.len() >= self.max_keys {
                    self.evict_oldest();
                }
                self.windows.insert(
                    key,
                    Window {
                        start_us: t_us,
                        count: 1,
                    },
                );
                self.order.push_back((key, t_us));
                true
            }
        };
        if self.order.len() > self.windows.len() * 2 + ORDER_SLACK {
            let windows = &self.windows;
            // A key's window starts only move forward, so exactly its
            // newest entry matches.
            self.order
                .retain(|(k, s)| windows.get(k).is_some_and(|w| w.start_us == *s));
        }
        admitted
    }

    /// Forgets the key whose current window began earliest.
    fn evict_oldest(&mut self) {
        while let Some((key, start)) = self.order.pop_front() {
            if self.windows.get(&key).is_some_and(|w| w.start_us == start) {
                self.windows.remove(&key);
                return;
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.windows.len()
    }

    #[cfg(test)]
    pub(super) fn order_len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        Key {
            src: [n; 16],
            dst: [0; 16],
            v6: true,
            class: 0,
        }
    }

    #[test]
    fn seen_ids_forget_the_oldest_first() {
        let mut s = SeenIds::new(2);
        assert!(!s.check_insert(1));
        assert!(!s.check_insert(2));
        assert!(s.check_insert(1), "a repeat, even of the oldest, is seen");
        assert!(!s.check_insert(3)); // forgets 1
        assert_eq!(s.len(), 2);
        assert!(s.check_insert(2));
        assert!(s.check_insert(3));
        assert!(!s.check_insert(1), "1 was forgotten");
        assert!(!s.check_insert(2), "and made 2 the oldest, now forgotten");
        let mut zero = SeenIds::new(0);
        assert!(!zero.check_insert(7));
        assert!(zero.check_insert(7), "capacity 0 counts as 1");
    }

    #[test]
    fn stale_order_entries_are_compacted() {
        // One key whose window restarts on every alert: without compaction
        // `order` would grow by one entry per alert.
        let mut t = RateTable::new(1, 1, 4);
        for i in 0..10_000 {
            assert!(t.admit(key(1), i));
            assert!(t.order_len() <= 2 + ORDER_SLACK + 1, "{}", t.order_len());
        }
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn eviction_skips_stale_entries() {
        let mut t = RateTable::new(1, 10, 2);
        assert!(t.admit(key(1), 0));
        assert!(t.admit(key(2), 5));
        // Key 1 starts a new window after key 2's: key 2 is now the oldest.
        assert!(t.admit(key(1), 10));
        assert!(t.admit(key(3), 11)); // evicts key 2, not key 1
        assert_eq!(t.len(), 2);
        assert!(!t.admit(key(1), 12), "key 1 kept its window");
        assert!(!t.admit(key(3), 12));
        assert!(t.admit(key(2), 12), "key 2 was forgotten");
    }
}
