//! The cluster executor: process pool workers on other machines, over a
//! NATS server (SPEC B9; the `cluster` feature).
//!
//! Each machine runs an *agent*: this same program, started with
//! `CONCURRENT_FUTURES_AGENT=<nats url>` (and the pool's name, credentials
//! and secret, see [`Cluster::from_env`]), or calling [`run_agent`]. An
//! agent offers a number of worker slots and starts ordinary local worker
//! processes for the clients that claim them, relaying their frames. A
//! client is a [`ProcessPoolExecutor`](crate::ProcessPoolExecutor) built
//! with [`ProcessPoolBuilder::cluster`](crate::ProcessPoolBuilder::cluster):
//! the same executor, the same futures, the same engine deciding
//! everything (crash isolation, timeouts, cancelling running calls,
//! self-healing), with workers placed on agents instead of started here.
//!
//! How ends are seen: a worker that dies is reported by its agent with its
//! real exit cause, as a local worker's death; an agent that dies is
//! noticed by the client's probes within milliseconds (the server answers
//! "no responders" at once), a host or network that goes quiet after
//! [`Cluster::lost_after`]; either ends its workers with
//! [`ExitCause::Lost`](crate::ExitCause::Lost). A lost connection to the
//! server loses every worker (messages may have been dropped). Agents kill
//! the workers of a client they can no longer reach (SPEC P10).
//!
//! Functions cross by reference into the executable, so every machine must
//! run the same build: agents refuse clients whose executable's SHA-256
//! differs. Whoever can publish a call can run any function of the
//! program, so messages carry an HMAC under the pool's secret, and a
//! server that is not on this machine is only used with credentials.
//!
//! # Examples
//!
//! ```no_run
//! use concurrent_futures::process::cluster::Cluster;
//! use concurrent_futures::ProcessPoolExecutor;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! // Agents: `CONCURRENT_FUTURES_AGENT=nats://10.0.0.1:4222 CONCURRENT_FUTURES_POOL=demo
//! //          CONCURRENT_FUTURES_TOKEN=... CONCURRENT_FUTURES_SECRET=... ./my-program`
//! let cluster = Cluster::new("nats://10.0.0.1:4222", "demo")
//!     .token("s3cret-token")
//!     .secret(b"the pool's shared secret".to_vec());
//! let pool = ProcessPoolExecutor::builder().max_workers(8).cluster(cluster).build()?;
//! assert_eq!(*pool.submit(square, 12)?.result()?, 144);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod agent;
mod client;
mod protocol;
mod runtime;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use self::agent::run_agent;
pub(crate) use self::client::ClusterTransport;

/// The environment variable that makes this program an agent: the NATS
/// server's URL.
pub const AGENT_VAR: &str = "CONCURRENT_FUTURES_AGENT";

/// How a client or agent proves who it is to the NATS server.
#[derive(Clone, Default)]
enum Credentials {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
    NKey(String),
}

/// Where a cluster is and how to reach it: the NATS server, the pool's
/// name (agents and clients of one pool find each other by it),
/// credentials, TLS, the pool's secret, and how quickly a silent agent
/// counts as lost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use concurrent_futures::process::cluster::Cluster;
///
/// let cluster = Cluster::new("nats://127.0.0.1:4222", "primes")
///     .user_and_password("alice", "pw")
///     .lost_after(Duration::from_secs(2));
/// assert_eq!(cluster.pool(), "primes");
/// ```
#[derive(Clone)]
pub struct Cluster {
    url: String,
    pool: String,
    credentials: Credentials,
    root_certificates: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
    require_tls: bool,
    secret: Option<Vec<u8>>,
    probe_every: Duration,
    lost_after: Duration,
    placement_timeout: Duration,
    calls_ahead: usize,
}

/// Calls a remote worker may hold beyond the one it runs, unless set
/// (`Cluster::calls_ahead`).
const DEFAULT_CALLS_AHEAD: usize = 32;

