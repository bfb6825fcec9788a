//! A frame's header as bytes: its fields through postcard, then its item
//! lengths as a run of varints ([`lengths`]).
//!
//! Headers are written once per frame, so what one costs is paid per item
//! of a chunksize-1 workload. postcard's slice flavor copies every value it
//! writes with a call to `memcpy`, which for the one or two bytes a field
//! takes costs more than the bytes: the fields are written into a small
//! buffer on the stack byte by byte instead, and copied out once.

use std::io;

use postcard::ser_flavors::Flavor;

use super::lengths::{self, Lengths};
use super::wire::{Head, INLINE_HEAD_BYTES, PREFIX_BYTES};

/// A header, whose item lengths (if it has any) travel after its other
/// fields.
pub(crate) trait FrameHead: serde::Serialize + for<'de> serde::Deserialize<'de> {
    /// Its item lengths: empty for a header without items.
    fn lengths(&self) -> &[u64];
    /// Where its item lengths go when read; `None` for a header without.
    fn lengths_mut(&mut self) -> Option<&mut Lengths>;
}

/// A frame's prefix and header, for a payload of `payload_len` bytes that
/// follows it.
pub(crate) fn encode_head(message: &impl FrameHead, payload_len: usize) -> io::Result<Head> {
    encode(message, payload_len, |len, write| {
        if len <= INLINE_HEAD_BYTES {
            let mut inline = [0u8; INLINE_HEAD_BYTES];
            write(&mut inline[..len]);
            Head::from_buf_and_len(inline, len)
        } else {
            let mut long = vec![0; len];
            write(&mut long);
            Head::from_vec(long)
        }
    })
}

/// A frame's prefix and header, written over `out` (a buffer the worker
/// reuses from frame to frame).
pub(crate) fn encode_into(
    message: &impl FrameHead,
    payload_len: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    encode(message, payload_len, |len, write| {
        out.clear();
        out.resize(len, 0);
        write(out);
    })
}

/// Room for a header's fields on the stack: a few varints, unless an
/// answers frame lists many failures, which take the slower way.
const STAGED_BYTES: usize = 48;

/// A postcard flavor writing into a fixed buffer a byte at a time (the
/// default `try_extend` pushes each byte: no `memcpy`).
struct Staging<'a> {
    bytes: &'a mut [u8; STAGED_BYTES],
    len: usize,
}

impl Flavor for Staging<'_> {
    type Output = usize;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        let slot = self
            .bytes
            .get_mut(self.len)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = data;
        self.len += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.len)
    }
}

/// Encodes a frame's prefix and header: `place(len, write)` finds room for
/// its `len` bytes and has `write` fill it. Sized before anything is
/// written, so that the usual short header is built where it stays.
fn encode<T>(
    message: &impl FrameHead,
    payload_len: usize,
    place: impl FnOnce(usize, &mut dyn FnMut(&mut [u8])) -> T,
) -> io::Result<T> {
    let mut staged = [0u8; STAGED_BYTES];
    let flavor = Staging {
        bytes: &mut staged,
        len: 0,
    };
    let long;
    let fields: &[u8] = match postcard::serialize_with_flavor(message, flavor) {
        Ok(len) => &staged[..len],
        Err(postcard::Error::SerializeBufferFull) => {
            long = postcard::to_allocvec(message).map_err(io::Error::other)?;
            &long
        }
        Err(e) => return Err(io::Error::other(e)),
    };
    let lens = message.lengths();
    let header_len = fields.len() + lengths::encoded_len(lens);
    let header_len_u32 = u32::try_from(header_len).map_err(io::Error::other)?;
    Ok(place(PREFIX_BYTES + header_len, &mut |out| {
        let (prefix, header) = out.split_at_mut(PREFIX_BYTES);
        prefix[..4].copy_from_slice(&header_len_u32.to_le_bytes());
        prefix[4..].copy_from_slice(&(payload_len as u64).to_le_bytes());
        let (fields_out, lens_out) = header.split_at_mut(fields.len());
        fields_out.copy_from_slice(fields);
        lengths::write(lens, lens_out);
    }))
}

/// A header as [`encode`] wrote it (without its prefix).
pub(crate) fn decode<M: FrameHead>(header: &[u8]) -> io::Result<M> {
    let invalid = |why| io::Error::new(io::ErrorKind::InvalidData, why);
    let (mut message, rest) =
        postcard::take_from_bytes::<M>(header).map_err(|e| invalid(e.to_string()))?;
    match message.lengths_mut() {
        Some(lens) => {
            *lens = lengths::read(rest)
                .ok_or_else(|| invalid("a header's item lengths are cut short".to_owned()))?;
        }
        None if rest.is_empty() => {}
        None => return Err(invalid("a header has bytes after its fields".to_owned())),
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use smallvec::SmallVec;

    use super::*;
    use crate::process::transport::wire::{FromWorkerHead, ToWorkerHead};

    fn header_of(head: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        assert_eq!(head.len(), PREFIX_BYTES + len);
        assert_eq!(
            u64::from_le_bytes(head[4..PREFIX_BYTES].try_into().unwrap()),
            99
        );
        &head[PREFIX_BYTES..]
    }

    #[test]
    fn miri_headers_short_and_long_read_back_as_written() {
        for items in [0, 1, 2, 300] {
            let lens: Lengths = (0..items).map(|i| i * 1000).collect();
            let call = ToWorkerHead::Call {
                id: u64::MAX,
                function_len: 8,
                lens: lens.clone(),
                report_each: true,
            };
            let head = encode_head(&call, 99).unwrap();
            assert_eq!(head.spilled(), items > 2, "short headers stay inline");
            let mut reused = vec![1, 2, 3];
            encode_into(&call, 99, &mut reused).unwrap();
            assert_eq!(reused[..], head[..]);
            let back: ToWorkerHead = decode(header_of(&head)).unwrap();
            assert!(matches!(
                back,
                ToWorkerHead::Call { id: u64::MAX, function_len: 8, lens: l, report_each: true }
                    if l == lens
            ));
        }
        // Fields too long for the stack: an answers frame of many failures.
        let failed: SmallVec<[u32; 1]> = (0..100).collect();
        let answers = FromWorkerHead::Answers {
            id: 3,
            first: 7,
            lens: (0..100).collect(),
            failed: failed.clone(),
        };
        let head = encode_head(&answers, 99).unwrap();
        let back: FromWorkerHead = decode(header_of(&head)).unwrap();
        assert!(matches!(
            back,
            FromWorkerHead::Answers { id: 3, first: 7, ref lens, failed: ref f }
                if lens.len() == 100 && lens[99] == 99 && *f == failed
        ));
    }

    #[test]
    fn miri_a_header_with_bytes_it_cannot_account_for_is_refused() {
        let head = encode_head(&FromWorkerHead::Ready, 99).unwrap();
        let mut header = header_of(&head).to_vec();
        header.push(0);
        let err = decode::<FromWorkerHead>(&header).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Item lengths cut short.
        let call = ToWorkerHead::Call {
            id: 1,
            function_len: 8,
            lens: smallvec::smallvec![1 << 20],
            report_each: false,
        };
        let head = encode_head(&call, 99).unwrap();
        let header = header_of(&head);
        let err = decode::<ToWorkerHead>(&header[..header.len() - 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
