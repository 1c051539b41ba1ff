//! Property tests on hostile input: `Decoder::decode` over arbitrary bytes for every link type, and the
//! capture file reader over arbitrary, truncated and bit-flipped pcap and pcapng files. Nothing may
//! panic, and what the reader hands out must agree with its counters and with how it stopped.

use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;

use floodwatch::capture::file::{FileSource, MAX_RECORD_LEN};
use floodwatch::capture::{CaptureError, FrameSource};
use floodwatch::decode::{Decoder, LinkType};
use floodwatch::synth::{self, Scenario, SynthOptions};
use floodwatch::time::Timestamp;
use proptest::prelude::*;

/// Every link type the decoder reads, plus neighbours it must refuse.
const LINK_TYPES: [u32; 14] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 2, 105, 127, 147];

// ---- inputs ----

/// A small valid pcap from `floodwatch synth` (DNS reflection: UDP, IP fragments and background TCP).
fn synth_pcap() -> &'static [u8] {
    static PCAP: OnceLock<Vec<u8>> = OnceLock::new();
    PCAP.get_or_init(|| {
        let opts = SynthOptions {
            duration: Duration::from_secs(1),
            attack_start: Duration::from_millis(300),
            attack_duration: Duration::from_millis(400),
            attack_pps: 100,
            background_pps: 60,
            ..SynthOptions::default()
        };
        let mut out = Vec::new();
        synth::write_pcap(Scenario::DnsReflection, &opts, &mut out).expect("synth pcap");
        out
    })
}

fn ng_block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    let mut b = Vec::with_capacity(total as usize);
    b.extend(block_type.to_le_bytes());
    b.extend(total.to_le_bytes());
    b.extend(body);
    b.resize(8 + padded, 0);
    b.extend(total.to_le_bytes());
    b
}

fn epb(if_id: u32, ts: u64, frame: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(if_id.to_le_bytes());
    body.extend(((ts >> 32) as u32).to_le_bytes());
    body.extend((ts as u32).to_le_bytes());
    body.extend((frame.len() as u32).to_le_bytes());
    body.extend((frame.len() as u32 + 4).to_le_bytes()); // original length: 4 bytes were cut
    body.extend(frame);
    body.resize(20 + frame.len().div_ceil(4) * 4, 0);
    ng_block(6, &body)
}

/// A valid little-endian pcapng: two interfaces (Ethernet in µs, raw IP in ns with `if_tsresol`),
/// enhanced and simple packet blocks, a name-resolution block, an unknown block and a second section.
fn built_pcapng() -> &'static [u8] {
    static NG: OnceLock<Vec<u8>> = OnceLock::new();
    NG.get_or_init(|| {
        let shb = || {
            let mut body = Vec::new();
            body.extend(0x1a2b_3c4d_u32.to_le_bytes());
            body.extend(1u16.to_le_bytes());
            body.extend(0u16.to_le_bytes());
            body.extend((-1i64).to_le_bytes());
            ng_block(0x0a0d_0d0a, &body)
        };
        let idb = |link: u16, tsresol: Option<u8>| {
            let mut body = Vec::new();
            body.extend(link.to_le_bytes());
            body.extend(0u16.to_le_bytes());
            body.extend(65_535u32.to_le_bytes());
            if let Some(r) = tsresol {
                body.extend(9u16.to_le_bytes()); // if_tsresol
                body.extend(1u16.to_le_bytes());
                body.extend([r, 0, 0, 0]);
                body.extend([0u8; 4]); // opt_endofopt
            }
            ng_block(1, &body)
        };
        let eth = ethernet_udp();
        let raw = &eth[14..];
        let mut f = shb();
        f.extend(idb(1, None));
        f.extend(idb(101, Some(9)));
        for i in 0..20u64 {
            f.extend(epb(0, 1_764_079_200_000_000 + i * 1_000, &eth));
            f.extend(epb(1, 1_764_079_200_000_000_000 + i * 1_000_000, raw));
        }
        f.extend(ng_block(4, &[0u8; 4])); // name resolution: end of records only
        f.extend(ng_block(0x0000_0099, b"a block type nobody defined"));
        let mut spb_body = Vec::new();
        spb_body.extend((eth.len() as u32).to_le_bytes());
        spb_body.extend(&eth);
        f.extend(ng_block(3, &spb_body));
        f.extend(shb());
        f.extend(idb(113, None));
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend(raw);
        f.extend(epb(0, 1_764_079_201_000_000, &sll));
        f
    })
}

