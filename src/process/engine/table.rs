//! The engine's worker table and what it holds: queued calls, workers,
//! the calls each worker has, and the effects to run once the lock is
//! released.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

use smallvec::SmallVec;

use super::{Call, Items, Sink, Wake};
use crate::error::{Error, WorkerId};
use crate::process::transport::{Link, StopHow};

/// A call in the queue.
pub(super) struct Queued {
    pub(super) call: Call,
    pub(super) sink: Arc<dyn Sink>,
    /// Already marked running: it was sent to a worker that ended before
    /// these items started, and is now sent again.
    pub(super) started: bool,
    /// How many times these items ran already, on workers that were lost
    /// or died (see [`EngineOptions::retries`](super::EngineOptions::retries)).
    pub(super) attempts: u32,
}

impl Queued {
    /// Cancels a queued call: a fresh one is still pending and is
    /// cancelled; one sent again is already marked running, so it fails
    /// with `Cancelled` instead.
    pub(super) fn cancel_into(self, settle: &mut Settle) {
        for item in &self.call.items {
            if self.started {
                settle.fail(&self.sink, item.index, Error::Cancelled);
            } else {
                settle.cancelled.push((Arc::clone(&self.sink), item.index));
            }
        }
    }

    pub(super) fn fail_into(self, settle: &mut Settle, error: &Error) {
        for item in &self.call.items {
            settle.fail(&self.sink, item.index, error.clone());
        }
    }
}

/// The engine's state, under its one lock.
#[derive(Default)]
pub(super) struct State {
    pub(super) queue: VecDeque<Queued>,
    pub(super) workers: Vec<Worker>,
    /// Spawns requested and not yet begun.
    pub(super) starting: usize,
    pub(super) next_worker: u64,
    pub(super) next_call: u64,
}

pub(super) struct Worker {
    pub(super) id: u64,
    /// `None` while the transport is still starting it.
    pub(super) link: Option<Arc<dyn Link>>,
    /// Its input is open: it takes calls (if not stopping).
    pub(super) open: bool,
    pub(super) started: Instant,
    /// The worker's loop answered and its proof was accepted.
    pub(super) handshaken: bool,
    /// Handshaken and initialized: calls sent now start executing, so
    /// their timeouts may start counting.
    pub(super) ready: bool,
    /// Calls sent to the worker, oldest first: the first is executing, the
    /// rest wait in its input (sent ahead).
    pub(super) in_flight: VecDeque<Running>,
    pub(super) tasks_done: usize,
    /// Why we ended it, set before the stop or close; `None` = a crash.
    pub(super) stop: Option<Stop>,
    /// When a worker sent a graceful stop gets a forced one.
    pub(super) kill_at: Option<Instant>,
    /// Shared with the thread that hears this worker, see [`ReaderBusy`].
    pub(super) reader: Arc<ReaderBusy>,
}

impl Worker {
    /// A worker the transport is about to start.
    pub(super) fn starting(id: u64, reader: Arc<ReaderBusy>) -> Self {
        Worker {
            id,
            link: None,
            open: true,
            started: Instant::now(),
            handshaken: false,
            ready: false,
            in_flight: VecDeque::new(),
            tasks_done: 0,
            stop: None,
            kill_at: None,
            reader,
        }
    }

    pub(super) fn accepts_calls(&self) -> bool {
        self.stop.is_none() && self.open && self.link.is_some()
    }

