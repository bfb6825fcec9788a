//! The one thread on which a client's NATS connection lives: a private
//! current-thread tokio runtime (measured faster than a multi-thread one
//! for request/reply, research/cluster.md), bridged to the engine's
//! blocking threads by channels.

use std::io;
use std::thread;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

/// A message to publish, in the order sent.
pub(crate) struct Publish {
    pub(crate) subject: String,
    pub(crate) payload: Bytes,
    /// A sealed chunk of a stream: sent in a bundle with the chunks queued
    /// right behind it for the same subject (see `protocol::bundle`).
    pub(crate) stream: bool,
}

/// The runtime's thread; dropping this stops it.
pub(crate) struct RuntimeThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RuntimeThread {
    pub(crate) fn start(name: &str) -> io::Result<RuntimeThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = thread::Builder::new().name(name.into()).spawn(move || {
            let _ = runtime.block_on(stopped);
            // Tasks still running (subscriptions) end with the runtime.
            runtime.shutdown_background();
        })?;
        Ok(RuntimeThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

/// Publishes what `queue` receives, in order, until every sender is gone.
/// Stream chunks already queued for one subject go out as one bundle (no
/// waiting for more: a lone chunk goes at once).
pub(crate) async fn publisher(
    client: async_nats::Client,
    mut queue: mpsc::UnboundedReceiver<Publish>,
) {
    let limit = client.server_info().max_payload.max(1024);
    let mut next: Option<Publish> = None;
    loop {
        let first = match next.take() {
            Some(first) => first,
            None => match queue.recv().await {
                Some(first) => first,
                None => break,
            },
        };
        if !first.stream {
            send(&client, first.subject, first.payload).await;
            continue;
        }
        let mut size = 4 + first.payload.len();
        let subject = first.subject;
        let mut parts = vec![first.payload];
        while let Ok(more) = queue.try_recv() {
            if more.stream && more.subject == subject && size + 4 + more.payload.len() <= limit {
                size += 4 + more.payload.len();
                parts.push(more.payload);
            } else {
                next = Some(more);
                break;
            }
        }
        send(&client, subject, super::protocol::bundle(&parts)).await;
    }
}

async fn send(client: &async_nats::Client, subject: String, payload: Bytes) {
    // A failure here is a lost connection, which the connection's events
    // report; the message is lost with it. (The connection writes what is
    // buffered as soon as it is idle.)
    let _ = client.publish(subject, payload).await;
}

/// Probes `subject` every `every` while `wanted` says so; returns true
/// once its other end is gone: the server answers a probe with "no
/// responders" (that end's connection closed), or nothing answers for
/// `limit` (a host or network gone quiet). Each probe runs on its own, so
/// one left unanswered by a process that died does not hold up the next,
/// which the server refuses at once.
pub(crate) async fn watch(
    client: async_nats::Client,
    subject: String,
    every: std::time::Duration,
    limit: std::time::Duration,
    mut wanted: impl FnMut() -> bool,
) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let answered = std::sync::Arc::new(parking_lot::Mutex::new(std::time::Instant::now()));
    let refused = std::sync::Arc::new(AtomicBool::new(false));
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = wake.notified() => {}
        }
        if !wanted() {
            return false;
        }
        if refused.load(SeqCst) || answered.lock().elapsed() >= limit {
            return true;
        }
        let (client, subject) = (client.clone(), subject.clone());
        let (answered, refused, wake) = (answered.clone(), refused.clone(), wake.clone());
        tokio::spawn(async move {
            let probe = client.request(subject, Bytes::new());
            match tokio::time::timeout(limit, probe).await {
                Ok(Ok(_)) => *answered.lock() = std::time::Instant::now(),
                Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                    refused.store(true, SeqCst);
                    wake.notify_one();
                }
                // Unanswered: only the silence counts.
                _ => {}
            }
        });
    }
}
