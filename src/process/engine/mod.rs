//! The engine: dispatch, the worker table, and what happens when a worker
//! ends. It moves opaque payloads and knows calls only as [`Sink`]s, so a
//! different codec (pickle for a Python binding) or transport (MPI ranks)
//! can reuse it unchanged.
//!
//! Threads per pool: one *supervisor*, which starts every worker (so that
//! `PR_SET_PDEATHSIG` ties workers to a thread that lives as long as they
//! do) and enforces deadlines; and one *reader* per worker, which reads its
//! answers, completes futures, hands the worker its next call, and reaps it
//! when its pipe ends. Submitting writes straight to an idle worker's pipe:
//! a round trip crosses no thread but the reader.
//!
//! What happens when a worker speaks or ends is in `lifecycle.rs`.
//!
//! Every worker end goes through `Engine::on_exit`, which decides from
//! the reason recorded before the kill (timeout, cancel, retirement,
//! shutdown, terminate) or, with none recorded, treats it as a crash:
//! broken pool by default (SPEC P6), the one call failed and a replacement
//! started with self-healing (SPEC B3).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};
use rustix::process::Signal;

mod lifecycle;

use super::call::{EncodedCall, Sink};
use super::transport;
use super::wire::{ToWorker, write_frame};
use crate::error::{BrokenExecutor, BrokenKind, Error};

/// How long a started worker may take to report ready. Generous, since a
/// loaded machine can be slow to exec; a worker that never reports (its
/// entry was not linked and it runs `main` instead) fails the pool after
/// this long rather than hanging it.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls sent to a busy worker ahead of time, once the pool has all its
/// workers. One keeps a worker from idling between a result and its next
/// call (the round trip through the pool) and costs at most one call's
/// wait behind a long one; more would only add imbalance. CPython's pool
/// makes the same trade with `EXTRA_QUEUED_CALLS = 1`. A call sent ahead
/// is marked running, as in CPython, but until it starts it is neither
/// timed nor lost when its worker dies: it goes back to the queue.
const CALLS_AHEAD: usize = 1;

/// Only calls this small are sent ahead. A call sent ahead waits in the
/// pipe while the worker executes, so it must fit the pipe's buffer (64
/// KiB by default) with room to spare: then writing it never blocks, and a
/// thread writing it can never wait on a worker that is itself waiting to
/// write a large result back (DESIGN: reads and writes never block each
/// other). Larger calls go only to workers that are reading.
const SEND_AHEAD_MAX_BYTES: usize = 16 * 1024;

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
    pub(crate) initializer: Option<EncodedCall>,
}

/// A call waiting for a worker.
pub(crate) struct Job {
    pub(crate) call: EncodedCall,
    pub(crate) sink: Box<dyn Sink>,
}

/// A call back in the queue after the worker it was sent ahead to died
/// before starting it: its futures are already marked running.
struct Requeued {
    call: EncodedCall,
    sink: Box<dyn Sink>,
}

enum Queued {
    Fresh(Job),
    Requeued(Requeued),
}

impl Queued {
    fn payload_len(&self) -> usize {
        match self {
            Queued::Fresh(j) => j.call.payload.len(),
            Queued::Requeued(r) => r.call.payload.len(),
        }
    }

    fn into_sink(self) -> Box<dyn Sink> {
        match self {
            Queued::Fresh(j) => j.sink,
            Queued::Requeued(r) => r.sink,
        }
    }

