//! The Rust front end's codec: how a call crosses the process boundary,
//! the function by reference, its arguments and results by value (SPEC
//! P2). The engine below it moves these payloads without reading them.
//!
//! Workers run the pool's own executable image, so a function's distance
//! from [`anchor`] is the same in every worker even though address-space
//! layout randomization moves the image. A function travels as that
//! distance; the worker adds its own anchor's address. A second
//! function's distance is the worker's proof in the handshake, against a
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
//! the worker's loop. A failure travels as a payload: [`RemoteFailure`],
//! postcard-encoded.

use std::any::type_name;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::engine::{AnswerBatch, Call, Codec, Item, Items, Sink, Wake};
use super::serde_messages;
use super::worker::CallHandler;
use crate::error::{Error, TaskError, TaskErrorKind, WorkerId, panic_message};
use crate::future::{Promise, drop_user_value};

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

/// What a worker proves in its handshake; equal in every process of one
/// image.
fn image_proof() -> [u8; 8] {
    (offset_of(image_probe as fn() -> u8 as usize) as i64).to_le_bytes()
}

/// The signature every trampoline has: function address, one argument's
/// bytes, that item's result bytes out.
type Trampoline = fn(*const (), &[u8], &mut Vec<u8>) -> Result<(), RemoteFailure>;

/// Which function a call runs, as it travels: two offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FnRef {
    trampoline: isize,
    func: isize,
}

/// How many bytes a [`FnRef`] takes.
const FN_REF_BYTES: usize = 16;

impl FnRef {
    fn to_bytes(self) -> [u8; FN_REF_BYTES] {
        let mut bytes = [0u8; FN_REF_BYTES];
        bytes[..8].copy_from_slice(&(self.trampoline as i64).to_le_bytes());
        bytes[8..].copy_from_slice(&(self.func as i64).to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<FnRef> {
        let bytes: &[u8; FN_REF_BYTES] = bytes.try_into().ok()?;
        let half = |at: usize| {
            let mut half = [0u8; 8];
            half.copy_from_slice(&bytes[at..at + 8]);
            i64::from_le_bytes(half) as isize
        };
        Some(FnRef {
            trampoline: half(0),
            func: half(8),
        })
    }
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

/// Decodes one value, catching a panicking `Deserialize` impl.
fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match catching(|| serde_messages::decode(bytes)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(message),
        Err(panic) => Err(format!("its Deserialize impl panicked: {panic}")),
    }
}

/// Encodes a call of `f` on `args` into one buffer: the function reference
/// first, then each argument. An argument that cannot be encoded is left
/// out and reported, with its index.
pub(crate) fn encode_call<'a, A, R>(
    f: fn(A) -> R,
    args: impl ExactSizeIterator<Item = &'a A>,
) -> (Option<Call>, Vec<(usize, Error)>)
where
    A: Serialize + DeserializeOwned + 'a,
    R: Serialize,
{
    let expected = FN_REF_BYTES + 16 * args.len();
    let small = expected <= INLINE_CALL_BYTES;
    let mut buffer = if small {
        small_call::buffer()
    } else {
        Vec::with_capacity(expected)
    };
    buffer.extend_from_slice(&fn_ref(f).to_bytes());
    let (mut items, mut refused) = (Items::with_capacity(args.len()), Vec::new());
    for (index, arg) in args.enumerate() {
        let start = buffer.len();
        match encode_value_into(arg, &mut buffer) {
            Ok(()) => items.push(Item {
                index,
                start,
                end: buffer.len(),
            }),
            Err(reason) => refused.push((index, argument_error::<A>(&reason))),
        }
    }
    if items.is_empty() {
        return (None, refused);
    }
    let buffer = if small {
        small_call::bytes(buffer)
    } else {
        Bytes::from(buffer)
    };
    let function = buffer.slice(..FN_REF_BYTES);
    (Some(Call::new(function, buffer, items)), refused)
}

/// A call expected to fit here (a function reference and an argument or
/// two of a few bytes) is encoded through [`small_call`].
const INLINE_CALL_BYTES: usize = 64;

/// Small calls, one allocation each: encoded into a buffer the thread
/// keeps, then copied into one allocation with their reference count
/// (`Bytes::from_owner`). A `Vec` turned into `Bytes` is two allocations,
/// both freed by the engine's reader thread (glibc's slow path for
/// memory freed away from the thread that allocated it): about 350
/// instructions more per `submit`.
mod small_call {
    use std::cell::Cell;

