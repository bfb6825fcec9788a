//! The cluster executor (SPEC B9) against a real NATS server and real
//! agents, all started here on 127.0.0.1: the server on a random port,
//! agents as child runs of this test binary (whose worker entry makes them
//! agents). Everything is stopped by pid when a test ends; every wait is
//! bounded. Without `nats-server` installed the tests say so and pass
//! (the test command installs it).

#![cfg(feature = "cluster")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use concurrent_futures::process::cluster::{AGENT_VAR, Cluster};
use concurrent_futures::{
    ALL_COMPLETED, BrokenKind, BuildError, Error, ExitCause, MapOptions, ProcessPoolBuilder,
    ProcessPoolExecutor, as_completed, wait_timeout,
};

mod common;
use common::process::{ABORT, Gate, LIMIT, Pool, gated, poll_until, settle};

/// One cluster at a time: agents and servers are this process's children,
/// and a loaded 2-core machine runs them best in turn.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn nats_server() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("nats-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
}

/// A child process killed (and reaped) by pid when dropped.
struct Service(Child);

impl Service {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Server {
    process: Service,
    url: String,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl Server {
    /// A server on 127.0.0.1, on a random port (or `port`), with `extra`
    /// flags (credentials); `None` when `nats-server` is not installed.
    fn start(extra: &[&str]) -> Option<Server> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cf-cluster-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, SeqCst)
        ));
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let Some(server) = Server::start_at(&dir, "-1", &extra) else {
            eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
            return None;
        };
        Some(server)
    }

    fn start_at(dir: &Path, port: &str, extra: &[String]) -> Option<Server> {
        let binary = nats_server()?;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("a directory for the server");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", port, "--ports_file_dir"])
            .arg(dir)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let process = Service(child);
        let ports = dir.join(format!("nats-server_{}.ports", process.pid()));
        let deadline = Instant::now() + LIMIT;
        // {"nats":["nats://127.0.0.1:PORT"]} (tls:// with TLS)
        let port: u16 = loop {
            if let Ok(text) = std::fs::read_to_string(&ports)
                && let Some(start) = text.find("127.0.0.1:")
            {
                let digits: String = text[start + 10..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(port) = digits.parse() {
                    break port;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {}",
                std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(10));
        };
        let url = format!("nats://127.0.0.1:{port}");
        Some(Server {
            process,
            url,
            port,
            dir: dir.to_owned(),
            extra: extra.to_vec(),
        })
    }

    /// Stops the server and starts it again on the same port.
    fn restart(&mut self) {
        self.process.kill();
        let again = Server::start_at(&self.dir, &self.port.to_string(), &self.extra)
            .expect("nats-server is still installed");
        *self = again;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pool name no other test uses.
fn pool_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("t{}-{}", std::process::id(), NEXT.fetch_add(1, SeqCst))
}

/// An agent: this test binary, made one by its environment.
fn agent(url: &str, pool: &str, slots: usize, env: &[(&str, &str)]) -> Service {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command
        .env(AGENT_VAR, url)
        .env("CONCURRENT_FUTURES_POOL", pool)
        .env("CONCURRENT_FUTURES_SLOTS", slots.to_string())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Service(command.spawn().expect("start an agent"))
}

fn pool(cluster: Cluster, workers: usize) -> Pool {
    built(ProcessPoolExecutor::builder().max_workers(workers), cluster)
}

/// The pool `builder` makes on `cluster`.
fn built(builder: ProcessPoolBuilder, cluster: Cluster) -> Pool {
    Pool(Some(
        builder.cluster(cluster).build().expect("a cluster pool"),
    ))
}

// ------------------------------------------------ tasks (run on agents) ----

fn square(x: u64) -> u64 {
    x * x
}

fn fails(_: ()) -> u64 {
    panic!("it broke on the agent")
}

fn length(text: String) -> (usize, usize) {
    (text.len(), text.bytes().filter(|&b| b == b'c').count())
}

fn big(n: usize) -> String {
    "x".repeat(n)
}

fn sleep_ms(ms: u64) -> u64 {
    thread::sleep(Duration::from_millis(ms));
    ms
}

// -------------------------------------------------------------- tests ----

#[test]
fn b9_submit_map_wait_as_completed_callbacks_and_shutdown_run_on_agents() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _agents = [
        agent(&server.url, &name, 2, &[]),
        agent(&server.url, &name, 2, &[]),
    ];
    let pool = pool(Cluster::new(&server.url, &name), 4);

    assert_eq!(
        *settle(&pool.submit(square, 12).expect("submit")).expect("a value"),
        144
    );
    let squares: Vec<u64> = pool
        .map_with(square, 0..200u64, MapOptions::new().chunksize(16))
        .collect::<Result<_, _>>()
        .expect("every item");
    assert_eq!(squares, (0..200u64).map(|x| x * x).collect::<Vec<_>>());

    let futures: Vec<_> = (0..50u64)
        .map(|x| pool.submit(square, x).expect("submit"))
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    for f in &futures {
        let calls = Arc::clone(&calls);
        f.add_done_callback(move |_| {
            calls.fetch_add(1, SeqCst);
        });
    }
    let waited = wait_timeout(&futures, LIMIT, ALL_COMPLETED);
    assert!(waited.not_done.is_empty());
    assert_eq!(waited.done.len(), 50);
    let mut seen: Vec<u64> = as_completed(&futures)
        .map(|f| *f.result().expect("a value"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..50u64).map(|x| x * x).collect::<Vec<_>>());
    poll_until("every callback ran", || calls.load(SeqCst) == 50);

    let failed = pool.submit(fails, ()).expect("submit");
    match settle(&failed) {
        Err(Error::Failed(e)) => assert!(e.to_string().contains("it broke on the agent"), "{e}"),
        other => panic!("expected the task's panic, got {other:?}"),
    }
    let mut pool = pool;
    let pool = pool.0.take().expect("the pool");
    pool.shutdown();
    assert!(matches!(
        pool.submit(square, 1).map_err(|e| e.reason().clone()),
        Err(Error::ShutDown)
    ));
}

#[test]
fn b9_an_argument_and_a_result_above_the_servers_payload_limit_cross_in_chunks() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _agent = agent(&server.url, &name, 1, &[]);
    let pool = pool(Cluster::new(&server.url, &name), 1);
    // Strings: serde moves them as one block (a Vec<u8> goes byte by
    // byte, slow in a debug build).
    let argument = "c".repeat(64 << 20);
    let f = pool.submit(length, argument).expect("submit");
    assert_eq!(*settle(&f).expect("a value"), (64 << 20, 64 << 20));
    let f = pool.submit(big, 3 << 20).expect("submit");
    assert_eq!(settle(&f).expect("a value").len(), 3 << 20);
}

