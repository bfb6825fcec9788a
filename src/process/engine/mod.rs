//! The engine: dispatch, the worker table, and what happens when a worker
//! ends. It moves opaque payloads and knows calls only as [`Sink`]s.
//!
//! Threads per pool: one *supervisor*, which starts every worker (so that
//! `PR_SET_PDEATHSIG` ties workers to a thread that lives as long as they
//! do) and enforces deadlines; one *reader* per worker, which reads its
//! answers, completes futures, hands the worker its next call, and reaps it
//! when it ends; and, only while a worker's input is full, a *writer* for
//! it (see the transport). Submitting writes straight into an idle worker's
//! pipe without ever blocking: a round trip crosses no thread but the
//! reader, and no thread waits on a worker that is not reading.
//!
//! A call has one or more items (a chunk of `map`); the worker answers
//! each, in order. When the pool has a per-task time limit, each answer is
//! flushed at once, so the engine knows which item runs: the limit is per
//! item (SPEC B1), and a worker's end fails only that item, sending the
//! ones that never started to another worker. Without a limit, answers of
//! a chunk come together, and a worker that dies in a chunk fails every
//! item of it that had not answered.
//!
//! What happens when a worker speaks or ends is in `lifecycle.rs`.
//!
//! Every worker end goes through `Engine::on_exit`, which decides from
//! the reason recorded before the kill (timeout, cancel, retirement,
//! shutdown, terminate) or, with none recorded, treats it as a crash:
//! broken pool by default (SPEC P6), the one item failed and a replacement
//! started with self-healing (SPEC B3).
//!
//! User code (callbacks, `Deserialize`, `Drop` of values) runs only after
//! the state lock is released. A thread of the engine may run such code,
//! and that code may shut the pool down or drop it; waiting there for the
//! workers would wait on the thread itself, so from the engine's own
//! threads `shutdown` and the terminate calls never wait (`on_engine_thread`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use rustix::process::Signal;

mod lifecycle;

use super::call::{EncodedCall, FnRef, Item, Sink};
use super::transport::{self, Frame, Input, WorkerCommand};
use super::wire::{ToWorker, encode_head};
use crate::error::{BrokenExecutor, BrokenKind, Error};

/// How long a started worker may take to report ready. Generous, since a
/// loaded machine can be slow to exec; a worker that never reports (its
/// entry was not linked and it runs `main` instead) fails the pool after
/// this long rather than hanging it.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `terminate_workers` lets a worker handle `SIGTERM` before it
/// is killed for good. Long enough for a handler to clean up, short
/// enough that a task ignoring the signal holds up a shutdown only briefly.
const TERMINATE_GRACE: Duration = Duration::from_secs(1);

/// Calls sent to a busy worker ahead of time, once the pool has all its
/// workers. One keeps a worker from idling between a result and its next
/// call (the round trip through the pool) and costs at most one call's
/// wait behind a long one; more would only add imbalance. CPython's pool
/// makes the same trade with `EXTRA_QUEUED_CALLS = 1`. A call sent ahead
/// is marked running, as in CPython, but until it starts it is neither
/// timed nor lost when its worker dies: it goes back to the queue.
const CALLS_AHEAD: usize = 1;

/// Only calls this small are sent ahead: a call waiting in a busy
/// worker's pipe should fit the pipe's buffer (64 KiB by default), so that
/// a worker's input stays short enough for a dead worker's calls to be
/// re-sent cheaply. Larger calls go only to workers that are reading.
const SEND_AHEAD_MAX_BYTES: usize = 16 * 1024;

thread_local! {
    /// The engine whose internal thread this is (0: none). A `Cell` of a
    /// plain integer: still readable while the thread's other locals are
    /// being destroyed, as at process exit.
    static ENGINE_THREAD: Cell<usize> = const { Cell::new(0) };
}

/// The pool's state at one moment, for `Debug`.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) workers: usize,
    pub(crate) busy: usize,
    pub(crate) starting: usize,
    pub(crate) queued: usize,
    pub(crate) broken: bool,
    pub(crate) shut_down: bool,
}

