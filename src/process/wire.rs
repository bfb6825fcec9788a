//! Frames and messages between the pool and its worker processes.
//!
//! A frame is a fixed prefix (header length, payload length), a small
//! postcard-encoded message, then the payload bytes as they are. Keeping
//! payloads out of the message spares a copy of large arguments and
//! results. Lengths are checked against [`MAX_FRAME_BYTES`] and memory is
//! reserved fallibly, so an oversized or hostile frame is an error, never
//! an abort.
//!
//! A call carries one or more items (one for `submit`, a chunk for `map`).
//! The worker answers them in order, in one frame at the end of the call,
//! or, when the pool times items (SPEC B1), in one frame per item as each
//! ends, so that the pool knows which item is executing and can send the
//! items that never started to another worker.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The largest payload a frame may carry. Large enough for any argument
/// or result a pipe is a sensible way to move; small enough that a corrupt
/// length cannot make us try to allocate exabytes.
pub(crate) const MAX_FRAME_BYTES: u64 = 1 << 34;

/// How many bytes of message header a frame may carry: messages are a few
/// integers and item lengths, so anything longer is corruption.
const MAX_HEADER_BYTES: u32 = 1 << 24;

/// The prefix before every header: header length (u32), payload length
/// (u64), little-endian.
pub(crate) const PREFIX_BYTES: usize = 12;

/// Pool -> worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run `func` through `trampoline` on each item; the payload holds the
    /// items back to back, `lens` says where each ends. With
    /// `report_each`, each item's answer is flushed as soon as it is
    /// written, so the pool sees item boundaries (it needs them only to
    /// time items); otherwise answers go out together at the end.
    Call {
        id: u64,
        trampoline: isize,
        func: isize,
        lens: Vec<u64>,
        report_each: bool,
    },
    /// Run the initializer; on failure report and exit (SPEC P5).
    Init { trampoline: isize, func: isize },
}

/// Worker -> pool.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The worker entered its loop; `image_check` proves it runs the same
    /// executable image as the pool (see `call.rs`).
    Ready { image_check: isize, pid: u32 },
    /// The initializer ran; calls start executing from now on.
    Initialized,
    /// The initializer failed; the worker exits next.
    InitFailed(RemoteFailure),
    /// Items `first..first + failures.len()` of call `id` ended: for each,
    /// its failure, or `None` and its encoded result in the payload, where
    /// `lens` says how long each item's part is (0 for a failure).
    Answers {
        id: u64,
        first: u32,
        failures: Vec<Option<RemoteFailure>>,
        lens: Vec<u64>,
    },
}

/// A failure inside a worker, carried back as text (SPEC F10).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RemoteFailure {
    pub(crate) kind: FailureKind,
    pub(crate) message: String,
    pub(crate) backtrace: Option<String>,
}

/// What went wrong in the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FailureKind {
    /// The function panicked.
    Panic,
    /// The argument could not be decoded in the worker.
    Deserialize,
    /// The result could not be encoded in the worker.
    Serialize,
}

impl RemoteFailure {
    pub(crate) fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        RemoteFailure {
            kind,
            message: message.into(),
            backtrace: None,
        }
    }
}

/// A frame's prefix and header, for a payload of `payload_len` bytes that
/// follows it.
pub(crate) fn encode_head<M: Serialize>(message: &M, payload_len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(&[0u8; PREFIX_BYTES]);
    let mut head = postcard::to_extend(message, head).map_err(io::Error::other)?;
    let header_len = u32::try_from(head.len() - PREFIX_BYTES).map_err(io::Error::other)?;
    head[..4].copy_from_slice(&header_len.to_le_bytes());
    head[4..PREFIX_BYTES].copy_from_slice(&(payload_len as u64).to_le_bytes());
    Ok(head)
}

/// Payloads up to this size are copied behind the header so a frame goes
/// out in one `write`; larger ones are written separately, where a second
/// system call costs less than the copy.
const COALESCE_BYTES: usize = 64 * 1024;