/// Shows where, never the credentials or the secret.
impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.url)
            .field("pool", &self.pool)
            .field("require_tls", &self.require_tls)
            .field("lost_after", &self.lost_after)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster of NATS server `url` (`nats://host:port`, `tls://...`)
    /// and pool `pool` (letters, digits, `-` and `_`).
    pub fn new(url: impl Into<String>, pool: impl Into<String>) -> Cluster {
        Cluster {
            url: url.into(),
            pool: pool.into(),
            credentials: Credentials::None,
            root_certificates: Vec::new(),
            client_certificate: None,
            require_tls: false,
            secret: None,
            probe_every: Duration::from_millis(20),
            lost_after: Duration::from_secs(3),
            placement_timeout: Duration::from_secs(10),
            calls_ahead: DEFAULT_CALLS_AHEAD,
        }
    }

    /// The cluster the environment names, as agents read it:
    /// `CONCURRENT_FUTURES_AGENT` (the URL), `CONCURRENT_FUTURES_POOL`
    /// (default `default`), `CONCURRENT_FUTURES_TOKEN`, or
    /// `CONCURRENT_FUTURES_USER` and `CONCURRENT_FUTURES_PASSWORD`, or
    /// `CONCURRENT_FUTURES_NKEY` (a seed), `CONCURRENT_FUTURES_SECRET`,
    /// `CONCURRENT_FUTURES_TLS_CA`, `CONCURRENT_FUTURES_TLS_CERT` with
    /// `CONCURRENT_FUTURES_TLS_KEY`, and `CONCURRENT_FUTURES_LOST_AFTER_MS`.
    /// `None` without a URL.
    pub fn from_env() -> Option<Cluster> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let url = var(AGENT_VAR)?;
        let pool = var("CONCURRENT_FUTURES_POOL").unwrap_or_else(|| "default".into());
        let mut cluster = Cluster::new(url, pool);
        if let Some(token) = var("CONCURRENT_FUTURES_TOKEN") {
            cluster = cluster.token(token);
        } else if let (Some(user), Some(password)) = (
            var("CONCURRENT_FUTURES_USER"),
            var("CONCURRENT_FUTURES_PASSWORD"),
        ) {
            cluster = cluster.user_and_password(user, password);
        } else if let Some(seed) = var("CONCURRENT_FUTURES_NKEY") {
            cluster = cluster.nkey(seed);
        }
        if let Some(secret) = std::env::var_os("CONCURRENT_FUTURES_SECRET") {
            cluster = cluster.secret(OsString::into_encoded_bytes(secret));
        }
        if let Some(ca) = var("CONCURRENT_FUTURES_TLS_CA") {
            cluster = cluster.root_certificate(ca).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (
            var("CONCURRENT_FUTURES_TLS_CERT"),
            var("CONCURRENT_FUTURES_TLS_KEY"),
        ) {
            cluster = cluster.client_certificate(cert, key);
        }
        if let Some(ms) = var("CONCURRENT_FUTURES_LOST_AFTER_MS").and_then(|v| v.parse().ok()) {
            cluster = cluster.lost_after(Duration::from_millis(ms));
        }
        Some(cluster)
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Cluster {
        self.credentials = Credentials::Token(token.into());
        self
    }

    /// Authenticates as a user, with a password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Cluster {
        self.credentials = Credentials::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticates with an nkey seed (`SU...`): the server checks a
    /// signature, no secret crosses the network.
    pub fn nkey(mut self, seed: impl Into<String>) -> Cluster {
        self.credentials = Credentials::NKey(seed.into());
        self
    }

    /// Trusts this CA certificate (PEM) for the server's TLS certificate.
    pub fn root_certificate(mut self, path: impl Into<PathBuf>) -> Cluster {
        self.root_certificates.push(path.into());
        self
    }

    /// Presents this certificate and key (PEM) to the server: mutual TLS.
    pub fn client_certificate(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Cluster {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// Refuses a connection without TLS.
    pub fn require_tls(mut self, on: bool) -> Cluster {
        self.require_tls = on;
        self
    }

    /// The pool's secret, which every client and agent of the pool shares:
    /// every message is authenticated with it. Required unless the server
    /// is on this machine (then an empty secret is the default).
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Cluster {
        self.secret = Some(secret.into());
        self
    }

    /// How long an agent (or, for an agent, a client) may stay silent
    /// before its workers count as lost (default 3 s). A process that dies
    /// is noticed sooner, at the next probe.
    pub fn lost_after(mut self, limit: Duration) -> Cluster {
        self.lost_after = limit.max(Duration::from_millis(1));
        self
    }

    /// How often the other side is probed (default 20 ms).
    pub fn probe_every(mut self, period: Duration) -> Cluster {
        self.probe_every = period.max(Duration::from_millis(1));
        self
    }

    /// How long starting a worker may wait for an agent with a free slot
    /// (default 10 s); after that, the start fails as a local one that
    /// could not start a process.
    pub fn placement_timeout(mut self, limit: Duration) -> Cluster {
        self.placement_timeout = limit;
        self
    }

    /// How many calls a client may send to a remote worker beyond the one
    /// it runs (default 32; a local pool's workers hold 2). Calls sent
    /// ahead hide the network's round trip, and travel together, so that
    /// short calls cost a fraction of a message each. The price: a call
    /// sent ahead is bound to its worker (queued again only if that worker
    /// ends), and, like any dispatched call, counts as running, so
    /// [`Future::cancel`](crate::Future::cancel) no longer stops it
    /// ([`ProcessPoolExecutor::cancel`](crate::ProcessPoolExecutor::cancel)
    /// does). Lower it for long calls, where balance matters more than a
    /// round trip; 0 sends a call only to an idle worker, as does any call
    /// over 64 KiB. Measured on loopback (2 agents of 1 slot, trivial
    /// calls): 30 µs per call pipelined with 4 ahead, 7 µs with 32, 3 µs
    /// with 128.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::process::cluster::Cluster;
    ///
    /// let cluster = Cluster::new("nats://127.0.0.1:4222", "renders").calls_ahead(0);
    /// assert_eq!(cluster.pool(), "renders");
    /// ```
    pub fn calls_ahead(mut self, calls: usize) -> Cluster {
        self.calls_ahead = calls;
        self
    }

    /// Whether the server is on this machine.
    fn is_local(&self) -> bool {
        let rest = self.url.split("://").nth(1).unwrap_or(&self.url);
        let authority = rest.rsplit('@').next().unwrap_or(rest);
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            authority.split([':', '/']).next().unwrap_or("")
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The refusals that apply before connecting: no unauthenticated use
    /// of a server on the network, no pool without a secret there, a pool
    /// name NATS can carry.
    fn check(&self) -> Result<(), String> {
        if self.pool.is_empty() || protocol::token(&self.pool) != self.pool {
            return Err(format!(
                "pool name {:?} must be letters, digits, '-' and '_'",
                self.pool
            ));
        }
        if !self.is_local() {
            if matches!(self.credentials, Credentials::None) {
                return Err(format!(
                    "{} is not on this machine: give credentials (token, user and password, or nkey)",
                    self.url
                ));
            }
            if self.secret.as_ref().is_none_or(Vec::is_empty) {
                return Err(format!(
                    "{} is not on this machine: give the pool a secret",
                    self.url
                ));
            }
        }
        Ok(())
    }

    fn key(&self) -> protocol::Key {
        protocol::Key::new(self.secret.as_deref().unwrap_or_default())
    }

    fn connect_options(&self) -> async_nats::ConnectOptions {
        let mut options = match &self.credentials {
            Credentials::None => async_nats::ConnectOptions::new(),
            Credentials::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
            Credentials::UserPassword(u, p) => {
                async_nats::ConnectOptions::with_user_and_password(u.clone(), p.clone())
            }
            Credentials::NKey(seed) => async_nats::ConnectOptions::with_nkey(seed.clone()),
        };
        for ca in &self.root_certificates {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        options
            .require_tls(self.require_tls)
            .connection_timeout(self.placement_timeout.max(Duration::from_secs(1)))
            .ping_interval(self.lost_after.max(Duration::from_secs(1)))
            .request_timeout(Some(self.lost_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_the_network_needs_credentials_and_a_secret() {
        // SPEC B9: no unauthenticated mode off this machine.
        assert!(Cluster::new("nats://127.0.0.1:4222", "p").check().is_ok());
        assert!(Cluster::new("nats://localhost:4222", "p").check().is_ok());
        assert!(Cluster::new("nats://[::1]:4222", "p").check().is_ok());
        let remote = Cluster::new("nats://10.1.2.3:4222", "p");
        assert!(remote.check().unwrap_err().contains("credentials"));
        let with_token = remote.clone().token("t");
        assert!(with_token.check().unwrap_err().contains("secret"));
        assert!(with_token.secret(b"s".to_vec()).check().is_ok());
        assert!(
            Cluster::new("nats://user:pw@10.1.2.3", "p")
                .check()
                .is_err()
        );
        assert!(
            Cluster::new("nats://127.0.0.1:4222", "a.b")
                .check()
                .is_err()
        );
    }
}