    use bytes::Bytes;
    use smallvec::SmallVec;

    use super::INLINE_CALL_BYTES;

    thread_local! {
        static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    }

    /// The thread's buffer, empty. Taken out while in use: a `Serialize`
    /// impl that submits from inside finds none and allocates its own.
    pub(super) fn buffer() -> Vec<u8> {
        let mut buffer = SCRATCH.try_with(Cell::take).unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// The bytes encoded into a buffer from [`buffer`]; the buffer goes
    /// back to the thread.
    pub(super) fn bytes(buffer: Vec<u8>) -> Bytes {
        if buffer.len() > INLINE_CALL_BYTES {
            // Larger than expected: the buffer goes with the call.
            return Bytes::from(buffer);
        }
        let bytes = Bytes::from_owner(SmallVec::<[u8; INLINE_CALL_BYTES]>::from_slice(&buffer));
        let _ = SCRATCH.try_with(|scratch| scratch.set(buffer));
        bytes
    }
}

/// The failure of an argument that could not be encoded in this process.
fn argument_error<A>(reason: &str) -> Error {
    Error::Failed(TaskError::codec(
        TaskErrorKind::Serialize,
        format!(
            "could not serialize the argument {}: {reason}",
            type_name::<A>()
        ),
    ))
}

/// Encodes an initializer and its argument (SPEC P5): function and
/// argument bytes.
pub(crate) fn encode_init<A>(f: fn(A), arg: &A) -> Result<(Bytes, Bytes), String>
where
    A: Serialize + DeserializeOwned,
{
    let mut bytes = Vec::new();
    encode_value_into(arg, &mut bytes)
        .map_err(|reason| format!("{}: {reason}", type_name::<A>()))?;
    Ok((
        Bytes::copy_from_slice(&fn_ref(f).to_bytes()),
        Bytes::from(bytes),
    ))
}

/// Runs one received item in the worker.
///
/// # Safety
///
/// `function` must come from [`fn_ref`] in a process running this same
/// image (checked by the handshake), so that it names a trampoline and the
/// `fn(A) -> R` it was monomorphized for.
unsafe fn run_item(function: FnRef, arg: &[u8], out: &mut Vec<u8>) -> Result<(), RemoteFailure> {
    // SAFETY: by this function's contract the offset names a `Trampoline`
    // in this image; function pointers and `usize` have the same size.
    let trampoline =
        unsafe { std::mem::transmute::<*const (), Trampoline>(address_of(function.trampoline)) };
    trampoline(address_of(function.func), arg, out)
}

/// A failure inside a worker, carried back as text (SPEC F10).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RemoteFailure {
    kind: FailureKind,
    message: String,
    backtrace: Option<String>,
}

/// What went wrong in the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum FailureKind {
    Panic,
    Deserialize,
    Serialize,
}

impl RemoteFailure {
    fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_else(|_| self.message.clone().into_bytes())
    }

    /// A failure payload back; one that does not decode is taken as text.
    fn decode(bytes: &[u8]) -> RemoteFailure {
        postcard::from_bytes(bytes).unwrap_or_else(|_| RemoteFailure {
            kind: FailureKind::Panic,
            message: String::from_utf8_lossy(bytes).into_owned(),
            backtrace: None,
        })
    }

    fn into_error(self, worker: &WorkerId) -> Error {
        let kind = match self.kind {
            FailureKind::Panic => TaskErrorKind::Panic,
            FailureKind::Deserialize => TaskErrorKind::Deserialize,
            FailureKind::Serialize => TaskErrorKind::Serialize,
        };
        Error::Failed(TaskError::remote(
            kind,
            self.message,
            self.backtrace,
            worker.clone(),
        ))
    }
}

