//! The engine's side of a worker's life: starting it (on the supervisor
//! thread), hearing it (on its reader thread), enforcing deadlines, and
//! settling everything when it ends.

use std::collections::VecDeque;
use std::io::BufReader;
use std::process::Child;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use rustix::process::Signal;

use std::sync::atomic::Ordering::SeqCst;

use super::{ENGINE_THREAD, Engine, ReaderBusy, Request, STARTUP_TIMEOUT, Settle, Stop, Worker};
use crate::error::{Error, ExitCause, WorkerDeath};
use crate::process::call;
use crate::process::transport::{self, Frame, Output, Spawned};
use crate::process::wire::{
    FailureKind, FromWorker, Payload, RemoteFailure, ToWorker, encode_head, read_frame,
};

/// What an answered item's future gets.
enum Delivery {
    Answer(Result<Bytes, RemoteFailure>),
    Failure(Error),
}

impl Engine {
    fn on_handshake(&self, worker_id: u64, image_check: isize) {
        let settle = {
            let mut state = self.state.lock();
            let mut settle = Settle::default();
            if image_check != call::image_check() {
                let reason = "a worker process runs a different executable image".to_owned();
                Engine::break_pool(&mut state, reason, &mut settle);
            } else if let Some(w) = state.workers.iter_mut().find(|w| w.id == worker_id) {
                w.handshaken = true;
                if self.config.initializer.is_none() {
                    self.mark_ready(w);
                }
            }
            settle
        };
        settle.run();
    }

    fn on_initialized(&self, worker_id: u64) {
        let mut state = self.state.lock();
        if let Some(w) = state.workers.iter_mut().find(|w| w.id == worker_id) {
            self.mark_ready(w);
        }
    }

    /// The worker executes calls from now on: the one it got before it
    /// was ready starts its timeout now, so that start-up and the
    /// initializer do not count against it.
    fn mark_ready(&self, worker: &mut Worker) {
        worker.ready = true;
        if let Some(head) = worker.in_flight.front_mut() {
            if head.deadline.is_none() {
                head.deadline = self.deadline_from_now();
            }
        }
    }

    fn on_init_failed(&self, message: String) {
        let settle = {
            let mut state = self.state.lock();
            let mut settle = Settle::default();
            let reason = format!(
                "a process initializer failed, the process pool is not usable anymore: {message}"
            );
            Engine::break_pool(&mut state, reason, &mut settle);
            settle
        };
        settle.run();
    }

    /// Items `first..` of call `call_id` answered, in order.
    fn on_answers(
        &self,
        worker_id: u64,
        pid: u32,
        call_id: u64,
        first: usize,
        outcomes: Vec<Result<Bytes, RemoteFailure>>,
    ) {
        let (deliveries, mut settle) = {
            let mut state = self.state.lock();
            let Some(worker) = state.workers.iter_mut().find(|w| w.id == worker_id) else {
                return;
            };
            let Some(head) = worker.in_flight.front_mut() else {
                return;
            };
            // Answers come in order; anything else is an answer to a call
            // the engine already settled (a terminate, a broken pool).
            if head.call_id != call_id || head.answered != first {
                return;
            }
            let mut deliveries = Vec::with_capacity(outcomes.len());
            for outcome in outcomes {
                let position = head.answered;
                let Some(item) = head.call.items.get(position) else {
                    break;
                };
                let delivery = if head.settled == Some(position) {
                    // Judged timed out (or cancelled) before this answer
                    // was read: what it is owed, if not yet paid, instead.
                    head.owed.take().map(Delivery::Failure)
                } else {
                    Some(Delivery::Answer(outcome))
                };
                deliveries.extend(delivery.map(|d| (Arc::clone(&head.sink), item.index, d)));
                head.answered += 1;
            }
            if head.answered == head.call.items.len() {
                worker.in_flight.pop_front();
                worker.tasks_done += 1;
                if self
                    .config
                    .max_tasks_per_child
                    .is_some_and(|max| worker.tasks_done >= max)
                    && worker.stop.is_none()
                {
                    // Closing its input retires it; `on_exit` starts no
                    // replacement itself, `dispatch` asks for one if needed.
                    worker.stop = Some(Stop::Retired);
                    worker.close_input();
                }
            }
            // The next item (of this call, or of the call sent ahead)
            // starts executing now. A call sent ahead keeps its bytes until
            // it answers: should a cancel or a timeout of the one before it
            // kill the worker first, it is sent again rather than failed.
            let deadline = self
                .config
                .task_timeout
                .and_then(|t| Instant::now().checked_add(t));
            if let Some(next) = worker.in_flight.front_mut() {
                next.deadline = deadline;
                if deadline.is_some() {
                    let _ = self.supervisor.send(Request::Wake);
                }
            }
            let busy = Arc::clone(&worker.reader);
            let settle = self.dispatch(&mut state);
            busy.delivering.store(true, SeqCst);
            (deliveries, settle)
        };
        // Frames first: the worker gets its next call before user code runs.
        settle.run_sends();
        for (sink, index, delivery) in deliveries {
            match delivery {
                Delivery::Answer(outcome) => sink.answer(index, pid, outcome),
                Delivery::Failure(error) => sink.fail(index, error),
            }
        }
        settle.run();
    }