/// What the engine is configured with.
pub(crate) struct EngineConfig {
    pub(crate) max_workers: usize,
    pub(crate) max_tasks_per_child: Option<usize>,
    pub(crate) self_healing: bool,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) initializer: Option<(FnRef, Bytes)>,
    /// How to start a worker; `None` for an engine that starts none.
    pub(crate) command: Option<&'static WorkerCommand>,
}

/// A call waiting for a worker.
pub(crate) struct Job {
    pub(crate) call: EncodedCall,
    pub(crate) sink: Arc<dyn Sink>,
}

/// A call in the queue.
struct Queued {
    call: EncodedCall,
    sink: Arc<dyn Sink>,
    /// Already marked running: it was sent to a worker that ended before
    /// these items started, and is now sent again.
    started: bool,
}

impl Queued {
    /// Cancels a queued call: a fresh one is still pending and is
    /// cancelled; one sent again is already marked running, so it fails
    /// with `Cancelled` instead.
    fn cancel_into(self, settle: &mut Settle) {
        for item in &self.call.items {
            if self.started {
                settle.fail(&self.sink, item.index, Error::Cancelled);
            } else {
                settle.cancelled.push((Arc::clone(&self.sink), item.index));
            }
        }
    }

    fn fail_into(self, settle: &mut Settle, error: &Error) {
        for item in &self.call.items {
            settle.fail(&self.sink, item.index, error.clone());
        }
    }
}

pub(crate) struct Engine {
    config: EngineConfig,
    state: Mutex<State>,
    /// Signalled whenever a worker is removed from the table.
    worker_gone: Condvar,
    supervisor: Sender<Request>,
}

enum Request {
    Spawn,
    /// A deadline was set; recompute when to wake.
    Wake,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    workers: Vec<Worker>,
    /// Spawns requested and not yet in `workers`.
    starting: usize,
    /// Workers removed whose futures are still being settled: shutdown
    /// waits for these too, so that it returns only when every future a
    /// worker's end fails is done.
    exiting: usize,
    broken: Option<BrokenExecutor>,
    shut_down: bool,
    next_worker: u64,
    next_call: u64,
}

struct Worker {
    id: u64,
    pid: u32,
    pidfd: Arc<OwnedFd>,
    /// `None` once told to exit (its input closed).
    input: Option<Arc<Input>>,
    started: Instant,
    /// The worker's loop answered: its entry ran.
    handshaken: bool,
    /// Handshaken and initialized: calls sent now start executing, so
    /// their timeouts may start counting.
    ready: bool,
    /// Calls sent to the worker, oldest first: the first is executing, the
    /// rest wait in its pipe (see [`CALLS_AHEAD`]).
    in_flight: VecDeque<Running>,
    tasks_done: usize,
    /// Why we ended it, set before the kill or close; `None` = a crash.
    stop: Option<Stop>,
    /// When a worker sent `SIGTERM` gets `SIGKILL` (see [`TERMINATE_GRACE`]).
    kill_at: Option<Instant>,
    /// Shared with the worker's reader thread, see [`ReaderBusy`].
    reader: Arc<ReaderBusy>,
}

/// Whether a worker's reader is delivering answers (running user code:
/// `Deserialize`, callbacks). Meanwhile it reads nothing, so an item whose
/// deadline passes may well have answered: its answer waits unread. The
/// supervisor then leaves the deadline to be judged once the reader has
/// caught up with everything the worker sent, rather than kill a worker
/// whose task finished in time; a slow callback delays that worker's time
/// limit by as much, never makes it wrong.
#[derive(Default)]
struct ReaderBusy {
    delivering: AtomicBool,
    /// The supervisor skipped a deadline while the reader delivered.
    deferred: AtomicBool,
}