    pub(super) fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.accepts_calls()
    }

    /// Which worker, for errors.
    pub(super) fn name(&self) -> WorkerId {
        match &self.link {
            Some(link) => link.worker().clone(),
            None => WorkerId::named(format!("worker {} (starting)", self.id)),
        }
    }

    /// Closes the worker's input: its loop ends once it has read what was
    /// sent, or at once if it is stopped.
    pub(super) fn close_input(&mut self) {
        // Without its link yet (still starting), it stays open: the start
        // closes it once the link is there, if the pool is stopping.
        if let Some(link) = &self.link
            && std::mem::replace(&mut self.open, false)
        {
            link.close();
        }
    }

    /// Ends the worker for `reason`: recorded first, so `on_exit` knows.
    pub(super) fn stop(&mut self, reason: Stop, how: StopHow) {
        if self.stop.is_none() {
            self.stop = Some(reason);
        }
        if let Some(link) = &self.link {
            link.stop(how);
        }
    }

    /// [`stop`](Self::stop), with the signal sent by `settle` once the
    /// futures it fails are failed: a dying process takes CPU time (every
    /// thread of it must run to exit), which those futures' waiters should
    /// not wait behind.
    pub(super) fn stop_after(&mut self, reason: Stop, how: StopHow, settle: &mut Settle) {
        if self.stop.is_none() {
            self.stop = Some(reason);
        }
        if let Some(link) = &self.link {
            settle.stops.push((Arc::clone(link), how));
        }
    }
}

/// Whether a worker's events thread is delivering answers (running user
/// code: `Deserialize`, callbacks). Meanwhile it reads nothing, so an item
/// whose deadline passes may well have answered: its answer waits unread.
/// The supervisor then leaves the deadline to be judged once the reader
/// has caught up with everything the worker sent, rather than kill a
/// worker whose task finished in time; a slow callback delays that
/// worker's time limit by as much, never makes it wrong.
#[derive(Default)]
pub(super) struct ReaderBusy {
    pub(super) delivering: AtomicBool,
    /// The supervisor skipped a deadline while the reader delivered.
    deferred: AtomicBool,
}

impl ReaderBusy {
    /// The supervisor's side: true when the deadline may be judged now.
    /// ORDERING: SeqCst on both sides (a Dekker pair with `done`): either
    /// the supervisor sees the reader back, or the reader sees the
    /// deferral and wakes the supervisor.
    pub(super) fn may_judge(&self) -> bool {
        self.deferred.store(true, SeqCst);
        if self.delivering.load(SeqCst) {
            return false;
        }
        self.deferred.store(false, SeqCst);
        true
    }

    /// Whether answers were delivered since the reader last caught up.
    pub(super) fn is_delivering(&self) -> bool {
        self.delivering.load(SeqCst)
    }

    /// The reader's side, once caught up: true when the supervisor must
    /// look at this worker's deadline again.
    pub(super) fn done(&self) -> bool {
        self.delivering.store(false, SeqCst);
        self.deferred.swap(false, SeqCst)
    }
}

/// A call sent to a worker.
pub(super) struct Running {
    pub(super) call_id: u64,
    /// Kept until the call has answered, so that its items that never
    /// started can be sent to another worker.
    pub(super) call: Call,
    pub(super) sink: Arc<dyn Sink>,
    /// How many items have answered; the next one is executing.
    pub(super) answered: usize,
    /// The item (by position in `call.items`) the engine settled itself,
    /// by a timeout or a cancel: its late answer, if any, is dropped.
    pub(super) settled: Option<usize>,
    /// What the settled item is still owed: the timeout's error, which
    /// the worker's events thread delivers (the supervisor runs no user
    /// code).
    pub(super) owed: Option<Error>,
    /// When the executing item must have answered.
    pub(super) deadline: Option<Instant>,
    /// As [`Queued::attempts`].
    pub(super) attempts: u32,
}

