//! How a call crosses the process boundary: the function by reference,
//! its argument and result by value (SPEC P2). This is the codec layer:
//! the engine below it moves opaque byte payloads.
//!
//! Workers run the pool's own executable image (`/proc/self/exe`), so a
//! function's distance from [`anchor`] is the same in every worker even
//! though address-space layout randomization moves the image. A function
//! travels as that distance; the worker adds its own anchor's address.
//! A second function's distance, compared during the handshake, guards
//! against a worker that somehow runs a different image.
//!
//! Each call names two functions: the user's `fn(A) -> R` and a
//! *trampoline* monomorphized for `A` and `R` that decodes the argument,
//! calls the function, and encodes the result.

use std::any::type_name;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{FailureKind, RemoteFailure};
use crate::error::{Error, TaskError};
use crate::future::Promise;

/// The point every function offset is measured from.
#[inline(never)]
fn anchor() {}

/// A second point, only for the same-image handshake.
#[inline(never)]
fn image_probe() -> u8 {
    1
}

fn anchor_address() -> usize {
    anchor as fn() as usize
}

/// A function's distance from the anchor.
fn offset_of(address: usize) -> isize {
    address.wrapping_sub(anchor_address()) as isize
}

/// The function `offset` names in this process. The address is rebuilt
/// from an integer, so it takes the provenance this process exposed for it
/// (casting a function to an integer exposes it; a worker's addresses are
/// the parent's, shifted with the whole image).
fn address_of(offset: isize) -> *const () {
    std::ptr::with_exposed_provenance(anchor_address().wrapping_add(offset as usize))
}

/// What a worker reports in its handshake; equal in every process of one
/// image.
pub(crate) fn image_check() -> isize {
    offset_of(image_probe as fn() -> u8 as usize)
}

/// The signature every trampoline has: function address, argument bytes,
/// result bytes out.
pub(crate) type Trampoline = fn(*const (), &[u8], &mut Vec<u8>) -> Result<(), RemoteFailure>;

/// A call ready to send: which trampoline, which function, which bytes.
#[derive(Debug, Clone)]
pub(crate) struct EncodedCall {
    pub(crate) trampoline: isize,
    pub(crate) func: isize,
    pub(crate) payload: Vec<u8>,
}

/// Encodes `f(arg)`.
pub(crate) fn encode_one<A, R>(f: fn(A) -> R, arg: &A) -> Result<EncodedCall, postcard::Error>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    Ok(EncodedCall {
        trampoline: offset_of(call_one::<A, R> as Trampoline as usize),
        func: offset_of(f as usize),
        payload: postcard::to_allocvec(arg)?,
    })
}

/// Encodes `f` over a batch of arguments (SPEC P8).
pub(crate) fn encode_chunk<A, R>(f: fn(A) -> R, args: &[A]) -> Result<EncodedCall, postcard::Error>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    Ok(EncodedCall {
        trampoline: offset_of(call_chunk::<A, R> as Trampoline as usize),
        func: offset_of(f as usize),
        payload: postcard::to_allocvec(args)?,
    })
}

/// Encodes the initializer `f(arg)` (SPEC P5).
pub(crate) fn encode_init<A>(f: fn(A), arg: &A) -> Result<EncodedCall, postcard::Error>
where
    A: Serialize + DeserializeOwned,
{
    encode_one::<A, ()>(f, arg)
}

/// Runs a received call in the worker.
///
/// # Safety
///
/// `trampoline` and `func` must come from `encode_*` in a process running
/// this same image (checked by the handshake), so that they name a
/// trampoline and the `fn(A) -> R` it was monomorphized for.
pub(crate) unsafe fn run_encoded(
    trampoline: isize,
    func: isize,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteFailure> {
    // SAFETY: by this function's contract the offset names a `Trampoline`
    // in this image; function pointers and `usize` have the same size.
    let trampoline =
        unsafe { std::mem::transmute::<*const (), Trampoline>(address_of(trampoline)) };
    trampoline(address_of(func), payload, out)
}

thread_local! {
    /// The backtrace of the last panic on this thread, left by the
    /// worker's panic hook for the failure report.
    pub(crate) static LAST_PANIC_BACKTRACE: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// Calls `f`, turning a panic into a failure with its message and the
/// backtrace the worker's panic hook captured.
fn run_catching<R>(f: impl FnOnce() -> R) -> Result<R, RemoteFailure> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| RemoteFailure {
        kind: FailureKind::Panic,
        message: crate::error::panic_message(payload.as_ref()),
        backtrace: LAST_PANIC_BACKTRACE.with(|b| b.borrow_mut().take()),
    })
}