#[test]
fn b9_a_worker_that_dies_on_its_agent_breaks_the_pool_or_with_self_healing_fails_only_its_call() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _agent = agent(&server.url, &name, 2, &[]);

    let gate = Gate::new();
    let broken = pool(Cluster::new(&server.url, &name), 1);
    let f = broken.submit(gated, gate.path()).expect("submit");
    gate.arrival().order(ABORT);
    match settle(&f) {
        Err(Error::Broken(b)) => assert_eq!(b.kind(), BrokenKind::ProcessPool),
        other => panic!("expected a broken pool, got {other:?}"),
    }
    assert!(matches!(
        broken.submit(square, 2).map_err(|e| e.reason().clone()),
        Err(Error::Broken(_))
    ));
    drop(broken);

    let healing = built(
        ProcessPoolExecutor::builder()
            .max_workers(1)
            .self_healing(true),
        Cluster::new(&server.url, &name),
    );
    let f = healing.submit(gated, gate.path()).expect("submit");
    gate.arrival().order(ABORT);
    match settle(&f) {
        Err(Error::WorkerDied(d)) => assert_eq!(d.cause(), ExitCause::Signal(libc::SIGABRT)),
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(
        *settle(&healing.submit(square, 9).expect("submit")).expect("a value"),
        81
    );
}