/// An Ethernet IPv4 UDP frame to 198.51.100.10:53.
fn ethernet_udp() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let payload = b"query";
    let ip_len = (20 + 8 + payload.len()) as u16;
    f.extend([0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0]);
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f.extend([203, 0, 113, 9, 198, 51, 100, 10]);
    f.extend(40_000u16.to_be_bytes());
    f.extend(53u16.to_be_bytes());
    f.extend((8 + payload.len() as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
}

fn valid_file() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![Just(synth_pcap()), Just(built_pcapng())]
}

// ---- reading ----

/// A reader that hands out at most `chunk` bytes per call, as pipes do.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Frame {
    ts: Timestamp,
    link: LinkType,
    data: Vec<u8>,
    wire_len: u32,
}

/// How a read ended.
#[derive(Debug)]
enum End {
    /// `from_reader` refused the file header.
    Refused(CaptureError),
    Eof,
    Failed(CaptureError),
}

/// Reads everything, checking on the way that the counters match what was handed out and that the
/// source stays finished after its end or its error.
fn read_checked(bytes: &[u8], chunk: usize) -> (Vec<Frame>, End) {
    let reader = Chunked {
        data: bytes.to_vec(),
        at: 0,
        chunk,
    };
    let mut src = match FileSource::from_reader("prop.pcap", reader) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), End::Refused(e)),
    };
    let mut frames = Vec::new();
    let mut captured = 0u64;
    let end = loop {
        match src.next_frame() {
            Ok(Some(f)) => {
                assert!(
                    f.data.len() <= MAX_RECORD_LEN,
                    "a frame larger than the cap"
                );
                captured += f.data.len() as u64;
                frames.push(Frame {
                    ts: f.ts,
                    link: f.link,
                    data: f.data.to_vec(),
                    wire_len: f.wire_len,
                });
            }
            Ok(None) => break End::Eof,
            Err(e) => break End::Failed(e),
        }
    };
    let stats = src.stats();
    assert_eq!(
        stats.frames,
        frames.len() as u64,
        "frames counted = handed out"
    );
    assert_eq!(stats.captured_bytes, captured, "bytes counted = handed out");
    assert!(
        src.bytes_read() <= bytes.len() as u64,
        "read past the input"
    );
    for _ in 0..2 {
        assert!(
            matches!(src.next_frame(), Ok(None)),
            "finished stays finished"
        );
    }
    assert_eq!(src.stats(), stats, "counters frozen once finished");
    // each record needs at least a 12-byte header (pcapng SPB) besides the file header
    assert!(
        frames.len() <= bytes.len() / 12,
        "more frames than the bytes can hold"
    );
    (frames, end)
}

fn full_read(bytes: &[u8]) -> Vec<Frame> {
    match read_checked(bytes, usize::MAX) {
        (frames, End::Eof) => frames,
        (_, end) => panic!("a valid file failed: {end:?}"),
    }
}