/// Writes one frame (the worker's side). The caller flushes.
pub(crate) fn write_frame<M: Serialize>(
    out: &mut impl Write,
    message: &M,
    payload: &[u8],
) -> io::Result<()> {
    let mut frame = encode_head(message, payload.len())?;
    if payload.len() <= COALESCE_BYTES {
        frame.extend_from_slice(payload);
        out.write_all(&frame)
    } else {
        out.write_all(&frame)?;
        out.write_all(payload)
    }
}

/// A frame's payload as read: the bytes, or, when they did not fit in
/// memory, how many there were (they were read and dropped, so the stream
/// stays in step and only this one frame is lost).
pub(crate) type Payload = Result<Vec<u8>, u64>;

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub(crate) fn read_frame<M: for<'de> Deserialize<'de>>(
    input: &mut impl Read,
) -> io::Result<Option<(M, Payload)>> {
    let mut prefix = [0u8; PREFIX_BYTES];
    match input.read_exact(&mut prefix[..1]) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    input.read_exact(&mut prefix[1..])?;
    let header_len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let mut payload_len_bytes = [0u8; 8];
    payload_len_bytes.copy_from_slice(&prefix[4..]);
    let payload_len = u64::from_le_bytes(payload_len_bytes);
    if header_len > MAX_HEADER_BYTES || payload_len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {payload_len} bytes exceeds the limit of {MAX_FRAME_BYTES}"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    input.read_exact(&mut header)?;
    let message =
        postcard::from_bytes(&header).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let payload = read_payload(input, payload_len)?;
    Ok(Some((message, payload)))
}

fn read_payload(input: &mut impl Read, len: u64) -> io::Result<Payload> {
    let mut payload = Vec::new();
    let fits = usize::try_from(len)
        .ok()
        .is_some_and(|n| payload.try_reserve_exact(n).is_ok());
    if !fits {
        let skipped = io::copy(&mut input.take(len), &mut io::sink())?;
        if skipped != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(Err(len));
    }
    input.take(len).read_to_end(&mut payload)?;
    if payload.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(Ok(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        let call = ToWorker::Call {
            id: 7,
            trampoline: -3,
            func: 99,
            lens: vec![3, 4],
            report_each: true,
        };
        write_frame(&mut buf, &call, b"payload").unwrap();
        let mut input = &buf[..];
        let (msg, payload): (ToWorker, _) = read_frame(&mut input).unwrap().unwrap();
        assert!(matches!(
            msg,
            ToWorker::Call {
                id: 7,
                trampoline: -3,
                func: 99,
                ref lens,
                report_each: true,
            } if lens == &[3, 4]
        ));
        assert_eq!(payload.unwrap(), b"payload");
        assert!(read_frame::<ToWorker>(&mut input).unwrap().is_none());
    }

    #[test]
    fn a_head_and_its_payload_written_apart_read_as_one_frame() {
        let head = encode_head(&FromWorker::Initialized, 3).unwrap();
        let mut buf = head;
        buf.extend_from_slice(b"abc");
        let (msg, payload): (FromWorker, _) = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert!(matches!(msg, FromWorker::Initialized));
        assert_eq!(payload.unwrap(), b"abc");
    }

    #[test]
    fn an_oversized_length_is_an_error_not_an_allocation() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = read_frame::<ToWorker>(&mut &buf[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_payload_that_cannot_be_allocated_is_skipped_not_aborted() {
        // More than any allocation can hold: the bytes are read past (here
        // the stream ends first, which is an error, not an abort).
        let mut input = io::repeat(0).take(1000);
        let err = read_payload(&mut input, 1 << 62).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let mut input = io::repeat(7).take(3);
        assert_eq!(read_payload(&mut input, 3).unwrap().unwrap(), [7, 7, 7]);
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &ToWorker::Init {
                trampoline: 1,
                func: 2,
            },
            b"abc",
        )
        .unwrap();
        buf.pop();
        assert!(read_frame::<ToWorker>(&mut &buf[..]).is_err());
    }
}
