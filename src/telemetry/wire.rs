//! Bounds-checked big-endian reading of datagrams: every read fails with
//! [`Malformed::Truncated`] past the end, so a field length or count chosen by the sender can never
//! index outside the buffer.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Malformed;

type R<T> = Result<T, Malformed>;

/// A read position in a byte slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, at: 0 }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.at)
    }

    /// The next `n` bytes, consumed.
    pub fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or(Malformed::Truncated)?;
        let s = self.buf.get(self.at..end).ok_or(Malformed::Truncated)?;
        self.at = end;
        Ok(s)
    }

    /// The next `n` bytes of a part whose length the sender gave: [`Malformed::BadLength`] when it
    /// runs past the end.
    pub fn part(&mut self, n: usize) -> R<&'a [u8]> {
        self.take(n).map_err(|_| Malformed::BadLength)
    }

    pub fn skip(&mut self, n: usize) -> R<()> {
        self.take(n).map(|_| ())
    }

    pub fn u8(&mut self) -> R<u8> {
        self.array().map(u8::from_be_bytes)
    }

    pub fn u16(&mut self) -> R<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn u32(&mut self) -> R<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// The next `N` bytes as an array, consumed.
    pub fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Malformed::Truncated)
    }

    /// The next 4 bytes as an IPv4 address.
    pub fn ipv4(&mut self) -> R<Ipv4Addr> {
        self.array().map(Ipv4Addr::from)
    }

    /// The next 16 bytes as an IPv6 address.
    pub fn ipv6(&mut self) -> R<Ipv6Addr> {
        self.array().map(Ipv6Addr::from)
    }
}

/// An unsigned big-endian integer of 1 to 8 bytes (NetFlow/IPFIX fields may be sent shorter than
/// their type: reduced-size encoding); `None` for other lengths.
pub(crate) fn uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let mut c = Cursor::new(&[0, 1, 0, 0, 0, 2, 9]);
        assert_eq!(c.u16(), Ok(1));
        assert_eq!(c.u32(), Ok(2));
        assert_eq!(c.remaining(), 1);
        assert_eq!(c.u16(), Err(Malformed::Truncated));
        assert_eq!(c.u8(), Ok(9));
        assert_eq!(c.u8(), Err(Malformed::Truncated));
        assert_eq!(c.take(usize::MAX), Err(Malformed::Truncated));
        let mut c = Cursor::new(&[192, 0, 2, 1, 7]);
        assert_eq!(c.ipv4(), Ok(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(c.ipv6(), Err(Malformed::Truncated));
        assert_eq!(c.array::<1>(), Ok([7]));
        assert_eq!(uint(&[1, 0]), Some(256));
        assert_eq!(uint(&[]), None);
        assert_eq!(uint(&[0; 9]), None);
    }
}
