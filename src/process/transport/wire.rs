//! How the messages of [`super`] travel as bytes: frames, for any stream
//! (a pipe; a network link relays the same frames).
//!
//! A frame is a fixed prefix (header length, payload length), a small
//! header (postcard-encoded fields, then any item lengths: [`super::head`]),
//! then the payload bytes as they are. Keeping
//! payloads out of the header spares a copy of large arguments and
//! results. Lengths are checked against [`MAX_FRAME_BYTES`] and memory is
//! reserved fallibly, so an oversized or hostile frame is an error, never
//! an abort.

use std::io::{self, Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::{SmallVec, smallvec};

pub(crate) use super::head::encode_head;
use super::head::{self, FrameHead};
use super::lengths::Lengths;
use super::{Answers, FromWorker, ToWorker};

/// The largest payload a frame may carry. Large enough for any argument
/// or result a pipe is a sensible way to move; small enough that a corrupt
/// length cannot make us try to allocate exabytes.
pub(crate) const MAX_FRAME_BYTES: u64 = 1 << 34;

/// How many bytes of header a frame may carry: headers are a few integers
/// and item lengths, so anything longer is corruption.
const MAX_HEADER_BYTES: u32 = 1 << 24;

/// The prefix before every header: header length (u32), payload length
/// (u64), little-endian.
pub(crate) const PREFIX_BYTES: usize = 12;

/// The header of a frame to a worker; the payload is the function's bytes
/// followed by the argument(s).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorkerHead {
    Init {
        function_len: u32,
    },
    Call {
        id: u64,
        function_len: u32,
        /// Each item's length; travels after the other fields.
        #[serde(skip)]
        lens: Lengths,
        report_each: bool,
    },
    /// No more calls: the worker's loop ends, as at the end of its input.
    /// Sent before the pool closes its end, because a process forked from
    /// the pool's (without exec) may hold that end open too, and then the
    /// worker would never read the end of its input.
    End,
}

/// The frame that says [`ToWorkerHead::End`].
pub(crate) fn end_frame() -> io::Result<Head> {
    encode_head(&ToWorkerHead::End, 0)
}

/// The header of a frame from a worker; the payload is the proof, the
/// failure, or the answers back to back.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorkerHead {
    Ready,
    Initialized,
    InitFailed,
    /// `lens`: each answer's length; `failed`: which of them (by position
    /// in this frame) are failures rather than results.
    Answers {
        id: u64,
        first: u32,
        /// Travels after the other fields.
        #[serde(skip)]
        lens: Lengths,
        failed: SmallVec<[u32; 1]>,
    },
}

impl FrameHead for ToWorkerHead {
    fn lengths(&self) -> &[u64] {
        match self {
            ToWorkerHead::Call { lens, .. } => lens,
            _ => &[],
        }
    }

    fn lengths_mut(&mut self) -> Option<&mut Lengths> {
        match self {
            ToWorkerHead::Call { lens, .. } => Some(lens),
            _ => None,
        }
    }
}

impl FrameHead for FromWorkerHead {
    fn lengths(&self) -> &[u64] {
        match self {
            FromWorkerHead::Answers { lens, .. } => lens,
            _ => &[],
        }
    }

    fn lengths_mut(&mut self) -> Option<&mut Lengths> {
        match self {
            FromWorkerHead::Answers { lens, .. } => Some(lens),
            _ => None,
        }
    }
}

/// A frame ready to write: its prefix and header, then payload parts
/// written as they are (shared, so a call kept for sending again costs no
/// copy).
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub(crate) head: Head,
    pub(crate) body: SmallVec<[Bytes; 2]>,
}

impl Frame {
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.body.iter().map(Bytes::len).sum::<usize>()
    }
}

/// How long a frame's prefix and header may be and stay inline.
pub(crate) const INLINE_HEAD_BYTES: usize = 64;

/// A frame's prefix and header: held inline, headers being short.
pub(crate) type Head = SmallVec<[u8; INLINE_HEAD_BYTES]>;

fn len_u32(bytes: &Bytes) -> io::Result<u32> {
    u32::try_from(bytes.len()).map_err(|_| io::Error::other("a function reference over 4 GiB"))
}

/// The frame that carries `message` to a worker.
pub(crate) fn to_worker_frame(message: ToWorker) -> io::Result<Frame> {
    match message {
        ToWorker::Init { function, arg } => {
            let head = ToWorkerHead::Init {
                function_len: len_u32(&function)?,
            };
            let payload_len = function.len() + arg.len();
            Ok(Frame {
                head: encode_head(&head, payload_len)?,
                body: smallvec![function, arg],
            })
        }
        ToWorker::Call {
            id,
            function,
            lens,
            parts,
            report_each,
        } => {
            let payload_len = function.len() + parts.iter().map(Bytes::len).sum::<usize>();
            let head = ToWorkerHead::Call {
                id,
                function_len: len_u32(&function)?,
                lens,
                report_each,
            };
            let mut body = SmallVec::with_capacity(1 + parts.len());
            body.push(function);
            // Pushed, not `extend`ed: see `small_vec_of`.
            for part in parts {
                body.push(part);
            }
            Ok(Frame {
                head: encode_head(&head, payload_len)?,
                body,
            })
        }
    }
}

