//! A flow worker's side of the decoded-chunk queues.
//!
//! One reader deals its chunks to the decoders in turn, so a worker takes
//! chunk i from decoder i mod D and sees its records in capture order
//! whatever D is. Several readers (capture threads in a fanout group) each
//! see whole flows, so a worker takes chunks from whichever decoder has one;
//! only the clock interleaves.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::decode::Decoded;

/// A worker's decoded-chunk queues, one per decoder.
pub(crate) struct Inbox {
    rxs: Vec<Receiver<Decoded>>,
    /// Take chunk i from decoder i mod D (one reader), or from any decoder.
    ordered: bool,
    /// The decoder the next chunk comes from (ordered), or the first one
    /// tried (any).
    next: usize,
    /// Decoders still sending (any).
    alive: Vec<bool>,
}

/// What waiting on the [`Inbox`] gave.
pub(crate) enum Got {
    Chunk(Decoded),
    /// Nothing within the wait given.
    Idle,
    /// Every decoder is done.
    Done,
}

impl Inbox {
    pub(crate) fn new(rxs: Vec<Receiver<Decoded>>, ordered: bool) -> Self {
        let alive = vec![true; rxs.len()];
        Inbox {
            rxs,
            ordered,
            next: 0,
            alive,
        }
    }

    /// The next chunk, waiting at most `wait` (none: until one comes).
    pub(crate) fn recv(&mut self, wait: Option<Duration>, blocked: &mut Duration) -> Got {
        if self.ordered {
            let Some(rx) = self.rxs.get(self.next) else {
                return Got::Done;
            };
            let got = match rx.try_recv() {
                Ok(m) => Ok(m),
                Err(_) => {
                    let t = Instant::now();
                    let m = match wait {
                        Some(w) => rx.recv_timeout(w),
                        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                    };
                    *blocked += t.elapsed();
                    m
                }
            };
            return match got {
                Ok(m) => {
                    self.next = (self.next + 1) % self.rxs.len();
                    Got::Chunk(m)
                }
                Err(RecvTimeoutError::Timeout) => Got::Idle,
                Err(RecvTimeoutError::Disconnected) => Got::Done,
            };
        }
        let n = self.rxs.len();
        loop {
            // A look at every live queue first, starting after the last
            // one served, so no decoder starves another.
            for k in 0..n {
                let i = (self.next + k) % n;
                if !self.alive.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let Some(rx) = self.rxs.get(i) else { continue };
                match rx.try_recv() {
                    Ok(m) => {
                        self.next = (i + 1) % n;
                        return Got::Chunk(m);
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        if let Some(a) = self.alive.get_mut(i) {
                            *a = false;
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => {}
                }
            }
            let never = crossbeam_channel::never::<Decoded>();
            let mut sel = crossbeam_channel::Select::new();
            let mut live = 0;
            for (rx, &a) in self.rxs.iter().zip(&self.alive) {
                if a {
                    sel.recv(rx);
                    live += 1;
                } else {
                    // A queue that is done is never ready.
                    sel.recv(&never);
                }
            }
            if live == 0 {
                return Got::Done;
            }
            let t = Instant::now();
            let ready = match wait {
                Some(w) => sel.ready_timeout(w).ok(),
                None => Some(sel.ready()),
            };
            *blocked += t.elapsed();
            if ready.is_none() {
                return Got::Idle;
            }
            // The ready queue is read on the next pass.
        }
    }
}
