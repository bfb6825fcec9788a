//! Chaos for the process pool (DESIGN "Tests and measurement"): thousands
//! of small tasks, some with a few ms of work, while another thread kills
//! random worker processes with SIGKILL.
//!
//! * Default mode (SPEC P6): the first kill breaks the pool. Every future
//!   ends with its value or BrokenProcessPool, later submits are refused,
//!   nothing hangs.
//! * Self-healing mode (SPEC B3, B2): every future ends with exactly one
//!   outcome, its value or WorkerDied (or Cancelled, for the few the test
//!   cancels with `pool.cancel`, which kills a running task's worker); the
//!   pool stays usable. Run twice: with small arguments, which the pool
//!   sends ahead to busy workers, and with arguments too big for that.
//!
//! All: every done-callback runs exactly once, and once the pool is
//! dropped no worker process is left (SPEC P10). A watchdog aborts the
//! process if a run hangs; a failing run leaks its pool rather than wait
//! for it. Runs are seeded: the seed is printed, and `CHAOS_SEED=<seed>`
//! replays it. The tests take turns (a lock), so this process's children
//! are the workers of one pool.

use std::io::Write;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::{
    ALL_COMPLETED, BrokenKind, Error, ExitCause, Future, ProcessPoolExecutor, TaskErrorKind,
    wait_timeout,
};
use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

mod common;
use common::chaos_seed;
use common::process::Pool;

const TASKS: u64 = 3000;
const WORKERS: usize = 3;
/// Kills per self-healing run.
const HEALING_KILLS: usize = 12;
/// Runs per test, with consecutive seeds.
const ROUNDS: u64 = 4;
/// Padding that makes a call too big to be sent ahead to a busy worker
/// (the pool sends ahead only calls of at most 16 KiB).
const BIG_PAD: usize = 20 * 1024;
/// One in this many futures is cancelled with `pool.cancel` (self-healing).
const CANCEL_EVERY: u64 = 97;
/// Upper bound for the pool to settle everything; only a broken library
/// waits this long.
const LIMIT: Duration = Duration::from_secs(60);
const WATCHDOG: Duration = Duration::from_secs(90);
/// At most this many probes (one per ms) for the pool to break after the
/// kill in default mode.
const PROBES: u64 = 20_000;

/// The task: a few ms of work for one item in 16, then a checkable value.
/// The padding only makes the call bigger.
fn work((x, _pad): (u64, String)) -> u64 {
    if x % 16 == 0 {
        let end = Instant::now() + Duration::from_millis(3);
        while Instant::now() < end {
            std::hint::spin_loop();
        }
    }
    expected(x)
}

fn expected(x: u64) -> u64 {
    x * 2 + 1
}

fn whoami(_: ()) -> u32 {
    std::process::id()
}

fn one_pool_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn seed() -> u64 {
    let seed = chaos_seed();
    println!("CHAOS_SEED={seed}");
    seed
}

/// Aborts the process unless dropped within [`WATCHDOG`].
struct Watchdog(Option<Sender<()>>);

impl Watchdog {
    fn start(what: String) -> Watchdog {
        let (tx, rx) = bounded::<()>(0);
        thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(WATCHDOG) {
                // Straight to the file descriptor: the test harness
                // captures `eprintln!`, and its buffer dies with us.
                let _ = writeln!(
                    std::io::stderr(),
                    "watchdog: {what} ran over {WATCHDOG:?}; aborting"
                );
                std::process::abort();
            }
        });
        Watchdog(Some(tx))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.take();
    }
}

/// This process's children (running or not yet reaped), from every
/// thread's `children` file in `/proc`.
fn children() -> Vec<u32> {
    let mut kids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return kids;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            kids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    kids
}

