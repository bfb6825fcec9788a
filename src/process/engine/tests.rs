//! The engine's policy, alone: an in-memory transport whose workers the
//! test plays by hand (it reads their calls, answers, ends them), and a
//! codec and sinks that keep bytes as they are. No processes, no pipes, no
//! sleeping: every wait is bounded and waits for an event the test causes.
//! Only the time-limit tests depend on time passing, which is what they
//! are about.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::{AnswerBatch, Call, Codec, Engine, EngineOptions, Item, Sink};
use crate::error::{Error, ExitCause, WorkerId};
use crate::executor::Shutdown;
use crate::process::transport::{
    Answer, FromWorker, Link, LinkEvents, SendAhead, StopHow, Stops, ToWorker, Transport,
};

/// Upper bound for anything that should happen promptly.
const LIMIT: Duration = Duration::from_secs(10);

/// Waits on `cv` until `done` holds, failing the test after [`LIMIT`].
fn wait_for<T>(lock: &Mutex<T>, cv: &Condvar, what: &str, mut done: impl FnMut(&mut T) -> bool) {
    let deadline = Instant::now() + LIMIT;
    let mut guard = lock.lock();
    while !done(&mut guard) {
        assert!(
            !cv.wait_until(&mut guard, deadline).timed_out(),
            "{what}: not within {LIMIT:?}"
        );
    }
}

// ----------------------------------------------------- the transport ----

#[derive(Default)]
struct Memory {
    workers: Mutex<Vec<Arc<Fake>>>,
    started: Condvar,
    /// While true, starts wait: the engine sees workers still starting.
    hold: Mutex<bool>,
    released: Condvar,
}

/// One worker, played by the test.
struct Fake {
    id: WorkerId,
    events: Arc<dyn LinkEvents>,
    state: Mutex<FakeState>,
    changed: Condvar,
}

#[derive(Default)]
struct FakeState {
    /// Pushed, not yet flushed.
    pending: Vec<ToWorker>,
    /// What the worker has received, in order.
    inbox: VecDeque<ToWorker>,
    closed: bool,
    stops: Vec<StopHow>,
    ended: bool,
    /// Times the engine flushed this worker's input.
    flushes: usize,
}

impl Transport for Memory {
    fn start(&self, events: Arc<dyn LinkEvents>) -> std::io::Result<Arc<dyn Link>> {
        wait_for(
            &self.hold,
            &self.released,
            "a held start's release",
            |held| !*held,
        );
        let mut workers = self.workers.lock();
        let fake = Arc::new(Fake {
            id: WorkerId::named(format!("fake {}", workers.len())),
            events,
            state: Mutex::default(),
            changed: Condvar::new(),
        });
        workers.push(Arc::clone(&fake));
        self.started.notify_all();
        Ok(Arc::new(FakeLink(fake)))
    }

    fn send_ahead(&self) -> SendAhead {
        SendAhead {
            calls: 1,
            max_bytes: 1024,
        }
    }

    fn stops(&self) -> Stops {
        Stops {
            terminate: true,
            kill: true,
        }
    }

    fn name(&self) -> &str {
        "memory"
    }
}

struct FakeLink(Arc<Fake>);

impl Link for FakeLink {
    fn worker(&self) -> &WorkerId {
        &self.0.id
    }

    fn push(&self, message: ToWorker) {
        self.0.state.lock().pending.push(message);
    }

    fn flush(&self) {
        let mut state = self.0.state.lock();
        state.flushes += 1;
        let sent: Vec<ToWorker> = state.pending.drain(..).collect();
        if !state.closed {
            state.inbox.extend(sent);
        }
        self.0.changed.notify_all();
    }

    fn close(&self) {
        self.0.state.lock().closed = true;
        self.0.changed.notify_all();
    }

    fn stop(&self, how: StopHow) {
        self.0.state.lock().stops.push(how);
        self.0.changed.notify_all();
    }
}

impl Memory {
    /// Worker `n` (counting from 0), once the engine has started it.
    fn worker(&self, n: usize) -> Arc<Fake> {
        wait_for(&self.workers, &self.started, "a worker's start", |w| {
            w.len() > n
        });
        Arc::clone(&self.workers.lock()[n])
    }