impl ReaderBusy {
    /// The supervisor's side: true when the deadline may be judged now.
    /// ORDERING: SeqCst on both sides (a Dekker pair with `done`): either
    /// the supervisor sees the reader back, or the reader sees the
    /// deferral and wakes the supervisor.
    fn may_judge(&self) -> bool {
        self.deferred.store(true, SeqCst);
        if self.delivering.load(SeqCst) {
            return false;
        }
        self.deferred.store(false, SeqCst);
        true
    }

    /// The reader's side, after delivering: true when the supervisor must
    /// look at this worker's deadline again.
    fn done(&self) -> bool {
        self.delivering.store(false, SeqCst);
        self.deferred.swap(false, SeqCst)
    }
}

/// A call sent to a worker.
struct Running {
    call_id: u64,
    /// Kept until the call has answered, so that its items that never
    /// started can be sent to another worker.
    call: EncodedCall,
    sink: Arc<dyn Sink>,
    /// How many items have answered; the next one is executing.
    answered: usize,
    /// The item (by position in `call.items`) the engine settled itself,
    /// by a timeout or a cancel: its late answer, if any, is dropped.
    settled: Option<usize>,
    /// What the settled item is still owed: the timeout's error, which
    /// the worker's reader delivers (the supervisor runs no user code).
    owed: Option<Error>,
    /// When the executing item must have answered.
    deadline: Option<Instant>,
}

