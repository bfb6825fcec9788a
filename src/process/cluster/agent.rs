//! The agent: offers worker slots to a pool's clients and runs the
//! workers they claim as ordinary local workers (the pipe transport),
//! relaying their messages. It adds no task semantics of its own.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::Cluster;
use super::protocol::{
    self, Announce, Key, Opener, Sealer, StartReply, StartRequest, ToAgent, ToClient,
};
use super::runtime::{Publish, publisher};
use crate::error::ExitCause;
use crate::process::Launcher;
use crate::process::transport::pipe::PipeTransport;
use crate::process::transport::{FromWorker, Link, LinkEvents, StopHow, Transport};

/// How often an agent repeats its offer, so that a client that missed one
/// learns of it.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// Runs this process as an agent of `cluster` with `slots` worker slots,
/// until the process is killed or its connection closes for good.
///
/// Programs need not call this: with the `worker-entry` feature, starting
/// the program with `CONCURRENT_FUTURES_AGENT=<url>` (see
/// [`Cluster::from_env`]) runs it before `main`, with
/// `CONCURRENT_FUTURES_SLOTS` slots (default: one per CPU).
///
/// # Errors
///
/// The cluster's settings are refused (see [`Cluster`]), the server cannot
/// be reached or refuses the credentials, or this program cannot start
/// workers.
///
/// # Examples
///
/// ```no_run
/// use concurrent_futures::process::cluster::{Cluster, run_agent};
///
/// let cluster = Cluster::new("nats://127.0.0.1:4222", "demo");
/// run_agent(&cluster, 4)?; // never returns while the server is there
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn run_agent(cluster: &Cluster, slots: usize) -> io::Result<()> {
    cluster.check().map_err(io::Error::other)?;
    let launcher = Launcher::this_program().map_err(io::Error::other)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(cluster, slots, launcher))
}

/// What the agent's loop hears from its other tasks and threads.
enum Event {
    Start(async_nats::Message),
    Frame(async_nats::Message),
    Roll,
    Ended { client: String, worker: u64 },
    ClientGone(String),
    Disconnected,
}

struct Hosted {
    link: Arc<dyn Link>,
    opener: Opener,
}

struct Agent {
    pool: String,
    id: String,
    host: String,
    image: [u8; 32],
    key: Key,
    slots: usize,
    probe_every: Duration,
    lost_after: Duration,
    nats: async_nats::Client,
    out: mpsc::UnboundedSender<Publish>,
    events: mpsc::UnboundedSender<Event>,
    transport: PipeTransport,
    workers: HashMap<(String, u64), Hosted>,
    probed: HashMap<String, ()>,
    max_payload: usize,
}

async fn serve(cluster: &Cluster, slots: usize, launcher: Launcher) -> io::Result<()> {
    let (events, mut inbox) = mpsc::unbounded_channel();
    let on_disconnect = events.clone();
    let options = cluster.connect_options().event_callback(move |event| {
        let events = on_disconnect.clone();
        async move {
            if matches!(event, async_nats::Event::Disconnected) {
                let _ = events.send(Event::Disconnected);
            }
        }
    });
    let nats = options
        .connect(cluster.url.clone())
        .await
        .map_err(|e| io::Error::other(format!("could not connect to {}: {e}", cluster.url)))?;
    let (out, queue) = mpsc::unbounded_channel();
    tokio::spawn(publisher(nats.clone(), queue));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned());
    let inbox_name = nats.new_inbox();
    let suffix = inbox_name.rsplit('.').next().unwrap_or("x");
    let id = protocol::token(&format!("{host}-{}-{suffix}", std::process::id()));
    let image = protocol::image_hash()?;
    let pool = cluster.pool.clone();
    let root = protocol::agent_root(&pool, &id);
    let subscribe_error = |e: async_nats::SubscribeError| io::Error::other(e.to_string());
    let starts = nats
        .subscribe(format!("{root}.start"))
        .await
        .map_err(subscribe_error)?;
    let frames = nats
        .subscribe(format!("{root}.w.>"))
        .await
        .map_err(subscribe_error)?;
    let mut pings = nats
        .subscribe(format!("{root}.ping"))
        .await
        .map_err(subscribe_error)?;
    let rolls = nats
        .subscribe(protocol::roll(&pool))
        .await
        .map_err(subscribe_error)?;
    forward(&events, starts, Event::Start);
    forward(&events, frames, Event::Frame);
    forward(&events, rolls, |_| Event::Roll);
    let ponging = nats.clone();
    tokio::spawn(async move {
        while let Some(ping) = pings.next().await {
            if let Some(reply) = ping.reply {
                let _ = ponging.publish(reply, Bytes::new()).await;
            }
        }
    });
    let max_payload = nats.server_info().max_payload;
    let mut agent = Agent {
        pool,
        id,
        host,
        image,
        key: cluster.key(),
        slots,
        probe_every: cluster.probe_every,
        lost_after: cluster.lost_after,
        nats,
        out,
        events,
        transport: PipeTransport::new(launcher),
        workers: HashMap::new(),
        probed: HashMap::new(),
        max_payload,
    };
    agent.announce();
    let mut ticker = tokio::time::interval(ANNOUNCE_EVERY);
    loop {
        tokio::select! {
            event = inbox.recv() => match event {
                Some(event) => agent.handle(event).await,
                None => return Ok(()),
            },
            _ = ticker.tick() => agent.announce(),
        }
    }
}