impl Running {
    /// The items that have not answered and were not settled, by position.
    pub(super) fn unanswered(&self) -> impl Iterator<Item = usize> + '_ {
        (self.answered..self.call.items.len()).filter(move |&p| Some(p) != self.settled)
    }

    pub(super) fn fail_into(&mut self, settle: &mut Settle, error: &Error) {
        self.pay_owed(settle);
        for position in self.unanswered() {
            settle.fail(&self.sink, self.call.items[position].index, error.clone());
        }
    }

    /// Delivers what the settled item is owed, if anything.
    pub(super) fn pay_owed(&mut self, settle: &mut Settle) {
        if let (Some(position), Some(error)) = (self.settled, self.owed.take()) {
            settle.fail(&self.sink, self.call.items[position].index, error);
        }
    }

    /// The items at `positions`, as a call to queue again.
    pub(super) fn requeue(&self, positions: impl Iterator<Item = usize>) -> Option<Queued> {
        self.requeue_after(positions, 0)
    }

    /// [`requeue`](Self::requeue) of items that may have run, counting
    /// this run among their attempts.
    pub(super) fn rerun(&self, positions: impl Iterator<Item = usize>) -> Option<Queued> {
        self.requeue_after(positions, 1)
    }

    fn requeue_after(&self, positions: impl Iterator<Item = usize>, ran: u32) -> Option<Queued> {
        let items: Items = positions.map(|p| self.call.items[p]).collect();
        (!items.is_empty()).then(|| Queued {
            call: self.call.with_items(items),
            sink: Arc::clone(&self.sink),
            started: true,
            attempts: self.attempts + ran,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// This call's executing item ran over the per-task timeout (SPEC B1).
    Timeout { call_id: u64 },
    /// An item of this executing call was cancelled (SPEC B2).
    Cancelled { call_id: u64 },
    /// `max_tasks_per_child` reached (SPEC P7).
    Retired,
    /// Shutdown: no more work.
    ShutDown,
    /// `terminate_workers` / `kill_workers` (SPEC P9), or a broken pool.
    Terminated,
    /// Never reported ready.
    NeverReady,
}

/// Effects to run after the state lock is released: writing, and settling
/// futures, which runs callbacks (user code).
#[derive(Default)]
pub(super) struct Settle {
    /// Links with messages queued under the lock, to send after it: each
    /// once, however many messages it has (see [`Settle::flush_later`]).
    sends: SmallVec<[Arc<dyn Link>; 1]>,
    pub(super) failed: Vec<(Arc<dyn Sink>, usize, Error)>,
    pub(super) cancelled: Vec<(Arc<dyn Sink>, usize)>,
    /// Workers to stop last ([`Worker::stop_after`]).
    stops: Vec<(Arc<dyn Link>, StopHow)>,
}

impl Settle {
    pub(super) fn fail(&mut self, sink: &Arc<dyn Sink>, index: usize, error: Error) {
        self.failed.push((Arc::clone(sink), index, error));
    }

    /// Flushes `link` after the lock, once: a dispatch that queues many
    /// calls on one worker writes them together.
    pub(super) fn flush_later(&mut self, link: &Arc<dyn Link>) {
        if !self.sends.iter().any(|queued| Arc::ptr_eq(queued, link)) {
            self.sends.push(Arc::clone(link));
        }
    }

    pub(super) fn extend(&mut self, mut other: Settle) {
        for link in std::mem::take(&mut other.sends) {
            self.flush_later(&link);
        }
        self.failed.append(&mut other.failed);
        self.cancelled.append(&mut other.cancelled);
        self.stops.append(&mut other.stops);
    }

    /// Sends the queued messages, before anything else runs.
    pub(super) fn run_sends(&mut self) {
        for link in self.sends.drain(..) {
            link.flush();
        }
    }

    pub(super) fn run(mut self) {
        self.run_sends();
        // Every item fails or is cancelled before any waiter wakes or
        // callback runs: a callback that waits for another of them must
        // find it settled.
        let failed = std::mem::take(&mut self.failed).into_iter();
        let cancelled = std::mem::take(&mut self.cancelled).into_iter();
        let wakes: Vec<Wake> = failed
            .filter_map(|(sink, index, error)| sink.fail_quietly(index, error))
            .chain(cancelled.filter_map(|(sink, index)| sink.cancel_quietly(index)))
            .collect();
        drop(wakes);
        // Dropping `self` sends the stops.
    }
}

/// A worker recorded as stopping is stopped, even on a path that drops
/// its settle unrun, or when a callback run above panics.
impl Drop for Settle {
    fn drop(&mut self) {
        for (link, how) in self.stops.drain(..) {
            link.stop(how);
        }
    }
}