#[test]
fn b9_an_agent_killed_outright_loses_its_workers_and_an_agent_that_joins_takes_the_work() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let mut first = agent(&server.url, &name, 1, &[]);
    let pool = built(
        ProcessPoolExecutor::builder()
            .max_workers(1)
            .self_healing(true),
        Cluster::new(&server.url, &name),
    );
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).expect("submit");
    let arrival = gate.arrival();
    let _second = agent(&server.url, &name, 1, &[]);
    first.kill();
    match settle(&running) {
        Err(Error::WorkerDied(d)) => assert_eq!(d.cause(), ExitCause::Lost),
        other => panic!("expected a lost worker, got {other:?}"),
    }
    // SPEC P10: its worker died with its agent.
    poll_until("the lost agent's worker is gone", || {
        !arrival.worker.running()
    });
    assert_eq!(
        *settle(&pool.submit(square, 5).expect("submit")).expect("a value"),
        25
    );
}

#[test]
fn b9_timeouts_and_cancelling_a_running_call_kill_only_that_worker() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _agent = agent(&server.url, &name, 2, &[]);
    let timed = built(
        ProcessPoolExecutor::builder()
            .max_workers(1)
            .task_timeout(Duration::from_millis(200)),
        Cluster::new(&server.url, &name),
    );
    let slow = timed.submit(sleep_ms, 60_000).expect("submit");
    assert!(matches!(settle(&slow), Err(Error::TaskTimeout(_))));
    assert_eq!(
        *settle(&timed.submit(square, 4).expect("submit")).expect("a value"),
        16
    );
    drop(timed);

    let pool = pool(Cluster::new(&server.url, &name), 1);
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).expect("submit");
    let arrival = gate.arrival();
    assert!(pool.cancel(&running), "a running call can be cancelled");
    assert!(matches!(settle(&running), Err(Error::Cancelled)));
    poll_until("the cancelled call's worker is gone", || {
        !arrival.worker.running()
    });
    assert_eq!(
        *settle(&pool.submit(square, 3).expect("submit")).expect("a value"),
        9
    );
}

#[test]
fn b9_calls_go_ahead_to_a_busy_remote_worker_unless_calls_ahead_is_zero() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _agent = agent(&server.url, &name, 1, &[]);
    for calls_ahead in [None, Some(0)] {
        let mut cluster = Cluster::new(&server.url, &name);
        if let Some(n) = calls_ahead {
            cluster = cluster.calls_ahead(n);
        }
        let pool = pool(cluster, 1);
        let gate = Gate::new();
        let held = pool.submit(gated, gate.path()).expect("submit");
        let arrival = gate.arrival();
        // The only worker is busy: by default the call goes to it at once
        // (marked running, so no longer cancellable, as locally); with no
        // calls ahead it waits in the queue, where cancel still stops it.
        let behind = pool.submit(square, 5).expect("submit");
        if calls_ahead.is_none() {
            assert!(behind.running(), "sent ahead to the busy worker");
            assert!(!behind.cancel());
        } else {
            assert!(!behind.running(), "queued until a worker is idle");
            assert!(behind.cancel());
        }
        drop(arrival);
        assert!(settle(&held).is_ok());
        match settle(&behind) {
            Ok(v) => assert_eq!((*v, calls_ahead), (25, None)),
            Err(Error::Cancelled) => assert_eq!(calls_ahead, Some(0)),
            Err(e) => panic!("unexpected: {e}"),
        }
        // Its worker ends with it, and the next pool gets the slot.
        drop(pool);
    }
}