/// Feeds what `subscription` receives into the agent's loop.
fn forward(
    events: &mpsc::UnboundedSender<Event>,
    mut subscription: async_nats::Subscriber,
    wrap: fn(async_nats::Message) -> Event,
) {
    let events = events.clone();
    tokio::spawn(async move {
        while let Some(message) = subscription.next().await {
            if events.send(wrap(message)).is_err() {
                break;
            }
        }
    });
}

impl Agent {
    fn free(&self) -> usize {
        self.slots.saturating_sub(self.workers.len())
    }

    fn announce(&self) {
        let subject = protocol::agents(&self.pool);
        let offer = protocol::encode(&Announce {
            agent: self.id.clone(),
            image: self.image,
            free: u32::try_from(self.free()).unwrap_or(u32::MAX),
        });
        let _ = self.out.send(Publish {
            payload: Bytes::from(self.key.seal_one(&subject, &offer)),
            subject,
            stream: false,
        });
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Start(message) => self.start(message).await,
            Event::Frame(message) => self.frame(&message),
            Event::Roll => self.announce(),
            Event::Ended { client, worker } => {
                self.workers.remove(&(client, worker));
                self.announce();
            }
            Event::ClientGone(client) => {
                tracing::warn!(%client, "a client is gone: killing its workers");
                self.probed.remove(&client);
                for ((c, _), hosted) in &self.workers {
                    if *c == client {
                        hosted.link.stop(StopHow::Kill);
                    }
                }
            }
            Event::Disconnected => {
                // Its clients count these workers lost: none may run on.
                for hosted in self.workers.values() {
                    hosted.link.stop(StopHow::Kill);
                }
            }
        }
    }

    async fn start(&mut self, message: async_nats::Message) {
        let Some(reply) = message.reply.clone() else {
            return;
        };
        let subject = protocol::start(&self.pool, &self.id);
        let Some(request) = self
            .key
            .open_one(&subject, &message.payload)
            .and_then(protocol::decode::<StartRequest>)
        else {
            tracing::warn!("refused a start request that failed its check");
            return;
        };
        let answer = self.start_worker(request);
        let sealed = self.key.seal_one(&subject, &protocol::encode(&answer));
        let _ = self.nats.publish(reply, Bytes::from(sealed)).await;
        self.announce();
    }

    fn start_worker(&mut self, request: StartRequest) -> StartReply {
        if request.image != self.image {
            return StartReply::Refused("this agent runs another build of the program".into());
        }
        if self.free() == 0 {
            return StartReply::Refused("no free slot".into());
        }
        let client = protocol::token(&request.client);
        let key = (client.clone(), request.worker);
        if self.workers.contains_key(&key) {
            return StartReply::Refused("that worker exists already".into());
        }
        let relay = Arc::new(Relay {
            pending: Mutex::new(Vec::new()),
            sealer: Mutex::new(Sealer::new(
                self.key.clone(),
                protocol::to_client(&self.pool, &client, request.worker),
                self.max_payload,
            )),
            out: self.out.clone(),
            events: self.events.clone(),
            client: client.clone(),
            worker: request.worker,
        });
        let link = match self.transport.start(relay) {
            Ok(link) => link,
            Err(e) => return StartReply::Refused(format!("could not start a worker process: {e}")),
        };
        let pid = link.worker().pid().unwrap_or(0);
        let opener = Opener::new(
            self.key.clone(),
            protocol::to_agent(&self.pool, &self.id, &client, request.worker),
        );
        self.workers.insert(key, Hosted { link, opener });
        self.probe(&client);
        StartReply::Started {
            pid,
            host: self.host.clone(),
        }
    }

    fn frame(&mut self, message: &async_nats::Message) {
        // `cf.P.a.A.w.C.W`
        let mut tokens = message.subject.rsplit('.');
        let (Some(worker), Some(client)) = (tokens.next(), tokens.next()) else {
            return;
        };
        let Ok(worker) = worker.parse::<u64>() else {
            return;
        };
        let Some(hosted) = self.workers.get_mut(&(client.to_owned(), worker)) else {
            return; // Ended already.
        };
        for part in protocol::unbundle(&message.payload) {
            match part.and_then(|part| hosted.opener.open(part)) {
                Ok(None) => {}
                Ok(Some(bytes)) => match protocol::decode::<ToAgent>(&bytes) {
                    Some(ToAgent::Message(m)) => {
                        hosted.link.push(m);
                        hosted.link.flush();
                    }
                    Some(ToAgent::Batch(messages)) => {
                        for m in messages {
                            hosted.link.push(m);
                        }
                        hosted.link.flush();
                    }
                    Some(ToAgent::Close) => hosted.link.close(),
                    Some(ToAgent::Stop(how)) => hosted.link.stop(how),
                    None => {
                        hosted.link.stop(StopHow::Kill);
                        return;
                    }
                },
                Err(_) => {
                    tracing::warn!(%client, worker, "a message for a worker failed its check: killing it");
                    hosted.link.stop(StopHow::Kill);
                    return;
                }
            }
        }
    }

    /// Probes `client` while it has workers here; once it is gone, its
    /// workers are killed (SPEC P10: workers do not outlive their pool).
    fn probe(&mut self, client: &str) {
        if self.probed.insert(client.to_owned(), ()).is_some() {
            return;
        }
        let subject = protocol::client_ping(&self.pool, client);
        let nats = self.nats.clone();
        let events = self.events.clone();
        let client = client.to_owned();
        let (every, limit) = (
            self.probe_every.max(Duration::from_millis(100)),
            self.lost_after,
        );
        tokio::spawn(async move {
            let open = events.clone();
            let wanted = move || !open.is_closed();
            if super::runtime::watch(nats, subject, every, limit, wanted).await {
                let _ = events.send(Event::ClientGone(client));
            }
        });
    }
}