/// The message a frame from a worker carries; `None` for a frame that
/// contradicts itself.
pub(crate) fn from_worker(head: FromWorkerHead, payload: Payload) -> Option<FromWorker> {
    let message = match head {
        FromWorkerHead::Ready => FromWorker::Ready {
            proof: Bytes::from(payload.ok()?),
        },
        FromWorkerHead::Initialized => FromWorker::Initialized,
        FromWorkerHead::InitFailed => FromWorker::InitFailed {
            failure: Bytes::from(payload.ok()?),
        },
        FromWorkerHead::Answers {
            id,
            first,
            lens,
            failed,
        } => {
            let answers = match payload {
                Ok(bytes) => Answers::new(Bytes::from(bytes), lens, failed)?,
                // Too large to hold: the answers are lost, and say so.
                Err(total) => Answers::all_lost(
                    lens.len(),
                    &format!("the answer ({total} bytes) does not fit in this process's memory"),
                ),
            };
            FromWorker::Answers { id, first, answers }
        }
    };
    Some(message)
}

/// Payloads up to this size are copied behind the header so a frame goes
/// out in one `write`; larger ones are written separately, where a second
/// system call costs less than the copy.
const COALESCE_BYTES: usize = 64 * 1024;

/// Writes one frame to a stream (the worker's side), building it in
/// `scratch`, a buffer reused from frame to frame. The caller flushes.
pub(crate) fn write_frame(
    out: &mut impl Write,
    header: &impl FrameHead,
    payload: &[&[u8]],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    let payload_len = payload.iter().map(|p| p.len()).sum();
    head::encode_into(header, payload_len, scratch)?;
    if payload_len <= COALESCE_BYTES {
        for part in payload {
            scratch.extend_from_slice(part);
        }
        out.write_all(scratch)
    } else {
        out.write_all(scratch)?;
        payload.iter().try_for_each(|part| out.write_all(part))
    }
}

/// A frame's payload as read: the bytes, or, when they did not fit in
/// memory, how many there were (they were read and dropped, so the stream
/// stays in step and only this one frame is lost).
pub(crate) type Payload = Result<Vec<u8>, u64>;

/// Whether `buffer` starts with a whole frame, so that reading it cannot
/// wait for the stream.
pub(crate) fn frame_is_whole(buffer: &[u8]) -> bool {
    let Some(prefix) = buffer.get(..PREFIX_BYTES) else {
        return false;
    };
    let mut header_len = [0u8; 4];
    header_len.copy_from_slice(&prefix[..4]);
    let mut payload_len = [0u8; 8];
    payload_len.copy_from_slice(&prefix[4..]);
    let len = u64::from(u32::from_le_bytes(header_len))
        .saturating_add(u64::from_le_bytes(payload_len))
        .saturating_add(PREFIX_BYTES as u64);
    len <= buffer.len() as u64
}

/// Reads one frame; `Ok(None)` at a clean end of stream. `header` is a
/// buffer reused from frame to frame.
pub(crate) fn read_frame<M: FrameHead>(
    input: &mut impl Read,
    header: &mut Vec<u8>,
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
    header.clear();
    header.resize(header_len as usize, 0);
    input.read_exact(header)?;
    let message = head::decode(header)?;
    let payload = read_payload(input, payload_len)?;
    Ok(Some((message, payload)))
}

/// Payloads up to this size are read with one `read_exact` into a zeroed
/// buffer: `read_to_end` probes for the end with extra reads and copies
/// (a tenth of a worker's instructions per small call); past it, zeroing
/// would cost more than the probing.
const ZEROED_READ_BYTES: usize = 64 * 1024;

