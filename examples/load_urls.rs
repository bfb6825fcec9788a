//! Seeds 000, 001 and 004, the `ThreadPoolExecutor` example: load several
//! URLs at once and report each page as soon as it arrives.
//!
//! ```python
//! with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
//!     future_to_url = {executor.submit(load_url, url, 60): url for url in URLS}
//!     for future in concurrent.futures.as_completed(future_to_url):
//!         url = future_to_url[future]
//!         try:
//!             data = future.result()
//!         except Exception as exc:
//!             print('%r generated an exception: %s' % (url, exc))
//!         else:
//!             print('%r page is %d bytes' % (url, len(data)))
//! ```
//!
//! The seed's news sites are replaced by a real HTTP server started here on
//! 127.0.0.1, so the example needs no network: each site is a path on it,
//! answering after its own short delay. As in the seed's output, some loads
//! fail: `europe.wsj.com` answers `503 Service Unavailable`, and
//! `some-made-up-domain.com` points at a port where nothing listens.
//!
//! What to observe: the lines come in completion order (fastest site
//! first), not in the order of `URLS`; futures key the `HashMap` by
//! identity, as they key Python's dict; a failed load is an `Err` from
//! `result()`, the seed's `except` branch.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use concurrent_futures::{ThreadPoolExecutor, as_completed};

/// The seed's sites: (path on the local server, page size, answer delay).
/// The sizes are those in seed 000's output; the delays make the completion
/// order differ from this order.
const SITES: [(&str, usize, Duration); 4] = [
    ("www.foxnews.com", 323_030, Duration::from_millis(60)),
    ("www.cnn.com", 1_146_114, Duration::from_millis(30)),
    ("europe.wsj.com", 0, Duration::from_millis(10)),
    ("www.bbc.co.uk", 64_668, Duration::ZERO),
];

/// The site the local server refuses to serve, as the real one timed out.
const UNAVAILABLE: &str = "europe.wsj.com";

/// The seed's 60 s is far longer than anything here takes; it only bounds a
/// load that would otherwise hang.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Retrieves a single page and returns its contents (the seed's `load_url`).
fn load_url(url: &str, timeout: Duration) -> Result<Vec<u8>, ureq::Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    agent.get(url).call()?.into_body().read_to_vec()
}

/// A local web server answering every site of `SITES` on its own path.
struct Server {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    accept: JoinHandle<Vec<JoinHandle<()>>>,
}

impl Server {
    fn start() -> Server {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map(Arc::new)
            .unwrap_or_else(|e| panic!("cannot start the local HTTP server: {e}"));
        let addr = server
            .server_addr()
            .to_ip()
            .expect("a server bound to 127.0.0.1 has an IP address");
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = {
            let (server, stopping) = (Arc::clone(&server), Arc::clone(&stopping));
            thread::spawn(move || {
                let mut answers = Vec::new();
                loop {
                    match server.recv() {
                        // One thread per request, so a slow site does not
                        // hold up the others, as with real servers.
                        Ok(request) => answers.push(thread::spawn(move || answer(request))),
                        // `recv` fails both when `stop` unblocks it and on
                        // a failed accept; only the first ends the server.
                        Err(_) if stopping.load(Ordering::Acquire) => break answers,
                        Err(e) => eprintln!("local HTTP server: {e}"),
                    }
                }
            })
        };
        Server {
            server,
            addr,
            stopping,
            accept,
        }
    }

    fn url(&self, site: &str) -> String {
        format!("http://{}/{site}/", self.addr)
    }

    /// Stops accepting, then waits for every answer to be sent.
    fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        self.server.unblock();
        let answers = self.accept.join().expect("the accept loop does not panic");
        for answer in answers {
            answer.join().expect("answering a request does not panic");
        }
    }
}

fn answer(request: tiny_http::Request) {
    let site = request.url().trim_matches('/');
    let response = match SITES.iter().find(|(name, ..)| *name == site) {
        Some(&(name, size, delay)) => {
            thread::sleep(delay);
            if name == UNAVAILABLE {
                tiny_http::Response::from_string("busy").with_status_code(503)
            } else {
                tiny_http::Response::from_data(vec![b'x'; size])
            }
        }
        None => tiny_http::Response::from_string("no such site").with_status_code(404),
    };
    // The client may have given up already; that is its business.
    let _ = request.respond(response);
}

/// A URL on a port nobody listens on, like the seed's made-up domain.
fn unreachable_url() -> String {
    // The OS picks a free port; once the listener is dropped, connecting
    // to it is refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot reserve a local port: {e}"));
    format!("http://127.0.0.1:{port}/some-made-up-domain.com/")
}

/// Runs the example.
pub fn main() {
    let server = Server::start();
    let mut urls: Vec<String> = SITES.iter().map(|(site, ..)| server.url(site)).collect();
    urls.push(unreachable_url());

    {
        let executor = ThreadPoolExecutor::new(5).expect("five workers is a valid pool size");
        // Clippy sees the future's atomics and fears a key whose hash can
        // change; a future hashes by identity, which never changes.
        let future_to_url: HashMap<_, _> = urls
            .iter()
            .map(|url| {
                let task_url = url.clone();
                let future = executor
                    .submit_fallible(move || load_url(&task_url, LOAD_TIMEOUT))
                    .expect("a pool that was never shut down accepts work");
                (future, url)
            })
            .collect();
        for future in as_completed(future_to_url.keys()) {
            let url = future_to_url[&future];
            match future.result() {
                Ok(data) => println!("'{url}' page is {} bytes", data.len()),
                Err(exc) => println!("'{url}' generated an exception: {exc}"),
            }
        }
    }

    server.stop();
}