fn chunk_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(usize::MAX), 1usize..64, 64usize..5000]
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=100000 for a longer hunt
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(
        link in prop_oneof![proptest::sample::select(LINK_TYPES.to_vec()), any::<u32>()],
        frame in proptest::collection::vec(any::<u8>(), 0..256),
        wire_len in any::<u32>(),
        ts in any::<u64>(),
    ) {
        if let Ok(p) = Decoder.decode(LinkType(link), &frame, Timestamp(ts), wire_len) {
            prop_assert_eq!(p.ts, Timestamp(ts).clamped());
            prop_assert!(p.wire_len as usize >= frame.len().min(u32::MAX as usize));
            prop_assert!(p.wire_len >= wire_len);
        }
    }

    /// Plausible link and IP headers followed by arbitrary bytes, so the deep paths (VLAN stacks,
    /// MPLS, IPv6 extension headers, fragments, transport) are reached, not just the first check.
    #[test]
    fn decode_never_panics_past_plausible_headers(
        link in proptest::sample::select(LINK_TYPES[..10].to_vec()),
        ethertype in proptest::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x8847, 0x8864, 0x0806]),
        version_byte in prop_oneof![Just(0x45u8), Just(0x46), Just(0x4f), Just(0x60), any::<u8>()],
        next_header in proptest::sample::select(vec![6u8, 17, 1, 58, 0, 43, 44, 50, 51, 60, 135, 255]),
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut ip = vec![version_byte];
        ip.extend(&rest);
        if ip.len() > 9 && version_byte >> 4 == 4 {
            ip[9] = next_header;
        } else if ip.len() > 6 && version_byte >> 4 == 6 {
            ip[6] = next_header;
        }
        let frame = match link {
            1 => {
                let mut f = vec![0u8; 12];
                f.extend(ethertype.to_be_bytes());
                if matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
                    f.extend([0, 1, 0x08, 0x00]);
                }
                f.extend(&ip);
                f
            }
            113 => [vec![0u8; 14], ethertype.to_be_bytes().to_vec(), ip].concat(),
            276 => [ethertype.to_be_bytes().to_vec(), vec![0u8; 18], ip].concat(),
            0 | 108 => [vec![2, 0, 0, 0], ip].concat(),
            _ => ip,
        };
        let len = frame.len() as u32;
        if let Ok(p) = Decoder.decode(LinkType(link), &frame, Timestamp(7), 0) {
            prop_assert_eq!(p.wire_len, len);
        }
    }

    #[test]
    fn reader_never_panics_on_arbitrary_bytes(
        magic in proptest::sample::select(vec![
            vec![],
            vec![0xd4, 0xc3, 0xb2, 0xa1],
            vec![0xa1, 0xb2, 0xc3, 0xd4],
            vec![0x4d, 0x3c, 0xb2, 0xa1],
            vec![0x0a, 0x0d, 0x0d, 0x0a],
        ]),
        rest in proptest::collection::vec(any::<u8>(), 0..600),
        chunk in chunk_size(),
    ) {
        let bytes = [magic, rest].concat();
        let _ = read_checked(&bytes, chunk);
    }

    /// A file cut anywhere yields a prefix of the whole file's frames, then a clean end or a clear
    /// error: nothing before the cut is lost and nothing after it invented.
    #[test]
    fn truncated_files_yield_a_prefix_of_their_frames(
        file in valid_file(),
        cut in any::<prop::sample::Index>(),
        chunk in chunk_size(),
    ) {
        let all = full_read(file);
        let cut = cut.index(file.len() + 1);
        let (frames, end) = read_checked(&file[..cut], chunk);
        prop_assert!(frames.len() <= all.len());
        prop_assert_eq!(&frames[..], &all[..frames.len()]);
        match end {
            End::Eof => {}
            End::Refused(CaptureError::Empty { .. }) => prop_assert_eq!(cut, 0),
            End::Refused(CaptureError::Truncated { .. }) | End::Failed(CaptureError::Truncated { .. }) => {
                prop_assert!(cut < file.len());
            }
            other => prop_assert!(false, "cut at {} of {}: {:?}", cut, file.len(), other),
        }
        if cut == file.len() {
            prop_assert_eq!(frames.len(), all.len());
        }
    }

    /// Bit flips anywhere (headers, lengths, timestamps, payloads): never a panic, counters agree.
    #[test]
    fn bit_flipped_files_never_panic(
        file in valid_file(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..12),
        chunk in chunk_size(),
    ) {
        let mut bytes = file.to_vec();
        for (at, bit) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        let (frames, end) = read_checked(&bytes, chunk);
        for f in &frames {
            let _ = Decoder.decode(f.link, &f.data, f.ts, f.wire_len);
        }
        if let End::Refused(e) | End::Failed(e) = end {
            prop_assert!(e.to_string().contains("prop.pcap"), "the message names the file: {}", e);
        }
    }
}