thread_local! {
    /// The backtrace of the last panic on this thread, left by the
    /// worker's panic hook for the failure report.
    static LAST_PANIC_BACKTRACE: std::cell::RefCell<Option<String>> =
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

/// The worker side of the Rust codec: runs calls by function reference.
pub(crate) struct RustHandler(());

impl RustHandler {
    /// Reports panics to the pool instead of printing them: the hook keeps
    /// the backtrace for the failure it sends back (SPEC F10).
    pub(crate) fn new() -> Self {
        std::panic::set_hook(Box::new(|_| {
            let backtrace = std::backtrace::Backtrace::force_capture().to_string();
            let _ = LAST_PANIC_BACKTRACE.try_with(|b| *b.borrow_mut() = Some(backtrace));
        }));
        RustHandler(())
    }

    fn run(function: &[u8], arg: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        let Some(function) = FnRef::from_bytes(function) else {
            let message = "a call named no function this worker knows";
            return Err(RemoteFailure::new(FailureKind::Deserialize, message).encode());
        };
        // SAFETY: the pool encoded `function` with `fn_ref` in the image
        // our handshake proved to be the same.
        unsafe { run_item(function, arg, out) }.map_err(|f| f.encode())
    }
}

impl RemoteFailure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        RemoteFailure {
            kind,
            message: message.into(),
            backtrace: None,
        }
    }
}

impl CallHandler for RustHandler {
    fn proof(&mut self) -> Vec<u8> {
        image_proof().to_vec()
    }

    fn init(&mut self, function: &[u8], arg: &[u8]) -> Result<(), Vec<u8>> {
        RustHandler::run(function, arg, &mut Vec::new())
    }

    fn call(&mut self, function: &[u8], arg: &[u8], out: &mut Vec<u8>) -> Result<(), Vec<u8>> {
        RustHandler::run(function, arg, out)
    }

    fn failure(&mut self, kind: TaskErrorKind, message: &str) -> Vec<u8> {
        let kind = match kind {
            TaskErrorKind::Serialize => FailureKind::Serialize,
            TaskErrorKind::Deserialize => FailureKind::Deserialize,
            _ => FailureKind::Panic,
        };
        RemoteFailure::new(kind, message).encode()
    }
}

/// The pool side of the Rust codec, for the engine.
pub(crate) struct RustCodec;

impl Codec for RustCodec {
    fn check_worker(&self, proof: &[u8]) -> Result<(), String> {
        if proof == image_proof() {
            Ok(())
        } else {
            Err("a worker process runs a different executable image".to_owned())
        }
    }

    fn failure_text(&self, failure: &[u8]) -> String {
        RemoteFailure::decode(failure).message
    }
}

/// Decodes one answer into `promise`.
/// Item `outcome` of a worker's answer, decoded.
fn decode_outcome<R: DeserializeOwned>(
    worker: &WorkerId,
    outcome: Result<&[u8], &[u8]>,
) -> Result<R, Error> {
    match outcome {
        Ok(bytes) => decode_value(bytes).map_err(|reason| {
            Error::Failed(TaskError::codec(
                TaskErrorKind::Deserialize,
                format!(
                    "could not deserialize the result as {}: {reason}",
                    type_name::<R>()
                ),
            ))
        }),
        Err(failure) => Err(RemoteFailure::decode(failure).into_error(worker)),
    }
}

/// An answer given as `Bytes`, borrowed as the slices it holds.
fn as_slices(outcome: &Result<Bytes, Bytes>) -> Result<&[u8], &[u8]> {
    outcome.as_deref().map_err(|failure| &failure[..])
}

/// The sink of one `submit`.
pub(crate) struct OneSink<R> {
    pub(crate) promise: Promise<R>,
}