    /// The advice when a worker ended before its loop started.
    fn entry_missing(&self, death: WorkerDeath) -> String {
        match self.config.command.and_then(|c| c.unusual.as_ref()) {
            None => format!(
                "a worker process never started its loop ({death}); is the \
                 concurrent-futures worker entry linked? Call \
                 concurrent_futures::process::run_worker_if_child() at the top of main"
            ),
            Some(how) => format!(
                "a worker process never started its loop ({death}): {how}, which did not \
                 reach the worker entry. Start the program directly rather than through a \
                 loader or wrapper, or call concurrent_futures::process::run_worker_if_child() \
                 at the top of main"
            ),
        }
    }

    fn on_exit(&self, worker_id: u64, cause: ExitCause) {
        let settle = {
            let mut state = self.state.lock();
            let mut settle = Settle::default();
            let Some(index) = state.workers.iter().position(|w| w.id == worker_id) else {
                return;
            };
            let mut worker = state.workers.swap_remove(index);
            let death = WorkerDeath::new(worker.pid, cause);
            let mut in_flight = std::mem::take(&mut worker.in_flight);
            // What the executing item gets, if the pool goes on.
            let failure = match worker.stop {
                // We killed the worker for one item, already settled.
                Some(Stop::Timeout { .. } | Stop::Cancelled { .. }) => None,
                // Exiting by itself before its loop started means the
                // worker ran something else: most likely `main`, because
                // the entry before `main` was not linked.
                Some(Stop::NeverReady) => {
                    Engine::break_pool(&mut state, self.entry_missing(death), &mut settle);
                    None
                }
                None if !worker.handshaken && matches!(cause, ExitCause::Code(_)) => {
                    Engine::break_pool(&mut state, self.entry_missing(death), &mut settle);
                    None
                }
                None if self.config.self_healing && state.broken.is_none() => {
                    Some(Error::WorkerDied(death))
                }
                None => {
                    let reason = format!(
                        "a process in the process pool was terminated abruptly while the \
                         future was running or pending ({death})"
                    );
                    Engine::break_pool(&mut state, reason, &mut settle);
                    None
                }
                Some(Stop::Retired | Stop::ShutDown | Stop::Terminated) => None,
            };
            let pool_goes_on = state.broken.is_none()
                && matches!(
                    worker.stop,
                    None | Some(Stop::Timeout { .. } | Stop::Cancelled { .. })
                );
            if pool_goes_on {
                let mut again = VecDeque::new();
                if let Some(mut head) = in_flight.pop_front() {
                    head.pay_owed(&mut settle);
                    let positions: Vec<usize> = head.unanswered().collect();
                    let mut unanswered = positions.into_iter();
                    match failure {
                        // Each answer was sent as it ended, so the first
                        // unanswered item was executing: it alone failed
                        // (B3); the rest never started.
                        Some(error) if self.precise() => {
                            if let Some(p) = unanswered.next() {
                                settle.fail(&head.sink, head.call.items[p].index, error);
                            }
                            again.extend(head.requeue(unanswered));
                        }
                        // Answers of a chunk go out together: any of the
                        // unanswered items may have run, so all fail.
                        Some(error) => {
                            for p in unanswered {
                                settle.fail(&head.sink, head.call.items[p].index, error.clone());
                            }
                        }
                        // Killed by us for one item, already settled: the
                        // others are sent again.
                        None => again.extend(head.requeue(unanswered)),
                    }
                }
                // Calls sent ahead never started: sent again, in order.
                for running in &in_flight {
                    again.extend(running.requeue(running.unanswered()));
                }
                for queued in again.into_iter().rev() {
                    state.queue.push_front(queued);
                }
            } else {
                let error = match &state.broken {
                    Some(b) => Error::Broken(b.clone()),
                    None => Error::Broken(crate::error::BrokenExecutor::new(
                        crate::error::BrokenKind::ProcessPool,
                        format!("the worker was stopped while running this task ({death})"),
                    )),
                };
                for running in &mut in_flight {
                    running.fail_into(&mut settle, &error);
                }
            }
            if state.broken.is_none() {
                let more = self.dispatch(&mut state);
                settle.extend(more);
            }
            state.exiting += 1;
            settle
        };
        settle.run();
        self.exited();
    }

