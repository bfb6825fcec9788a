//! The client's side: a [`Transport`] whose workers are slots on agents.
//!
//! Starting a worker claims a slot from an agent that announced one; from
//! then on the link's messages go to that agent on the worker's own
//! subject, and what the worker says comes back on the client's, each
//! stream in order and authenticated. Each link has a thread of its own
//! that hands what arrives to the engine (as each local worker's reader
//! does), so a done-callback that blocks holds up only its own worker.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::{Condvar, Mutex};
use tokio::sync::mpsc;

use super::Cluster;
use super::protocol::{
    self, Announce, Key, Opener, Sealer, StartReply, StartRequest, ToAgent, ToClient,
};
use super::runtime::{Publish, RuntimeThread, publisher};
use crate::error::{ExitCause, WorkerId};
use crate::process::transport::{Link, LinkEvents, SendAhead, StopHow, Stops, ToWorker, Transport};

/// The largest call sent ahead: a bigger one waits for an idle worker.
/// Its transfer takes longer than a round trip anyway, and so the calls
/// a worker holds ahead stay within `calls_ahead` × 64 KiB.
const SEND_AHEAD_MAX_BYTES: usize = 64 << 10;

pub(crate) struct ClusterTransport {
    shared: Arc<Shared>,
    // Last: the runtime stops once nothing else needs it.
    _runtime: RuntimeThread,
}

struct Shared {
    pool: String,
    client: String,
    image: [u8; 32],
    key: Key,
    probe_every: Duration,
    lost_after: Duration,
    placement_timeout: Duration,
    calls_ahead: usize,
    nats: async_nats::Client,
    handle: tokio::runtime::Handle,
    out: mpsc::UnboundedSender<Publish>,
    /// Agents heard from, by id.
    agents: Mutex<HashMap<String, Announce>>,
    agents_changed: Condvar,
    /// Live links, by worker number.
    links: Mutex<HashMap<u64, Arc<RemoteLink>>>,
    /// Agents whose probe runs.
    probed: Mutex<HashSet<String>>,
    next_worker: AtomicU64,
    /// Tells the engine that an agent offers slots.
    capacity: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl ClusterTransport {
    /// Connects to the cluster's server and starts listening for agents.
    pub(crate) fn connect(cluster: &Cluster) -> Result<ClusterTransport, String> {
        cluster.check()?;
        let image = protocol::image_hash()
            .map_err(|e| format!("could not read this program's executable: {e}"))?;
        let runtime = RuntimeThread::start("cluster-client").map_err(|e| e.to_string())?;
        let handle = runtime.handle().clone();
        let url = cluster.url.clone();
        let shared_slot: Arc<OnceLock<Weak<Shared>>> = Arc::new(OnceLock::new());
        let on_event = Arc::clone(&shared_slot);
        let options = cluster.connect_options().event_callback(move |event| {
            let shared = on_event.get().and_then(Weak::upgrade);
            async move {
                // Messages may have been dropped while disconnected: no
                // link can be trusted to be in step any more.
                if let (async_nats::Event::Disconnected, Some(shared)) = (event, shared) {
                    shared.lose_all();
                }
            }
        });
        let nats = block_on(&handle, async move { options.connect(url).await })
            .map_err(|e| format!("could not connect to {}: {e}", cluster.url))?
            .map_err(|e| format!("could not connect to {}: {e}", cluster.url))?;
        let (out, queue) = mpsc::unbounded_channel();
        handle.spawn(publisher(nats.clone(), queue));
        let token = nats.new_inbox();
        let client = protocol::token(token.rsplit('.').next().unwrap_or(&token));
        let shared = Arc::new(Shared {
            pool: cluster.pool.clone(),
            client,
            image,
            key: cluster.key(),
            probe_every: cluster.probe_every,
            lost_after: cluster.lost_after,
            placement_timeout: cluster.placement_timeout,
            calls_ahead: cluster.calls_ahead,
            nats,
            handle: handle.clone(),
            out,
            agents: Mutex::new(HashMap::new()),
            agents_changed: Condvar::new(),
            links: Mutex::new(HashMap::new()),
            probed: Mutex::new(HashSet::new()),
            next_worker: AtomicU64::new(0),
            capacity: OnceLock::new(),
        });
        let _ = shared_slot.set(Arc::downgrade(&shared));
        block_on(
            &handle,
            Shared::listen(Arc::downgrade(&shared), shared.nats.clone()),
        )
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("could not subscribe on {}: {e}", cluster.url))?;
        Ok(ClusterTransport {
            shared,
            _runtime: runtime,
        })
    }
}

impl Drop for ClusterTransport {
    fn drop(&mut self) {
        self.shared.lose_all();
    }
}

