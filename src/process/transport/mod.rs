//! The transport seam: "a way to have workers" (DESIGN, the process
//! engine's third layer).
//!
//! A transport starts a worker (a child process, or a slot on a remote
//! agent), carries whole messages to it and back, stops it, and says how it
//! ended. The engine above it decides everything else; it sees workers
//! only as [`Link`]s and hears from them only through [`LinkEvents`], on
//! the transport's own threads. Payloads in the messages are opaque bytes
//! the codec made.
//!
//! Implementations: [`pipe`] (a fresh process of a program, over pipes:
//! the default) and, in the engine's tests, an in-memory one.

mod answers;
mod head;
mod lengths;
pub(crate) mod pipe;
pub(crate) mod wire;

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::error::{ExitCause, WorkerId};

#[cfg(test)]
pub(crate) use answers::Answer;
pub use answers::Delivered;
pub(crate) use answers::{AnswerView, Answers, Iter as AnswerIter};

/// What the engine sends a worker.
#[cfg_attr(feature = "cluster", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone)]
pub(crate) enum ToWorker {
    /// Run the initializer `function(arg)` before any call (SPEC P5).
    Init { function: Bytes, arg: Bytes },
    /// Run `function` on each item, in order. The items are `parts`
    /// concatenated, `lens` long each. With `report_each`, each item is
    /// answered as soon as it ends; otherwise all at once at the end.
    Call {
        id: u64,
        function: Bytes,
        lens: SmallVec<[u64; 1]>,
        parts: SmallVec<[Bytes; 1]>,
        report_each: bool,
    },
}

/// What a worker sends the engine.
#[cfg_attr(feature = "cluster", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone)]
pub(crate) enum FromWorker {
    /// The worker's loop runs; `proof` is for the codec to check that it
    /// can run this pool's calls.
    Ready { proof: Bytes },
    /// The initializer ran; calls execute from now on.
    Initialized,
    /// The initializer failed (a codec payload); the worker exits next.
    InitFailed { failure: Bytes },
    /// Items `first..` of call `id` ended, in order.
    Answers {
        id: u64,
        first: u32,
        answers: Answers,
    },
}

/// How a worker is asked to stop.
#[cfg_attr(feature = "cluster", derive(serde::Serialize, serde::Deserialize))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopHow {
    /// A request it may handle (`SIGTERM`).
    Terminate,
    /// At once, without its cooperation (`SIGKILL`).
    Kill,
}

/// Which stops a transport can carry out on one worker. A kill is what
/// per-task timeouts and cancelling a running task need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stops {
    pub(crate) terminate: bool,
    pub(crate) kill: bool,
}

/// How much a worker's input may hold beyond the call it executes: calls
/// sent ahead so it never idles between two (CPython's
/// `EXTRA_QUEUED_CALLS`), each at most `max_bytes`. A pipe holds little;
/// a network link may want more to hide its round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SendAhead {
    pub(crate) calls: usize,
    pub(crate) max_bytes: usize,
}

/// A way to have workers.
pub(crate) trait Transport: Send + Sync + 'static {
    /// Starts one worker, whose messages and end go to `events`. Runs on
    /// the engine's supervisor thread; may block briefly (a process
    /// start), never on a worker.
    fn start(&self, events: Arc<dyn LinkEvents>) -> io::Result<Arc<dyn Link>>;

    /// What a worker's input may hold ahead of its current call.
    fn send_ahead(&self) -> SendAhead;

    /// Which stops its links support.
    fn stops(&self) -> Stops;

    /// What it is, for errors and logs ("pipes to child processes").
    fn name(&self) -> &str;

    /// Called once, by the engine: `wake` tells it that workers that could
    /// not start before may start now (a cluster agent offers slots), so
    /// that queued work gets them without waiting for the next submit.
    fn on_capacity(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = wake;
    }
}

/// One worker, as the engine holds it.
pub(crate) trait Link: Send + Sync {
    /// Which worker, for errors and logs.
    fn worker(&self) -> &WorkerId;

    /// Queues `message` after those queued before. Cheap: the engine calls
    /// it under its lock, to fix the order of a worker's calls.
    fn push(&self, message: ToWorker);

    /// Sends what is queued, without ever blocking on the worker; what it
    /// cannot take now goes out later, in order.
    fn flush(&self);

    /// No more messages: the worker's loop ends once it has read what was
    /// sent (queued messages not yet sent are dropped).
    fn close(&self);

    /// Stops the worker; its end is reported as usual. Ignored when the
    /// transport cannot do this (see [`Transport::stops`]).
    fn stop(&self, how: StopHow);
}

/// What the engine hears from one worker, on the transport's threads.
/// Messages come in order, then [`ended`](Self::ended) exactly once.
pub(crate) trait LinkEvents: Send + Sync {
    fn received(&self, message: FromWorker);

    /// Several messages at once, in order: those the transport had
    /// already received when it looked, so that the engine may take them
    /// under one lock and answer them with one write.
    fn received_all(&self, messages: Vec<FromWorker>) {
        for message in messages {
            self.received(message);
        }
    }

    /// Everything the worker has sent so far has been received: the
    /// transport is about to wait for more.
    fn caught_up(&self);

    /// Whether [`caught_up`](Self::caught_up) must mean exactly that, just
    /// now, nothing was left to receive. When not, a transport that found
    /// nothing left before it delivered the last messages may say so
    /// without looking again (a system call per wake-up, for a pipe).
    fn needs_exact_catch_up(&self) -> bool {
        true
    }

    /// The worker is gone, and no message will follow.
    fn ended(&self, cause: ExitCause);
}
