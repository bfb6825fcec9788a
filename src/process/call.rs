//! How a call crosses the process boundary: the function by reference,
//! its arguments and results by value (SPEC P2). This is the codec layer:
//! the engine below it moves opaque byte payloads.
//!
//! Workers run the pool's own executable image, so a function's distance
//! from [`anchor`] is the same in every worker even though address-space
//! layout randomization moves the image. A function travels as that
//! distance; the worker adds its own anchor's address. A second
//! function's distance, compared during the handshake, guards against a
//! worker that somehow runs a different image.
//!
//! Each call names two functions: the user's `fn(A) -> R` and a
//! *trampoline* monomorphized for `A` and `R` that decodes one argument,
//! calls the function, and encodes the result. A chunk of `map` items is
//! the same trampoline run once per item.
//!
//! User code runs at every step (`Serialize`, `Deserialize`, the function,
//! `Drop`), on both sides, and any of it may panic. Each step is caught
//! on its own and becomes the failure of its one item, with the panic
//! message and the step named; no panic reaches a thread of the pool or
//! the worker's loop.

use std::any::type_name;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::serde_messages;
use super::wire::{FailureKind, RemoteFailure};
use crate::error::{Error, TaskError, TaskErrorKind, panic_message};
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

/// The address of the anchor, for finding the image that holds this code.
pub(crate) fn code_address() -> usize {
    anchor_address()
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

/// The signature every trampoline has: function address, one argument's
/// bytes, that item's result bytes out.
pub(crate) type Trampoline = fn(*const (), &[u8], &mut Vec<u8>) -> Result<(), RemoteFailure>;

/// Which function a call runs, as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FnRef {
    pub(crate) trampoline: isize,
    pub(crate) func: isize,
}

/// The reference to `f`, with the trampoline for its types.
pub(crate) fn fn_ref<A, R>(f: fn(A) -> R) -> FnRef
where
    A: DeserializeOwned,
    R: Serialize,
{
    FnRef {
        trampoline: offset_of(call_one::<A, R> as Trampoline as usize),
        func: offset_of(f as usize),
    }
}

/// One argument of a call, encoded: which item of its futures it is, and
/// where its bytes are in the call's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Item {
    /// The item's position among its call's futures (see [`Sink`]).
    pub(crate) index: usize,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Item {
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A call ready to send: which function, which encoded arguments. The
/// arguments share one buffer, so a chunk is one allocation however many
/// items it has, and sending it (again) copies nothing.
#[derive(Debug, Clone)]
pub(crate) struct EncodedCall {
    pub(crate) function: FnRef,
    pub(crate) buffer: Bytes,
    pub(crate) items: Vec<Item>,
}

impl EncodedCall {
    pub(crate) fn payload_len(&self) -> usize {
        self.items.iter().map(Item::len).sum()
    }

    /// The items' bytes, as few slices of the buffer as they allow.
    pub(crate) fn parts(&self) -> Vec<Bytes> {
        let mut parts: Vec<(usize, usize)> = Vec::with_capacity(1);
        for item in &self.items {
            match parts.last_mut() {
                Some(last) if last.1 == item.start => last.1 = item.end,
                _ => parts.push((item.start, item.end)),
            }
        }
        parts
            .into_iter()
            .map(|(start, end)| self.buffer.slice(start..end))
            .collect()
    }

    /// The same call with only `items`.
    pub(crate) fn with_items(&self, items: Vec<Item>) -> EncodedCall {
        EncodedCall {
            function: self.function,
            buffer: self.buffer.clone(),
            items,
        }
    }
}

/// Encodes the arguments of one call into one buffer. An argument that
/// cannot be encoded is left out and reported, with its index.
pub(crate) fn encode_args<'a, A: Serialize + 'a>(
    args: impl IntoIterator<Item = &'a A>,
) -> (Bytes, Vec<Item>, Vec<(usize, String)>) {
    let mut buffer = Vec::new();
    let (mut items, mut refused) = (Vec::new(), Vec::new());
    for (index, arg) in args.into_iter().enumerate() {
        let start = buffer.len();
        match encode_value_into(arg, &mut buffer) {
            Ok(()) => items.push(Item {
                index,
                start,
                end: buffer.len(),
            }),
            Err(reason) => refused.push((index, reason)),
        }
    }
    (Bytes::from(buffer), items, refused)
}

/// Runs `f`, turning a panic into `Err` with its message. The value `f`
/// returns is the caller's; everything `f` drops is dropped inside.
fn catching<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// Appends one value's encoding to `out`, catching a panicking
/// `Serialize` impl (`out` is then as it was). The error is the reason, for
/// a message that names the value.
fn encode_value_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    match catching(|| serde_messages::encode_into(value, out)) {
        Ok(result) => result,
        Err(panic) => {
            out.truncate(start);
            Err(format!("its Serialize impl panicked: {panic}"))
        }
    }
}