/// Runs `future` on the runtime's thread and waits for it (from any
/// other thread).
fn block_on<F>(handle: &tokio::runtime::Handle, future: F) -> io::Result<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = crossbeam_channel::bounded(1);
    handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| io::Error::other("the cluster connection's thread is gone"))
}

impl Shared {
    /// Subscribes to what agents say; returns once subscribed.
    async fn listen(
        weak: Weak<Shared>,
        nats: async_nats::Client,
    ) -> Result<(), async_nats::SubscribeError> {
        let Some(shared) = weak.upgrade() else {
            return Ok(());
        };
        let root = protocol::client_root(&shared.pool, &shared.client);
        let mut answers = nats.subscribe(format!("{root}.w.*")).await?;
        let mut pings = nats
            .subscribe(protocol::client_ping(&shared.pool, &shared.client))
            .await?;
        let mut agents = nats.subscribe(protocol::agents(&shared.pool)).await?;
        let _ = nats
            .publish(protocol::roll(&shared.pool), Bytes::new())
            .await;
        drop(shared);
        let answering = weak.clone();
        tokio::spawn(async move {
            while let Some(message) = answers.next().await {
                let Some(shared) = answering.upgrade() else {
                    break;
                };
                shared.on_answer(&message.subject, &message.payload);
            }
        });
        let ponging = nats.clone();
        tokio::spawn(async move {
            while let Some(message) = pings.next().await {
                if let Some(reply) = message.reply {
                    let _ = ponging.publish(reply, Bytes::new()).await;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(message) = agents.next().await {
                let Some(shared) = weak.upgrade() else { break };
                shared.on_announce(&message.payload);
            }
        });
        Ok(())
    }

    fn on_announce(&self, payload: &[u8]) {
        let subject = protocol::agents(&self.pool);
        let Some(announce) = self
            .key
            .open_one(&subject, payload)
            .and_then(protocol::decode::<Announce>)
        else {
            return; // Not of this pool's secret.
        };
        let offers = announce.free > 0 && announce.image == self.image;
        self.agents.lock().insert(announce.agent.clone(), announce);
        self.agents_changed.notify_all();
        if offers && let Some(wake) = self.capacity.get() {
            wake();
        }
    }

    fn on_answer(&self, subject: &str, payload: &[u8]) {
        let Some(worker) = subject
            .rsplit('.')
            .next()
            .and_then(|w| w.parse::<u64>().ok())
        else {
            return;
        };
        let Some(link) = self.links.lock().get(&worker).cloned() else {
            return; // A worker already ended (late or stray messages).
        };
        let mut opener = link.opener.lock();
        for part in protocol::unbundle(payload) {
            let opened = part.and_then(|part| opener.open(part));
            match opened.map(|m| m.map(|bytes| protocol::decode::<ToClient>(&bytes))) {
                Ok(None) => {}
                Ok(Some(Some(message))) => link.deliver(Inbound::Message(message)),
                Ok(Some(None)) | Err(_) => {
                    tracing::warn!(worker = %link.id, "a message from the worker's agent failed its check");
                    link.stop(StopHow::Kill);
                    link.deliver(Inbound::Lost);
                    return;
                }
            }
        }
    }

    /// Every link ends as lost.
    fn lose_all(&self) {
        let links: Vec<_> = self.links.lock().values().cloned().collect();
        for link in links {
            link.deliver(Inbound::Lost);
        }
    }

    fn lose_agent(&self, agent: &str) {
        self.agents.lock().remove(agent);
        let links: Vec<_> = self
            .links
            .lock()
            .values()
            .filter(|l| l.agent == agent)
            .cloned()
            .collect();
        for link in links {
            link.deliver(Inbound::Lost);
        }
    }

    /// Probes `agent` while this client has workers on it.
    fn probe(self: &Arc<Self>, agent: &str) {
        if !self.probed.lock().insert(agent.to_owned()) {
            return;
        }
        let weak = Arc::downgrade(self);
        let agent = agent.to_owned();
        let subject = protocol::agent_ping(&self.pool, &agent);
        let nats = self.nats.clone();
        let (every, limit) = (self.probe_every, self.lost_after);
        self.handle.spawn(async move {
            let watched = weak.clone();
            let still = agent.clone();
            let wanted = move || {
                watched
                    .upgrade()
                    .is_some_and(|s| s.links.lock().values().any(|l| l.agent == still))
            };
            let gone = super::runtime::watch(nats, subject, every, limit, wanted).await;
            if let Some(shared) = weak.upgrade() {
                shared.probed.lock().remove(&agent);
                if gone {
                    shared.lose_agent(&agent);
                }
            }
        });
    }

    /// The agent with the most free slots that runs our executable.
    fn pick(&self, tried: &HashSet<String>) -> Result<Option<String>, String> {
        let agents = self.agents.lock();
        let ours = agents.values().filter(|a| a.image == self.image);
        let best = ours
            .filter(|a| a.free > 0 && !tried.contains(&a.agent))
            .max_by_key(|a| a.free)
            .map(|a| a.agent.clone());
        if best.is_none() && !agents.is_empty() && agents.values().all(|a| a.image != self.image) {
            return Err(format!(
                "the agents of pool {:?} run another build of this program (functions cross by \
                 reference, so every machine must run the same executable)",
                self.pool
            ));
        }
        Ok(best)
    }

    fn start(self: &Arc<Self>, events: Arc<dyn LinkEvents>) -> io::Result<Arc<dyn Link>> {
        let deadline = Instant::now() + self.placement_timeout;
        let mut tried = HashSet::new();
        loop {
            let agent = match self.pick(&tried).map_err(io::Error::other)? {
                Some(agent) => agent,
                // With workers running, a start that cannot be placed
                // fails at once: the engine's supervisor, which also
                // enforces deadlines, must not wait here. The engine asks
                // again when an agent offers a slot (`on_capacity`).
                None if !self.links.lock().is_empty() => {
                    return Err(io::Error::other(format!(
                        "no agent of pool {:?} has a free worker slot",
                        self.pool
                    )));
                }
                None => {
                    let mut agents = self.agents.lock();
                    if self
                        .agents_changed
                        .wait_until(&mut agents, deadline)
                        .timed_out()
                    {
                        return Err(io::Error::other(format!(
                            "no agent of pool {:?} offered a free worker slot within {:?}",
                            self.pool, self.placement_timeout
                        )));
                    }
                    tried.clear();
                    continue;
                }
            };
            tried.insert(agent.clone());
            let worker = self.next_worker.fetch_add(1, Ordering::Relaxed);
            let link = RemoteLink::new(self, &agent, worker);
            // In the table before the agent is asked, so that nothing the
            // worker says is missed.
            self.links.lock().insert(worker, Arc::clone(&link));
            match self.claim(&agent, worker) {
                Ok(StartReply::Started { pid, host }) => {
                    link.named(WorkerId::named(format!(
                        "pid {pid} on {host} (agent {agent})"
                    )));
                    link.run(events)?;
                    self.probe(&agent);
                    return Ok(link);
                }
                Ok(StartReply::Refused(why)) => {
                    self.links.lock().remove(&worker);
                    tracing::debug!(%agent, %why, "an agent refused a worker");
                    if let Some(a) = self.agents.lock().get_mut(&agent) {
                        a.free = 0;
                    }
                }
                Err(e) => {
                    self.links.lock().remove(&worker);
                    tracing::debug!(%agent, error = %e, "an agent did not answer");
                    self.agents.lock().remove(&agent);
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "no agent of pool {:?} started a worker within {:?}",
                    self.pool, self.placement_timeout
                )));
            }
        }
    }

