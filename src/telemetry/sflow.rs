//! sFlow version 5 (sflow.org, "sFlow Version 5", 2004): datagrams of samples; flow samples carry
//! records, of which the raw packet header (the first bytes of a sampled frame) is what the detector
//! decodes. Everything is XDR: 4-byte big-endian words, opaque data padded to 4 bytes, and every
//! sample and record says its own length, so unknown ones are skipped exactly.

use std::net::IpAddr;

use super::wire::Cursor;
use super::Malformed;

/// Samples and records per datagram and per sample beyond which a count is taken as hostile (a
/// 1500-byte datagram cannot hold more than a few hundred).
const MAX_COUNT: u32 = 4096;

/// What a datagram says about its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Header {
    pub agent: IpAddr,
    pub sub_agent: u32,
}

/// One flow sample's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlowSample {
    /// Data source (type << 24 | index); expanded samples are folded into the same form.
    pub source_id: u32,
    pub sequence: u32,
    pub sampling_rate: u32,
}

/// What the parser found, in datagram order.
pub(super) trait Visitor {
    fn header(&mut self, h: Header);
    fn flow_sample(&mut self, s: FlowSample);
    /// A raw packet header record of the last flow sample: `protocol` as sFlow numbers it (1
    /// Ethernet, 11 IPv4, 12 IPv6, …), the frame's length on the wire, the bytes stripped from
    /// it (e.g. the FCS), and the header bytes.
    fn raw_header(&mut self, protocol: u32, frame_length: u32, stripped: u32, header: &[u8]);
    /// A flow record of another type (extended switch/router data, sampled IPv4, …).
    fn other_record(&mut self);
    fn counter_sample(&mut self);
    /// A sample of a type this parser does not know (enterprise formats, discarded packets).
    fn other_sample(&mut self);
}

/// Parses one sFlow v5 datagram. Stops at the first malformation; what came before it has been
/// visited.
pub(super) fn parse(payload: &[u8], v: &mut impl Visitor) -> Result<(), Malformed> {
    let mut c = Cursor::new(payload);
    let version = c.u32()?;
    if version != 5 {
        return Err(Malformed::UnknownVersion);
    }
    let agent = match c.u32()? {
        1 => c.ipv4().map(IpAddr::V4),
        2 => c.ipv6().map(IpAddr::V6),
        _ => return Err(Malformed::BadField),
    }?;
    let sub_agent = c.u32()?;
    let _sequence = c.u32()?;
    let _uptime = c.u32()?;
    let samples = c.u32()?;
    if samples > MAX_COUNT {
        return Err(Malformed::BadCount);
    }
    v.header(Header { agent, sub_agent });
    for _ in 0..samples {
        let format = c.u32()?;
        let len = c.u32()? as usize;
        let body = c.part(len)?;
        match format {
            1 => flow_sample(body, false, v)?,
            3 => flow_sample(body, true, v)?,
            2 | 4 => v.counter_sample(),
            _ => v.other_sample(),
        }
    }
    Ok(())
}

/// A flow sample (format 1) or an expanded one (format 3).
fn flow_sample(body: &[u8], expanded: bool, v: &mut impl Visitor) -> Result<(), Malformed> {
    let mut c = Cursor::new(body);
    let sequence = c.u32()?;
    let source_id = if expanded {
        let kind = c.u32()?;
        let index = c.u32()?;
        (kind << 24) | (index & 0x00ff_ffff)
    } else {
        c.u32()?
    };
    let sampling_rate = c.u32()?;
    let _pool = c.u32()?;
    let _drops = c.u32()?;
    // input and output interfaces: one word each, two when expanded
    c.skip(if expanded { 16 } else { 8 })?;
    let records = c.u32()?;
    if records > MAX_COUNT {
        return Err(Malformed::BadCount);
    }
    v.flow_sample(FlowSample {
        source_id,
        sequence,
        sampling_rate,
    });
    for _ in 0..records {
        let format = c.u32()?;
        let len = c.u32()? as usize;
        let rec = c.part(len)?;
        if format == 1 {
            let mut r = Cursor::new(rec);
            let protocol = r.u32()?;
            let frame_length = r.u32()?;
            let stripped = r.u32()?;
            let header_len = r.u32()? as usize;
            let header = r.part(header_len)?;
            v.raw_header(protocol, frame_length, stripped, header);
        } else {
            v.other_record();
        }
    }
    Ok(())
}

