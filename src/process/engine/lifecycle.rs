//! The engine's side of a worker's life: starting it (on the supervisor
//! thread), hearing it (on its reader thread), enforcing deadlines, and
//! settling everything when it ends.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Write};
use std::process::Child;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rustix::process::Signal;

use super::{Engine, Pipe, Queued, Request, Requeued, STARTUP_TIMEOUT, Settle, Stop, Worker};
use crate::error::{BrokenExecutor, BrokenKind, Error, ExitCause, WorkerDeath};
use crate::process::call::{self, Sink};
use crate::process::transport::{self, Spawned};
use crate::process::wire::{
    FailureKind, FromWorker, RemoteFailure, ToWorker, read_frame, write_frame,
};

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

    fn on_done(
        &self,
        worker_id: u64,
        pid: u32,
        call_id: u64,
        outcome: Result<Vec<u8>, RemoteFailure>,
    ) {
        let (sink, settle) = {
            let mut state = self.state.lock();
            let Some(worker) = state.workers.iter_mut().find(|w| w.id == worker_id) else {
                return;
            };
            let sink = match worker.in_flight.front() {
                Some(r) if r.call_id == call_id => {
                    worker.in_flight.pop_front().and_then(|r| r.sink)
                }
                _ => None,
            };
            // The next call sent ahead starts executing now.
            let next_deadline = self
                .config
                .task_timeout
                .and_then(|t| Instant::now().checked_add(t));
            if let Some(next) = worker.in_flight.front_mut() {
                // Its bytes stay until it answers: should a cancel or a
                // timeout of the call before it kill the worker first, it
                // is sent again rather than failed.
                next.deadline = next_deadline;
                if next_deadline.is_some() {
                    let _ = self.supervisor.send(Request::Wake);
                }
            }
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
                worker.writer = None;
            }
            let settle = self.dispatch(&mut state);
            (sink, settle)
        };
        if let Some(sink) = sink {
            sink.deliver(pid, outcome);
        }
        settle.run();
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
            let entry_missing = || {
                format!(
                    "a worker process never started its loop ({death}); is the \
                     concurrent-futures worker entry linked? Call \
                     concurrent_futures::process::run_worker_if_child() at the top of main"
                )
            };
            // What the call executing at the end gets, if the pool goes on.
            let failure = match worker.stop {
                // We killed the worker for one call, already settled. Any
                // other call it held never answered: it is sent again.
                Some(Stop::Timeout { .. } | Stop::Cancelled { .. }) => None,
                // Exiting by itself before its loop started means the
                // worker ran something else: most likely `main`, because
                // the entry before `main` was not linked.
                Some(Stop::NeverReady) => {
                    Engine::break_pool(&mut state, entry_missing(), &mut settle);
                    None
                }
                None if !worker.handshaken && matches!(cause, ExitCause::Code(_)) => {
                    Engine::break_pool(&mut state, entry_missing(), &mut settle);
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
                // Only the executing call of a crashed worker fails (B3);
                // every other call goes back to the queue, in order.
                if let Some(error) = failure {
                    if let Some(sink) = in_flight.pop_front().and_then(|r| r.sink) {
                        settle.failed.push((sink, error));
                    }
                }
                for running in in_flight.into_iter().rev() {
                    match (running.call, running.sink) {
                        (Some(call), Some(sink)) => state
                            .queue
                            .push_front(Queued::Requeued(Requeued { call, sink })),
                        (None, Some(sink)) => {
                            settle.failed.push((sink, Error::WorkerDied(death)));
                        }
                        (_, None) => {}
                    }
                }
            } else {
                let error = match &state.broken {
                    Some(b) => Error::Broken(b.clone()),
                    None => Error::Broken(BrokenExecutor::new(
                        BrokenKind::ProcessPool,
                        format!("the worker was stopped while running this task ({death})"),
                    )),
                };
                for sink in in_flight.into_iter().filter_map(|r| r.sink) {
                    settle.failed.push((sink, error.clone()));
                }
            }
            if state.broken.is_none() {
                let more = self.dispatch(&mut state);
                settle.sends.extend(more.sends);
                settle.failed.extend(more.failed);
                settle.cancelled.extend(more.cancelled);
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

    /// Starts one worker; called on the supervisor thread.
    fn spawn_worker(self: &Arc<Self>) {
        let spawned = transport::spawn().and_then(|mut s| {
            if let Some(init) = &self.config.initializer {
                let message = ToWorker::Init {
                    trampoline: init.trampoline,
                    func: init.func,
                };
                write_frame(&mut s.to_child, &message, &init.payload)?;
                s.to_child.flush()?;
            }
            Ok(s)
        });
        let mut state = self.state.lock();
        state.starting -= 1;
        let Spawned {
            child,
            pid,
            pidfd,
            to_child,
            from_child,
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
        let id = state.next_worker;
        state.next_worker += 1;
        state.workers.push(Worker {
            id,
            pid,
            pidfd: Arc::new(pidfd),
            writer: Some(Arc::new(Pipe::new(to_child))),
            started: Instant::now(),
            handshaken: false,
            ready: false,
            in_flight: VecDeque::new(),
            tasks_done: 0,
            stop: None,
        });
        if state.broken.is_some() {
            if let Some(w) = state.workers.last_mut() {
                w.writer = None;
                w.kill(Stop::Terminated, Signal::KILL);
            }
        }
        let settle = self.dispatch(&mut state);
        drop(state);
        let engine = Arc::clone(self);
        let reader = thread::Builder::new()
            .name(format!("process-pool-reader-{pid}"))
            .spawn(move || engine.read_worker(id, pid, child, from_child));
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
    fn read_worker(self: Arc<Self>, id: u64, pid: u32, mut child: Child, from_child: File) {
        let mut input = BufReader::new(from_child);
        loop {
            match read_frame::<FromWorker>(&mut input) {
                Ok(Some((FromWorker::Ready { image_check, .. }, _))) => {
                    self.on_handshake(id, image_check);
                }
                Ok(Some((FromWorker::Initialized, _))) => self.on_initialized(id),
                Ok(Some((
                    FromWorker::Done {
                        id: call_id,
                        failure,
                    },
                    payload,
                ))) => {
                    let outcome = match (failure, payload) {
                        (Some(f), _) => Err(f),
                        (None, Ok(bytes)) => Ok(bytes),
                        (None, Err(len)) => Err(RemoteFailure::new(
                            FailureKind::EncodeResult,
                            format!(
                                "the result ({len} bytes) does not fit in this process's memory"
                            ),
                        )),
                    };
                    self.on_done(id, pid, call_id, outcome);
                }
                Ok(Some((FromWorker::InitFailed(failure), _))) => {
                    self.on_init_failed(failure.message);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The pipe ended: the worker is exiting or dead. Make sure, reap.
        drop(input);
        let status = child.wait();
        self.on_exit(id, transport::exit_cause(status));
    }

    /// Kills workers whose call ran past its deadline, or that never
    /// became ready; returns the next deadline to wake for.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut timed_out = Vec::new();
        let next = self.expire_locked(now, &mut timed_out);
        for sink in timed_out {
            sink.fail(Error::Timeout);
        }
        next
    }

    fn expire_locked(&self, now: Instant, timed_out: &mut Vec<Box<dyn Sink>>) -> Option<Instant> {
        let mut state = self.state.lock();
        let mut next: Option<Instant> = None;
        for worker in &mut state.workers {
            if worker.stop.is_some() {
                continue;
            }
            if !worker.handshaken {
                let limit = worker.started + STARTUP_TIMEOUT;
                if limit <= now {
                    worker.kill(Stop::NeverReady, Signal::KILL);
                    continue;
                }
                next = Some(next.map_or(limit, |n| n.min(limit)));
            }
            if let Some(deadline) = worker.in_flight.front().and_then(|r| r.deadline) {
                if deadline <= now {
                    // Settled now, like a cancel: if its answer is already
                    // in the pipe, it is dropped, not delivered late.
                    let head = &mut worker.in_flight[0];
                    timed_out.extend(head.sink.take());
                    let call_id = head.call_id;
                    worker.kill(Stop::Timeout { call_id }, Signal::KILL);
                } else {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                }
            }
        }
        next
    }
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