    fn claim(&self, agent: &str, worker: u64) -> io::Result<StartReply> {
        let subject = protocol::start(&self.pool, agent);
        let request = protocol::encode(&StartRequest {
            client: self.client.clone(),
            worker,
            image: self.image,
        });
        let sealed = Bytes::from(self.key.seal_one(&subject, &request));
        let nats = self.nats.clone();
        let limit = self.lost_after;
        let reply = block_on(&self.handle, async move {
            tokio::time::timeout(limit, nats.request(subject, sealed)).await
        })?;
        let message = reply
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the agent did not answer"))?
            .map_err(io::Error::other)?;
        let subject = protocol::start(&self.pool, agent);
        self.key
            .open_one(&subject, &message.payload)
            .and_then(protocol::decode::<StartReply>)
            .ok_or_else(|| io::Error::other("the agent's answer failed its check"))
    }
}

impl Transport for ClusterTransport {
    fn start(&self, events: Arc<dyn LinkEvents>) -> io::Result<Arc<dyn Link>> {
        self.shared.start(events)
    }

    fn send_ahead(&self) -> SendAhead {
        SendAhead {
            calls: self.shared.calls_ahead,
            max_bytes: SEND_AHEAD_MAX_BYTES,
        }
    }

    fn stops(&self) -> Stops {
        Stops {
            terminate: true,
            kill: true,
        }
    }

    fn name(&self) -> &str {
        "NATS to cluster agents"
    }

    fn on_capacity(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.shared.capacity.set(wake);
    }
}

/// What the link's thread hands to the engine.
enum Inbound {
    Message(ToClient),
    Lost,
}