pub mod build {
    //! sFlow datagrams for tests.

    fn w(out: &mut Vec<u8>, x: u32) {
        out.extend_from_slice(&x.to_be_bytes());
    }

    /// One raw-header flow sample: (sequence, source id, sampling rate, frame length, header).
    pub struct Sample<'a> {
        pub sequence: u32,
        pub source_id: u32,
        pub rate: u32,
        pub frame_length: u32,
        pub header: &'a [u8],
    }

    /// A datagram from IPv4 agent `agent` holding `samples` (Ethernet headers) and one counter
    /// sample.
    pub fn datagram(agent: [u8; 4], seq: u32, samples: &[Sample<'_>]) -> Vec<u8> {
        let mut d = Vec::new();
        for x in [5, 1] {
            w(&mut d, x);
        }
        d.extend_from_slice(&agent);
        for x in [0, seq, 1000, samples.len() as u32 + 1] {
            w(&mut d, x);
        }
        for s in samples {
            let mut rec = Vec::new();
            for x in [1, s.frame_length, 4, s.header.len() as u32] {
                w(&mut rec, x);
            }
            rec.extend_from_slice(s.header);
            while rec.len() % 4 != 0 {
                rec.push(0);
            }
            let mut body = Vec::new();
            for x in [
                s.sequence,
                s.source_id,
                s.rate,
                s.sequence * s.rate,
                0,
                1,
                2,
                1,
            ] {
                w(&mut body, x);
            }
            w(&mut body, 1);
            w(&mut body, rec.len() as u32);
            body.extend_from_slice(&rec);
            w(&mut d, 1);
            w(&mut d, body.len() as u32);
            d.extend_from_slice(&body);
        }
        // a counter sample with no records
        w(&mut d, 2);
        w(&mut d, 12);
        for x in [1, 1, 0] {
            w(&mut d, x);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen {
        headers: Vec<Header>,
        samples: Vec<FlowSample>,
        raw: Vec<(u32, u32, Vec<u8>)>,
        counters: usize,
    }

    impl Visitor for Seen {
        fn header(&mut self, h: Header) {
            self.headers.push(h);
        }
        fn flow_sample(&mut self, s: FlowSample) {
            self.samples.push(s);
        }
        fn raw_header(&mut self, protocol: u32, frame_length: u32, _stripped: u32, header: &[u8]) {
            self.raw.push((protocol, frame_length, header.to_vec()));
        }
        fn other_record(&mut self) {}
        fn counter_sample(&mut self) {
            self.counters += 1;
        }
        fn other_sample(&mut self) {}
    }

    #[test]
    fn parses_flow_and_counter_samples() {
        let d = build::datagram(
            [192, 0, 2, 9],
            7,
            &[
                build::Sample {
                    sequence: 1,
                    source_id: 3,
                    rate: 100,
                    frame_length: 64,
                    header: &[1, 2, 3, 4, 5],
                },
                build::Sample {
                    sequence: 2,
                    source_id: 3,
                    rate: 100,
                    frame_length: 1514,
                    header: &[9; 8],
                },
            ],
        );
        let mut s = Seen::default();
        parse(&d, &mut s).unwrap();
        assert_eq!(s.headers[0].agent, IpAddr::from([192, 0, 2, 9]));
        assert_eq!(s.samples.len(), 2);
        assert_eq!(s.samples[1].sampling_rate, 100);
        assert_eq!(s.raw[0], (1, 64, vec![1, 2, 3, 4, 5]));
        assert_eq!(s.counters, 1);
        // every cut of the datagram is an error or a clean prefix, never a panic
        for cut in 0..d.len() {
            let _ = parse(&d[..cut], &mut Seen::default());
        }
        assert_eq!(
            parse(&d[..d.len() - 1], &mut Seen::default()),
            Err(Malformed::BadLength)
        );
        let mut v4 = d.clone();
        v4[3] = 4;
        assert_eq!(
            parse(&v4, &mut Seen::default()),
            Err(Malformed::UnknownVersion)
        );
    }

    #[test]
    fn absurd_counts_are_refused_before_any_allocation() {
        let mut d = build::datagram([192, 0, 2, 9], 7, &[]);
        // num_samples = 2^32 − 1
        d[24..28].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse(&d, &mut Seen::default()), Err(Malformed::BadCount));
    }
}