#[test]
fn b9_wrong_credentials_or_another_secret_get_a_clear_error_never_a_hang() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&["--auth", "right-token"]) else {
        return;
    };
    let refused = ProcessPoolExecutor::builder()
        .max_workers(1)
        .cluster(Cluster::new(&server.url, "p").token("wrong-token"))
        .build();
    match refused {
        Err(BuildError::Cluster(why)) => assert!(why.contains("could not connect"), "{why}"),
        other => panic!("expected a refused connection, got {other:?}"),
    }
    let name = pool_name();
    let _agent = agent(
        &server.url,
        &name,
        1,
        &[
            ("CONCURRENT_FUTURES_TOKEN", "right-token"),
            ("CONCURRENT_FUTURES_SECRET", "theirs"),
        ],
    );
    let pool = pool(
        Cluster::new(&server.url, &name)
            .token("right-token")
            .secret(b"ours".to_vec())
            .placement_timeout(Duration::from_millis(500)),
        1,
    );
    match settle(&pool.submit(square, 2).expect("submit")) {
        Err(Error::Broken(b)) => assert!(b.reason().contains("no agent"), "{}", b.reason()),
        other => panic!("an agent of another secret must not run our calls: {other:?}"),
    }
}

#[test]
fn b9_the_server_restarting_fails_the_calls_in_flight_and_the_pool_goes_on() {
    let _turn = one_at_a_time();
    let Some(mut server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _agent = agent(&server.url, &name, 2, &[]);
    let pool: ProcessPoolExecutor = ProcessPoolExecutor::builder()
        .max_workers(1)
        .self_healing(true)
        .cluster(Cluster::new(&server.url, &name))
        .build()
        .expect("a cluster pool");
    let pool = Pool(Some(pool));
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).expect("submit");
    let arrival = gate.arrival();
    server.restart();
    match settle(&running) {
        Err(Error::WorkerDied(d)) => assert_eq!(d.cause(), ExitCause::Lost),
        other => panic!("expected a lost worker, got {other:?}"),
    }
    poll_until("the agent killed the lost worker", || {
        !arrival.worker.running()
    });
    // Client and agent reconnect by themselves; a new worker is placed.
    assert_eq!(
        *settle(&pool.submit(square, 6).expect("submit")).expect("a value"),
        36
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir`: (ca, server cert, server key, client cert, client key).
fn certificates(dir: &Path) -> [PathBuf; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    std::fs::create_dir_all(dir).expect("a directory for certificates");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("a key")).expect("a CA");
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(names).expect("parameters");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).expect("a certificate");
        (cert.pem(), key.serialize_pem())
    };
    let server = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let client = leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server.0),
        ("server-key.pem", server.1),
        ("client.pem", client.0),
        ("client-key.pem", client.1),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write a certificate");
        path
    })
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[test]
fn b9_mutual_tls_with_a_password_and_nkeys_authenticate_clients_and_agents() {
    let _turn = one_at_a_time();
    let dir = std::env::temp_dir().join(format!("cf-cluster-tls-{}", std::process::id()));
    let [ca, cert, key, client_cert, client_key] = certificates(&dir);
    let flags = [
        "--tls",
        "--tlscert",
        text(&cert),
        "--tlskey",
        text(&key),
        "--tlsverify",
        "--tlscacert",
        text(&ca),
        "--user",
        "alice",
        "--pass",
        "pw1",
    ];
    let Some(server) = Server::start(&flags) else {
        return;
    };
    let name = pool_name();
    let _agent = agent(
        &server.url,
        &name,
        1,
        &[
            ("CONCURRENT_FUTURES_USER", "alice"),
            ("CONCURRENT_FUTURES_PASSWORD", "pw1"),
            ("CONCURRENT_FUTURES_TLS_CA", text(&ca)),
            ("CONCURRENT_FUTURES_TLS_CERT", text(&client_cert)),
            ("CONCURRENT_FUTURES_TLS_KEY", text(&client_key)),
        ],
    );
    let cluster = Cluster::new(&server.url, &name)
        .user_and_password("alice", "pw1")
        .root_certificate(&ca)
        .require_tls(true);
    let without_certificate = ProcessPoolExecutor::builder()
        .max_workers(1)
        .cluster(cluster.clone())
        .build();
    assert!(matches!(without_certificate, Err(BuildError::Cluster(_))));
    let wrong_password = ProcessPoolExecutor::builder()
        .max_workers(1)
        .cluster(
            cluster
                .clone()
                .user_and_password("alice", "guess")
                .client_certificate(&client_cert, &client_key),
        )
        .build();
    assert!(matches!(wrong_password, Err(BuildError::Cluster(_))));
    let tls = pool(cluster.client_certificate(&client_cert, &client_key), 1);
    assert_eq!(
        *settle(&tls.submit(square, 7).expect("submit")).expect("a value"),
        49
    );
    drop(tls);
    drop(server);

    let user = nkeys::KeyPair::new_user();
    let config = dir.join("nkey.conf");
    let public = user.public_key();
    std::fs::write(
        &config,
        format!("authorization {{ users = [ {{ nkey: {public} }} ] }}"),
    )
    .expect("write the server's configuration");
    let Some(server) = Server::start(&["-c", text(&config)]) else {
        return;
    };
    let seed = user.seed().expect("the user's seed");
    let name = pool_name();
    let _agent = agent(&server.url, &name, 1, &[("CONCURRENT_FUTURES_NKEY", &seed)]);
    let other = nkeys::KeyPair::new_user().seed().expect("a seed");
    let refused = ProcessPoolExecutor::builder()
        .max_workers(1)
        .cluster(Cluster::new(&server.url, &name).nkey(other))
        .build();
    assert!(matches!(refused, Err(BuildError::Cluster(_))));
    let signed = pool(Cluster::new(&server.url, &name).nkey(seed), 1);
    assert_eq!(
        *settle(&signed.submit(square, 8).expect("submit")).expect("a value"),
        64
    );
    drop(signed);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Set in a child run of this binary: the client whose death the test
/// watches (`role_client`).
const CLIENT_ROLE: &str = "CF_TEST_CLUSTER_CLIENT";

#[test]
fn role_client() {
    // A client that starts a call held at a gate and waits to be killed.
    let Ok(spec) = std::env::var(CLIENT_ROLE) else {
        return;
    };
    let mut parts = spec.splitn(3, ' ');
    let (Some(url), Some(name), Some(gate)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("CF_TEST_CLUSTER_CLIENT is 'url pool gate'");
    };
    let pool = ProcessPoolExecutor::builder()
        .max_workers(1)
        .cluster(Cluster::new(url, name))
        .build()
        .expect("a cluster pool");
    let held = pool.submit(gated, gate.to_owned()).expect("submit");
    let _ = held.result_timeout(LIMIT * 10);
    std::process::abort();
}

#[test]
fn p10_an_agent_kills_the_workers_of_a_client_that_died() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _agent = agent(&server.url, &name, 1, &[]);
    let gate = Gate::new();
    let mut client = Service(
        Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "role_client", "--test-threads=1"])
            .env(
                CLIENT_ROLE,
                format!("{} {name} {}", server.url, gate.path()),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("run the client"),
    );
    let arrival = gate.arrival();
    client.kill();
    poll_until("the dead client's worker is gone", || {
        !arrival.worker.running()
    });
    // Its slot is free again: another client gets it.
    let pool = pool(Cluster::new(&server.url, &name), 1);
    assert_eq!(
        *settle(&pool.submit(square, 11).expect("submit")).expect("a value"),
        121
    );
}

fn pid_after(ms: u64) -> u32 {
    thread::sleep(Duration::from_millis(ms));
    std::process::id()
}

#[test]
fn b9_chaos_workers_and_agents_killed_an_agent_joining_and_the_server_restarting() {
    // Every future ends in exactly one outcome (its value or WorkerDied),
    // every callback runs once, nothing hangs, and the pool works after.
    let _turn = one_at_a_time();
    let Some(mut server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let mut agents = vec![
        agent(&server.url, &name, 2, &[]),
        agent(&server.url, &name, 2, &[]),
    ];
    let pool = built(
        ProcessPoolExecutor::builder()
            .max_workers(4)
            .self_healing(true),
        Cluster::new(&server.url, &name),
    );
    let callbacks = Arc::new(AtomicUsize::new(0));
    let mut futures = Vec::new();
    let submit = |futures: &mut Vec<_>, n: u64| {
        for i in 0..n {
            let f = pool.submit(pid_after, i % 4).expect("submit");
            let callbacks = Arc::clone(&callbacks);
            f.add_done_callback(move |_| {
                callbacks.fetch_add(1, SeqCst);
            });
            futures.push(f);
        }
    };
    let mut outcomes = (0, 0);
    let mut tally = |futures: &[concurrent_futures::Future<u32>]| -> Vec<u32> {
        let mut pids = Vec::new();
        for f in futures {
            match settle(f) {
                Ok(pid) => {
                    outcomes.0 += 1;
                    pids.push(*pid);
                }
                Err(Error::WorkerDied(_)) => outcomes.1 += 1,
                Err(other) => panic!("an outcome other than a value or a lost worker: {other:?}"),
            }
        }
        pids
    };
    // Round 1: kill workers, by the pids their tasks report.
    submit(&mut futures, 100);
    let pids = tally(&futures);
    for pid in pids.iter().take(2) {
        common::process::sigkill(*pid);
    }
    submit(&mut futures, 100);
    // Round 2: an agent dies outright, another joins.
    agents[0].kill();
    agents.push(agent(&server.url, &name, 2, &[]));
    submit(&mut futures, 100);
    // Round 3: the server restarts under running work.
    server.restart();
    submit(&mut futures, 100);
    tally(&futures[100..]);
    assert_eq!(outcomes.0 + outcomes.1, 400, "one outcome per future");
    poll_until("every callback ran once", || callbacks.load(SeqCst) == 400);
    assert!(outcomes.0 > 0);
    eprintln!("chaos: {} values, {} lost workers", outcomes.0, outcomes.1);
    let after = pool.submit(square, 10).expect("submit");
    assert_eq!(
        *settle(&after).expect("the pool works after the chaos"),
        100
    );
    assert_eq!(callbacks.load(SeqCst), 400, "no callback ran twice");
}

#[test]
fn b9_queued_work_goes_to_an_agent_as_soon_as_it_joins_and_deadlines_hold_meanwhile() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let _first = agent(&server.url, &name, 1, &[]);
    let pool = built(
        ProcessPoolExecutor::builder()
            .max_workers(2)
            .task_timeout(Duration::from_millis(300)),
        Cluster::new(&server.url, &name),
    );
    // The one slot is taken; a second worker cannot be placed, and the
    // deadline of the running call is still enforced.
    let slow = pool.submit(sleep_ms, 60_000).expect("submit");
    let queued = pool.submit(square, 3).expect("submit");
    assert!(matches!(settle(&slow), Err(Error::TaskTimeout(_))));
    assert_eq!(*settle(&queued).expect("a value"), 9);

    let gate = Gate::new();
    let held = pool.submit(gated, gate.path()).expect("submit");
    let arrival = gate.arrival();
    let waiting = pool.submit(square, 4).expect("submit");
    // Nothing else happens in the pool: only the new agent's offer can
    // get the waiting call a worker while the first one is held.
    let _second = agent(&server.url, &name, 1, &[]);
    assert_eq!(*settle(&waiting).expect("a value"), 16);
    assert!(!held.done(), "the first call is still held at its gate");
    arrival.release();
    settle(&held).expect("a value");
}

#[test]
fn b9_with_retries_a_call_whose_agent_was_lost_runs_again_on_another() {
    let _turn = one_at_a_time();
    let Some(server) = Server::start(&[]) else {
        return;
    };
    let name = pool_name();
    let mut first = agent(&server.url, &name, 1, &[]);
    let pool = built(
        ProcessPoolExecutor::builder().max_workers(1).retries(1),
        Cluster::new(&server.url, &name),
    );
    let gate = Gate::new();
    let call = pool.submit(gated, gate.path()).expect("submit");
    let on_first = gate.arrival();
    let _second = agent(&server.url, &name, 1, &[]);
    first.kill();
    // At-least-once: it starts again, on the agent that is left.
    let on_second = gate.arrival();
    let second_pid = on_second.pid();
    assert_ne!(on_first.pid(), second_pid);
    on_second.release();
    assert_eq!(*settle(&call).expect("the rerun's value"), second_pid);
}

/// A network namespace with one veth link to this one: a host of its own
/// for an agent, whose link the test can cut. Deleted when dropped.
struct Host {
    name: String,
    outside: String,
}

impl Host {
    /// `None` where namespaces cannot be made (not root): the test says so.
    fn new(subnet: u8) -> Option<Host> {
        let id = std::process::id() % 10_000;
        let name = format!("cf{id}h{subnet}");
        let outside = format!("cf{id}o{subnet}");
        let inside = format!("cf{id}i{subnet}");
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            eprintln!("skipped: cannot make a network namespace here (needs root and iproute2)");
            return None;
        }
        let host = Host { name, outside };
        let here = format!("10.213.{subnet}.1/24");
        let there = format!("10.213.{subnet}.2/24");
        let ok = ip(&[
            "link",
            "add",
            &host.outside,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
        ]) && ip(&["link", "set", &inside, "netns", &host.name])
            && ip(&["addr", "add", &here, "dev", &host.outside])
            && ip(&["link", "set", &host.outside, "up"])
            && ip(&["-n", &host.name, "addr", "add", &there, "dev", &inside])
            && ip(&["-n", &host.name, "link", "set", &inside, "up"])
            && ip(&["-n", &host.name, "link", "set", "lo", "up"]);
        assert!(ok, "could not set up the namespace's link");
        Some(host)
    }

    fn cut(&self) {
        let status = Command::new("ip")
            .args(["link", "set", &self.outside, "down"])
            .status()
            .expect("run ip");
        assert!(status.success(), "could not cut the link");
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the link, and so both.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.outside])
            .status();
    }
}

#[test]
fn b9_a_host_cut_off_by_the_network_is_lost_within_the_limit_and_its_agent_kills_its_workers() {
    let _turn = one_at_a_time();
    let Some(host) = Host::new(1) else { return };
    // The server listens on the link's address too: the agent's host
    // reaches it there, this process on loopback.
    let Some(server) = Server::start(&["--auth", "cut-token", "-a", "0.0.0.0"]) else {
        return;
    };
    let name = pool_name();
    let remote_url = format!("nats://10.213.1.1:{}", server.port);
    let _agent = Service(
        Command::new("ip")
            .args(["netns", "exec", &host.name])
            .arg(std::env::current_exe().expect("the test binary"))
            .env(AGENT_VAR, &remote_url)
            .env("CONCURRENT_FUTURES_POOL", &name)
            .env("CONCURRENT_FUTURES_SLOTS", "1")
            .env("CONCURRENT_FUTURES_TOKEN", "cut-token")
            .env("CONCURRENT_FUTURES_SECRET", "cut-secret")
            .env("CONCURRENT_FUTURES_LOST_AFTER_MS", "1000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start an agent in the namespace"),
    );
    let pool = built(
        ProcessPoolExecutor::builder()
            .max_workers(1)
            .self_healing(true),
        Cluster::new(&server.url, &name)
            .token("cut-token")
            .secret(b"cut-secret".to_vec())
            .lost_after(Duration::from_secs(1)),
    );
    let gate = Gate::new();
    let running = pool.submit(gated, gate.path()).expect("submit");
    let arrival = gate.arrival();
    host.cut();
    // Nothing closes: only the silence tells, after `lost_after`.
    match settle(&running) {
        Err(Error::WorkerDied(d)) => assert_eq!(d.cause(), ExitCause::Lost),
        other => panic!("expected a lost worker, got {other:?}"),
    }
    // The agent, cut off from the server, kills what it ran.
    poll_until("the cut-off agent killed its worker", || {
        !arrival.worker.running()
    });
}