/// One hosted worker's events, relayed to its client (on the pipe
/// transport's reader thread).
struct Relay {
    /// Received since the last caught-up: relayed together with it.
    pending: Mutex<Vec<FromWorker>>,
    sealer: Mutex<Sealer>,
    out: mpsc::UnboundedSender<Publish>,
    events: mpsc::UnboundedSender<Event>,
    client: String,
    worker: u64,
}

impl Relay {
    fn send(&self, message: &ToClient) {
        let encoded = protocol::encode(message);
        let mut sealer = self.sealer.lock();
        let subject = sealer.subject().to_owned();
        for payload in sealer.seal(&encoded) {
            let _ = self.out.send(Publish {
                subject: subject.clone(),
                payload,
                stream: true,
            });
        }
    }

    /// Relays what was received since the last batch.
    fn send_pending(&self, caught_up: bool) {
        let messages = std::mem::take(&mut *self.pending.lock());
        let message = match (messages.len(), caught_up) {
            (0, true) => ToClient::CaughtUp,
            (0, false) => return,
            _ => ToClient::Batch {
                messages,
                caught_up,
            },
        };
        self.send(&message);
    }
}

impl LinkEvents for Relay {
    fn received(&self, message: FromWorker) {
        // The transport reports `caught_up` before it waits for more, so
        // nothing is held back longer than the read it came in.
        self.pending.lock().push(message);
    }

    fn caught_up(&self) {
        self.send_pending(true);
    }

    fn ended(&self, cause: ExitCause) {
        self.send_pending(false);
        self.send(&ToClient::Ended(cause.into()));
        let _ = self.events.send(Event::Ended {
            client: self.client.clone(),
            worker: self.worker,
        });
    }
}