/// Encodes one value, catching a panicking `Serialize` impl.
pub(crate) fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    encode_value_into(value, &mut out).map(|()| out)
}

/// Decodes one value, catching a panicking `Deserialize` impl.
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match catching(|| serde_messages::decode(bytes)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(message),
        Err(panic) => Err(format!("its Deserialize impl panicked: {panic}")),
    }
}

/// The failure of an argument that could not be encoded in this process.
pub(crate) fn argument_error<A>(reason: &str) -> Error {
    Error::Failed(TaskError::codec(
        TaskErrorKind::Serialize,
        format!(
            "could not serialize the argument {}: {reason}",
            type_name::<A>()
        ),
    ))
}

/// Encodes an initializer's argument (SPEC P5).
pub(crate) fn encode_init<A>(f: fn(A), arg: &A) -> Result<(FnRef, Vec<u8>), String>
where
    A: Serialize + DeserializeOwned,
{
    let bytes = encode_value(arg).map_err(|reason| format!("{}: {reason}", type_name::<A>()))?;
    Ok((fn_ref(f), bytes))
}

/// Runs one received item in the worker.
///
/// # Safety
///
/// `function` must come from [`fn_ref`] in a process running this same
/// image (checked by the handshake), so that it names a trampoline and the
/// `fn(A) -> R` it was monomorphized for.
pub(crate) unsafe fn run_item(
    function: FnRef,
    arg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteFailure> {
    // SAFETY: by this function's contract the offset names a `Trampoline`
    // in this image; function pointers and `usize` have the same size.
    let trampoline =
        unsafe { std::mem::transmute::<*const (), Trampoline>(address_of(function.trampoline)) };
    trampoline(address_of(function.func), arg, out)
}

thread_local! {
    /// The backtrace of the last panic on this thread, left by the
    /// worker's panic hook for the failure report.
    pub(crate) static LAST_PANIC_BACKTRACE: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

fn take_backtrace() -> Option<String> {
    LAST_PANIC_BACKTRACE
        .try_with(|b| b.borrow_mut().take())
        .ok()
        .flatten()
}

fn failure(kind: FailureKind, message: String) -> RemoteFailure {
    RemoteFailure {
        kind,
        message,
        backtrace: take_backtrace(),
    }
}

/// # Safety (of the transmute inside)
///
/// Only reachable through `run_item`, whose contract says `func` is the
/// `fn(A) -> R` this instance was made for.
fn call_one<A: DeserializeOwned, R: Serialize>(
    func: *const (),
    arg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteFailure> {
    let arg: A = decode_value(arg).map_err(|reason| {
        failure(
            FailureKind::Deserialize,
            format!(
                "could not deserialize the argument as {}: {reason}",
                type_name::<A>()
            ),
        )
    })?;
    // SAFETY: see above: `func` was encoded from an `fn(A) -> R`.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(func) };
    let value = catching(|| f(arg)).map_err(|m| failure(FailureKind::Panic, m))?;
    let encoded = encode_value_into(&value, out);
    // The result has crossed once encoded; a `Drop` that panics now is
    // the worker's business, as a panicking `Drop` of a value nobody
    // holds is for the thread pool.
    let _ = catching(move || drop(value));
    let Err(reason) = encoded else {
        return Ok(());
    };
    Err(failure(
        FailureKind::Serialize,
        format!(
            "could not serialize the result {}: {reason}",
            type_name::<R>()
        ),
    ))
}

/// Where a call's outcomes go: the futures waiting for it, one per item.
/// The engine knows calls only through this.
pub(crate) trait Sink: Send + Sync {
    /// Marks every future running; false when all were cancelled, so the
    /// call need not run (SPEC F7).
    fn start(&self) -> bool;
    /// Decodes the worker's answer for item `index` into its future.
    fn answer(&self, index: usize, pid: u32, outcome: Result<Bytes, RemoteFailure>);
    /// Fails item `index` with an executor's error.
    fn fail(&self, index: usize, error: Error);
    /// Cancels item `index` (shutdown with `cancel_futures`).
    fn cancel(&self, index: usize);
    /// Which item future `id` is, if it is one of this call's.
    fn position(&self, id: usize) -> Option<usize>;
}

pub(crate) fn remote_error(pid: u32, failure: RemoteFailure) -> Error {
    let kind = match failure.kind {
        FailureKind::Panic => TaskErrorKind::Panic,
        FailureKind::Deserialize => TaskErrorKind::Deserialize,
        FailureKind::Serialize => TaskErrorKind::Serialize,
    };
    Error::Failed(TaskError::remote(
        kind,
        failure.message,
        failure.backtrace,
        pid,
    ))
}

/// Decodes one answer into `promise`.
fn settle<R: DeserializeOwned>(
    promise: &Promise<R>,
    pid: u32,
    outcome: Result<Bytes, RemoteFailure>,
) {
    let outcome = match outcome {
        Ok(bytes) => decode_value(&bytes).map_err(|reason| {
            Error::Failed(TaskError::codec(
                TaskErrorKind::Deserialize,
                format!(
                    "could not deserialize the result as {}: {reason}",
                    type_name::<R>()
                ),
            ))
        }),
        Err(f) => Err(remote_error(pid, f)),
    };
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

    fn answer(&self, _: usize, pid: u32, outcome: Result<Bytes, RemoteFailure>) {
        settle(&self.promise, pid, outcome);
    }

    fn fail(&self, _: usize, error: Error) {
        self.promise.complete(Err(error));
    }

    fn cancel(&self, _: usize) {
        self.promise.cancel();
    }

    fn position(&self, id: usize) -> Option<usize> {
        (self.promise.id() == id).then_some(0)
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

    fn answer(&self, index: usize, pid: u32, outcome: Result<Bytes, RemoteFailure>) {
        if let Some(promise) = self.promises.get(index) {
            settle(promise, pid, outcome);
        }
    }

    fn fail(&self, index: usize, error: Error) {
        if let Some(promise) = self.promises.get(index) {
            promise.complete(Err(error));
        }
    }

    fn cancel(&self, index: usize) {
        if let Some(promise) = self.promises.get(index) {
            promise.cancel();
        }
    }

    fn position(&self, id: usize) -> Option<usize> {
        self.promises.iter().position(|p| p.id() == id)
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

    fn run(function: FnRef, arg: &[u8]) -> Result<Vec<u8>, RemoteFailure> {
        let mut out = Vec::new();
        // SAFETY: encoded just now, in this image.
        unsafe { run_item(function, arg, &mut out) }.map(|()| out)
    }

    #[test]
    fn miri_a_call_round_trips_within_one_image() {
        let out = run(fn_ref(square), &encode_value(&12u64).unwrap()).unwrap();
        assert_eq!(decode_value::<u64>(&out).unwrap(), 144);
    }

    #[test]
    fn miri_a_panic_becomes_a_failure_with_its_message() {
        let err = run(fn_ref(explode), &encode_value(&()).unwrap()).unwrap_err();
        assert_eq!(err.kind, FailureKind::Panic);
        assert_eq!(err.message, "kaboom");
    }

    #[test]
    fn miri_a_bad_argument_is_a_decode_failure() {
        let err = run(fn_ref(square), &[0xff; 12]).unwrap_err();
        assert_eq!(err.kind, FailureKind::Deserialize);
    }

    /// Panics in every serde impl, to check each is caught on its own.
    #[derive(Debug)]
    struct Touchy;

    impl Serialize for Touchy {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("touchy serialize")
        }
    }

    impl<'de> serde::Deserialize<'de> for Touchy {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("touchy deserialize")
        }
    }

    fn make_touchy(_: ()) -> Touchy {
        Touchy
    }

    fn take_touchy(_: Touchy) {}

    #[test]
    fn miri_panicking_serde_impls_fail_their_item_with_the_message() {
        // SPEC P2
        let err = run(fn_ref(make_touchy), &encode_value(&()).unwrap()).unwrap_err();
        assert_eq!(err.kind, FailureKind::Serialize);
        assert!(err.message.contains("touchy serialize"), "{}", err.message);
        let err = run(fn_ref(take_touchy), &[]).unwrap_err();
        assert_eq!(err.kind, FailureKind::Deserialize);
        assert!(
            err.message.contains("touchy deserialize"),
            "{}",
            err.message
        );
        assert!(
            encode_value(&Touchy)
                .unwrap_err()
                .contains("touchy serialize")
        );
        assert!(
            decode_value::<Touchy>(&[])
                .unwrap_err()
                .contains("touchy deserialize")
        );
    }
}
