//! The codec's building blocks: canonical LEB128 varints, length-prefixed
//! byte strings, vector clocks, limit checks, and the [`Reader`] cursor that
//! decoding walks the input with. They never panic and never allocate for a
//! length before checking it against the remaining input and its limit.

use std::collections::BTreeSet;

use super::{DecodeError, EncodeError, Limit, MAX_VARINT_BYTES};

/// Size of an encoded clock.
pub(super) fn clock_len(clock: &[(Vec<u8>, u64)]) -> usize {
    clock
        .iter()
        .fold(varint_len(clock.len() as u64), |acc, (actor, seq)| {
            acc.saturating_add(prefixed_len(actor.len()) + varint_len(*seq))
        })
}

pub(super) fn validate_clock(clock: &[(Vec<u8>, u64)], limit: Limit) -> Result<(), EncodeError> {
    check(limit, clock.len())?;
    let mut seen = BTreeSet::new();
    for (index, (actor, _)) in clock.iter().enumerate() {
        check(Limit::Actor, actor.len())?;
        if !seen.insert(actor.as_slice()) {
            return Err(EncodeError::DuplicateActor { index });
        }
    }
    Ok(())
}

pub(super) fn put_clock(out: &mut Vec<u8>, clock: &[(Vec<u8>, u64)]) {
    encode_varint(clock.len() as u64, out);
    for (actor, seq) in clock {
        put_bytes(out, actor);
        encode_varint(*seq, out);
    }
}

/// Number of bytes of the LEB128 varint encoding of `value` (1 to 10).
pub const fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the LEB128 varint encoding of `value` (1 to 10 bytes) to `out`.
pub fn encode_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Decodes a canonical LEB128 varint at the start of `bytes`; returns the
/// value and the number of bytes it took.
///
/// Errors: [`DecodeError::Truncated`] if `bytes` ends inside it,
/// [`DecodeError::VarintOverflow`] if it does not fit in a `u64`,
/// [`DecodeError::NonCanonicalVarint`] if it is overlong.
pub fn decode_varint(bytes: &[u8]) -> Result<(u64, usize), DecodeError> {
    read_varint(bytes, "varint")
}

pub(super) fn read_varint(bytes: &[u8], what: &'static str) -> Result<(u64, usize), DecodeError> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate() {
        let group = u64::from(byte & 0x7f);
        if i == MAX_VARINT_BYTES - 1 && byte > 1 {
            // The tenth byte carries bit 63 only.
            return Err(DecodeError::VarintOverflow);
        }
        value |= group << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(DecodeError::NonCanonicalVarint);
            }
            return Ok((value, i + 1));
        }
    }
    Err(DecodeError::Truncated { what })
}

pub(super) fn check(what: Limit, len: usize) -> Result<(), EncodeError> {
    let max = what.max();
    if len > max {
        return Err(EncodeError::TooLarge { what, len, max });
    }
    Ok(())
}

pub(super) fn too_large(what: Limit, len: u64) -> DecodeError {
    DecodeError::TooLarge {
        what,
        len,
        max: what.max() as u64,
    }
}

/// Size of a byte string with its varint length prefix.
pub(super) fn prefixed_len(len: usize) -> usize {
    varint_len(len as u64).saturating_add(len)
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Cursor over the not yet decoded part of a frame.
pub(super) struct Reader<'a> {
    pub(super) rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Ends decoding: nothing may follow a complete frame.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.rest.len(),
            })
        }
    }

    pub(super) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let (&byte, tail) = self
            .rest
            .split_first()
            .ok_or(DecodeError::Truncated { what })?;
        self.rest = tail;
        Ok(byte)
    }

    pub(super) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(super) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let (value, used) = read_varint(self.rest, what)?;
        self.rest = self.rest.get(used..).unwrap_or_default();
        Ok(value)
    }

    /// A length-prefixed byte string: the length is checked against `limit`
    /// and then against the remaining input before anything is taken.
    pub(super) fn prefixed(
        &mut self,
        what: &'static str,
        limit: Limit,
    ) -> Result<&'a [u8], DecodeError> {
        let len = self.varint(what)?;
        if len > limit.max() as u64 {
            return Err(too_large(limit, len));
        }
        // len <= limit.max(), a usize, so the conversion is lossless.
        self.take(len as usize, what)
    }

    /// A clock of at most `limit` entries, no actor twice.
    pub(super) fn clock(&mut self, limit: Limit) -> Result<Vec<(Vec<u8>, u64)>, DecodeError> {
        // Every entry takes at least two bytes (actor prefix, seq).
        let count = self.count("clock entry count", limit, 2)?;
        let mut clock = Vec::with_capacity(count);
        let mut seen = BTreeSet::new();
        for index in 0..count {
            let actor = self.prefixed("actor id", Limit::Actor)?;
            if !seen.insert(actor) {
                return Err(DecodeError::DuplicateActor { index });
            }
            let seq = self.varint("clock seq")?;
            clock.push((actor.to_vec(), seq));
        }
        Ok(clock)
    }

    /// A count of items, each at least `min_item_bytes` long: checked
    /// against `limit` and against what the remaining input could hold, so
    /// that it is safe to allocate for.
    pub(super) fn count(
        &mut self,
        what: &'static str,
        limit: Limit,
        min_item_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let count = self.varint(what)?;
        if count > limit.max() as u64 {
            return Err(too_large(limit, count));
        }
        // count <= limit.max(), a usize, so the conversion is lossless.
        let count = count as usize;
        if count.saturating_mul(min_item_bytes) > self.rest.len() {
            return Err(DecodeError::Truncated { what });
        }
        Ok(count)
    }
}