struct RemoteLink {
    shared: Weak<Shared>,
    agent: String,
    worker: u64,
    id: WorkerId,
    named: OnceLock<WorkerId>,
    queued: Mutex<Vec<ToWorker>>,
    sealer: Mutex<Sealer>,
    opener: Mutex<Opener>,
    inbox: crossbeam_channel::Sender<Inbound>,
    inbox_rx: Mutex<Option<crossbeam_channel::Receiver<Inbound>>>,
    ended: AtomicBool,
}

impl RemoteLink {
    fn new(shared: &Arc<Shared>, agent: &str, worker: u64) -> Arc<RemoteLink> {
        let (inbox, inbox_rx) = crossbeam_channel::unbounded();
        let to_agent = protocol::to_agent(&shared.pool, agent, &shared.client, worker);
        let to_client = protocol::to_client(&shared.pool, &shared.client, worker);
        let max_payload = shared.nats.server_info().max_payload;
        Arc::new(RemoteLink {
            shared: Arc::downgrade(shared),
            agent: agent.to_owned(),
            worker,
            id: WorkerId::named(format!("worker {worker} on agent {agent}")),
            named: OnceLock::new(),
            queued: Mutex::new(Vec::new()),
            sealer: Mutex::new(Sealer::new(shared.key.clone(), to_agent, max_payload)),
            opener: Mutex::new(Opener::new(shared.key.clone(), to_client)),
            inbox,
            inbox_rx: Mutex::new(Some(inbox_rx)),
            ended: AtomicBool::new(false),
        })
    }

    fn named(&self, id: WorkerId) {
        let _ = self.named.set(id);
    }

    fn deliver(&self, inbound: Inbound) {
        let _ = self.inbox.send(inbound);
    }

    /// Starts the thread that hands what arrives to `events`.
    fn run(self: &Arc<Self>, events: Arc<dyn LinkEvents>) -> io::Result<()> {
        let Some(inbox) = self.inbox_rx.lock().take() else {
            return Ok(());
        };
        let link = Arc::clone(self);
        thread::Builder::new()
            .name(format!("cluster-worker-{}", self.worker))
            .spawn(move || link.relay(&inbox, &*events))?;
        Ok(())
    }

    fn relay(&self, inbox: &crossbeam_channel::Receiver<Inbound>, events: &dyn LinkEvents) {
        let cause = loop {
            match inbox.recv() {
                Ok(Inbound::Message(ToClient::CaughtUp)) => events.caught_up(),
                Ok(Inbound::Message(ToClient::Batch {
                    messages,
                    caught_up,
                })) => {
                    // As one batch, as a local worker's reader hands what
                    // one read brought: the engine takes the answers under
                    // one lock and sends the calls they free as one message.
                    events.received_all(messages);
                    if caught_up {
                        events.caught_up();
                    }
                }
                Ok(Inbound::Message(ToClient::Ended(cause))) => break ExitCause::from(cause),
                Ok(Inbound::Lost) | Err(_) => {
                    // Its agent may still be there (a link that fell out
                    // of step): make sure the worker does not run on.
                    self.send(ToAgent::Stop(StopHow::Kill));
                    break ExitCause::Lost;
                }
            }
        };
        self.ended.store(true, Ordering::Release);
        if let Some(shared) = self.shared.upgrade() {
            shared.links.lock().remove(&self.worker);
        }
        events.ended(cause);
    }

    fn send(&self, message: ToAgent) {
        let mut sealer = self.sealer.lock();
        self.send_sealed(&mut sealer, &message);
    }

    /// Seals and sends under the sealer's lock, which fixes the order.
    fn send_sealed(&self, sealer: &mut Sealer, message: &ToAgent) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let encoded = protocol::encode(message);
        let subject = sealer.subject().to_owned();
        for payload in sealer.seal(&encoded) {
            let _ = shared.out.send(Publish {
                subject: subject.clone(),
                payload,
                stream: true,
            });
        }
    }
}

impl Link for RemoteLink {
    fn worker(&self) -> &WorkerId {
        self.named.get().unwrap_or(&self.id)
    }

    fn push(&self, message: ToWorker) {
        self.queued.lock().push(message);
    }

    fn flush(&self) {
        let mut sealer = self.sealer.lock();
        let mut queued = std::mem::take(&mut *self.queued.lock());
        let message = match queued.len() {
            0 => return,
            1 => ToAgent::Message(queued.pop().expect("one")),
            _ => ToAgent::Batch(queued),
        };
        self.send_sealed(&mut sealer, &message);
    }

    fn close(&self) {
        self.flush();
        self.send(ToAgent::Close);
    }

    fn stop(&self, how: StopHow) {
        if !self.ended.load(Ordering::Acquire) {
            self.send(ToAgent::Stop(how));
        }
    }
}