    fn started(&self) -> usize {
        self.workers.lock().len()
    }

    /// Makes starts wait until [`release`](Self::release).
    fn hold_starts(&self) {
        *self.hold.lock() = true;
    }

    fn release(&self) {
        *self.hold.lock() = false;
        self.released.notify_all();
    }
}

/// A call as the worker got it: its id and each item's bytes.
struct Got {
    id: u64,
    items: Vec<Bytes>,
    report_each: bool,
}

impl Fake {
    fn ready(&self) {
        self.events.received(FromWorker::Ready {
            proof: Bytes::from_static(b"ok"),
        });
    }

    /// The next call the worker received.
    fn call(&self) -> Got {
        let mut got = None;
        wait_for(&self.state, &self.changed, "a call", |s| {
            while let Some(message) = s.inbox.pop_front() {
                if let ToWorker::Call {
                    id,
                    lens,
                    parts,
                    report_each,
                    ..
                } = message
                {
                    let mut all: Vec<u8> = parts.iter().flat_map(|p| p.to_vec()).collect();
                    let items = lens
                        .iter()
                        .map(|&n| Bytes::from(all.drain(..n as usize).collect::<Vec<u8>>()))
                        .collect();
                    got = Some(Got {
                        id,
                        items,
                        report_each,
                    });
                    return true;
                }
            }
            false
        });
        got.expect("a call")
    }

    /// How many calls are waiting in its input.
    fn waiting(&self) -> usize {
        let state = self.state.lock();
        state
            .inbox
            .iter()
            .filter(|m| matches!(m, ToWorker::Call { .. }))
            .count()
    }

    /// Answers every item of `got` with its argument doubled as text, and
    /// reports that nothing more waits unread, as a transport does when it
    /// goes back to waiting.
    fn answer(&self, got: &Got) {
        self.answer_unread(got);
        self.events.caught_up();
    }

    /// [`answer`](Self::answer), as if more were still waiting unread.
    fn answer_unread(&self, got: &Got) {
        let answers = got
            .items
            .iter()
            .map(|b| Answer::Value(doubled(b)))
            .collect();
        self.events.received(FromWorker::Answers {
            id: got.id,
            first: 0,
            answers,
        });
    }

    fn answer_items(&self, id: u64, first: u32, answers: Vec<Answer>) {
        self.events.received(FromWorker::Answers {
            id,
            first,
            answers: answers.into_iter().collect(),
        });
        self.events.caught_up();
    }

    fn end(&self, cause: ExitCause) {
        let first = !std::mem::replace(&mut self.state.lock().ended, true);
        if first {
            self.events.ended(cause);
        }
    }

    /// Waits until the engine has stopped this worker `how`.
    fn stopped(&self, how: StopHow) {
        wait_for(&self.state, &self.changed, "a stop", |s| {
            s.stops.contains(&how)
        });
    }

    /// Waits until the engine has closed this worker's input.
    fn closed(&self) {
        wait_for(&self.state, &self.changed, "a close", |s| s.closed);
    }
}

fn doubled(arg: &[u8]) -> Bytes {
    let n: u64 = std::str::from_utf8(arg).unwrap().parse().unwrap();
    Bytes::from((n * 2).to_string())
}

// -------------------------------------------------- codec and sinks ----

struct Plain;

impl Codec for Plain {
    fn check_worker(&self, proof: &[u8]) -> Result<(), String> {
        if proof == b"ok" {
            Ok(())
        } else {
            Err("a stranger".into())
        }
    }

    fn failure_text(&self, failure: &[u8]) -> String {
        String::from_utf8_lossy(failure).into_owned()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Value(String),
    Failure(String),
    Timeout,
    Cancelled,
    Died,
    Broken,
    Other(String),
}

/// The futures of one call, as outcomes.
struct Record {
    key: usize,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    settled: Condvar,
    /// Times an item was settled after it already was (must stay 0).
    twice: Mutex<usize>,
    /// How many answers each `answer_all` brought, in order.
    batches: Mutex<Vec<usize>>,
}

impl Record {
    fn new(key: usize, items: usize) -> Arc<Record> {
        Arc::new(Record {
            key,
            outcomes: Mutex::new(vec![None; items]),
            settled: Condvar::new(),
            twice: Mutex::new(0),
            batches: Mutex::new(Vec::new()),
        })
    }

