//! A frame's item lengths, written as a run of varints after the header's
//! other fields instead of as one of them.
//!
//! A `map` chunk's header is mostly its items' lengths: one per item to
//! the worker, and one per answer back. As a serde sequence through
//! postcard each length cost 40-55 instructions to write or read (a
//! flavor call and a one-byte `memcpy` per varint; a `SmallVec` grown as
//! it is read), about 180 per item over the four headers an item's round
//! trip crosses, which was a sixth of a chunked `map`'s cost per item. As
//! a run sized first and written in place, a length costs a few.
//!
//! The encoding is postcard's own varint (LEB128: seven bits a byte, low
//! bits first, the high bit set on every byte but a value's last), so the
//! bytes are those postcard writes for the lengths, without the count in
//! front: the header's end says where the run ends.

use smallvec::SmallVec;

/// A frame's item lengths, in order.
pub(crate) type Lengths = SmallVec<[u64; 1]>;

/// The most bytes one varint takes: 64 bits, 7 a byte.
const MAX_VARINT_BYTES: usize = 10;

/// How many bytes `value` takes.
fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// How many bytes [`write`] needs for `lens`.
pub(crate) fn encoded_len(lens: &[u64]) -> usize {
    lens.iter().map(|&len| varint_len(len)).sum()
}

/// Writes `lens` into `out`, which is exactly [`encoded_len`] long.
pub(crate) fn write(lens: &[u64], out: &mut [u8]) {
    let mut at = 0;
    for &len in lens {
        let mut rest = len;
        while rest >= 0x80 {
            out[at] = rest as u8 | 0x80;
            rest >>= 7;
            at += 1;
        }
        out[at] = rest as u8;
        at += 1;
    }
    debug_assert_eq!(at, out.len());
}

/// Reads a run [`write`] wrote; `None` for one cut short or a value over
/// 64 bits (a corrupt header).
pub(crate) fn read(bytes: &[u8]) -> Option<Lengths> {
    // Each value ends with the one byte of it whose high bit is clear, so
    // the count is known first. Pushed onto a `Vec`, whose push costs less
    // than a `SmallVec`'s, and kept inline only for a single answer.
    let count = bytes.iter().filter(|&&b| b & 0x80 == 0).count();
    if count <= 1 {
        return match bytes {
            [] => Some(Lengths::new()),
            &[byte] if byte & 0x80 == 0 => Some(smallvec::smallvec![u64::from(byte)]),
            _ => match take_varint(bytes) {
                Some((value, [])) => Some(smallvec::smallvec![value]),
                _ => None,
            },
        };
    }
    // Fallibly: a corrupt header may claim millions of items.
    let mut lens = Vec::new();
    lens.try_reserve_exact(count).ok()?;
    let mut rest = bytes;
    loop {
        match rest {
            // Most lengths are under 128: one byte.
            &[byte, ref after @ ..] if byte & 0x80 == 0 => {
                lens.push(u64::from(byte));
                rest = after;
            }
            [] => break,
            _ => {
                let (value, after) = take_varint(rest)?;
                lens.push(value);
                rest = after;
            }
        }
    }
    Some(Lengths::from_vec(lens))
}

/// The varint `bytes` starts with, and what follows it.
fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0;
    for (i, &byte) in bytes.iter().enumerate().take(MAX_VARINT_BYTES) {
        if i == MAX_VARINT_BYTES - 1 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(lens: &[u64]) -> Vec<u8> {
        let mut out = vec![0; encoded_len(lens)];
        write(lens, &mut out);
        out
    }

    #[test]
    fn miri_lengths_are_postcard_s_varints_and_read_back() {
        let lens = [0, 1, 127, 128, 300, 1 << 35, u64::MAX];
        let bytes = written(&lens);
        let postcard = postcard::to_allocvec(&lens[..]).unwrap();
        // postcard's sequence is the count (one byte here), then the same.
        assert_eq!(bytes[..], postcard[1..]);
        assert_eq!(read(&bytes).unwrap()[..], lens[..]);
        assert_eq!(read(&[]).unwrap().len(), 0);
    }

    #[test]
    fn miri_a_run_cut_short_or_over_64_bits_is_refused() {
        let bytes = written(&[5, 1 << 20]);
        assert!(read(&bytes[..bytes.len() - 1]).is_none());
        let mut too_wide = written(&[u64::MAX]);
        too_wide[MAX_VARINT_BYTES - 1] = 2;
        assert!(read(&too_wide).is_none());
        assert!(read(&[0x80; 11]).is_none());
    }
}
