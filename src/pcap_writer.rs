//! A small classic-pcap writer, shared by `floodwatch synth` (microsecond files of Ethernet frames)
//! and the evidence files of `--evidence-dir` (nanosecond files of whatever link type the frames
//! came with). It buffers records itself and writes in large pieces.
//!
//! Format (libpcap's `pcap-savefile(5)`, little-endian): a 24-byte file header — magic
//! `0xa1b2c3d4` (microsecond timestamps) or `0xa1b23c4d` (nanosecond), version 2.4, zone 0,
//! sigfigs 0, snaplen, link type — then per record a 16-byte header (seconds, micro- or
//! nanoseconds, captured length, original length) and the captured bytes.

use std::io::{self, Write};

use crate::decode::LinkType;
use crate::time::Timestamp;

/// Bytes of the file header.
pub const FILE_HEADER_LEN: u64 = 24;
/// Bytes of a record header.
pub const RECORD_HEADER_LEN: u64 = 16;
/// The largest snaplen tcpdump and Wireshark accept for most link types.
pub const MAX_SNAPLEN: u32 = 262_144;

/// The resolution of record timestamps (and so the file's magic number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsResolution {
    /// Magic `0xa1b2c3d4`: microseconds (what every reader has always understood).
    Micro,
    /// Magic `0xa1b23c4d`: nanoseconds (libpcap ≥ 1.5, tcpdump, tshark).
    Nano,
}

impl TsResolution {
    fn magic(self) -> u32 {
        match self {
            TsResolution::Micro => 0xa1b2_c3d4,
            TsResolution::Nano => 0xa1b2_3c4d,
        }
    }
}

/// Writes a classic pcap stream to `W`, buffering up to `flush_at` bytes between writes.
pub struct PcapWriter<W: Write> {
    w: W,
    buf: Vec<u8>,
    flush_at: usize,
    resolution: TsResolution,
    snaplen: u32,
    link: LinkType,
    /// Records written.
    pub packets: u64,
    /// Captured bytes of those records (without headers).
    pub bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// A writer whose file header (for `link`, `snaplen`) is the first thing it will write.
    /// Nothing reaches `w` before `flush_at` bytes are buffered or [`PcapWriter::finish`].
    pub fn new(
        w: W,
        link: LinkType,
        resolution: TsResolution,
        snaplen: u32,
        flush_at: usize,
    ) -> PcapWriter<W> {
        let mut buf = Vec::with_capacity(flush_at.saturating_add(2048).min(4 << 20));
        buf.extend_from_slice(&resolution.magic().to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        buf.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        buf.extend_from_slice(&snaplen.to_le_bytes());
        buf.extend_from_slice(&link.0.to_le_bytes());
        PcapWriter {
            w,
            buf,
            flush_at,
            resolution,
            snaplen,
            link,
            packets: 0,
            bytes: 0,
        }
    }

    /// The link type in the file header.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// The bytes a record of `captured` bytes takes in the file (header included), after the
    /// snaplen cut.
    pub fn record_len(&self, captured: usize) -> u64 {
        RECORD_HEADER_LEN + (captured as u64).min(u64::from(self.snaplen))
    }

    /// Appends one record: `data` (cut to the snaplen) captured at `ts` from a frame of
    /// `wire_len` bytes on the wire (at least the captured length).
    pub fn record(&mut self, ts: Timestamp, data: &[u8], wire_len: u32) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        let secs = u32::try_from(ts.0 / Timestamp::NANOS_PER_SEC).unwrap_or(u32::MAX);
        let sub = ts.0 % Timestamp::NANOS_PER_SEC;
        let frac = match self.resolution {
            TsResolution::Micro => sub / 1_000,
            TsResolution::Nano => sub,
        } as u32;
        let caplen = data.len() as u32;
        let mut hdr = [0u8; RECORD_HEADER_LEN as usize];
        hdr[0..4].copy_from_slice(&secs.to_le_bytes());
        hdr[4..8].copy_from_slice(&frac.to_le_bytes());
        hdr[8..12].copy_from_slice(&caplen.to_le_bytes());
        hdr[12..16].copy_from_slice(&wire_len.max(caplen).to_le_bytes());
        self.buf.extend_from_slice(&hdr);
        self.buf.extend_from_slice(data);
        self.packets += 1;
        self.bytes += u64::from(caplen);
        if self.buf.len() >= self.flush_at {
            self.w.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes what is buffered and flushes `W`; the writer can go on afterwards.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        self.w.flush()
    }

    /// Writes what is buffered, flushes and returns `W`.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nanosecond_file_has_its_magic_link_type_and_lengths() {
        let mut w = PcapWriter::new(
            Vec::new(),
            LinkType(113),
            TsResolution::Nano,
            65_535,
            1 << 16,
        );
        w.record(Timestamp(1_764_079_200_123_456_789), &[1, 2, 3], 1500)
            .unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 3);
        assert_eq!(&bytes[0..4], &0xa1b2_3c4du32.to_le_bytes());
        assert_eq!(&bytes[16..20], &65_535u32.to_le_bytes());
        assert_eq!(&bytes[20..24], &113u32.to_le_bytes());
        assert_eq!(&bytes[24..28], &1_764_079_200u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &123_456_789u32.to_le_bytes());
        assert_eq!(&bytes[32..36], &3u32.to_le_bytes());
        assert_eq!(&bytes[36..40], &1500u32.to_le_bytes());
        assert_eq!(&bytes[40..], &[1, 2, 3]);
    }

    #[test]
    fn a_microsecond_file_rounds_down_and_cuts_at_the_snaplen() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET, TsResolution::Micro, 2, 0);
        assert_eq!(w.record_len(10), 16 + 2);
        w.record(Timestamp(5_000_001_999), &[9, 8, 7], 0).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(&bytes[0..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &1u32.to_le_bytes()); // 1 µs
        assert_eq!(&bytes[32..36], &2u32.to_le_bytes()); // captured, cut
        assert_eq!(&bytes[36..40], &2u32.to_le_bytes()); // original ≥ captured
        assert_eq!(&bytes[40..], &[9, 8]);
    }
}