    fn set(&self, index: usize, outcome: Outcome) {
        let mut outcomes = self.outcomes.lock();
        if outcomes[index].is_some() {
            *self.twice.lock() += 1;
        } else {
            outcomes[index] = Some(outcome);
        }
        self.settled.notify_all();
    }

    /// Item `index`'s outcome, waiting for it.
    fn outcome(&self, index: usize) -> Outcome {
        wait_for(&self.outcomes, &self.settled, "an outcome", |o| {
            o[index].is_some()
        });
        let outcome = self.outcomes.lock()[index].clone().unwrap();
        assert_eq!(*self.twice.lock(), 0, "an item was settled twice");
        outcome
    }

    fn pending(&self, index: usize) -> bool {
        self.outcomes.lock()[index].is_none()
    }
}

impl Sink for Record {
    fn start(&self) -> bool {
        true
    }

    fn answer(&self, index: usize, _: &WorkerId, outcome: Result<Bytes, Bytes>) {
        let text = |b: Bytes| String::from_utf8_lossy(&b).into_owned();
        self.set(
            index,
            match outcome {
                Ok(v) => Outcome::Value(text(v)),
                Err(f) => Outcome::Failure(text(f)),
            },
        );
    }

    fn answer_all(&self, worker: &WorkerId, answers: AnswerBatch<'_>) {
        let mut count = 0;
        for (index, delivered) in answers {
            self.answer(index, worker, delivered.to_bytes());
            count += 1;
        }
        self.batches.lock().push(count);
    }

    fn fail(&self, index: usize, error: Error) {
        let outcome = match error {
            Error::TaskTimeout(_) => Outcome::Timeout,
            Error::Cancelled => Outcome::Cancelled,
            Error::WorkerDied(_) => Outcome::Died,
            Error::Broken(_) => Outcome::Broken,
            other => Outcome::Other(other.to_string()),
        };
        self.set(index, outcome);
    }

    fn cancel(&self, index: usize) {
        self.set(index, Outcome::Cancelled);
    }