// ---- telemetry ----

/// Valid telemetry datagrams of every kind (templates included in the v9 and IPFIX ones).
fn telemetry_datagrams() -> Vec<Vec<u8>> {
    use floodwatch::telemetry::build::{netflow, sflow};
    let frame = {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&[203, 0, 113, 5, 198, 51, 100, 10]);
        f.extend_from_slice(&[
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
        ]);
        f.extend_from_slice(&[0, 0, 0, 0]);
        f
    };
    let sample = |sequence| sflow::Sample {
        sequence,
        source_id: 3,
        rate: 100,
        frame_length: 64,
        header: &frame,
    };
    let rec = netflow::tcp(0x02, 10, 600, 9_000, 10_000);
    vec![
        sflow::datagram([192, 0, 2, 1], 1, &[sample(1), sample(2)]),
        netflow::v5(1_764_079_200, 10_000, 0x4000 | 10, &[rec, rec]),
        netflow::v9(1_764_079_200, 10_000, 7, true, Some(64), &[rec, rec]),
        netflow::ipfix(1_764_079_200, 3, true, Some(1_764_079_190_000), &[rec, rec]),
    ]
}

/// Runs `datagrams` through one telemetry stage: never a panic, the summaries in time order and
/// adding up to the packets the stage says they represent.
fn telemetry_checked(datagrams: &[Vec<u8>]) -> Result<(), TestCaseError> {
    use floodwatch::telemetry::{Datagram, Telemetry, TelemetryConfig};
    let mut t = Telemetry::new(TelemetryConfig {
        max_exporters: 3,
        max_templates: 4,
        ..TelemetryConfig::default()
    });
    let mut out = Vec::new();
    for (i, d) in datagrams.iter().enumerate() {
        t.datagram(
            &Datagram {
                ts: Timestamp(1_764_079_200_000_000_000 + i as u64 * 50_000_000),
                exporter: std::net::IpAddr::from([192, 0, 2, (i % 5) as u8]),
                payload: d,
            },
            &mut out,
        );
    }
    t.finish(&mut out);
    let fed: u64 = out.iter().map(|p| u64::from(p.weight)).sum();
    prop_assert_eq!(fed, t.stats().packets);
    prop_assert!(out.windows(2).all(|w| w[0].ts <= w[1].ts));
    prop_assert!(t.exporters().len() <= 3);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Valid datagrams cut, bit-flipped and shuffled with arbitrary ones.
    #[test]
    fn telemetry_never_panics_on_mangled_datagrams(
        picks in proptest::collection::vec((0usize..4, any::<prop::sample::Index>(), proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6)), 1..24),
        junk in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..6),
    ) {
        let valid = telemetry_datagrams();
        let mut datagrams: Vec<Vec<u8>> = picks
            .iter()
            .map(|(which, cut, flips)| {
                let mut d = valid[*which].clone();
                for (at, bit) in flips {
                    let i = at.index(d.len());
                    d[i] ^= 1 << bit;
                }
                let keep = if flips.is_empty() { d.len() } else { cut.index(d.len() + 1) };
                d.truncate(keep);
                d
            })
            .collect();
        datagrams.extend(junk);
        telemetry_checked(&datagrams)?;
    }
}

#[test]
fn the_valid_telemetry_is_read_whole() {
    let valid = telemetry_datagrams();
    assert!(telemetry_checked(&valid).is_ok());
}

#[test]
fn the_valid_inputs_are_read_whole() {
    let pcap = full_read(synth_pcap());
    assert!(pcap.len() > 50, "{} frames", pcap.len());
    let ng = full_read(built_pcapng());
    assert_eq!(ng.len(), 42);
    assert!(ng
        .iter()
        .all(|f| Decoder.decode(f.link, &f.data, f.ts, f.wire_len).is_ok()));
}
