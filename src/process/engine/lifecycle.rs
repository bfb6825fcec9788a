//! The engine's side of a worker's life: starting it (on the supervisor
//! thread), hearing it (on the transport's threads), enforcing deadlines,
//! and settling everything when it ends.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use smallvec::SmallVec;

use super::batch::{AnswerBatch, Indices};
use super::table::{ReaderBusy, Settle, Stop, Worker};
use super::{ENGINE_THREAD, Engine, Request, STARTUP_TIMEOUT, Sink};
use crate::error::{
    BrokenExecutor, BrokenKind, Error, ExitCause, TaskError, TaskErrorKind, WorkerDeath, WorkerId,
};
use crate::process::transport::{AnswerView, Answers, FromWorker, LinkEvents, StopHow, ToWorker};

/// What one worker's events reach: the engine, with the worker's number.
struct Events {
    engine: Arc<Engine>,
    worker: u64,
    /// The worker's [`ReaderBusy`], shared with its table entry.
    busy: Arc<ReaderBusy>,
}

impl Events {
    /// Runs `f` with the calling thread marked as the engine's: what a
    /// callback does there must not wait for the workers this thread
    /// hears. The mark is put back after, should the thread serve others.
    fn as_engine_thread(&self, f: impl FnOnce()) {
        let id = self.engine.id();
        let before = ENGINE_THREAD.try_with(|e| e.replace(id)).ok();
        f();
        if let Some(before) = before {
            let _ = ENGINE_THREAD.try_with(|e| e.set(before));
        }
    }
}

impl LinkEvents for Events {
    fn received(&self, message: FromWorker) {
        let engine = &self.engine;
        self.as_engine_thread(|| match message {
            FromWorker::Ready { proof } => engine.on_handshake(self.worker, &proof),
            FromWorker::Initialized => engine.on_initialized(self.worker),
            FromWorker::InitFailed { failure } => {
                let message = engine.config.codec.failure_text(&failure);
                engine.on_init_failed(self.worker, message);
            }
            FromWorker::Answers { id, first, answers } => {
                let answered = Answered {
                    call_id: id,
                    first: first as usize,
                    answers,
                };
                engine.on_answers(self.worker, [answered]);
            }
        });
    }

    fn received_all(&self, messages: Vec<FromWorker>) {
        // Answers, the common case, go as one batch; anything else (a
        // handshake) one by one, in order.
        if !messages
            .iter()
            .all(|m| matches!(m, FromWorker::Answers { .. }))
        {
            for message in messages {
                self.received(message);
            }
            return;
        }
        let batch = messages.into_iter().filter_map(|m| match m {
            FromWorker::Answers { id, first, answers } => Some(Answered {
                call_id: id,
                first: first as usize,
                answers,
            }),
            _ => None,
        });
        self.as_engine_thread(|| self.engine.on_answers(self.worker, batch));
    }

    fn caught_up(&self) {
        if self.busy.done() {
            let _ = self.engine.supervisor.send(Request::Wake);
        }
    }

    fn needs_exact_catch_up(&self) -> bool {
        self.busy.is_delivering()
    }

    fn ended(&self, cause: ExitCause) {
        self.as_engine_thread(|| self.engine.on_exit(self.worker, cause));
    }
}

/// One answers message: items `first..` of call `call_id`.
struct Answered {
    call_id: u64,
    first: usize,
    answers: Answers,
}

/// What a call's sink gets from one answers message, and from which worker:
/// the answers as they were received, each for the item whose index is
/// beside it. Kept apart rather than paired, so that a chunk's answers
/// move to the sink without being copied into a list of their own.
struct Deliveries {
    sink: Arc<dyn Sink>,
    worker: WorkerId,
    answers: Answers,
    indices: Indices,
    /// One of them judged timed out (or cancelled) before its answer was
    /// read: its place among `answers`, and what it is owed instead, if
    /// not yet paid.
    settled: Option<(usize, Option<Error>)>,
}

