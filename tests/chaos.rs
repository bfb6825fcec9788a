//! Chaos (DESIGN "Tests and measurement"): thousands of tasks with random
//! panics, cancels from another thread, timed waits from another thread
//! and from inside tasks, callbacks on every future (some panicking), and
//! a `shutdown(cancel_futures=true)` from other threads in the middle.
//!
//! Every future must end in exactly one outcome, seen the same way by
//! every observer; every callback runs exactly once; submits after the
//! shutdown are refused with the task given back; nothing hangs (a
//! watchdog aborts the process). The run is seeded: the seed is printed,
//! and `CHAOS_SEED=<seed>` replays it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU8, AtomicUsize};
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::Duration;

use concurrent_futures::{
    ALL_COMPLETED, Error, Future, Shutdown, State, ThreadPoolExecutor, as_completed, wait,
};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod common;
use common::{LIMIT, chaos_seed};

const TASKS: usize = 5000;
const WORKERS: usize = 4;
/// Tasks that block every worker right before the shutdown, and tasks
/// queued behind them, which the shutdown must cancel.
const GATED: usize = WORKERS;
const FILLERS: usize = 20;
const WATCHDOG: Duration = Duration::from_secs(60);
/// Runs per test, with consecutive seeds.
const ROUNDS: u64 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Value,
    Panic,
    /// Waits with a timeout on an earlier future; on a worker this may
    /// run that future inline (SPEC B7).
    WaitOnEarlier,
    /// Blocks until the shutdown has cancelled the queue.
    Gated,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Value(u64),
    Failed(String),
    Cancelled,
}

impl Outcome {
    fn of(result: Result<&u64, Error>) -> Outcome {
        match result {
            Ok(v) => Outcome::Value(*v),
            Err(Error::Failed(e)) => {
                Outcome::Failed(e.panic_message().unwrap_or("<not a panic>").to_owned())
            }
            Err(Error::Cancelled) => Outcome::Cancelled,
            Err(other) => panic!("not a final outcome: {other:?}"),
        }
    }

    fn code(&self) -> u8 {
        match self {
            Outcome::Value(_) => 1,
            Outcome::Failed(_) => 2,
            Outcome::Cancelled => 3,
        }
    }
}

fn value_of(i: usize) -> u64 {
    i as u64 * 3 + 1
}

fn panic_message_of(i: usize) -> String {
    format!("chaos: task {i} panics")
}

/// Per-future bookkeeping, written by tasks, callbacks and helper threads.
struct Books {
    ran: Vec<AtomicUsize>,
    first_callback: Vec<AtomicUsize>,
    second_callback: Vec<AtomicUsize>,
    /// `Outcome::code` as the second callback saw it.
    seen_by_callback: Vec<AtomicU8>,
    /// 0: not tried, 1: `cancel()` said false, 2: it said true.
    cancel_said: Vec<AtomicU8>,
    violations: Mutex<Vec<String>>,
}

impl Books {
    fn new(n: usize) -> Self {
        let zeros = || (0..n).map(|_| AtomicUsize::new(0)).collect();
        let codes = || (0..n).map(|_| AtomicU8::new(0)).collect();
        Books {
            ran: zeros(),
            first_callback: zeros(),
            second_callback: zeros(),
            seen_by_callback: codes(),
            cancel_said: codes(),
            violations: Mutex::new(Vec::new()),
        }
    }

    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }
}

/// Panics the test provokes ("chaos: ...") are not printed; others are.
fn quiet_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !message.starts_with("chaos:") {
                default(info);
            }
        }));
    });
}

/// Aborts the process unless the returned sender is dropped in time.
fn watchdog(seed: u64) -> Sender<()> {
    let (alive, done) = bounded::<()>(1);
    thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(WATCHDOG) {
            eprintln!("chaos: not finished within {WATCHDOG:?} (CHAOS_SEED={seed}); aborting");
            std::process::abort();
        }
    });
    alive
}