impl Running {
    /// The items that have not answered and were not settled, by position.
    fn unanswered(&self) -> impl Iterator<Item = usize> + '_ {
        (self.answered..self.call.items.len()).filter(move |&p| Some(p) != self.settled)
    }

    fn fail_into(&mut self, settle: &mut Settle, error: &Error) {
        self.pay_owed(settle);
        for position in self.unanswered() {
            settle.fail(&self.sink, self.call.items[position].index, error.clone());
        }
    }

    /// Delivers what the settled item is owed, if anything.
    fn pay_owed(&mut self, settle: &mut Settle) {
        if let (Some(position), Some(error)) = (self.settled, self.owed.take()) {
            settle.fail(&self.sink, self.call.items[position].index, error);
        }
    }

    /// The items at `positions`, as a call to queue again.
    fn requeue(&self, positions: impl Iterator<Item = usize>) -> Option<Queued> {
        let items: Vec<Item> = positions.map(|p| self.call.items[p]).collect();
        (!items.is_empty()).then(|| Queued {
            call: self.call.with_items(items),
            sink: Arc::clone(&self.sink),
            started: true,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
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

/// Futures to settle after the state lock is released: settling runs
/// callbacks, which are user code.
#[derive(Default)]
struct Settle {
    /// Inputs with frames queued under the lock, to write after it.
    sends: Vec<Arc<Input>>,
    failed: Vec<(Arc<dyn Sink>, usize, Error)>,
    cancelled: Vec<(Arc<dyn Sink>, usize)>,
}

impl Settle {
    fn fail(&mut self, sink: &Arc<dyn Sink>, index: usize, error: Error) {
        self.failed.push((Arc::clone(sink), index, error));
    }

    fn extend(&mut self, other: Settle) {
        self.sends.extend(other.sends);
        self.failed.extend(other.failed);
        self.cancelled.extend(other.cancelled);
    }

    /// Writes the queued frames, before anything else runs.
    fn run_sends(&mut self) {
        for input in self.sends.drain(..) {
            input.flush();
        }
    }

    fn run(mut self) {
        self.run_sends();
        for (sink, index, error) in self.failed {
            sink.fail(index, error);
        }
        for (sink, index) in self.cancelled {
            sink.cancel(index);
        }
    }
}

impl Worker {
    fn accepts_calls(&self) -> bool {
        self.stop.is_none() && self.input.is_some()
    }

    fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.accepts_calls()
    }

    /// Closes the worker's input: its loop ends once it has read what was
    /// sent, or at once if it is killed.
    fn close_input(&mut self) {
        if let Some(input) = self.input.take() {
            input.close();
        }
    }

    /// Ends the worker for `reason`: recorded first, so `on_exit` knows.
    fn kill(&mut self, reason: Stop, signal: Signal) {
        if self.stop.is_none() {
            self.stop = Some(reason);
        }
        transport::signal(&self.pidfd, signal);
    }
}

impl Engine {
    pub(crate) fn start(config: EngineConfig) -> Arc<Engine> {
        let (supervisor, requests) = crossbeam_channel::unbounded();
        let engine = Arc::new(Engine {
            config,
            state: Mutex::new(State::default()),
            worker_gone: Condvar::new(),
            supervisor,
        });
        let weak = Arc::downgrade(&engine);
        let id = engine.id();
        // Without the supervisor no worker can start: a pool that cannot
        // start one is broken from the first submit (see `spawn_worker`).
        let started = thread::Builder::new()
            .name("process-pool-supervisor".into())
            .spawn(move || {
                ENGINE_THREAD.with(|e| e.set(id));
                lifecycle::supervise(weak, requests);
            });
        if let Err(e) = started {
            engine.state.lock().broken = Some(BrokenExecutor::new(
                BrokenKind::ProcessPool,
                format!("could not start the pool's supervisor thread: {e}"),
            ));
        }
        engine
    }

    /// An engine that refuses all work with `reason` and starts nothing.
    pub(crate) fn refusing(reason: String) -> Arc<Engine> {
        let (supervisor, _) = crossbeam_channel::unbounded();
        let state = State {
            broken: Some(BrokenExecutor::new(BrokenKind::ProcessPool, reason)),
            ..State::default()
        };
        Arc::new(Engine {
            config: EngineConfig {
                max_workers: 1,
                max_tasks_per_child: None,
                self_healing: false,
                task_timeout: None,
                initializer: None,
                command: None,
            },
            state: Mutex::new(state),
            worker_gone: Condvar::new(),
            supervisor,
        })
    }

    fn id(&self) -> usize {
        self as *const Engine as usize
    }

    /// Whether the calling thread is one of this engine's own.
    fn on_engine_thread(&self) -> bool {
        ENGINE_THREAD.try_with(Cell::get).unwrap_or(0) == self.id()
    }

    /// What `Debug` shows of the pool.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.state.lock();
        Snapshot {
            workers: state.workers.len(),
            busy: state
                .workers
                .iter()
                .filter(|w| !w.in_flight.is_empty())
                .count(),
            starting: state.starting,
            queued: state.queue.len(),
            broken: state.broken.is_some(),
            shut_down: state.shut_down,
        }
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.config.max_workers
    }

    /// Whether each item's answer is sent as it ends (see the module docs).
    fn precise(&self) -> bool {
        self.config.task_timeout.is_some()
    }

    /// Queues a call and hands it to an idle worker if there is one.
    ///
    /// # Errors
    ///
    /// The job back with [`Error::ShutDown`] or [`Error::Broken`].
    pub(crate) fn submit(&self, job: Job) -> Result<(), (Job, Error)> {
        let settle = {
            let mut state = self.state.lock();
            if let Some(b) = &state.broken {
                return Err((job, Error::Broken(b.clone())));
            }
            if state.shut_down {
                return Err((job, Error::ShutDown));
            }
            state.queue.push_back(Queued {
                call: job.call,
                sink: job.sink,
                started: false,
            });
            self.dispatch(&mut state)
        };
        settle.run();
        Ok(())
    }

    /// The frame that sends call `call_id`.
    fn call_frame(&self, call_id: u64, call: &EncodedCall) -> std::io::Result<Frame> {
        let message = ToWorker::Call {
            id: call_id,
            trampoline: call.function.trampoline,
            func: call.function.func,
            lens: call.items.iter().map(|i| i.len() as u64).collect(),
            report_each: self.precise(),
        };
        Ok(Frame {
            head: encode_head(&message, call.payload_len())?,
            body: call.parts(),
        })
    }

    /// Pairs idle workers with queued calls, tells idle workers to exit once
    /// shut down with nothing left, and asks for workers that are missing.
    ///
    /// Frames are queued on the workers' inputs here, under the lock, so
    /// that two threads dispatching to one worker cannot reorder its calls
    /// (a worker answers in the order it reads); they are written once the
    /// lock is released ([`Settle::run`]), which never blocks.
    fn dispatch(&self, state: &mut State) -> Settle {
        let mut settle = Settle::default();
        // Send ahead only once every worker runs: a worker still starting
        // will take the call sooner than a busy one.
        let full = state.starting == 0
            && state.workers.iter().filter(|w| w.stop.is_none()).count() >= self.config.max_workers;
        while let Some(front) = state.queue.front() {
            let ahead_ok = full && front.call.payload_len() <= SEND_AHEAD_MAX_BYTES;
            let depth = if ahead_ok { 1 + CALLS_AHEAD } else { 1 };
            let max_tasks = self.config.max_tasks_per_child;
            // The least busy worker, so calls go ahead only when no worker
            // is idle.
            let Some(worker) = state
                .workers
                .iter_mut()
                .filter(|w| w.accepts_calls() && w.in_flight.len() < depth)
                // A worker about to retire takes no call it would not run.
                .filter(|w| max_tasks.is_none_or(|m| w.tasks_done + w.in_flight.len() < m))
                .min_by_key(|w| w.in_flight.len())
            else {
                break;
            };
            let Some(queued) = state.queue.pop_front() else {
                break;
            };
            if !queued.started && !queued.sink.start() {
                continue; // Cancelled while queued.
            }
            let call_id = state.next_call;
            state.next_call += 1;
            let frame = match self.call_frame(call_id, &queued.call) {
                Ok(frame) => frame,
                Err(e) => {
                    let error = Error::Broken(BrokenExecutor::new(
                        BrokenKind::ProcessPool,
                        format!("could not encode a call's header: {e}"),
                    ));
                    queued.fail_into(&mut settle, &error);
                    continue;
                }
            };
            let deadline = if worker.in_flight.is_empty() && worker.ready {
                self.deadline_from_now()
            } else {
                None
            };
            if let Some(input) = &worker.input {
                input.push(frame);
                settle.sends.push(Arc::clone(input));
            }
            worker.in_flight.push_back(Running {
                call_id,
                call: queued.call,
                sink: queued.sink,
                answered: 0,
                settled: None,
                owed: None,
                deadline,
            });
        }
        if state.shut_down && state.queue.is_empty() {
            for worker in state.workers.iter_mut().filter(|w| w.idle()) {
                // Closing its input ends the worker's loop.
                worker.stop = Some(Stop::ShutDown);
                worker.close_input();
            }
        }
        let live = state.workers.iter().filter(|w| w.stop.is_none()).count() + state.starting;
        let idle = state.workers.iter().filter(|w| w.idle()).count();
        let wanted = state
            .queue
            .len()
            .saturating_sub(idle + state.starting)
            .min(self.config.max_workers.saturating_sub(live));
        if state.broken.is_none() {
            for _ in 0..wanted {
                state.starting += 1;
                let _ = self.supervisor.send(Request::Spawn);
            }
        }
        settle
    }

    /// When an item starting now must end, telling the supervisor to watch.
    fn deadline_from_now(&self) -> Option<Instant> {
        let deadline = self
            .config
            .task_timeout
            .and_then(|t| Instant::now().checked_add(t));
        if deadline.is_some() {
            let _ = self.supervisor.send(Request::Wake);
        }
        deadline
    }

    /// Marks the pool broken: every queued and running item fails with
    /// `reason`, every worker is killed.
    fn break_pool(state: &mut State, reason: String, settle: &mut Settle) {
        let broken = state
            .broken
            .get_or_insert_with(|| BrokenExecutor::new(BrokenKind::ProcessPool, reason))
            .clone();
        let error = Error::Broken(broken);
        for queued in state.queue.drain(..) {
            queued.fail_into(settle, &error);
        }
        for worker in &mut state.workers {
            for mut running in worker.in_flight.drain(..) {
                running.fail_into(settle, &error);
            }
            worker.close_input();
            worker.kill(Stop::Terminated, Signal::KILL);
        }
    }

    /// Cancels the executing call of future `future_id` by killing its
    /// worker, which is replaced (SPEC B2). The call's other items that had
    /// not answered are sent again. A call sent ahead and still waiting in
    /// a worker's pipe cannot be stopped without killing the call executing
    /// before it, so it is refused, as CPython refuses to cancel the calls
    /// it has queued to its workers.
    pub(crate) fn cancel_running(&self, future_id: usize) -> bool {
        let cancelled = {
            let mut state = self.state.lock();
            let mut cancelled = None;
            for worker in state.workers.iter_mut().filter(|w| w.stop.is_none()) {
                let Some(head) = worker.in_flight.front_mut() else {
                    continue;
                };
                let Some(index) = head.sink.position(future_id) else {
                    continue;
                };
                let position = head.call.items.iter().position(|i| i.index == index);
                match position {
                    Some(p) if p >= head.answered && head.settled.is_none() => {
                        // Settled now, so that `true` is the truth even if
                        // the answer is already in the pipe: it is dropped.
                        head.settled = Some(p);
                        cancelled = Some((Arc::clone(&head.sink), index));
                        let call_id = head.call_id;
                        worker.kill(Stop::Cancelled { call_id }, Signal::KILL);
                    }
                    _ => {}
                }
                break;
            }
            cancelled
        };
        match cancelled {
            Some((sink, index)) => {
                sink.fail(index, Error::Cancelled);
                true
            }
            None => false,
        }
    }

    /// SPEC E3 for processes. From one of the engine's own threads (a
    /// done-callback) it does not wait, since the workers' ends are heard
    /// on those threads.
    pub(crate) fn shutdown(&self, wait: bool, cancel_futures: bool) {
        let settle = {
            let mut state = self.state.lock();
            state.shut_down = true;
            let cancelled: Vec<Queued> = if cancel_futures {
                state.queue.drain(..).collect()
            } else {
                Vec::new()
            };
            let mut settle = self.dispatch(&mut state);
            for queued in cancelled {
                queued.cancel_into(&mut settle);
            }
            settle
        };
        settle.run();
        if wait && !self.on_engine_thread() {
            self.wait_for_workers();
        }
    }

    /// SPEC P9: stops every worker now with `signal` and returns without
    /// waiting for them (as CPython 3.14 does): queued calls are
    /// cancelled, running ones fail at once. A worker that outlives
    /// `SIGTERM` by [`TERMINATE_GRACE`] is killed.
    pub(crate) fn stop_workers(&self, signal: Signal) {
        let settle = {
            let mut state = self.state.lock();
            state.shut_down = true;
            let mut settle = Settle::default();
            for queued in state.queue.drain(..).collect::<Vec<_>>() {
                queued.cancel_into(&mut settle);
            }
            let how = if signal == Signal::KILL {
                "kill_workers"
            } else {
                "terminate_workers"
            };
            let error = Error::Broken(BrokenExecutor::new(
                BrokenKind::ProcessPool,
                format!("the worker was stopped by {how} while running this task"),
            ));
            let kill_at = (signal != Signal::KILL)
                .then(|| Instant::now().checked_add(TERMINATE_GRACE))
                .flatten();
            for worker in &mut state.workers {
                for mut running in worker.in_flight.drain(..) {
                    running.fail_into(&mut settle, &error);
                }
                worker.close_input();
                worker.kill(Stop::Terminated, signal);
                worker.kill_at = kill_at;
            }
            if kill_at.is_some() {
                let _ = self.supervisor.send(Request::Wake);
            }
            settle
        };
        settle.run();
    }

    /// At process exit: the work this pool accepted finishes first (SPEC
    /// E3), as CPython's exit hook joins its workers.
    pub(crate) fn finish_at_exit(&self) {
        self.shutdown(true, false);
    }

    fn wait_for_workers(&self) {
        let mut state = self.state.lock();
        while !state.workers.is_empty() || state.starting > 0 || state.exiting > 0 {
            self.worker_gone.wait(&mut state);
        }
    }
}