fn decode<A: DeserializeOwned>(payload: &[u8]) -> Result<A, RemoteFailure> {
    postcard::from_bytes(payload).map_err(|e| {
        RemoteFailure::new(
            FailureKind::DecodeArgument,
            format!(
                "could not deserialize the argument as {}: {e}",
                type_name::<A>()
            ),
        )
    })
}

fn encode<R: Serialize>(value: &R) -> Result<Vec<u8>, RemoteFailure> {
    postcard::to_allocvec(value).map_err(|e| {
        RemoteFailure::new(
            FailureKind::EncodeResult,
            format!("could not serialize the result {}: {e}", type_name::<R>()),
        )
    })
}

/// # Safety (of the transmute inside)
///
/// Only reachable through `run_encoded`, whose contract says `func` is the
/// `fn(A) -> R` this instance was made for.
fn call_one<A: DeserializeOwned, R: Serialize>(
    func: *const (),
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteFailure> {
    let arg: A = decode(payload)?;
    // SAFETY: see above: `func` was encoded from an `fn(A) -> R`.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(func) };
    let value = run_catching(|| f(arg))?;
    *out = encode(&value)?;
    Ok(())
}

/// One item's outcome inside a chunk's result.
type ItemOutcome = Result<Vec<u8>, RemoteFailure>;

fn call_chunk<A: DeserializeOwned, R: Serialize>(
    func: *const (),
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteFailure> {
    let args: Vec<A> = decode(payload)?;
    // SAFETY: as in `call_one`.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(func) };
    let outcomes: Vec<ItemOutcome> = args
        .into_iter()
        .map(|arg| run_catching(|| f(arg)).and_then(|v| encode(&v)))
        .collect();
    *out = encode(&outcomes)?;
    Ok(())
}

/// Where a call's outcome goes: the futures waiting for it. The engine
/// knows calls only through this.
pub(crate) trait Sink: Send {
    /// Marks the futures running; false when all were cancelled, so the
    /// call need not run (SPEC F7).
    fn start(&self) -> bool;
    /// Decodes the worker's answer into the futures.
    fn deliver(self: Box<Self>, pid: u32, outcome: Result<Vec<u8>, RemoteFailure>);
    /// Fails the futures with an executor's error.
    fn fail(self: Box<Self>, error: Error);
    /// Cancels the futures (shutdown with `cancel_futures`).
    fn cancel(self: Box<Self>);
    /// Whether future `id` is one of this call's.
    fn carries(&self, id: usize) -> bool;
}

pub(crate) fn remote_error(pid: u32, failure: RemoteFailure) -> Error {
    Error::Failed(TaskError::remote(
        failure.kind == FailureKind::Panic,
        failure.message,
        failure.backtrace,
        pid,
    ))
}

fn decode_result<R: DeserializeOwned>(bytes: &[u8]) -> Result<R, Error> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::Failed(TaskError::new(format!(
            "could not deserialize the result as {}: {e}",
            type_name::<R>()
        )))
    })
}

/// Decodes one answer into `promise`.
fn settle<R: DeserializeOwned>(promise: &Promise<R>, pid: u32, outcome: ItemOutcome) {
    let outcome = outcome
        .map_err(|f| remote_error(pid, f))
        .and_then(|bytes| decode_result(&bytes));
    promise.complete(outcome);
}

/// The sink of one `submit`.
pub(crate) struct OneSink<R> {
    pub(crate) promise: Promise<R>,
}