    /// A worker's end is fully settled.
    fn exited(&self) {
        self.state.lock().exiting -= 1;
        self.worker_gone.notify_all();
    }

    /// The frame that runs the initializer.
    fn init_frame(&self) -> Option<Frame> {
        let (function, arg) = self.config.initializer.as_ref()?;
        let message = ToWorker::Init {
            trampoline: function.trampoline,
            func: function.func,
        };
        let head = encode_head(&message, arg.len()).ok()?;
        Some(Frame {
            head,
            body: vec![arg.clone()],
        })
    }

    /// Starts one worker; called on the supervisor thread.
    fn spawn_worker(self: &Arc<Self>) {
        let spawned = match self.config.command {
            Some(command) => transport::spawn(command),
            None => Err(std::io::Error::other("this pool starts no workers")),
        };
        let mut state = self.state.lock();
        state.starting -= 1;
        let Spawned {
            child,
            pid,
            pidfd,
            input,
            output,
        } = match spawned {
            Ok(s) => s,
            Err(e) => {
                let mut settle = Settle::default();
                if state.workers.is_empty() && state.starting == 0 {
                    let reason = format!("could not start a worker process: {e}");
                    Engine::break_pool(&mut state, reason, &mut settle);
                }
                state.exiting += 1;
                drop(state);
                settle.run();
                self.exited();
                return;
            }
        };
        if let Some(frame) = self.init_frame() {
            input.push(frame);
        }
        let first_frames = Arc::clone(&input);
        let reader_busy = Arc::new(ReaderBusy::default());
        let id = state.next_worker;
        state.next_worker += 1;
        state.workers.push(Worker {
            id,
            pid,
            pidfd,
            input: Some(input),
            started: Instant::now(),
            handshaken: false,
            ready: false,
            in_flight: VecDeque::new(),
            tasks_done: 0,
            stop: None,
            kill_at: None,
            reader: Arc::clone(&reader_busy),
        });
        if state.broken.is_some() {
            if let Some(w) = state.workers.last_mut() {
                w.close_input();
                w.kill(Stop::Terminated, Signal::KILL);
            }
        }
        let mut settle = self.dispatch(&mut state);
        drop(state);
        // The initializer's frame, queued before any call.
        settle.sends.push(first_frames);
        let engine = Arc::clone(self);
        let engine_id = self.id();
        let reader = thread::Builder::new()
            .name(format!("process-pool-reader-{pid}"))
            .spawn(move || {
                ENGINE_THREAD.with(|e| e.set(engine_id));
                engine.read_worker(id, pid, child, output, reader_busy);
            });
        if let Err(e) = reader {
            // Without its reader the worker cannot be heard: end it.
            tracing::error!(%e, pid, "could not start a reader thread; killing the worker");
            let mut state = self.state.lock();
            if let Some(w) = state.workers.iter_mut().find(|w| w.id == id) {
                w.kill(Stop::Terminated, Signal::KILL);
            }
        }
        settle.run();
    }

