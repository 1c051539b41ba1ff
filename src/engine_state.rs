//! The complete state of one detection engine as bytes ([`Engine::save_state`],
//! [`Engine::restore_state`]): what a standby detector restores to continue exactly where a killed
//! one stopped (issue 15).
//!
//! Layout: the magic `FWES`, a little-endian `u16` version, then the payload. The payload is
//! written field by field by each type that holds state (beside its private fields), with this
//! module's `Enc` and read back with `Dec`:
//! - unsigned integers as LEB128 varints (most counters are small); counters, times and epochs are
//!   refused above `i64::MAX`, so no later `+ 1` of a restored value can overflow;
//! - `f32`/`f64`, hash seeds and random states as fixed little-endian bytes;
//! - sequences as a varint length, then the items. A length is checked against the bytes left
//!   (each item takes at least a known number of bytes) before anything is allocated, so a cut or
//!   hostile blob gives an error, never a panic, and what is allocated for it stays within a few
//!   times its length (plus the fixed admission rows and populations of any engine).
//!
//! [`Engine::save_state`]: crate::detect::Engine::save_state
//! [`Engine::restore_state`]: crate::detect::Engine::restore_state

use crate::key::{Key, Scope};
use crate::time::Timestamp;

/// The first bytes of every engine state.
pub const MAGIC: [u8; 4] = *b"FWES";
/// The version this build writes and reads.
pub const VERSION: u16 = 3;

/// Why an engine state could not be saved or restored. Each says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineStateError {
    #[error(
        "cannot save the state of shard {index} of {count}: only a sole engine (ShardSpec::SOLE) \
         can be saved; run one engine per detector node"
    )]
    Sharded { index: usize, count: usize },
    #[error(
        "cannot save the state of an engine that shares populations with other shards (a \
         PopulationExchange): its output depends on theirs; run one engine per detector node, \
         without an exchange"
    )]
    Exchange,
    #[error(
        "not an engine state: it does not start with \"FWES\"; pass the bytes Engine::save_state \
         wrote"
    )]
    Magic,
    #[error(
        "engine state version {found} cannot be read by this build (it reads version {supported}): \
         restore it with the floodwatch release that saved it, or start the standby afresh"
    )]
    Version { found: u16, supported: u16 },
    #[error(
        "the engine state is cut short at byte {at} while reading {what}: the checkpoint was not \
         written completely; restore an earlier one"
    )]
    Truncated { what: &'static str, at: usize },
    #[error("the engine state is corrupt at byte {at}: {what}; restore an earlier checkpoint")]
    Corrupt { what: String, at: usize },
    #[error(
        "{extra} bytes follow the engine state: the blob is not one state; pass exactly the bytes \
         Engine::save_state wrote"
    )]
    Trailing { extra: usize },
    #[error(
        "the settings do not fit the saved engine state: {0}; run the standby with the settings of \
         the detector that saved it"
    )]
    Config(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Writes the parts of a state.
pub(crate) struct Enc<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Enc<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Enc { out }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.out.push(u8::from(v));
    }

    /// An unsigned integer as a LEB128 varint.
    pub(crate) fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    pub(crate) fn usize(&mut self, v: usize) {
        self.var(v as u64);
    }

    /// Eight fixed bytes (seeds, random states: varints would only grow them).
    pub(crate) fn raw64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn f64(&mut self, v: f64) {
        self.raw64(v.to_bits());
    }

    pub(crate) fn f32(&mut self, v: f32) {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.usize(v.len());
        self.out.extend_from_slice(v);
    }

    pub(crate) fn ts(&mut self, t: Timestamp) {
        self.var(t.0);
    }

    /// `None` as a 0 byte; `Some(v)` as a 1 byte, then `v` written by `save`.
    pub(crate) fn opt<T>(&mut self, v: Option<&T>, save: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                save(self, v);
            }
        }
    }

    pub(crate) fn opt_ts(&mut self, t: Option<Timestamp>) {
        self.opt(t.as_ref(), |e, t| e.ts(*t));
    }

    pub(crate) fn scope(&mut self, s: Scope) {
        self.u8(s.index() as u8);
    }

    pub(crate) fn key(&mut self, k: Key) {
        match k {
            Key::V4 { addr, prefix } => {
                self.u8(4);
                self.out.extend_from_slice(&addr.to_le_bytes());
                self.u8(prefix);
            }
            Key::V6 { addr, prefix } => {
                self.u8(6);
                self.out.extend_from_slice(&addr.to_le_bytes());
                self.u8(prefix);
            }
        }
    }
}

/// The largest counter, time or epoch a state may hold: room for any later increment.
pub(crate) const MAX_COUNT: u64 = i64::MAX as u64;