impl<R: DeserializeOwned + Send + Sync + 'static> Sink for OneSink<R> {
    fn start(&self) -> bool {
        self.promise.start()
    }

    fn answer(&self, _: usize, worker: &WorkerId, outcome: Result<Bytes, Bytes>) {
        self.promise
            .complete(decode_outcome(worker, as_slices(&outcome)));
    }

    fn answer_all(&self, worker: &WorkerId, answers: AnswerBatch<'_>) {
        // Decoded where it lies: no `Bytes` of its own.
        for (_, delivered) in answers {
            self.promise
                .complete(decode_outcome(worker, delivered.outcome()));
        }
    }

    fn fail(&self, _: usize, error: Error) {
        self.promise.complete(Err(error));
    }

    fn fail_quietly(&self, _: usize, error: Error) -> Option<Wake> {
        let wake = self.promise.complete_quietly(Err(error))?;
        Some(Wake::holding(wake))
    }

    fn cancel(&self, _: usize) {
        self.promise.cancel();
    }

    fn cancel_quietly(&self, _: usize) -> Option<Wake> {
        let wake = self.promise.cancel_quietly()?;
        Some(Wake::holding(wake))
    }

    fn position(&self, key: usize) -> Option<usize> {
        (self.promise.id() == key).then_some(0)
    }
}

/// The sink of one `map` chunk: one future for the whole chunk, as in
/// CPython (`_process_chunk`), completed with every item's outcome in
/// order once the last one is settled. A future per item cost the caller
/// an allocation and a wait per item, and the reader a start and a
/// completion per item: half the time of a map of small items.
///
/// Items are still settled one by one (an answer, a timeout, a death),
/// in any order and from any of the engine's threads, so the outcomes
/// gather under a lock until none is missing.
pub(crate) struct ChunkSink<R> {
    promise: Promise<Vec<Result<R, Error>>>,
    gathered: Mutex<Gathered<R>>,
}

/// A chunk's outcomes so far.
struct Gathered<R> {
    outcomes: Vec<Option<Result<R, Error>>>,
    missing: usize,
}

impl<R> ChunkSink<R> {
    /// A sink for a chunk of `outcomes.len()` items, of which those already
    /// given (arguments that could not be encoded) are settled.
    pub(crate) fn new(
        promise: Promise<Vec<Result<R, Error>>>,
        outcomes: Vec<Option<Result<R, Error>>>,
    ) -> Self {
        let missing = outcomes.iter().filter(|o| o.is_none()).count();
        ChunkSink {
            promise,
            gathered: Mutex::new(Gathered { outcomes, missing }),
        }
    }

    /// Records item `index`'s outcome; the whole chunk's once it was the
    /// last one missing.
    fn gather(&self, index: usize, outcome: Result<R, Error>) -> Option<Vec<Result<R, Error>>> {
        self.gather_all(std::iter::once((index, outcome)))
    }

    /// Records the outcomes of a run of items under one lock (the answers
    /// one message brought); the whole chunk's once none is missing. An
    /// item settled twice keeps its first outcome (a late answer after a
    /// timeout, say, which the engine already drops). `outcomes` may
    /// decode as it goes, under the lock: decoding catches panics, and the
    /// lock is this chunk's alone.
    fn gather_all(
        &self,
        outcomes: impl Iterator<Item = (usize, Result<R, Error>)>,
    ) -> Option<Vec<Result<R, Error>>> {
        let mut gathered = self.gathered.lock();
        let mut strays = Vec::new();
        for (index, outcome) in outcomes {
            match gathered.outcomes.get_mut(index) {
                Some(slot @ None) => {
                    *slot = Some(outcome);
                    gathered.missing -= 1;
                }
                _ => strays.push(outcome),
            }
        }
        let done = gathered.missing == 0 && !gathered.outcomes.is_empty();
        let outcomes = done.then(|| std::mem::take(&mut gathered.outcomes));
        drop(gathered);
        if !strays.is_empty() {
            drop_user_value(move || drop(strays));
        }
        outcomes.map(every_outcome)
    }

    fn settle(&self, index: usize, outcome: Result<R, Error>) {
        if let Some(chunk) = self.gather(index, outcome) {
            self.promise.complete(Ok(chunk));
        }
    }

    fn settle_quietly(&self, index: usize, outcome: Result<R, Error>) -> Option<Wake>
    where
        R: 'static,
    {
        let chunk = self.gather(index, outcome)?;
        let wake = self.promise.complete_quietly(Ok(chunk))?;
        Some(Wake::holding(wake))
    }
}