fn read_payload(input: &mut impl Read, len: u64) -> io::Result<Payload> {
    let mut payload = Vec::new();
    let fits = usize::try_from(len)
        .ok()
        .filter(|&n| payload.try_reserve_exact(n).is_ok());
    let Some(n) = fits else {
        let skipped = io::copy(&mut input.take(len), &mut io::sink())?;
        if skipped != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(Err(len));
    };
    if n <= ZEROED_READ_BYTES {
        payload.resize(n, 0);
        input.read_exact(&mut payload)?;
        return Ok(Ok(payload));
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
    use crate::process::transport::AnswerView;

    fn frame_bytes(frame: &Frame) -> Vec<u8> {
        let mut bytes = frame.head.to_vec();
        for part in &frame.body {
            bytes.extend_from_slice(part);
        }
        bytes
    }

    #[test]
    fn a_call_frame_reads_back_with_its_items() {
        let frame = to_worker_frame(ToWorker::Call {
            id: 7,
            function: Bytes::from_static(b"fn"),
            lens: smallvec![3, 4],
            parts: smallvec![Bytes::from_static(b"abcdefg")],
            report_each: true,
        })
        .unwrap();
        let bytes = frame_bytes(&frame);
        assert_eq!(bytes.len(), frame.len());
        let mut input = &bytes[..];
        let (head, payload): (ToWorkerHead, _) =
            read_frame(&mut input, &mut Vec::new()).unwrap().unwrap();
        assert!(matches!(
            head,
            ToWorkerHead::Call { id: 7, function_len: 2, ref lens, report_each: true }
                if lens[..] == [3, 4]
        ));
        assert_eq!(payload.unwrap(), b"fnabcdefg");
        assert!(
            read_frame::<ToWorkerHead>(&mut input, &mut Vec::new())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn answers_split_into_results_and_failures() {
        let mut bytes = Vec::new();
        let head = FromWorkerHead::Answers {
            id: 1,
            first: 4,
            lens: smallvec![2, 3, 1],
            failed: smallvec![1],
        };
        write_frame(&mut bytes, &head, &[b"ok", b"bad", b"!"], &mut Vec::new()).unwrap();
        let (head, payload): (FromWorkerHead, _) = read_frame(&mut &bytes[..], &mut Vec::new())
            .unwrap()
            .unwrap();
        let Some(FromWorker::Answers {
            id: 1,
            first: 4,
            answers,
        }) = from_worker(head, payload)
        else {
            panic!("not answers");
        };
        let outcomes: Vec<_> = answers
            .iter()
            .map(|answer| match answer {
                AnswerView::Delivered(delivered) => delivered.outcome(),
                AnswerView::Lost(why) => panic!("lost: {why}"),
            })
            .collect();
        assert_eq!(outcomes, [Ok(&b"ok"[..]), Err(&b"bad"[..]), Ok(&b"!"[..])]);
    }

    #[test]
    fn answers_whose_lengths_disagree_with_the_payload_are_refused() {
        let head = FromWorkerHead::Answers {
            id: 1,
            first: 0,
            lens: smallvec![5],
            failed: SmallVec::new(),
        };
        assert!(from_worker(head, Ok(b"abc".to_vec())).is_none());
    }

    #[test]
    fn an_oversized_length_is_an_error_not_an_allocation() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&1u32.to_le_bytes());
        buf.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = read_frame::<ToWorkerHead>(&mut &buf[..], &mut Vec::new()).unwrap_err();
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
    fn payloads_on_both_sides_of_the_zeroed_read_limit_read_whole() {
        for len in [
            0,
            1,
            ZEROED_READ_BYTES,
            ZEROED_READ_BYTES + 1,
            3 * ZEROED_READ_BYTES,
        ] {
            let bytes: Vec<u8> = (0..len + 5).map(|i| i as u8).collect();
            let mut input = &bytes[..];
            let payload = read_payload(&mut input, len as u64).unwrap().unwrap();
            assert_eq!(payload, bytes[..len], "payload of {len} bytes");
            assert_eq!(
                input,
                &bytes[len..],
                "what follows a payload of {len} bytes"
            );
        }
    }

    #[test]
    fn a_payload_cut_short_is_an_error_on_both_sides_of_the_limit() {
        for len in [8, ZEROED_READ_BYTES + 8] {
            let bytes = vec![1u8; len - 1];
            let err = read_payload(&mut &bytes[..], len as u64).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{len} bytes");
        }
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let mut buf = Vec::new();
        write_frame(
            &mut buf,
            &FromWorkerHead::InitFailed,
            &[b"abc"],
            &mut Vec::new(),
        )
        .unwrap();
        buf.pop();
        assert!(read_frame::<FromWorkerHead>(&mut &buf[..], &mut Vec::new()).is_err());
    }

    #[test]
    fn a_frame_is_whole_only_once_all_its_bytes_are_there() {
        let mut bytes = Vec::new();
        write_frame(
            &mut bytes,
            &FromWorkerHead::InitFailed,
            &[b"abc"],
            &mut Vec::new(),
        )
        .unwrap();
        assert!(frame_is_whole(&bytes));
        assert!(!frame_is_whole(&bytes[..bytes.len() - 1]));
        assert!(!frame_is_whole(&bytes[..PREFIX_BYTES - 1]));
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes[..3]);
        assert!(
            frame_is_whole(&two),
            "what follows the frame does not matter"
        );
    }
}