    /// The reader thread of one worker: answers in, then the reaping.
    fn read_worker(
        self: Arc<Self>,
        id: u64,
        pid: u32,
        mut child: Child,
        mut output: Output,
        busy: Arc<ReaderBusy>,
    ) {
        // Caught up with the worker: every answer it sent is delivered, so
        // its deadlines may be judged again.
        let supervisor = self.supervisor.clone();
        output.on_wait(move || {
            if busy.done() {
                let _ = supervisor.send(Request::Wake);
            }
        });
        let mut input = BufReader::new(output);
        loop {
            match read_frame::<FromWorker>(&mut input) {
                Ok(Some((FromWorker::Ready { image_check, .. }, _))) => {
                    self.on_handshake(id, image_check);
                }
                Ok(Some((FromWorker::Initialized, _))) => self.on_initialized(id),
                Ok(Some((
                    FromWorker::Answers {
                        id: call_id,
                        first,
                        failures,
                        lens,
                    },
                    payload,
                ))) => {
                    let Some(outcomes) = split_answers(failures, &lens, payload) else {
                        break; // A frame that contradicts itself: treat as an end.
                    };
                    self.on_answers(id, pid, call_id, first as usize, outcomes);
                }
                Ok(Some((FromWorker::InitFailed(failure), _))) => {
                    self.on_init_failed(failure.message);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The output ended: the worker has exited or is dying. Reap it.
        drop(input);
        let status = child.wait();
        self.on_exit(id, transport::exit_cause(status));
    }

    /// Kills workers whose item ran past its deadline, that never became
    /// ready, or that outlived `SIGTERM`; returns the next deadline. Runs
    /// on the supervisor, which runs no user code: a timed-out item's
    /// failure is delivered by its worker's reader.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock();
        let mut next: Option<Instant> = None;
        let mut wake_at = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        let limit = self.config.task_timeout.unwrap_or_default();
        for worker in &mut state.workers {
            if let Some(at) = worker.kill_at {
                if at <= now {
                    worker.kill_at = None;
                    transport::signal(&worker.pidfd, Signal::KILL);
                } else {
                    wake_at(at);
                }
            }
            if worker.stop.is_some() {
                continue;
            }
            if !worker.handshaken {
                let limit = worker.started + STARTUP_TIMEOUT;
                if limit <= now {
                    worker.kill(Stop::NeverReady, Signal::KILL);
                    continue;
                }
                wake_at(limit);
            }
            let Some(head) = worker.in_flight.front_mut() else {
                continue;
            };
            let Some(deadline) = head.deadline else {
                continue;
            };
            if deadline > now {
                wake_at(deadline);
                continue;
            }
            if !worker.reader.may_judge() {
                continue; // Its reader wakes us when it is back.
            }
            // Settled now, like a cancel: if its answer is already in the
            // pipe, it is dropped, not delivered late.
            let position = head.answered;
            if position < head.call.items.len() && head.settled.is_none() {
                head.settled = Some(position);
                head.owed = Some(Error::TaskTimeout(limit));
                let call_id = head.call_id;
                worker.kill(Stop::Timeout { call_id }, Signal::KILL);
            }
        }
        next
    }
}

/// Each answered item's outcome, from one `Answers` frame.
fn split_answers(
    failures: Vec<Option<RemoteFailure>>,
    lens: &[u64],
    payload: Payload,
) -> Option<Vec<Result<Bytes, RemoteFailure>>> {
    if failures.len() != lens.len() {
        return None;
    }
    let mut payload = match payload {
        Ok(bytes) if lens.iter().sum::<u64>() == bytes.len() as u64 => Bytes::from(bytes),
        Ok(_) => return None,
        Err(total) => {
            // Too large to hold: every result in it is lost.
            let lost = || {
                RemoteFailure::new(
                    FailureKind::Serialize,
                    format!("the result ({total} bytes) does not fit in this process's memory"),
                )
            };
            return Some(
                failures
                    .into_iter()
                    .map(|f| Err(f.unwrap_or_else(lost)))
                    .collect(),
            );
        }
    };
    let outcomes = failures
        .into_iter()
        .zip(lens)
        .map(|(failure, &len)| {
            let part = payload.split_to(len as usize);
            match failure {
                Some(f) => Err(f),
                None => Ok(part),
            }
        })
        .collect();
    Some(outcomes)
}

/// The supervisor: starts workers and enforces deadlines, until the pool
/// is gone.
pub(super) fn supervise(engine: Weak<Engine>, requests: Receiver<Request>) {
    let mut next_deadline: Option<Instant> = None;
    loop {
        let request = match next_deadline {
            Some(deadline) => requests.recv_deadline(deadline),
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let Some(engine) = engine.upgrade() else {
            return;
        };
        match request {
            Ok(Request::Spawn) => engine.spawn_worker(),
            Ok(Request::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        next_deadline = engine.expire(Instant::now());
    }
}