/// `(state, ppid)` of `pid`, if it exists.
fn state_and_ppid(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// SIGKILLs `pid` if it is a live child of this process. The pidfd pins
/// one process; the parent check after opening it is about that process
/// or a later one that reused the pid, and then the signal to the pidfd
/// (the dead one) fails: no stranger is ever hit.
fn kill_child(pid: u32) -> bool {
    let Some(raw) = Pid::from_raw(pid as i32) else {
        return false;
    };
    let Ok(pidfd) = pidfd_open(raw, PidfdFlags::empty()) else {
        return false;
    };
    match state_and_ppid(pid) {
        Some((state, ppid)) if ppid == std::process::id() && !matches!(state, 'Z' | 'X') => {
            pidfd_send_signal(&pidfd, Signal::KILL).is_ok()
        }
        _ => false,
    }
}

/// This process's children that are not in `foreign` (the workers of a
/// pool a failed run leaked).
fn own_children(foreign: &[u32]) -> Vec<u32> {
    let mut kids = children();
    kids.retain(|pid| !foreign.contains(pid));
    kids
}

/// Kills one random worker of the run's pool; retries while none is
/// there, within [`LIMIT`]. Returns the pid killed.
fn kill_random_worker(rng: &mut StdRng, foreign: &[u32]) -> Option<u32> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        let kids = own_children(foreign);
        if !kids.is_empty() {
            let pid = kids[rng.random_range(0..kids.len())];
            if kill_child(pid) {
                return Some(pid);
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Waits until `completed` reaches `n`, within [`LIMIT`].
fn wait_for_completions(completed: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + LIMIT;
    while completed.load(SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} completions within {LIMIT:?}",
            completed.load(SeqCst)
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// What one run counts: completions and each item's callbacks.
struct Counts {
    completed: Arc<AtomicUsize>,
    callbacks: Arc<Vec<AtomicU8>>,
}

impl Counts {
    fn new(items: u64) -> Counts {
        Counts {
            completed: Arc::new(AtomicUsize::new(0)),
            callbacks: Arc::new((0..items).map(|_| AtomicU8::new(0)).collect()),
        }
    }

    /// Submits item `x`, counting its completion and its callbacks.
    fn submit(&self, pool: &ProcessPoolExecutor, x: u64, pad: &str) -> Result<Future<u64>, Error> {
        let f = pool.submit(work, (x, pad.to_owned())).map_err(|refused| {
            assert_eq!(refused.reason().to_string(), refused.to_string());
            let reason = refused.reason().clone();
            assert_eq!(
                refused.into_task().0,
                x,
                "a refused submit gives its argument back"
            );
            reason
        })?;
        let (completed, callbacks) = (Arc::clone(&self.completed), Arc::clone(&self.callbacks));
        f.add_done_callback(move |_| {
            callbacks[x as usize].fetch_add(1, SeqCst);
            completed.fetch_add(1, SeqCst);
        });
        Ok(f)
    }

    /// Every future done within [`LIMIT`], each callback run exactly once,
    /// `result()` the same on every call.
    fn assert_all_settled(&self, futures: &[(u64, Future<u64>)]) {
        let fs: Vec<&Future<u64>> = futures.iter().map(|(_, f)| f).collect();
        let waited = wait_timeout(fs, LIMIT, ALL_COMPLETED);
        if !waited.not_done.is_empty() {
            let stuck: Vec<_> = futures
                .iter()
                .filter(|(_, f)| !f.done())
                .map(|(x, f)| (*x, f.state()))
                .collect();
            panic!("futures not done within {LIMIT:?}: {stuck:?}");
        }
        for (x, f) in futures {
            let first = format!("{:?}", f.result());
            assert_eq!(first, format!("{:?}", f.result()), "item {x}");
            // The callbacks run right after `done()` turns true.
            let calls = &self.callbacks[*x as usize];
            let deadline = Instant::now() + LIMIT;
            while calls.load(SeqCst) == 0 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            assert_eq!(calls.load(SeqCst), 1, "callbacks of item {x}");
        }
    }
}

/// Drops the pool and checks that no worker process is left.
fn drop_and_check_no_worker_left(mut pool: Pool, foreign: &[u32]) {
    drop(pool.0.take());
    let deadline = Instant::now() + LIMIT;
    loop {
        let kids = own_children(foreign);
        if kids.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "worker processes left after the pool was dropped: {kids:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn default_mode_a_killed_worker_breaks_the_pool_and_nothing_hangs() {
    // SPEC P6, P10, X1
    let _turn = one_pool_at_a_time();
    let seed = seed();
    let _watchdog = Watchdog::start(format!("process chaos, default mode, CHAOS_SEED={seed}"));
    for round in 0..ROUNDS {
        default_round(seed.wrapping_add(round));
    }
}

fn default_round(seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let threshold = rng.random_range(20..400);
    let foreign = children();
    let pool = Pool(Some(ProcessPoolExecutor::new(WORKERS).unwrap()));
    let counts = Counts::new(TASKS + PROBES + 1);
    let mut futures = Vec::new();
    let mut refused = Vec::new();

    let killed = thread::scope(|s| {
        let killer = s.spawn(|| {
            wait_for_completions(&counts.completed, threshold);
            kill_random_worker(&mut rng, &foreign)
        });
        for x in 0..TASKS {
            match counts.submit(&pool, x, "") {
                Ok(f) => {
                    assert!(
                        refused.is_empty(),
                        "accepted after a refusal: broken is final"
                    );
                    futures.push((x, f));
                }
                Err(e) => refused.push((x, e)),
            }
        }
        killer.join().unwrap()
    });
    let killed = killed.expect("a worker to kill");

    // The death breaks the pool: submits are refused from then on.
    let mut x = TASKS;
    while refused.is_empty() {
        assert!(x < TASKS + PROBES, "the pool did not break");
        match counts.submit(&pool, x, "") {
            Ok(f) => futures.push((x, f)),
            Err(e) => refused.push((x, e)),
        }
        x += 1;
        thread::sleep(Duration::from_millis(1));
    }
    assert!(
        counts.submit(&pool, x, "").is_err(),
        "a broken pool accepted work"
    );

    counts.assert_all_settled(&futures);
    let mut broken = 0;
    for (x, f) in &futures {
        match f.result() {
            Ok(v) => assert_eq!(*v, expected(*x)),
            Err(Error::Broken(b)) if b.kind() == BrokenKind::ProcessPool => {
                assert!(b.reason().contains("terminated abruptly"), "{b}");
                broken += 1;
            }
            Err(e) => panic!("item {x}: {e:?}"),
        }
    }
    for (x, e) in &refused {
        match e {
            Error::Broken(b) => {
                assert_eq!(b.kind(), BrokenKind::ProcessPool);
                // The one death that broke it: the worker the test killed.
                let death = format!("signal 9 (SIGKILL), pid {killed}");
                assert!(b.reason().contains(&death), "{b}");
            }
            other => panic!("item {x} refused with {other:?}"),
        }
    }
    println!(
        "seed {seed}: killed {killed} after {threshold} completions: {} values, {broken} \
         broken, {} refused",
        futures.len() - broken,
        refused.len()
    );
    drop_and_check_no_worker_left(pool, &foreign);
}

#[test]
fn self_healing_mode_every_future_ends_once_and_the_pool_goes_on() {
    // SPEC B3, B2, P10
    let _turn = one_pool_at_a_time();
    let seed = seed();
    let _watchdog = Watchdog::start(format!("process chaos, self-healing, CHAOS_SEED={seed}"));
    for round in 0..ROUNDS {
        healing_round(seed.wrapping_add(round), "");
    }
}

#[test]
fn self_healing_mode_with_calls_too_big_to_send_ahead() {
    // SPEC B3, B2, P10
    let _turn = one_pool_at_a_time();
    let seed = seed();
    let _watchdog = Watchdog::start(format!(
        "process chaos, self-healing, big calls, CHAOS_SEED={seed}"
    ));
    let pad = "p".repeat(BIG_PAD);
    for round in 0..ROUNDS {
        healing_round(seed.wrapping_add(round), &pad);
    }
}

fn healing_round(seed: u64, pad: &str) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut thresholds: Vec<usize> = (0..HEALING_KILLS)
        .map(|_| rng.random_range(10..(TASKS as usize - 300)))
        .collect();
    thresholds.sort_unstable();
    let foreign = children();
    let pool = Pool(Some(
        ProcessPoolExecutor::builder()
            .max_workers(WORKERS)
            .self_healing(true)
            .build()
            .unwrap(),
    ));
    let counts = Counts::new(TASKS);
    let mut futures = Vec::new();
    let mut cancelled_by_test = Vec::new();

    let kills = thread::scope(|s| {
        let killer = s.spawn(|| {
            let mut kills = Vec::new();
            for &t in &thresholds {
                wait_for_completions(&counts.completed, t);
                kills.extend(kill_random_worker(&mut rng, &foreign));
            }
            kills
        });
        for x in 0..TASKS {
            let f = counts
                .submit(&pool, x, pad)
                .unwrap_or_else(|e| panic!("a self-healing pool refused item {x}: {e:?}"));
            if x % CANCEL_EVERY == CANCEL_EVERY - 1 && pool.cancel(&f) {
                cancelled_by_test.push(x);
            }
            futures.push((x, f));
        }
        killer.join().unwrap()
    });
    assert_eq!(kills.len(), HEALING_KILLS, "every kill found a worker");

    counts.assert_all_settled(&futures);
    let (mut values, mut died, mut cancelled) = (0, 0, 0);
    for (x, f) in &futures {
        let by_test = cancelled_by_test.contains(x);
        match f.result() {
            Ok(v) if !by_test => {
                assert_eq!(*v, expected(*x));
                values += 1;
            }
            // Killed by the test, or by a `pool.cancel` that killed the
            // worker just as it moved on to this call.
            Err(Error::WorkerDied(d)) if !by_test => {
                assert_eq!(d.cause(), ExitCause::Signal(9), "item {x}");
                died += 1;
            }
            Err(Error::Cancelled) if by_test => cancelled += 1,
            other => panic!("item {x} (cancelled by the test: {by_test}): {other:?}"),
        }
    }
    assert!(
        died <= kills.len() + cancelled,
        "{died} deaths from {} kills and {cancelled} cancels",
        kills.len()
    );
    println!("seed {seed}: {values} values, {died} died, {cancelled} cancelled; killed {kills:?}");

    // Still usable, and still a pool of other processes.
    let f = pool.submit(whoami, ()).unwrap();
    let pid = *f.result_timeout(LIMIT).unwrap();
    assert_ne!(pid, std::process::id());
    let after: Vec<u64> = pool
        .map(work, (0..100).map(|x| (x, String::new())))
        .map(|r| r.expect("work after the chaos"))
        .collect();
    assert_eq!(after, (0..100).map(expected).collect::<Vec<_>>());
    drop_and_check_no_worker_left(pool, &foreign);
}

// -------------------------------------------- user code that misbehaves ----

/// What one chaos item does, chosen at random.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Kind {
    Plain,
    /// The task panics.
    Panic,
    /// Its argument's `Deserialize` panics in the worker.
    ArgumentPanics,
    /// Its result's `Serialize` panics in the worker.
    ResultWontSerialize,
    /// Its result's `Deserialize` panics back in this process.
    ResultWontDeserialize,
    /// Writes to a closed pipe (SIGPIPE must not kill the worker).
    BrokenPipe,
    /// Ignores SIGTERM, then works.
    IgnoresSigterm,
    /// Never returns: the time limit ends it.
    Forever,
}

const KINDS: [Kind; 8] = [
    Kind::Plain,
    Kind::Panic,
    Kind::ArgumentPanics,
    Kind::ResultWontSerialize,
    Kind::ResultWontDeserialize,
    Kind::BrokenPipe,
    Kind::IgnoresSigterm,
    Kind::Forever,
];

/// An item's argument: its `Deserialize` (which runs only in a worker)
/// panics for [`Kind::ArgumentPanics`].
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Arg(u64, Kind);

impl<'de> serde::Deserialize<'de> for Arg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (x, kind) = <(u64, Kind)>::deserialize(d)?;
        if kind == Kind::ArgumentPanics {
            panic!("chaos: argument {x} will not deserialize");
        }
        Ok(Arg(x, kind))
    }
}

/// An item's answer: its `Serialize` runs only in a worker, its
/// `Deserialize` only here, and each panics for its kind.
#[derive(Clone, Copy, Debug)]
struct Answer(u64, Kind);

impl serde::Serialize for Answer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.1 == Kind::ResultWontSerialize {
            panic!("chaos: result {} will not serialize", self.0);
        }
        (self.0, self.1).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Answer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (x, kind) = <(u64, Kind)>::deserialize(d)?;
        if kind == Kind::ResultWontDeserialize {
            panic!("chaos: result {x} will not deserialize");
        }
        Ok(Answer(x, kind))
    }
}