/// Reads the parts of a state, refusing what is cut short or out of range.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, EngineStateError>;

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// An error at the current position.
    pub(crate) fn corrupt(&self, what: impl Into<String>) -> EngineStateError {
        EngineStateError::Corrupt {
            what: what.into(),
            at: self.pos,
        }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(EngineStateError::Truncated { what, at: self.pos })?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(EngineStateError::Truncated { what, at: self.pos })?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> R<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> R<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn bool(&mut self, what: &'static str) -> R<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.corrupt(format!("{what} is {b}, not a flag"))),
        }
    }

    /// A LEB128 varint of at most 64 bits.
    pub(crate) fn var(&mut self, what: &'static str) -> R<u64> {
        let mut v = 0u64;
        for i in 0..10u32 {
            let b = self.u8(what)?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(self.corrupt(format!("{what} does not fit 64 bits")));
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.corrupt(format!("{what} does not fit 64 bits")))
    }

    /// A counter, time or epoch: at most [`MAX_COUNT`].
    pub(crate) fn count(&mut self, what: &'static str) -> R<u64> {
        let v = self.var(what)?;
        if v > MAX_COUNT {
            return Err(self.corrupt(format!("{what} is {v}, beyond any real value")));
        }
        Ok(v)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> R<u32> {
        let v = self.var(what)?;
        u32::try_from(v).map_err(|_| self.corrupt(format!("{what} is {v}, more than 32 bits")))
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> R<u16> {
        let v = self.var(what)?;
        u16::try_from(v).map_err(|_| self.corrupt(format!("{what} is {v}, more than 16 bits")))
    }

    pub(crate) fn usize(&mut self, what: &'static str) -> R<usize> {
        let v = self.count(what)?;
        usize::try_from(v).map_err(|_| self.corrupt(format!("{what} is {v}, too large here")))
    }

    /// A sequence length whose items take at least `min_item` bytes each: never more items than the
    /// bytes left could hold, so what follows may be allocated safely.
    pub(crate) fn len(&mut self, what: &'static str, min_item: usize) -> R<usize> {
        let n = self.var(what)?;
        let fits = self.remaining() / min_item.max(1);
        match usize::try_from(n) {
            Ok(n) if n <= fits => Ok(n),
            _ => Err(self.corrupt(format!(
                "{what} says {n} items but only {} bytes are left (cut short, or not a state)",
                self.remaining()
            ))),
        }
    }

    /// Reads a count that must be `into.len()` (`what` names the items in the error), then that
    /// many items with `item` (each at least `min_item` bytes) into `into`.
    pub(crate) fn fill<T>(
        &mut self,
        what: &'static str,
        min_item: usize,
        into: &mut [T],
        mut item: impl FnMut(&mut Self) -> R<T>,
    ) -> R<()> {
        let n = self.len(what, min_item)?;
        if n != into.len() {
            return Err(self.corrupt(format!("{n} {what}, not {}", into.len())));
        }
        for x in into.iter_mut() {
            *x = item(self)?;
        }
        Ok(())
    }

    pub(crate) fn raw64(&mut self, what: &'static str) -> R<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn f64(&mut self, what: &'static str) -> R<f64> {
        Ok(f64::from_bits(self.raw64(what)?))
    }

    pub(crate) fn f32(&mut self, what: &'static str) -> R<f32> {
        Ok(f32::from_bits(u32::from_le_bytes(self.array(what)?)))
    }

    pub(crate) fn bytes(&mut self, what: &'static str) -> R<&'a [u8]> {
        let n = self.len(what, 1)?;
        self.take(n, what)
    }

    pub(crate) fn ts(&mut self, what: &'static str) -> R<Timestamp> {
        Ok(Timestamp(self.count(what)?))
    }

    pub(crate) fn opt_ts(&mut self, what: &'static str) -> R<Option<Timestamp>> {
        self.opt(what, |d| d.ts(what))
    }

    /// What [`Enc::opt`] wrote: `what` names the flag, `load` reads the value behind it.
    pub(crate) fn opt<T>(
        &mut self,
        what: &'static str,
        load: impl FnOnce(&mut Self) -> R<T>,
    ) -> R<Option<T>> {
        Ok(if self.bool(what)? {
            Some(load(self)?)
        } else {
            None
        })
    }

    pub(crate) fn scope(&mut self) -> R<Scope> {
        let i = self.u8("a scope")?;
        Scope::ALL
            .get(usize::from(i))
            .copied()
            .ok_or_else(|| self.corrupt(format!("scope {i} does not exist")))
    }

    pub(crate) fn key(&mut self) -> R<Key> {
        match self.u8("a key")? {
            4 => {
                let (addr, prefix) = self.prefix("an IPv4 key")?;
                Ok(Key::V4 {
                    addr: u32::from_le_bytes(addr),
                    prefix,
                })
            }
            6 => {
                let (addr, prefix) = self.prefix("an IPv6 key")?;
                Ok(Key::V6 {
                    addr: u128::from_le_bytes(addr),
                    prefix,
                })
            }
            t => Err(self.corrupt(format!("key family {t} is neither 4 nor 6"))),
        }
    }

    /// The `N` address bytes and the prefix length of a key, the length at most `8 * N` bits.
    fn prefix<const N: usize>(&mut self, what: &'static str) -> R<([u8; N], u8)> {
        let addr = self.array(what)?;
        let prefix = self.u8(what)?;
        if usize::from(prefix) > 8 * N {
            return Err(self.corrupt(format!("{what} has prefix length {prefix}")));
        }
        Ok((addr, prefix))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> R<()> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(EngineStateError::Trailing { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_refuse_overlong_input() {
        let mut buf = Vec::new();
        let mut e = Enc::new(&mut buf);
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            e.var(v);
        }
        let mut d = Dec::new(&buf);
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(d.var("v").unwrap(), v);
        }
        assert!(d.finish().is_ok());
        // eleven continuation bytes, and a tenth byte above one bit
        assert!(Dec::new(&[0xff; 11]).var("v").is_err());
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(Dec::new(&over).var("v").is_err());
        // counters beyond i64::MAX are refused
        assert!(Dec::new(&buf[buf.len() - 10..]).count("c").is_err());
    }

    #[test]
    fn a_length_larger_than_the_bytes_left_is_refused_before_allocating() {
        let mut buf = Vec::new();
        Enc::new(&mut buf).var(1 << 60);
        buf.extend_from_slice(&[0; 16]);
        let err = Dec::new(&buf).len("keys", 1).unwrap_err();
        assert!(err.to_string().contains("only 16 bytes are left"), "{err}");
    }
}