/// Where the gated tasks block, and how they say they got there.
struct Gate {
    closed: Receiver<()>,
    entered: Sender<()>,
}

fn spin(iterations: u32) {
    for i in 0..iterations {
        std::hint::black_box(i);
    }
}

/// Builds task `i`: what it does is drawn from `rng`.
fn make_task(
    i: usize,
    kind: Kind,
    rng: &mut StdRng,
    books: &Arc<Books>,
    earlier: Option<(usize, Future<u64>)>,
    gate: &Gate,
) -> impl FnOnce() -> u64 + Send + 'static {
    let work = rng.random_range(0..2000);
    let wait_for = Duration::from_micros(rng.random_range(0..300));
    let books = Arc::clone(books);
    let (closed, entered) = (gate.closed.clone(), gate.entered.clone());
    move || {
        books.ran[i].fetch_add(1, SeqCst);
        spin(work);
        match kind {
            Kind::Value => {}
            Kind::Panic => panic!("{}", panic_message_of(i)),
            Kind::Gated => {
                entered.send(()).unwrap();
                let _ = closed.recv();
            }
            Kind::WaitOnEarlier => {
                let (j, target) = earlier.expect("a target");
                match target.result_timeout(wait_for) {
                    Err(Error::Timeout | Error::Cancelled) => {}
                    Ok(v) if *v == value_of(j) => {}
                    Err(Error::Failed(e)) if e.panic_message() == Some(&panic_message_of(j)) => {}
                    other => books.violation(format!("task {i} waiting on {j} got {other:?}")),
                }
            }
        }
        value_of(i)
    }
}

#[test]
fn chaos_every_future_ends_in_exactly_one_outcome() {
    // SPEC E1, E3, E5
    quiet_expected_panics();
    let seed = chaos_seed();
    let _watchdog = watchdog(seed);
    for round in 0..ROUNDS {
        let seed = seed.wrapping_add(round);
        println!("chaos seed: {seed} (replay with CHAOS_SEED={seed})");
        // Even rounds block every worker before the shutdown, so that what
        // is queued behind them is surely cancelled; odd rounds shut down
        // while the workers are busy taking jobs.
        run_chaos(seed, round % 2 == 0);
    }
}