fn misbehave(Arg(x, kind): Arg) -> Answer {
    match kind {
        Kind::Panic => panic!("chaos: item {x} panics"),
        Kind::BrokenPipe => {
            let (read_end, write_end) = rustix::pipe::pipe().unwrap();
            drop(read_end);
            let mut w = std::fs::File::from(write_end);
            let e = w.write_all(b"x").unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
        }
        Kind::IgnoresSigterm => {
            // SAFETY: "ignore" installs no handler.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        }
        Kind::Forever => loop {
            thread::park();
        },
        _ => {}
    }
    Answer(x, kind)
}

/// Items per misbehaving round.
const MISBEHAVING_ITEMS: u64 = 400;
/// One item in this many never returns (each costs a worker the limit).
const FOREVER_EVERY: u32 = 130;
/// The per-task limit of the misbehaving rounds: far above what any other
/// item takes, even on a loaded machine where workers capture and resolve
/// the backtraces of their panics.
const ITEM_LIMIT: Duration = Duration::from_secs(2);

/// How a misbehaving round ends the pool from inside a done-callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Shutdown,
    Terminate,
}

#[test]
fn misbehaving_user_code_never_hangs_loses_or_doubles_an_outcome() {
    // SPEC P2, P6, P9, P11, B1, B3, E3
    let _turn = one_pool_at_a_time();
    let seed = seed();
    let _watchdog = Watchdog::start(format!("process chaos, misbehaving, CHAOS_SEED={seed}"));
    for round in 0..ROUNDS {
        let ending = if round % 2 == 0 {
            Ending::Shutdown
        } else {
            Ending::Terminate
        };
        misbehaving_round(seed.wrapping_add(round), ending);
    }
}

