//! The bounded queues between stages, and the pools their items come back
//! through.
//!
//! Why here, in the lowest crate: every source fills chunks through the same
//! writer ([`crate::source::ChunkWriter`]), and the runtime's stages pass
//! chunks and flow batches on with the same three helpers, so there is one
//! implementation of "wait, and count the wait" for all of them. Every queue
//! is a bounded crossbeam channel; nothing here grows without bound.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

/// An item borrowed from a pool; dropping it (also while unwinding) puts it
/// back, so a pool never runs dry while its owner waits on it.
#[derive(Debug)]
pub struct Pooled<T: Default> {
    item: T,
    home: Sender<T>,
}

impl<T: Default> Pooled<T> {
    /// `item`, which goes back to the pool behind `home` when dropped.
    pub fn new(item: T, home: &Sender<T>) -> Self {
        Pooled {
            item,
            home: home.clone(),
        }
    }
}

impl<T: Default> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T: Default> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.item
    }
}

impl<T: Default> Drop for Pooled<T> {
    fn drop(&mut self) {
        // Fails only when the pool's owner is gone; then the item is freed.
        let _ = self.home.try_send(std::mem::take(&mut self.item));
    }
}

/// What waiting on a queue gave.
#[derive(Debug)]
pub enum Recv<T> {
    /// A message.
    Item(T),
    /// The deadline passed first.
    Timeout,
    /// Every sender is gone and the queue is empty.
    Closed,
}

/// Receives from `rx`, waiting until `deadline` at most (forever for
/// `None`), and adds the time spent waiting to `blocked`.
pub fn recv_until<T>(
    rx: &Receiver<T>,
    deadline: Option<Instant>,
    blocked: &mut Duration,
) -> Recv<T> {
    if let Ok(m) = rx.try_recv() {
        return Recv::Item(m);
    }
    let t = Instant::now();
    let r = match deadline {
        None => rx.recv().map_or(Recv::Closed, Recv::Item),
        Some(d) => match rx.recv_deadline(d) {
            Ok(m) => Recv::Item(m),
            Err(RecvTimeoutError::Timeout) => Recv::Timeout,
            Err(RecvTimeoutError::Disconnected) => Recv::Closed,
        },
    };
    *blocked += t.elapsed();
    r
}

/// Sends `msg`, adding any time spent waiting for room to `blocked`. False
/// when the receiver is gone.
pub fn send_timed<T>(tx: &Sender<T>, msg: T, blocked: &mut Duration) -> bool {
    match tx.try_send(msg) {
        Ok(()) => true,
        Err(TrySendError::Full(msg)) => {
            let t = Instant::now();
            let ok = tx.send(msg).is_ok();
            *blocked += t.elapsed();
            ok
        }
        Err(TrySendError::Disconnected(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    #[test]
    fn pooled_items_go_back_to_their_pool() {
        let (tx, rx) = bounded::<Vec<u8>>(2);
        let shared = std::sync::Arc::new(Pooled::new(vec![1, 2, 3], &tx));
        let other = shared.clone();
        drop(shared);
        assert!(rx.try_recv().is_err(), "still in use");
        drop(other);
        assert_eq!(rx.try_recv().unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn waits_are_counted_and_closed_queues_said() {
        let (tx, rx) = bounded::<u8>(1);
        let mut blocked = Duration::ZERO;
        assert!(send_timed(&tx, 1, &mut blocked));
        assert!(matches!(recv_until(&rx, None, &mut blocked), Recv::Item(1)));
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            recv_until(&rx, Some(soon), &mut blocked),
            Recv::Timeout
        ));
        assert!(blocked >= Duration::from_millis(15), "{blocked:?}");
        drop(tx);
        assert!(matches!(recv_until(&rx, None, &mut blocked), Recv::Closed));
    }
}
