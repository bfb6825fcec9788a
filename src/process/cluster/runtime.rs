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
pub(crate) async fn publisher(
    client: async_nats::Client,
    mut queue: mpsc::UnboundedReceiver<Publish>,
) {
    while let Some(message) = queue.recv().await {
        // A failure here is a lost connection, which the connection's
        // events report; the message is lost with it.
        // (The connection writes what is buffered as soon as it is idle.)
        let _ = client.publish(message.subject, message.payload).await;
    }
}