fn misbehaving_round(seed: u64, ending: Ending) {
    let mut rng = StdRng::seed_from_u64(seed);
    let foreign = children();
    let pool = Arc::new(Pool(Some(
        ProcessPoolExecutor::builder()
            .max_workers(WORKERS)
            .self_healing(true)
            .task_timeout(ITEM_LIMIT)
            .build()
            .unwrap(),
    )));
    let ender = rng.random_range(MISBEHAVING_ITEMS / 4..MISBEHAVING_ITEMS);
    let ended = Arc::new(AtomicUsize::new(0));
    let callbacks: Arc<Vec<AtomicU8>> =
        Arc::new((0..MISBEHAVING_ITEMS).map(|_| AtomicU8::new(0)).collect());
    let mut futures = Vec::new();
    let mut refused = 0;
    for x in 0..MISBEHAVING_ITEMS {
        let kind = match rng.random_range(0..FOREVER_EVERY) {
            0 => Kind::Forever,
            n => KINDS[n as usize % (KINDS.len() - 1)],
        };
        let f = match pool.submit(misbehave, Arg(x, kind)) {
            Ok(f) => f,
            Err(e) => {
                assert!(matches!(e.reason(), Error::ShutDown), "{e:?}");
                assert!(ended.load(SeqCst) > 0, "refused before the pool was ended");
                refused += 1;
                continue;
            }
        };
        let calls = Arc::clone(&callbacks);
        let (inside, ended) = (Arc::clone(&pool), Arc::clone(&ended));
        f.add_done_callback(move |_| {
            calls[x as usize].fetch_add(1, SeqCst);
            if x == ender {
                ended.fetch_add(1, SeqCst);
                match ending {
                    Ending::Shutdown => inside.shutdown(),
                    Ending::Terminate => inside.terminate_workers(),
                }
            }
        });
        futures.push((x, kind, f));
    }
    let fs: Vec<&Future<Answer>> = futures.iter().map(|(_, _, f)| f).collect();
    let waited = wait_timeout(fs, LIMIT, ALL_COMPLETED);
    assert!(
        waited.not_done.is_empty(),
        "seed {seed}: {} futures hang",
        waited.not_done.len()
    );
    let terminated = ending == Ending::Terminate && ended.load(SeqCst) > 0;
    let mut stopped = 0;
    for (x, kind, f) in &futures {
        let outcome = f.result();
        let as_expected = match (kind, outcome.clone()) {
            (_, Err(Error::Broken(_) | Error::Cancelled)) if terminated => {
                stopped += 1;
                true
            }
            (Kind::Plain | Kind::BrokenPipe | Kind::IgnoresSigterm, Ok(Answer(y, _))) => y == x,
            (Kind::Panic, Err(Error::Failed(e))) => e.kind() == TaskErrorKind::Panic,
            (Kind::ArgumentPanics | Kind::ResultWontDeserialize, Err(Error::Failed(e))) => {
                e.kind() == TaskErrorKind::Deserialize && e.to_string().contains("chaos")
            }
            (Kind::ResultWontSerialize, Err(Error::Failed(e))) => {
                e.kind() == TaskErrorKind::Serialize && e.to_string().contains("chaos")
            }
            (Kind::Forever, Err(Error::TaskTimeout(_))) => true,
            _ => false,
        };
        assert!(as_expected, "seed {seed}: item {x} ({kind:?}): {outcome:?}");
        let deadline = Instant::now() + LIMIT;
        while callbacks[*x as usize].load(SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            callbacks[*x as usize].load(SeqCst),
            1,
            "callbacks of item {x}"
        );
    }
    println!(
        "seed {seed}: {ending:?} from a callback at item {ender}: {} accepted, \
         {refused} refused, {stopped} stopped",
        futures.len()
    );
    // Ended from inside: later work is refused.
    assert!(
        ended.load(SeqCst) > 0,
        "seed {seed}: the ending callback ran"
    );
    assert!(matches!(
        pool.submit(misbehave, Arg(0, Kind::Plain))
            .unwrap_err()
            .reason(),
        Error::ShutDown
    ));
    let pool = Arc::try_unwrap(pool)
        .ok()
        .expect("the callbacks released their handles");
    drop_and_check_no_worker_left(pool, &foreign);
}