impl Deliveries {
    /// Gives the sink its answers: all at once when each is an answer
    /// (the common case), else one by one, in order.
    fn deliver(self) {
        let Deliveries {
            sink,
            worker,
            answers,
            indices,
            settled,
        } = self;
        if settled.is_none() && answers.all_delivered() {
            sink.answer_all(&worker, AnswerBatch::new(&answers, &indices));
            return;
        }
        let mut settled = settled;
        for (place, (answer, index)) in answers.iter().zip(indices.iter()).enumerate() {
            if let Some((at, owed)) = &mut settled
                && *at == place
            {
                if let Some(error) = owed.take() {
                    sink.fail(index, error);
                }
                continue;
            }
            match answer {
                AnswerView::Delivered(delivered) => {
                    sink.answer(index, &worker, delivered.to_bytes());
                }
                AnswerView::Lost(why) => sink.fail(
                    index,
                    Error::Failed(TaskError::codec(TaskErrorKind::Deserialize, why.to_owned())),
                ),
            }
        }
    }
}

impl Engine {
    fn on_handshake(&self, worker_id: u64, proof: &[u8]) {
        let settle = {
            let mut state = self.state.lock();
            let mut settle = Settle::default();
            if let Err(reason) = self.config.codec.check_worker(proof) {
                self.break_pool(&mut state, reason, &mut settle);
            } else if let Some(w) = state.workers.iter_mut().find(|w| w.id == worker_id) {
                w.handshaken = true;
                if self.config.options.initializer.is_none() {
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

    /// The pool breaks; the worker that failed exits by itself (what it
    /// still has to write, such as the log records a front end's
    /// initializer sent to a queue, gets out), and is killed only if it
    /// lingers.
    fn on_init_failed(&self, worker_id: u64, message: String) {
        let settle = {
            let mut state = self.state.lock();
            let mut settle = Settle::default();
            let reason = format!(
                "a process initializer failed, the process pool is not usable anymore: {message}"
            );
            self.break_pool_sparing(&mut state, reason, Some(worker_id), &mut settle);
            settle
        };
        settle.run();
    }

    /// Answers from one worker, in order: each item `first..` of its call
    /// `id`. A batch is what the reader found already received: one lock
    /// and one write for all of it, so a worker that answers faster than
    /// it is heard costs less per answer, not more.
    fn on_answers(&self, worker_id: u64, batch: impl IntoIterator<Item = Answered>) {
        let (deliveries, mut settle) = {
            let mut state = self.state.lock();
            let Some(worker) = state.workers.iter_mut().find(|w| w.id == worker_id) else {
                return;
            };
            let batch = batch.into_iter();
            // At most one delivery per message: room for all at once
            // rather than growing one by one.
            let room = batch.size_hint().1.unwrap_or(1);
            let mut deliveries: SmallVec<[Deliveries; 1]> = SmallVec::with_capacity(room);
            for answered in batch {
                if let Some(delivery) = self.take_answers(worker, answered) {
                    deliveries.push(delivery);
                }
            }
            if deliveries.is_empty() {
                return;
            }
            // Only deadlines need to know (see `ReaderBusy`); without them
            // the reader's "caught up" may be approximate, and cheaper.
            if self.config.timeout.is_some() {
                worker.reader.delivering.store(true, SeqCst);
            }
            let settle = self.dispatch(&mut state);
            (deliveries, settle)
        };
        // Messages first: the worker gets its next call before user code.
        settle.run_sends();
        for delivery in deliveries {
            delivery.deliver();
        }
        settle.run();
    }

    /// Records the answers of `answered` for `worker`'s executing call;
    /// what its sink gets, or `None` for answers to a call the engine
    /// already settled (a terminate, a broken pool).
    fn take_answers(&self, worker: &mut Worker, answered: Answered) -> Option<Deliveries> {
        let Answered {
            call_id,
            first,
            mut answers,
        } = answered;
        let head = worker.in_flight.front_mut()?;
        // Answers come in order; anything else is an answer to a call the
        // engine already settled.
        if head.call_id != call_id || head.answered != first {
            return None;
        }
        let sink = Arc::clone(&head.sink);
        // Answers past the call's items are a worker's error: dropped.
        answers.truncate(head.call.items.len().saturating_sub(first));
        let indices = Indices::of(&head.call.items[first..first + answers.len()]);
        let settled = head
            .settled
            .filter(|at| (first..first + answers.len()).contains(at))
            .map(|at| (at - first, head.owed.take()));
        head.answered += answers.len();
        if head.answered == head.call.items.len() {
            worker.in_flight.pop_front();
            worker.tasks_done += 1;
            if self
                .config
                .options
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
        // The next item (of this call, or of the call sent ahead) starts
        // executing now. A call sent ahead keeps its bytes until it
        // answers: should a cancel or a timeout of the one before it kill
        // the worker first, it is sent again rather than failed.
        if let Some(limit) = self.config.timeout
            && let Some(next) = worker.in_flight.front_mut()
        {
            next.deadline = Instant::now().checked_add(limit);
            if next.deadline.is_some() {
                let _ = self.supervisor.send(Request::Wake);
            }
        }
        Some(Deliveries {
            sink,
            worker: worker.name(),
            answers,
            indices,
            settled,
        })
    }

    /// The advice when a worker ended before its loop started.
    fn entry_missing(&self, death: &WorkerDeath) -> String {
        let advice = &self.config.options.startup_advice;
        if advice.is_empty() {
            format!("a worker never started its loop ({death})")
        } else {
            format!("a worker never started its loop ({death}): {advice}")
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
            let death = WorkerDeath::of(worker.name(), cause);
            let mut in_flight = std::mem::take(&mut worker.in_flight);
            let broken_before = self.life.is_broken();
            // What the executing item gets, if the pool goes on.
            let failure = match worker.stop {
                // We killed the worker for one item, already settled.
                Some(Stop::Timeout { .. } | Stop::Cancelled { .. }) => None,
                // Exiting by itself before its loop started means the
                // worker ran something else: most likely `main`, because
                // the entry before `main` was not linked.
                Some(Stop::NeverReady) => {
                    self.break_pool(&mut state, self.entry_missing(&death), &mut settle);
                    None
                }
                None if !worker.handshaken && matches!(cause, ExitCause::Code(_)) => {
                    self.break_pool(&mut state, self.entry_missing(&death), &mut settle);
                    None
                }
                None if (self.config.options.self_healing || self.config.options.retries > 0)
                    && !broken_before =>
                {
                    Some(Error::WorkerDied(death.clone()))
                }
                None => {
                    let reason = format!(
                        "a process in the process pool was terminated abruptly while the \
                         future was running or pending ({death})"
                    );
                    self.break_pool(&mut state, reason, &mut settle);
                    None
                }
                Some(Stop::Retired | Stop::ShutDown | Stop::Terminated) => None,
            };
            let pool_goes_on = !self.life.is_broken()
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
                    let retry = head.attempts < self.config.options.retries;
                    match failure {
                        // At-least-once: what may have run runs again.
                        Some(_) if retry && self.precise() => {
                            if let Some(p) = unanswered.next() {
                                again.extend(head.rerun(std::iter::once(p)));
                            }
                            again.extend(head.requeue(unanswered));
                        }
                        Some(_) if retry => again.extend(head.rerun(unanswered)),
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
                let error = match self.life.broken() {
                    Some(b) => Error::Broken(b),
                    None => Error::Broken(BrokenExecutor::new(
                        BrokenKind::ProcessPool,
                        format!("the worker was stopped while running this task ({death})"),
                    )),
                };
                for running in &mut in_flight {
                    running.fail_into(&mut settle, &error);
                }
            }
            if !self.life.is_broken() {
                let more = self.dispatch(&mut state);
                settle.extend(more);
            }
            settle
        };
        settle.run();
        // Counted out only now, so that `shutdown(wait)` returns once every
        // future this end failed is done.
        self.life.worker_gone();
    }

    /// The message that runs the initializer.
    fn init_message(&self) -> Option<ToWorker> {
        let (function, arg) = self.config.options.initializer.clone()?;
        Some(ToWorker::Init { function, arg })
    }

    /// Starts one worker; called on the supervisor thread.
    fn spawn_worker(self: &Arc<Self>) {
        let busy = Arc::new(ReaderBusy::default());
        let id = {
            let mut state = self.state.lock();
            state.starting -= 1;
            let id = state.next_worker;
            state.next_worker += 1;
            // In the table before it starts, so that nothing it says is
            // missed; it takes no call until its link is there.
            state.workers.push(Worker::starting(id, Arc::clone(&busy)));
            id
        };
        let events = Arc::new(Events {
            engine: Arc::clone(self),
            worker: id,
            busy,
        });
        let started = self.config.transport.start(events);
        let mut state = self.state.lock();
        let position = state.workers.iter().position(|w| w.id == id);
        let link = match started {
            Ok(link) => link,
            Err(e) => {
                let mut settle = Settle::default();
                if let Some(p) = position {
                    state.workers.swap_remove(p);
                }
                if state.workers.is_empty() && state.starting == 0 {
                    let reason = format!("could not start a worker process: {e}");
                    self.break_pool(&mut state, reason, &mut settle);
                }
                drop(state);
                self.started.notify_all();
                settle.run();
                self.life.worker_gone();
                return;
            }
        };
        // It may have ended already (its end then removed it).
        let Some(position) = position.filter(|&p| state.workers[p].id == id) else {
            drop(state);
            self.started.notify_all();
            return;
        };
        if let Some(init) = self.init_message() {
            link.push(init);
        }
        let worker = &mut state.workers[position];
        worker.link = Some(Arc::clone(&link));
        if self.life.is_broken() {
            worker.close_input();
            // A worker spared to exit by itself keeps its grace.
            if worker.kill_at.is_none() {
                worker.stop(Stop::Terminated, StopHow::Kill);
            }
        }
        let mut settle = self.dispatch(&mut state);
        drop(state);
        self.started.notify_all();
        // The initializer's message, queued before any call.
        settle.flush_later(&link);
        settle.run();
    }

    /// Kills workers whose item ran past its deadline, that never became
    /// ready, or that outlived a graceful stop; returns the next deadline.
    /// Runs on the supervisor, which runs no user code: a timed-out item's
    /// failure is delivered by its worker's events thread.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut state = self.state.lock();
        let mut next: Option<Instant> = None;
        let mut wake_at = |at: Instant| next = Some(next.map_or(at, |n: Instant| n.min(at)));
        let limit = self.config.timeout.unwrap_or_default();
        for worker in &mut state.workers {
            if let Some(at) = worker.kill_at {
                if at <= now {
                    worker.kill_at = None;
                    if let Some(link) = &worker.link {
                        link.stop(StopHow::Kill);
                    }
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
                    worker.stop(Stop::NeverReady, StopHow::Kill);
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
                continue; // Its events thread wakes us once caught up.
            }
            // Settled now, like a cancel: if its answer is already on its
            // way, it is dropped, not delivered late.
            let position = head.answered;
            if position < head.call.items.len() && head.settled.is_none() {
                head.settled = Some(position);
                head.owed = Some(Error::TaskTimeout(limit));
                let call_id = head.call_id;
                worker.stop(Stop::Timeout { call_id }, StopHow::Kill);
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
            Ok(Request::Dispatch) => engine.redispatch(),
            Ok(Request::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        next_deadline = engine.expire(Instant::now());
    }
}