/// A chunk's outcomes once none is missing. Mapped in place (the two types
/// have one layout), so the reader that completes a chunk neither
/// allocates nor frees: the buffer goes to the caller, the thread that
/// allocated it.
fn every_outcome<R>(outcomes: Vec<Option<Result<R, Error>>>) -> Vec<Result<R, Error>> {
    outcomes
        .into_iter()
        // Never taken: `missing` counted every `None` away.
        .map(|outcome| outcome.unwrap_or(Err(Error::Cancelled)))
        .collect()
}

impl<R: DeserializeOwned + Send + Sync + 'static> Sink for ChunkSink<R> {
    fn start(&self) -> bool {
        self.promise.start()
    }

    fn answer(&self, index: usize, worker: &WorkerId, outcome: Result<Bytes, Bytes>) {
        self.settle(index, decode_outcome(worker, as_slices(&outcome)));
    }

    fn answer_all(&self, worker: &WorkerId, answers: AnswerBatch<'_>) {
        let decoded =
            answers.map(|(index, delivered)| (index, decode_outcome(worker, delivered.outcome())));
        if let Some(chunk) = self.gather_all(decoded) {
            self.promise.complete(Ok(chunk));
        }
    }

    fn fail(&self, index: usize, error: Error) {
        self.settle(index, Err(error));
    }

    fn fail_quietly(&self, index: usize, error: Error) -> Option<Wake> {
        self.settle_quietly(index, Err(error))
    }

    fn cancel(&self, index: usize) {
        self.settle(index, Err(Error::Cancelled));
    }

    fn cancel_quietly(&self, index: usize) -> Option<Wake> {
        self.settle_quietly(index, Err(Error::Cancelled))
    }

    fn position(&self, _: usize) -> Option<usize> {
        // A chunk's future is the map's own: no caller can name its items.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::engine::Indices;
    use crate::process::transport::{Answer, Answers};
    use std::time::Duration;

    fn square(x: u64) -> u64 {
        x * x
    }

    fn explode(_: ()) -> u8 {
        panic!("kaboom")
    }

    fn run<A: Serialize + DeserializeOwned, R: Serialize>(
        f: fn(A) -> R,
        arg: &[u8],
    ) -> Result<Vec<u8>, RemoteFailure> {
        let mut out = Vec::new();
        // SAFETY: encoded just now, in this image.
        unsafe { run_item(fn_ref(f), arg, &mut out) }.map(|()| out)
    }

    fn encoded<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value_into(value, &mut out).unwrap();
        out
    }

    #[test]
    fn miri_a_call_round_trips_within_one_image() {
        let out = run(square, &encoded(&12u64)).unwrap();
        assert_eq!(decode_value::<u64>(&out).unwrap(), 144);
        // One reference, compared with itself: Miri gives each use of a
        // function as a pointer an address of its own.
        let reference = fn_ref(square);
        assert_eq!(FnRef::from_bytes(&reference.to_bytes()), Some(reference));
    }

    fn shout(text: String) -> usize {
        text.len()
    }

    fn decoded_items<A: DeserializeOwned>(call: &Call) -> Vec<A> {
        call.item_bytes()
            .into_iter()
            .map(|bytes| decode_value(bytes).unwrap())
            .collect()
    }

    #[test]
    fn miri_small_calls_encode_whole_one_after_another() {
        let calls: Vec<Call> = [3u64, 300, u64::MAX]
            .iter()
            .map(|arg| encode_call(square, [arg].into_iter()).0.unwrap())
            .collect();
        let args: Vec<Vec<u64>> = calls.iter().map(decoded_items).collect();
        assert_eq!(args, [[3], [300], [u64::MAX]]);
        for call in &calls {
            assert_eq!(call.function_bytes().len(), FN_REF_BYTES);
        }
    }

    #[test]
    fn miri_a_call_larger_than_expected_still_encodes_whole() {
        // One argument is expected to be small; this one is not.
        let long = "x".repeat(3 * INLINE_CALL_BYTES);
        let call = encode_call(shout, [&long].into_iter()).0.unwrap();
        assert_eq!(decoded_items::<String>(&call), [long]);
        let after = encode_call(square, [&9u64].into_iter()).0.unwrap();
        assert_eq!(decoded_items::<u64>(&after), [9]);
    }

    /// Encodes a call of its own while it is being encoded.
    struct SubmitsInside;

    impl Serialize for SubmitsInside {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let inner = encode_call(square, [&5u64].into_iter()).0.unwrap();
            assert_eq!(decoded_items::<u64>(&inner), [5]);
            serializer.serialize_u8(42)
        }
    }

    impl<'de> serde::Deserialize<'de> for SubmitsInside {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u8::deserialize(d).map(|_| SubmitsInside)
        }
    }

    fn take_inside(_: SubmitsInside) {}

    #[test]
    fn miri_a_serialize_impl_that_encodes_a_call_inside_gets_a_buffer_of_its_own() {
        let call = encode_call(take_inside, [&SubmitsInside].into_iter())
            .0
            .unwrap();
        assert_eq!(decoded_items::<u8>(&call), [42]);
    }

    #[test]
    fn miri_a_panic_becomes_a_failure_with_its_message() {
        let err = run(explode, &encoded(&())).unwrap_err();
        assert_eq!(err.kind, FailureKind::Panic);
        assert_eq!(err.message, "kaboom");
        let back = RemoteFailure::decode(&err.encode());
        assert_eq!(back.message, "kaboom");
    }

    #[test]
    fn miri_a_bad_argument_is_a_decode_failure() {
        let err = run(square, &[0xff; 12]).unwrap_err();
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
        let err = run(make_touchy, &encoded(&())).unwrap_err();
        assert_eq!(err.kind, FailureKind::Serialize);
        assert!(err.message.contains("touchy serialize"), "{}", err.message);
        let err = run(take_touchy, &[]).unwrap_err();
        assert_eq!(err.kind, FailureKind::Deserialize);
        assert!(
            err.message.contains("touchy deserialize"),
            "{}",
            err.message
        );
        let (call, refused) = encode_call(take_touchy, [Touchy].iter());
        assert!(call.is_none());
        assert!(refused[0].1.to_string().contains("touchy serialize"));
        assert!(
            decode_value::<Touchy>(&[])
                .unwrap_err()
                .contains("touchy deserialize")
        );
    }

    fn chunk_of(
        len: usize,
    ) -> (
        crate::future::Future<Vec<Result<u64, Error>>>,
        ChunkSink<u64>,
    ) {
        let future = crate::future::Future::new();
        let sink = ChunkSink::new(future.promise(), (0..len).map(|_| None).collect());
        (future, sink)
    }

    fn answer(sink: &ChunkSink<u64>, index: usize, value: u64) {
        let bytes = Bytes::from(encoded(&value));
        sink.answer(index, &WorkerId::process(7), Ok(bytes));
    }

    /// Gives `sink` the answers of one message, packed into one buffer
    /// as a worker's message carries them.
    fn answer_all(
        sink: &ChunkSink<u64>,
        worker: &WorkerId,
        answers: &[(usize, Result<Bytes, Bytes>)],
    ) {
        let packed: Answers = answers
            .iter()
            .map(|(_, outcome)| match outcome {
                Ok(value) => Answer::Value(value.clone()),
                Err(failure) => Answer::Failure(failure.clone()),
            })
            .collect();
        let indices = Indices::List(answers.iter().map(|(index, _)| *index).collect());
        sink.answer_all(worker, AnswerBatch::new(&packed, &indices));
    }

    fn outcomes(future: crate::future::Future<Vec<Result<u64, Error>>>) -> Vec<Result<u64, Error>> {
        assert!(future.done());
        future.take_outcome().ok().unwrap().unwrap()
    }

    #[test]
    fn miri_a_chunk_completes_once_its_last_item_is_settled_in_any_order() {
        // SPEC P8: one future for the chunk, its items in input order
        // whatever order the worker and the engine settle them in.
        let (future, sink) = chunk_of(3);
        assert!(sink.start());
        assert!(!sink.start(), "a chunk starts once");
        answer(&sink, 2, 4);
        sink.fail(0, Error::TaskTimeout(Duration::from_secs(1)));
        assert!(future.running(), "two of three items are not the chunk");
        answer(&sink, 1, 1);
        let got = outcomes(future);
        assert!(matches!(got[0], Err(Error::TaskTimeout(_))), "{got:?}");
        assert_eq!(got[1].as_ref().ok(), Some(&1));
        assert_eq!(got[2].as_ref().ok(), Some(&4));
    }

    #[test]
    fn miri_one_message_s_answers_settle_a_chunk_together_and_repeats_are_ignored() {
        // SPEC P8: the answers of one message, under one lock; P2: an
        // answer that does not decode, or a failure, is its item's alone.
        let (future, sink) = chunk_of(4);
        assert!(sink.start());
        let worker = WorkerId::process(7);
        let value = |v: u64| Ok(Bytes::from(encoded(&v)));
        let panicked = Err(Bytes::from(
            failure(FailureKind::Panic, "boom".into()).encode(),
        ));
        answer_all(&sink, &worker, &[(2, value(4)), (3, panicked)]);
        assert!(future.running(), "two of four items are not the chunk");
        let undecodable = Ok(Bytes::new());
        answer_all(
            &sink,
            &worker,
            &[
                (2, value(9)),
                (0, undecodable),
                (9, value(5)),
                (1, value(1)),
            ],
        );
        let got = outcomes(future);
        assert!(
            matches!(&got[0], Err(Error::Failed(e)) if e.kind() == TaskErrorKind::Deserialize),
            "{got:?}"
        );
        assert_eq!(got[1].as_ref().ok(), Some(&1));
        assert_eq!(got[2].as_ref().ok(), Some(&4), "the first answer stands");
        assert!(
            matches!(&got[3], Err(Error::Failed(e)) if e.to_string().contains("boom")),
            "{got:?}"
        );
        // After the chunk is done, answers are strays.
        answer_all(&sink, &worker, &[(1, value(3))]);
    }

    #[test]
    fn miri_an_item_settled_twice_keeps_its_first_outcome() {
        let (future, sink) = chunk_of(2);
        assert!(sink.start());
        answer(&sink, 0, 9);
        sink.cancel(0);
        sink.fail(5, Error::Cancelled);
        assert!(
            future.running(),
            "neither a repeat nor a stray index completes it"
        );
        answer(&sink, 1, 3);
        let got = outcomes(future);
        assert_eq!(got[0].as_ref().ok(), Some(&9));
        assert_eq!(got[1].as_ref().ok(), Some(&3));
    }

    #[test]
    fn miri_a_quiet_settle_hands_back_a_wake_only_for_the_last_item() {
        let (future, sink) = chunk_of(2);
        assert!(sink.start());
        let first = sink.fail_quietly(0, Error::Cancelled);
        assert!(first.is_none(), "the chunk is not done after one item");
        let last = sink.cancel_quietly(1);
        assert!(last.is_some(), "the last item completes the chunk");
        drop(last);
        let got = outcomes(future);
        assert!(
            got.iter().all(|o| matches!(o, Err(Error::Cancelled))),
            "{got:?}"
        );
    }

    #[test]
    fn miri_a_chunk_keeps_the_items_refused_before_it_was_sent() {
        // SPEC P2: an argument that could not be encoded fails its own
        // item; the chunk waits for the others only.
        let future = crate::future::Future::new();
        let refused = Error::Failed(TaskError::new("refused"));
        let sink: ChunkSink<u64> = ChunkSink::new(future.promise(), vec![None, Some(Err(refused))]);
        assert!(sink.start());
        answer(&sink, 0, 5);
        let got = outcomes(future);
        assert_eq!(got[0].as_ref().ok(), Some(&5));
        assert!(
            matches!(&got[1], Err(Error::Failed(e)) if e.to_string() == "refused"),
            "{got:?}"
        );
    }

    #[test]
    fn miri_a_cancelled_chunk_does_not_start() {
        let (future, sink) = chunk_of(2);
        assert!(future.cancel());
        assert!(!sink.start(), "the engine skips a chunk its map dropped");
    }

    #[test]
    fn the_handshake_accepts_this_image_only() {
        assert!(RustCodec.check_worker(&image_proof()).is_ok());
        assert!(RustCodec.check_worker(&[0; 8]).is_err());
    }
}