impl<R: DeserializeOwned + Send + Sync> Sink for OneSink<R> {
    fn start(&self) -> bool {
        self.promise.start()
    }

    fn deliver(self: Box<Self>, pid: u32, outcome: Result<Vec<u8>, RemoteFailure>) {
        settle(&self.promise, pid, outcome);
    }

    fn fail(self: Box<Self>, error: Error) {
        self.promise.complete(Err(error));
    }

    fn cancel(self: Box<Self>) {
        self.promise.cancel();
    }

    fn carries(&self, id: usize) -> bool {
        self.promise.id() == id
    }
}

/// The sink of one `map` chunk: one future per item.
pub(crate) struct ChunkSink<R> {
    pub(crate) promises: Vec<Promise<R>>,
}

impl<R: DeserializeOwned + Send + Sync> Sink for ChunkSink<R> {
    fn start(&self) -> bool {
        // Every future is claimed (not just the first that succeeds), so
        // none of them stays pending while its chunk runs.
        self.promises
            .iter()
            .map(Promise::start)
            .fold(false, |any, started| any | started)
    }

    fn deliver(self: Box<Self>, pid: u32, outcome: Result<Vec<u8>, RemoteFailure>) {
        let items: Result<Vec<ItemOutcome>, Error> = outcome
            .map_err(|f| remote_error(pid, f))
            .and_then(|bytes| decode_result(&bytes));
        match items {
            Ok(items) if items.len() == self.promises.len() => {
                for (promise, item) in self.promises.iter().zip(items) {
                    settle(promise, pid, item);
                }
            }
            Ok(items) => {
                let message = format!(
                    "a chunk of {} items came back with {} results",
                    self.promises.len(),
                    items.len()
                );
                self.fail(Error::Failed(TaskError::new(message)));
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(self: Box<Self>, error: Error) {
        for p in &self.promises {
            p.complete(Err(error.clone()));
        }
    }

    fn cancel(self: Box<Self>) {
        for p in &self.promises {
            p.cancel();
        }
    }

    fn carries(&self, id: usize) -> bool {
        self.promises.iter().any(|p| p.id() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u64) -> u64 {
        x * x
    }

    fn explode(_: ()) -> u8 {
        panic!("kaboom")
    }

    #[test]
    fn miri_a_call_round_trips_within_one_image() {
        let call = encode_one(square, &12).unwrap();
        let mut out = Vec::new();
        // SAFETY: encoded just now, in this image.
        unsafe { run_encoded(call.trampoline, call.func, &call.payload, &mut out) }.unwrap();
        assert_eq!(postcard::from_bytes::<u64>(&out).unwrap(), 144);
    }

    #[test]
    fn miri_a_chunk_reports_each_item() {
        let call = encode_chunk(square, &[1, 2, 3]).unwrap();
        let mut out = Vec::new();
        // SAFETY: encoded just now, in this image.
        unsafe { run_encoded(call.trampoline, call.func, &call.payload, &mut out) }.unwrap();
        let items: Vec<ItemOutcome> = postcard::from_bytes(&out).unwrap();
        let values: Vec<u64> = items
            .into_iter()
            .map(|i| postcard::from_bytes(&i.unwrap()).unwrap())
            .collect();
        assert_eq!(values, [1, 4, 9]);
    }

    #[test]
    fn miri_a_panic_becomes_a_failure_with_its_message() {
        let call = encode_one(explode, &()).unwrap();
        let mut out = Vec::new();
        // SAFETY: encoded just now, in this image.
        let err = unsafe { run_encoded(call.trampoline, call.func, &call.payload, &mut out) }
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::Panic);
        assert_eq!(err.message, "kaboom");
    }

    #[test]
    fn miri_a_bad_argument_is_a_decode_failure() {
        let mut call = encode_one(square, &1).unwrap();
        call.payload = vec![0xff; 12];
        let mut out = Vec::new();
        // SAFETY: encoded just now, in this image.
        let err = unsafe { run_encoded(call.trampoline, call.func, &call.payload, &mut out) }
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::DecodeArgument);
    }
}