    /// Cancels a queued call: a fresh one is still pending and is
    /// cancelled; a requeued one is already marked running, so it fails
    /// with `Cancelled` instead.
    fn cancel_into(self, settle: &mut Settle) {
        match self {
            Queued::Fresh(j) => settle.cancelled.push(j.sink),
            Queued::Requeued(r) => settle.failed.push((r.sink, Error::Cancelled)),
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
    writer: Option<Arc<Pipe>>,
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
}

struct Running {
    call_id: u64,
    /// `None` once cancelled while waiting behind another call: its answer
    /// will be dropped.
    sink: Option<Box<dyn Sink>>,
    /// Kept until the call starts executing, so that a worker's death can
    /// send it to another worker.
    call: Option<EncodedCall>,
    deadline: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// This call ran over the per-task timeout (SPEC B1).
    Timeout { call_id: u64 },
    /// Its executing call, this one, was cancelled (SPEC B2).
    Cancelled { call_id: u64 },
    /// `max_tasks_per_child` reached (SPEC P7).
    Retired,
    /// Shutdown: no more work.
    ShutDown,
    /// `terminate_workers` / `kill_workers` (SPEC P9).
    Terminated,
    /// Never reported ready.
    NeverReady,
}

/// The pool's end of a worker's input.
///
/// Frames are queued in the outbox under the state lock, in dispatch
/// order, and written later by whichever thread gets the file first,
/// oldest first. Writing straight from the dispatching threads could
/// reorder two calls for one worker (two threads, each released from the
/// state lock with one frame), and the worker answers in the order it
/// reads.
struct Pipe {
    outbox: Mutex<VecDeque<(ToWorker, Vec<u8>)>>,
    file: Mutex<File>,
}

impl Pipe {
    fn new(file: File) -> Self {
        Pipe {
            outbox: Mutex::new(VecDeque::new()),
            file: Mutex::new(file),
        }
    }

    /// Writes every queued frame; a frame queued meanwhile by another
    /// thread is written by whoever holds the file then.
    fn flush_outbox(&self) {
        let mut file = self.file.lock();
        loop {
            let Some((message, payload)) = self.outbox.lock().pop_front() else {
                return;
            };
            // A write to a dead worker fails; its reader reports the death.
            let _ = write_frame(&mut *file, &message, &payload).and_then(|()| file.flush());
        }
    }
}

/// Futures to settle after the state lock is released: settling runs
/// callbacks, which are user code.
#[derive(Default)]
struct Settle {
    failed: Vec<(Box<dyn Sink>, Error)>,
    cancelled: Vec<Box<dyn Sink>>,
    /// Pipes with frames to write.
    sends: Vec<Arc<Pipe>>,
}

impl Settle {
    fn run(self) {
        for pipe in self.sends {
            pipe.flush_outbox();
        }
        for (sink, error) in self.failed {
            sink.fail(error);
        }
        for sink in self.cancelled {
            sink.cancel();
        }
    }
}

impl Worker {
    fn accepts_calls(&self) -> bool {
        self.stop.is_none() && self.writer.is_some()
    }

    fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.accepts_calls()
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
        // Without the supervisor no worker can start: a pool that cannot
        // start one is broken from the first submit (see `spawn_worker`).
        let started = thread::Builder::new()
            .name("process-pool-supervisor".into())
            .spawn(move || lifecycle::supervise(weak, requests));
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
            },
            state: Mutex::new(state),
            worker_gone: Condvar::new(),
            supervisor,
        })
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
            state.queue.push_back(Queued::Fresh(job));
            self.dispatch(&mut state)
        };
        settle.run();
        Ok(())
    }

    /// Pairs idle workers with queued calls, tells idle workers to exit once
    /// shut down with nothing left, and asks for workers that are missing.
    fn dispatch(&self, state: &mut State) -> Settle {
        let mut settle = Settle::default();
        // Send ahead only once every worker runs: a worker still starting
        // will take the call sooner than a busy one.
        let full = state.starting == 0
            && state.workers.iter().filter(|w| w.stop.is_none()).count() >= self.config.max_workers;
        while !state.queue.is_empty() {
            // The least busy worker, so calls go ahead only when no worker
            // is idle.
            let max_tasks = self.config.max_tasks_per_child;
            let ahead_ok = full
                && state
                    .queue
                    .front()
                    .is_some_and(|q| q.payload_len() <= SEND_AHEAD_MAX_BYTES);
            let depth = if ahead_ok { 1 + CALLS_AHEAD } else { 1 };
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
            let (call, sink) = match queued {
                Queued::Fresh(job) => {
                    if !job.sink.start() {
                        continue; // Cancelled while queued.
                    }
                    (job.call, job.sink)
                }
                Queued::Requeued(r) => (r.call, r.sink),
            };
            let call_id = state.next_call;
            state.next_call += 1;
            let deadline = if worker.in_flight.is_empty() && worker.ready {
                self.deadline_from_now()
            } else {
                None
            };
            let Some(writer) = &worker.writer else {
                break;
            };
            let message = ToWorker::Call {
                id: call_id,
                trampoline: call.trampoline,
                func: call.func,
            };
            // Only a call sent ahead may have to move to another worker, so
            // only it keeps a copy of its bytes.
            let (payload, kept) = if worker.in_flight.is_empty() {
                (call.payload, None)
            } else {
                (call.payload.clone(), Some(call))
            };
            writer.outbox.lock().push_back((message, payload));
            settle.sends.push(Arc::clone(writer));
            worker.in_flight.push_back(Running {
                call_id,
                sink: Some(sink),
                call: kept,
                deadline,
            });
        }
        if state.shut_down && state.queue.is_empty() {
            for worker in state.workers.iter_mut().filter(|w| w.idle()) {
                // Closing its input ends the worker's loop.
                worker.stop = Some(Stop::ShutDown);
                worker.writer = None;
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

    /// When a call starting now must end, telling the supervisor to watch.
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

    /// Marks the pool broken: every queued and running call fails with
    /// `reason`, every worker is killed.
    fn break_pool(state: &mut State, reason: String, settle: &mut Settle) {
        let broken = state
            .broken
            .get_or_insert_with(|| BrokenExecutor::new(BrokenKind::ProcessPool, reason))
            .clone();
        for queued in state.queue.drain(..) {
            settle
                .failed
                .push((queued.into_sink(), Error::Broken(broken.clone())));
        }
        for worker in &mut state.workers {
            for running in worker.in_flight.drain(..) {
                if let Some(sink) = running.sink {
                    settle.failed.push((sink, Error::Broken(broken.clone())));
                }
            }
            worker.writer = None;
            worker.kill(Stop::Terminated, Signal::KILL);
        }
    }

    /// Cancels the executing call of future `future_id` by killing its
    /// worker, which is replaced (SPEC B2). A call sent ahead and still
    /// waiting in a worker's pipe cannot be stopped without killing the
    /// call executing before it, so it is refused, as CPython refuses to
    /// cancel the calls it has queued to its workers.
    pub(crate) fn cancel_running(&self, future_id: usize) -> bool {
        let cancelled = {
            let mut state = self.state.lock();
            let mut cancelled = None;
            for worker in state.workers.iter_mut().filter(|w| w.stop.is_none()) {
                let Some(head) = worker.in_flight.front_mut() else {
                    continue;
                };
                if head.sink.as_ref().is_some_and(|s| s.carries(future_id)) {
                    // Settled now, so that `true` is the truth even if the
                    // answer is already in the pipe: it will be dropped.
                    cancelled = head.sink.take();
                    let call_id = head.call_id;
                    worker.kill(Stop::Cancelled { call_id }, Signal::KILL);
                    break;
                }
            }
            cancelled
        };
        match cancelled {
            Some(sink) => {
                sink.fail(Error::Cancelled);
                true
            }
            None => false,
        }
    }

    /// SPEC E3 for processes.
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
        if wait {
            self.wait_for_workers();
        }
    }

    /// SPEC P9: stops every worker now with `signal`; queued calls are
    /// cancelled, running ones fail.
    pub(crate) fn stop_workers(&self, signal: Signal) {
        let settle = {
            let mut state = self.state.lock();
            state.shut_down = true;
            let mut settle = Settle::default();
            for queued in state.queue.drain(..).collect::<Vec<_>>() {
                queued.cancel_into(&mut settle);
            }
            for worker in &mut state.workers {
                worker.writer = None;
                worker.kill(Stop::Terminated, signal);
            }
            settle
        };
        settle.run();
        self.wait_for_workers();
    }

    fn wait_for_workers(&self) {
        let mut state = self.state.lock();
        while !state.workers.is_empty() || state.starting > 0 || state.exiting > 0 {
            self.worker_gone.wait(&mut state);
        }
    }
}