/// One chaotic run; panics on the first broken promise.
fn run_chaos(seed: u64, with_gates: bool) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (gated_len, fillers_len) = if with_gates { (GATED, FILLERS) } else { (0, 0) };
    let n = TASKS + gated_len + fillers_len;
    // The shutdown threads start after this task and a random delay.
    let go_after = TASKS / 2 + gated_len + fillers_len - 1;
    let books = Arc::new(Books::new(n));
    let pool = Arc::new(ThreadPoolExecutor::new(WORKERS).unwrap());
    let (open_gate, closed) = bounded::<()>(0);
    let (entered_tx, entered) = unbounded();
    let gate = Gate {
        closed,
        entered: entered_tx,
    };

    // Cancels some futures from another thread, as they come.
    let (to_cancel, cancel_rx) = unbounded::<(usize, Future<u64>)>();
    let canceller = {
        let books = Arc::clone(&books);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0001);
        thread::spawn(move || {
            for (i, f) in cancel_rx {
                if rng.random_bool(0.2) {
                    let said = if f.cancel() { 2 } else { 1 };
                    books.cancel_said[i].store(said, SeqCst);
                }
            }
        })
    };
    // Polls some futures with short timeouts from another thread.
    let (to_poll, poll_rx) = unbounded::<(usize, Future<u64>)>();
    let poller = {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0002);
        thread::spawn(move || {
            let mut seen = Vec::new();
            for (i, f) in poll_rx {
                if rng.random_bool(0.3) {
                    let timeout = if rng.random_bool(0.5) {
                        Duration::ZERO
                    } else {
                        Duration::from_micros(rng.random_range(0..200))
                    };
                    match f.result_timeout(timeout) {
                        Err(Error::Timeout) => {}
                        other => seen.push((i, Outcome::of(other))),
                    }
                }
            }
            seen
        })
    };
    // Two shutdowns at once in the middle: one waits and cancels, the other
    // cancels without waiting, then opens the gate of the gated tasks.
    let (go_waiting, go_waiting_rx) = bounded::<u32>(1);
    let (go_quick, go_quick_rx) = bounded::<u32>(1);
    let waiting_shutdown = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            let delay: u32 = go_waiting_rx.recv().unwrap();
            spin(delay);
            pool.shutdown_with(Shutdown::default().cancel_futures(true));
        })
    };
    let quick_shutdown = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || {
            let delay: u32 = go_quick_rx.recv().unwrap();
            spin(delay);
            pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
            drop(open_gate);
        })
    };

    let mut futures: Vec<Option<Future<u64>>> = Vec::with_capacity(n);
    let mut kinds = Vec::with_capacity(n);
    let mut first_refused = None;
    let mut gated = Vec::new();
    let mut fillers = Vec::new();
    let mut as_completed_watcher = None;
    for i in 0..n {
        let midway = i >= TASKS / 2 && i < TASKS / 2 + gated_len + fillers_len;
        let kind = if i >= TASKS / 2 && i < TASKS / 2 + gated_len {
            gated.push(i);
            Kind::Gated
        } else if midway {
            fillers.push(i);
            Kind::Value
        } else {
            match rng.random_range(0..100) {
                0..10 => Kind::Panic,
                10..25 if i > 0 => Kind::WaitOnEarlier,
                _ => Kind::Value,
            }
        };
        let earlier = match kind {
            Kind::WaitOnEarlier => {
                let j = rng.random_range(0..i);
                futures[j].clone().map(|f| (j, f))
            }
            _ => None,
        };
        let kind = if kind == Kind::WaitOnEarlier && earlier.is_none() {
            Kind::Value
        } else {
            kind
        };
        kinds.push(kind);
        let callback_panics = rng.random_bool(0.2);
        let task = make_task(i, kind, &mut rng, &books, earlier, &gate);
        match pool.submit(task) {
            Ok(f) => {
                if let Some(r) = first_refused {
                    books.violation(format!("task {i} accepted after task {r} was refused"));
                }
                let b = Arc::clone(&books);
                f.add_done_callback(move |_| {
                    b.first_callback[i].fetch_add(1, SeqCst);
                    if callback_panics {
                        panic!("chaos: callback of {i} panics");
                    }
                });
                let b = Arc::clone(&books);
                f.add_done_callback(move |f| {
                    b.second_callback[i].fetch_add(1, SeqCst);
                    let code = Outcome::of(f.result_timeout(Duration::ZERO)).code();
                    b.seen_by_callback[i].store(code, SeqCst);
                });
                if !midway {
                    to_cancel.send((i, f.clone())).unwrap();
                    to_poll.send((i, f.clone())).unwrap();
                }
                if kind == Kind::Gated {
                    // One at a time: when all have entered, every worker is
                    // blocked and the fillers stay queued until cancelled.
                    entered
                        .recv_timeout(LIMIT)
                        .expect("a gated task reaches its gate");
                }
                futures.push(Some(f));
            }
            Err(refused) => {
                first_refused.get_or_insert(i);
                if !matches!(refused.reason(), Error::ShutDown) {
                    books.violation(format!("task {i} refused with {:?}", refused.reason()));
                }
                // The task comes back unrun and still works.
                let task = refused.into_task();
                match (kind, catch_unwind(AssertUnwindSafe(task))) {
                    (Kind::Panic, Err(_)) => {}
                    (Kind::Value | Kind::WaitOnEarlier, Ok(v)) if v == value_of(i) => {}
                    (kind, other) => books.violation(format!(
                        "refused task {i} ({kind:?}) given back broken: ok={}",
                        other.is_ok()
                    )),
                }
                futures.push(None);
            }
        }
        if i == TASKS / 4 {
            // Waits for a batch of futures while they are being cancelled,
            // failing and shut down.
            let batch: Vec<Future<u64>> = futures.iter().flatten().cloned().collect();
            as_completed_watcher = Some(thread::spawn(move || {
                let count = as_completed(&batch).count();
                (count, batch.len())
            }));
        }
        if i == go_after {
            go_waiting.send(rng.random_range(0..200_000)).unwrap();
            go_quick.send(rng.random_range(0..200_000)).unwrap();
        }
    }
    drop((to_cancel, to_poll));
    canceller.join().unwrap();
    let polled = poller.join().unwrap();
    quick_shutdown.join().unwrap();
    waiting_shutdown.join().unwrap();
    let (yielded, batch) = as_completed_watcher.unwrap().join().unwrap();
    assert_eq!(yielded, batch, "as_completed yields every future once");

    // shutdown(wait=true) has returned: everything accepted is done.
    let accepted: Vec<(usize, &Future<u64>)> = futures
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
        .collect();
    let undone: Vec<usize> = accepted
        .iter()
        .filter(|(_, f)| !f.done())
        .map(|(i, _)| *i)
        .collect();
    assert!(undone.is_empty(), "not done after shutdown: {undone:?}");
    let late = pool.submit(|| 5u64).unwrap_err();
    assert!(matches!(late.reason(), Error::ShutDown));
    assert_eq!((late.into_task())(), 5);
    let all: Vec<Future<u64>> = accepted.iter().map(|(_, f)| (*f).clone()).collect();
    assert_eq!(wait(&all, ALL_COMPLETED).not_done.len(), 0);

    // Other threads read every outcome at the same time as this one.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let all = all.clone();
            thread::spawn(move || {
                all.iter()
                    .map(|f| Outcome::of(f.result()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    let mut outcomes = vec![None; n];
    let (mut values, mut failed, mut cancelled) = (0, 0, 0);
    for &(i, f) in &accepted {
        let outcome = Outcome::of(f.result());
        for _ in 0..2 {
            assert_eq!(Outcome::of(f.result()), outcome, "future {i} changed");
        }
        assert_eq!(Outcome::of(f.result_timeout(Duration::ZERO)), outcome);
        let kind = kinds[i];
        match &outcome {
            Outcome::Value(v) => {
                values += 1;
                assert_ne!(kind, Kind::Panic, "future {i}");
                assert_eq!(*v, value_of(i), "future {i}");
                assert_eq!(f.state(), State::Finished);
                assert!(matches!(f.exception(), Ok(None)));
            }
            Outcome::Failed(message) => {
                failed += 1;
                assert_eq!(kind, Kind::Panic, "future {i} failed: {message}");
                assert_eq!(*message, panic_message_of(i));
                assert_eq!(f.state(), State::Finished);
                assert!(matches!(f.exception(), Ok(Some(Error::Failed(_)))));
            }
            Outcome::Cancelled => {
                cancelled += 1;
                assert_eq!(f.state(), State::Cancelled);
                assert!(matches!(f.exception(), Err(Error::Cancelled)));
            }
        }
        assert!(f.done() && !f.running());
        assert_eq!(f.cancelled(), outcome == Outcome::Cancelled);
        let ran = books.ran[i].load(SeqCst);
        let expected_runs = usize::from(outcome != Outcome::Cancelled);
        assert_eq!(
            ran, expected_runs,
            "future {i} ({outcome:?}) ran {ran} times (CHAOS_SEED={seed})"
        );
        match books.cancel_said[i].load(SeqCst) {
            2 => assert_eq!(outcome, Outcome::Cancelled, "cancel() said true on {i}"),
            1 => assert_ne!(outcome, Outcome::Cancelled, "cancel() said false on {i}"),
            _ => {}
        }
        assert_eq!(books.first_callback[i].load(SeqCst), 1, "future {i}");
        assert_eq!(books.second_callback[i].load(SeqCst), 1, "future {i}");
        assert_eq!(
            books.seen_by_callback[i].load(SeqCst),
            outcome.code(),
            "future {i}: the callback saw another outcome"
        );
        outcomes[i] = Some(outcome);
    }
    for reader in readers {
        let seen = reader.join().unwrap();
        let mine: Vec<Outcome> = outcomes.iter().flatten().cloned().collect();
        assert_eq!(seen, mine, "another thread saw other outcomes");
    }
    for (i, outcome) in polled {
        assert_eq!(
            outcomes[i].as_ref(),
            Some(&outcome),
            "the poller saw {i} differently"
        );
    }
    // The gated tasks blocked every worker until the queue was cancelled:
    // they finished, and everything queued behind them was cancelled.
    for &i in &gated {
        assert_eq!(outcomes[i], Some(Outcome::Value(value_of(i))), "gated {i}");
    }
    for &i in &fillers {
        assert_eq!(outcomes[i], Some(Outcome::Cancelled), "filler {i}");
    }
    let refused = futures.iter().filter(|f| f.is_none()).count();
    for (i, f) in futures.iter().enumerate() {
        if f.is_none() {
            assert_eq!(
                books.ran[i].load(SeqCst),
                1,
                "refused task {i} was given back"
            );
        }
    }
    let violations = books.violations.lock().unwrap();
    assert!(violations.is_empty(), "{:#?}", *violations);
    println!(
        "chaos: {} accepted ({values} values, {failed} failed, {cancelled} cancelled), \
         {refused} refused",
        accepted.len()
    );
}

#[test]
fn cancel_racing_a_start_never_runs_the_task() {
    // SPEC F1, F2
    // cancel() is false once the future runs. With entries
    // registered, `try_finish` (cancel) loads the state under the entries
    // lock and then *stores* CANCELLED, while a worker's PENDING -> RUNNING
    // is a CAS that does not take that lock: when the CAS lands between
    // the load and the store, the task runs and the future says
    // cancelled. Many registered waiters widen the window; the cancel is
    // swept across the moment the worker takes the job. Deterministic
    // once seen: a cancel that returned true must mean the task never ran.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for round in 0..20_000u32 {
        if std::time::Instant::now() > deadline {
            break;
        }
        let pool = ThreadPoolExecutor::new(1).unwrap();
        let (open, closed) = bounded::<()>(0);
        let (entered_tx, entered) = bounded::<()>(1);
        let blocker = pool
            .submit(move || {
                entered_tx.send(()).unwrap();
                let _ = closed.recv();
            })
            .unwrap();
        entered.recv_timeout(LIMIT).unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&ran);
        let f = pool
            .submit(move || {
                counter.fetch_add(1, SeqCst);
            })
            .unwrap();
        let waiters: Vec<_> = (0..300).map(|_| as_completed([&f])).collect();
        f.add_done_callback(|_| {});
        let both = Arc::new(std::sync::Barrier::new(2));
        let canceller = {
            let (both, f) = (Arc::clone(&both), f.clone());
            let delay = (round % 400) * 25;
            thread::spawn(move || {
                both.wait();
                spin(delay);
                f.cancel()
            })
        };
        both.wait();
        drop(open);
        let said = canceller.join().unwrap();
        blocker.result_timeout(LIMIT).unwrap();
        pool.shutdown();
        drop(waiters);
        let runs = ran.load(SeqCst);
        assert!(
            !(said && runs == 1),
            "round {round}: cancel() returned true and cancelled() is {}, yet the task ran",
            f.cancelled()
        );
        assert_eq!(f.cancelled(), runs == 0, "round {round}");
    }
}