    fn position(&self, key: usize) -> Option<usize> {
        (key == self.key).then_some(0)
    }
}

/// A call whose items are the given numbers as text.
fn call_of(numbers: &[u64]) -> Call {
    let mut buffer = Vec::new();
    let mut items = Vec::new();
    for (index, n) in numbers.iter().enumerate() {
        let start = buffer.len();
        buffer.extend_from_slice(n.to_string().as_bytes());
        items.push(Item {
            index,
            start,
            end: buffer.len(),
        });
    }
    Call::from_buffer(Bytes::from_static(b"double"), Bytes::from(buffer), items).unwrap()
}

fn engine(options: EngineOptions) -> (Arc<Engine>, Arc<Memory>) {
    let memory = Arc::new(Memory::default());
    let engine = Engine::start_on(
        options.join_at_exit(false),
        Arc::clone(&memory) as Arc<dyn Transport>,
        Arc::new(Plain),
    )
    .unwrap();
    (engine, memory)
}

fn submit(engine: &Engine, key: usize, numbers: &[u64]) -> Arc<Record> {
    let record = Record::new(key, numbers.len());
    engine
        .submit(call_of(numbers), Arc::clone(&record) as Arc<dyn Sink>)
        .unwrap();
    record
}

fn value(n: u64) -> Outcome {
    Outcome::Value(n.to_string())
}

// -------------------------------------------------------------- tests ----

#[test]
fn a_call_goes_to_a_started_worker_and_its_answer_to_its_sink() {
    // SPEC P1
    let (engine, memory) = engine(EngineOptions::new(1));
    let record = submit(&engine, 1, &[21]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    assert_eq!(got.items, [Bytes::from_static(b"21")]);
    assert!(
        !got.report_each,
        "without a time limit answers come together"
    );
    worker.answer(&got);
    assert_eq!(record.outcome(0), value(42));
    assert_eq!(memory.started(), 1);
}

#[test]
fn a_stranger_breaks_the_pool_at_its_handshake() {
    // SPEC P3: the codec refuses the worker's proof.
    let (engine, memory) = engine(EngineOptions::new(1));
    let record = submit(&engine, 1, &[1]);
    memory.worker(0).events.received(FromWorker::Ready {
        proof: Bytes::from_static(b"who?"),
    });
    assert_eq!(record.outcome(0), Outcome::Broken);
    assert!(engine.is_broken());
    memory.worker(0).stopped(StopHow::Kill);
}

#[test]
fn a_call_is_sent_ahead_only_when_every_worker_is_busy_and_again_if_its_worker_dies() {
    // SPEC P6, B3: with self-healing, a death fails the executing call and
    // the one sent ahead goes to the replacement.
    let (engine, memory) = engine(EngineOptions::new(1).self_healing(true));
    let first = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let _executing = worker.call();
    let ahead = submit(&engine, 2, &[2]);
    let queued = submit(&engine, 3, &[3]);
    assert_eq!(worker.waiting(), 1, "one call is sent ahead, not two");
    worker.end(ExitCause::Signal(9));
    assert_eq!(first.outcome(0), Outcome::Died);
    let replacement = memory.worker(1);
    replacement.ready();
    let again = replacement.call();
    assert_eq!(again.items, [Bytes::from_static(b"2")]);
    replacement.answer(&again);
    assert_eq!(ahead.outcome(0), value(4));
    let last = replacement.call();
    replacement.answer(&last);
    assert_eq!(queued.outcome(0), value(6));
}

#[test]
fn a_death_breaks_the_pool_by_default_and_fails_everything() {
    // SPEC P6
    let (engine, memory) = engine(EngineOptions::new(1));
    let running = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let _got = worker.call();
    let queued = submit(&engine, 2, &[2, 3]);
    worker.end(ExitCause::Signal(11));
    assert_eq!(running.outcome(0), Outcome::Broken);
    assert_eq!(queued.outcome(0), Outcome::Broken);
    assert_eq!(queued.outcome(1), Outcome::Broken);
    let refused = engine
        .submit(call_of(&[4]), Record::new(3, 1) as Arc<dyn Sink>)
        .unwrap_err();
    assert!(matches!(refused.error, Error::Broken(_)));
}

/// A sink that notes, as its future fails, whether a worker had been
/// stopped by then.
struct SeesStops {
    record: Arc<Record>,
    watched: Arc<Fake>,
    stopped_at_failure: Mutex<Option<bool>>,
}

impl Sink for SeesStops {
    fn start(&self) -> bool {
        true
    }

    fn answer(&self, index: usize, worker: &WorkerId, outcome: Result<Bytes, Bytes>) {
        self.record.answer(index, worker, outcome);
    }

    fn fail(&self, index: usize, error: Error) {
        let stopped = !self.watched.state.lock().stops.is_empty();
        *self.stopped_at_failure.lock() = Some(stopped);
        self.record.fail(index, error);
    }

    fn cancel(&self, index: usize) {
        self.record.cancel(index);
    }

    fn position(&self, key: usize) -> Option<usize> {
        self.record.position(key)
    }
}

#[test]
fn a_broken_pool_fails_its_futures_before_it_kills_the_other_workers() {
    // SPEC P6, in CPython's order (`terminate_broken`): the futures fail
    // first, so that their waiters do not wait behind the other workers'
    // deaths; then those workers are killed.
    let (engine, memory) = engine(EngineOptions::new(2));
    let first = submit(&engine, 1, &[1]);
    let victim = memory.worker(0);
    victim.ready();
    let _ = victim.call();
    let second = Record::new(2, 1);
    engine
        .submit(call_of(&[2]), Arc::clone(&second) as Arc<dyn Sink>)
        .unwrap();
    let other = memory.worker(1);
    other.ready();
    let _ = other.call();
    let sees = Arc::new(SeesStops {
        record: Record::new(3, 1),
        watched: Arc::clone(&other),
        stopped_at_failure: Mutex::new(None),
    });
    // Sent ahead to one of them, or queued: it fails either way.
    engine
        .submit(call_of(&[3]), Arc::clone(&sees) as Arc<dyn Sink>)
        .unwrap();
    victim.end(ExitCause::Signal(9));
    assert_eq!(first.outcome(0), Outcome::Broken);
    assert_eq!(second.outcome(0), Outcome::Broken);
    assert_eq!(sees.record.outcome(0), Outcome::Broken);
    assert_eq!(*sees.stopped_at_failure.lock(), Some(false));
    other.stopped(StopHow::Kill);
}

#[test]
fn a_worker_that_exits_before_its_handshake_breaks_the_pool_with_the_advice() {
    // SPEC P3
    let (engine, memory) = engine(EngineOptions::new(1).startup_advice("link the entry"));
    let record = submit(&engine, 1, &[1]);
    memory.worker(0).end(ExitCause::Code(0));
    assert_eq!(record.outcome(0), Outcome::Broken);
    let refused = engine
        .submit(call_of(&[1]), Record::new(2, 1) as Arc<dyn Sink>)
        .unwrap_err();
    assert!(
        refused.error.to_string().contains("link the entry"),
        "{}",
        refused.error
    );
}

#[test]
fn an_initializer_that_fails_breaks_the_pool_with_its_message() {
    // SPEC P5
    let options = EngineOptions::new(1).initializer(Bytes::from_static(b"init"), Bytes::new());
    let (engine, memory) = engine(options);
    let record = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    worker.events.received(FromWorker::InitFailed {
        failure: Bytes::from_static(b"no database"),
    });
    assert_eq!(record.outcome(0), Outcome::Broken);
    let refused = engine
        .submit(call_of(&[1]), Record::new(2, 1) as Arc<dyn Sink>)
        .unwrap_err();
    assert!(refused.error.to_string().contains("no database"));
}

#[test]
fn an_item_over_its_limit_fails_alone_and_the_rest_of_its_chunk_moves_on() {
    // SPEC B1: per item, also inside a chunk.
    let (engine, memory) = engine(EngineOptions::new(1).task_timeout(Duration::from_millis(50)));
    let record = submit(&engine, 1, &[1, 2, 3]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    assert!(got.report_each, "a time limit needs each item's end");
    worker.answer_items(got.id, 0, vec![Answer::Value(doubled(&got.items[0]))]);
    assert_eq!(record.outcome(0), value(2));
    // Item 1 never answers: its limit kills the worker.
    worker.stopped(StopHow::Kill);
    worker.end(ExitCause::Signal(9));
    assert_eq!(record.outcome(1), Outcome::Timeout);
    let replacement = memory.worker(1);
    replacement.ready();
    let rest = replacement.call();
    assert_eq!(rest.items, [Bytes::from_static(b"3")]);
    replacement.answer(&rest);
    assert_eq!(record.outcome(2), value(6));
}

#[test]
fn an_answer_read_after_its_item_was_judged_over_its_limit_keeps_the_timeout() {
    // SPEC B1: the judgement stands; the answers after it in the same
    // message are delivered as usual.
    let (engine, memory) = engine(EngineOptions::new(1).task_timeout(Duration::from_millis(50)));
    let record = submit(&engine, 1, &[1, 2, 3]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    worker.answer_items(got.id, 0, vec![Answer::Value(doubled(&got.items[0]))]);
    assert_eq!(record.outcome(0), value(2));
    worker.stopped(StopHow::Kill);
    worker.answer_items(
        got.id,
        1,
        vec![
            Answer::Value(doubled(&got.items[1])),
            Answer::Value(doubled(&got.items[2])),
        ],
    );
    worker.end(ExitCause::Signal(9));
    assert_eq!(record.outcome(1), Outcome::Timeout);
    assert_eq!(record.outcome(2), value(6));
}

#[test]
fn a_message_s_answers_reach_their_sink_together_and_extra_answers_are_dropped() {
    // SPEC P8: a chunk's answers come as one message; a sink that gathers
    // them (a map chunk's one future) gets them in one `answer_all`.
    let (engine, memory) = engine(EngineOptions::new(1));
    let record = submit(&engine, 1, &[1, 2, 3]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    let mut answers: Vec<Answer> = got
        .items
        .iter()
        .map(|b| Answer::Value(doubled(b)))
        .collect();
    // One more than the call has: a confused worker's, never an item's.
    answers.push(Answer::Value(Bytes::from_static(b"8")));
    worker.answer_items(got.id, 0, answers);
    assert_eq!(record.outcome(0), value(2));
    assert_eq!(record.outcome(1), value(4));
    assert_eq!(record.outcome(2), value(6));
    assert_eq!(*record.batches.lock(), [3]);
}

#[test]
fn an_answer_waiting_unread_is_not_timed_out() {
    // SPEC B1: while the events thread delivers, deadlines wait for it to
    // catch up; the answer it then reads settles the call.
    let (engine, memory) = engine(EngineOptions::new(1).task_timeout(Duration::from_millis(50)));
    let first = submit(&engine, 1, &[1]);
    let second = submit(&engine, 2, &[2]);
    let worker = memory.worker(0);
    worker.ready();
    let a = worker.call();
    // Answering leaves the thread "delivering" until it reports that it
    // caught up; the second call's limit passes meanwhile.
    worker.answer_unread(&a);
    assert_eq!(first.outcome(0), value(2));
    let b = worker.call();
    std::thread::sleep(Duration::from_millis(150));
    assert!(!worker.state.lock().stops.contains(&StopHow::Kill));
    worker.answer(&b);
    worker.events.caught_up();
    assert_eq!(second.outcome(0), value(4));
}

#[test]
fn cancelling_a_running_call_settles_it_at_once_and_replaces_its_worker() {
    // SPEC B2
    let (engine, memory) = engine(EngineOptions::new(1));
    let record = submit(&engine, 7, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    assert!(!engine.cancel_running(8), "another key cancels nothing");
    assert!(engine.cancel_running(7));
    assert_eq!(record.outcome(0), Outcome::Cancelled);
    worker.stopped(StopHow::Kill);
    // Its answer was on its way: it is dropped, not delivered twice.
    worker.answer(&got);
    worker.end(ExitCause::Signal(9));
    assert!(!engine.is_broken(), "a cancel is no crash");
    let next = submit(&engine, 9, &[5]);
    let replacement = memory.worker(1);
    replacement.ready();
    let got = replacement.call();
    replacement.answer(&got);
    assert_eq!(next.outcome(0), value(10));
    assert_eq!(record.outcome(0), Outcome::Cancelled);
}

#[test]
fn a_call_sent_ahead_cannot_be_cancelled_while_it_waits() {
    // SPEC B2
    let (engine, memory) = engine(EngineOptions::new(1));
    let _running = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let _got = worker.call();
    let ahead = submit(&engine, 2, &[2]);
    assert_eq!(worker.waiting(), 1);
    assert!(!engine.cancel_running(2));
    assert!(ahead.pending(0));
}

#[test]
fn shutdown_closes_idle_workers_and_waits_for_their_end() {
    // SPEC E3
    let (engine, memory) = engine(EngineOptions::new(1));
    let record = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    let shutting = {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || engine.shutdown(Shutdown::default()))
    };
    worker.answer(&got);
    assert_eq!(record.outcome(0), value(2));
    worker.closed();
    assert!(
        !shutting.is_finished(),
        "shutdown waits for the worker's end"
    );
    worker.end(ExitCause::Code(0));
    shutting.join().unwrap();
    assert!(engine.is_shut_down() && !engine.is_broken());
}

#[test]
fn shutdown_with_cancel_futures_cancels_what_is_queued() {
    // SPEC E3
    let (engine, memory) = engine(EngineOptions::new(1));
    let running = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    let queued = submit(&engine, 2, &[2, 3]);
    let ahead = worker.waiting();
    engine.shutdown(Shutdown::default().wait(false).cancel_futures(true));
    if ahead == 0 {
        assert_eq!(queued.outcome(0), Outcome::Cancelled);
    }
    worker.answer(&got);
    assert_eq!(running.outcome(0), value(2));
}

#[test]
fn terminate_fails_running_calls_at_once_and_kills_after_the_grace() {
    // SPEC P9
    let (engine, memory) = engine(EngineOptions::new(1));
    let running = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let _got = worker.call();
    let queued = submit(&engine, 2, &[2]);
    let ahead = worker.waiting();
    engine.terminate_workers();
    assert_eq!(running.outcome(0), Outcome::Broken);
    let expected = if ahead == 1 {
        Outcome::Broken
    } else {
        Outcome::Cancelled
    };
    assert_eq!(queued.outcome(0), expected);
    worker.stopped(StopHow::Terminate);
    // It ignores the request: the grace passes, then the kill.
    worker.stopped(StopHow::Kill);
    worker.end(ExitCause::Signal(9));
    engine.shutdown(Shutdown::default());
}

#[test]
fn a_worker_is_retired_after_max_tasks_per_child() {
    // SPEC P7
    let (engine, memory) = engine(EngineOptions::new(1).max_tasks_per_child(1));
    let first = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    worker.answer(&got);
    assert_eq!(first.outcome(0), value(2));
    worker.closed();
    let second = submit(&engine, 2, &[2]);
    worker.end(ExitCause::Code(0));
    let next = memory.worker(1);
    next.ready();
    let got = next.call();
    next.answer(&got);
    assert_eq!(second.outcome(0), value(4));
}

#[test]
fn a_crash_without_a_limit_fails_every_unanswered_item_of_its_chunk() {
    // SPEC B3: answers of a chunk come together, so any may have run.
    let (engine, memory) = engine(EngineOptions::new(1).self_healing(true));
    let record = submit(&engine, 1, &[1, 2, 3]);
    let worker = memory.worker(0);
    worker.ready();
    let _got = worker.call();
    worker.end(ExitCause::Signal(6));
    for i in 0..3 {
        assert_eq!(record.outcome(i), Outcome::Died);
    }
    assert!(!engine.is_broken());
}

#[test]
fn a_lost_worker_is_a_death_like_any_other() {
    // SPEC B3, B9: a transport that can only say "lost".
    let (engine, memory) = engine(EngineOptions::new(1).self_healing(true));
    let record = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    let _got = worker.call();
    worker.end(ExitCause::Lost);
    assert_eq!(record.outcome(0), Outcome::Died);
}

#[test]
fn an_answer_too_large_to_receive_fails_only_its_item() {
    // SPEC P2
    let (engine, memory) = engine(EngineOptions::new(1));
    let record = submit(&engine, 1, &[1, 2]);
    let worker = memory.worker(0);
    worker.ready();
    let got = worker.call();
    worker.answer_items(
        got.id,
        0,
        vec![
            Answer::Lost("too large".into()),
            Answer::Failure(Bytes::from_static(b"it broke")),
        ],
    );
    assert!(matches!(record.outcome(0), Outcome::Other(why) if why.contains("too large")));
    assert_eq!(record.outcome(1), Outcome::Failure("it broke".into()));
}

#[test]
fn start_workers_starts_them_before_work_and_workers_lists_them() {
    let (engine, memory) = engine(EngineOptions::new(3));
    engine.start_workers(2);
    memory.worker(1);
    assert_eq!(engine.workers(LIMIT).len(), 2);
    engine.start_workers(5);
    memory.worker(2);
    assert_eq!(
        engine.workers(LIMIT).len(),
        3,
        "never more than the pool's size"
    );
}

#[test]
fn reserve_worker_starts_one_while_no_worker_that_finished_a_call_is_idle() {
    let (engine, memory) = engine(EngineOptions::new(2));
    engine.reserve_worker();
    memory.worker(0).ready();
    assert_eq!(engine.workers(LIMIT).len(), 1);
    // A fresh worker has finished nothing: CPython does not count it idle.
    engine.reserve_worker();
    memory.worker(1).ready();
    engine.reserve_worker();
    assert_eq!(
        engine.workers(LIMIT).len(),
        2,
        "never more than the pool's size"
    );
}

#[test]
fn reserve_worker_starts_none_while_a_worker_that_finished_a_call_is_idle() {
    let (used, memory) = engine(EngineOptions::new(2));
    let record = submit(&used, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    worker.answer(&worker.call());
    assert_eq!(record.outcome(0), value(2));
    used.reserve_worker();
    assert_eq!(
        used.workers(LIMIT).len(),
        1,
        "an idle worker that ran a call takes the next"
    );
}

#[test]
fn shutdown_with_cancel_futures_lets_a_starting_worker_run_the_call_it_starts_for() {
    // SPEC E3, as CPython: calls handed to workers are not cancelled.
    let (engine, memory) = engine(EngineOptions::new(1));
    memory.hold_starts();
    let first = submit(&engine, 1, &[1]);
    let second = submit(&engine, 2, &[2]);
    engine.shutdown(Shutdown::default().wait(false).cancel_futures(true));
    assert_eq!(second.outcome(0), Outcome::Cancelled);
    assert!(first.pending(0));
    memory.release();
    let worker = memory.worker(0);
    worker.ready();
    worker.answer(&worker.call());
    assert_eq!(first.outcome(0), value(2));
}

#[test]
fn calls_dispatched_together_to_one_worker_go_out_in_one_flush() {
    // SPEC P6: the call sent ahead goes with the one before it, in one
    // write rather than one each.
    let (engine, memory) = engine(EngineOptions::new(1));
    memory.hold_starts();
    let first = submit(&engine, 1, &[1]);
    let second = submit(&engine, 2, &[2]);
    memory.release();
    let worker = memory.worker(0);
    wait_for(&worker.state, &worker.changed, "both calls", |s| {
        s.inbox.len() == 2
    });
    assert_eq!(worker.state.lock().flushes, 1);
    worker.ready();
    worker.answer(&worker.call());
    worker.answer(&worker.call());
    assert_eq!(first.outcome(0), value(2));
    assert_eq!(second.outcome(0), value(4));
}

#[test]
fn a_worker_whose_initializer_failed_may_exit_by_itself_before_it_is_killed() {
    // SPEC P5: what it still writes (its log records) gets out.
    let options = EngineOptions::new(1).initializer(Bytes::from_static(b"init"), Bytes::new());
    let (engine, memory) = engine(options);
    let record = submit(&engine, 1, &[1]);
    let worker = memory.worker(0);
    worker.ready();
    worker.events.received(FromWorker::InitFailed {
        failure: Bytes::from_static(b"no database"),
    });
    assert_eq!(record.outcome(0), Outcome::Broken);
    // Its input is closed first (a clean exit is still possible), and only
    // then is it killed.
    worker.closed();
    worker.stopped(StopHow::Kill);
    assert!(engine.is_broken());
}

#[test]
fn join_waits_until_shut_down_and_every_worker_is_gone() {
    let (engine, memory) = engine(EngineOptions::new(1));
    let record = submit(&engine, 1, &[4]);
    let worker = memory.worker(0);
    worker.ready();
    worker.answer(&worker.call());
    assert_eq!(record.outcome(0), value(8));
    assert!(!engine.join(Some(Duration::ZERO)), "not shut down yet");
    engine.shutdown(Shutdown::default().wait(false));
    worker.closed();
    assert!(
        !engine.join(Some(Duration::ZERO)),
        "its worker is still there"
    );
    worker.end(ExitCause::Code(0));
    assert!(engine.join(Some(LIMIT)));
}

#[test]
fn with_retries_a_lost_worker_s_call_runs_again_until_its_attempts_are_spent() {
    // SPEC B9: at-least-once, off by default; the whole chunk runs again.
    let (engine, memory) = engine(EngineOptions::new(1).retries(1));
    let record = submit(&engine, 1, &[1, 2]);
    let worker = memory.worker(0);
    worker.ready();
    let _first = worker.call();
    worker.end(ExitCause::Lost);
    assert!(
        record.pending(0) && record.pending(1),
        "nothing failed: it runs again"
    );
    let second = memory.worker(1);
    second.ready();
    let again = second.call();
    assert_eq!(
        again.items,
        [Bytes::from_static(b"1"), Bytes::from_static(b"2")]
    );
    second.end(ExitCause::Signal(9));
    assert_eq!(record.outcome(0), Outcome::Died, "one retry, then it fails");
    assert_eq!(record.outcome(1), Outcome::Died);
    assert!(
        !engine.is_broken(),
        "a death with retries never breaks the pool"
    );
}
