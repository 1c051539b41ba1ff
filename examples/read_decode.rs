//! The bare read+decode loop of the replay benchmark (benches/replay.sh, column (b)): the same
//! [`FileSource`] reader and [`Decoder`] `floodwatch replay` uses, and nothing else — no batches, no
//! threads, no engine. What `replay` does on top of this is the cost of detection.
//!
//! Usage: `cargo run --release --example read_decode -- FILE...`; prints one line on stdout:
//! `frames=N packets=N bytes=N skipped=N seconds=S pps=P`.

use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use floodwatch::capture::file::FileSource;
use floodwatch::capture::FrameSource;
use floodwatch::decode::Decoder;

/// What one pass over the files saw.
#[derive(Default)]
struct Tally {
    frames: u64,
    packets: u64,
    bytes: u64,
    skipped: u64,
    /// Folded from every summary so the decode cannot be optimised away.
    checksum: u64,
}

fn read_decode(path: &Path, tally: &mut Tally) -> Result<(), String> {
    let mut source = FileSource::open(path).map_err(|e| e.to_string())?;
    let decoder = Decoder;
    while let Some(frame) = source.next_frame().map_err(|e| e.to_string())? {
        tally.frames += 1;
        match decoder.decode(frame.link, frame.data, frame.ts, frame.wire_len) {
            Ok(p) => {
                tally.packets += 1;
                tally.bytes += u64::from(p.wire_len);
                tally.checksum = tally
                    .checksum
                    .wrapping_add(u64::from(p.dport) ^ u64::from(p.tcp_flags));
            }
            Err(_) => tally.skipped += 1,
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: read_decode FILE... (pcap or pcapng; `-` reads stdin)");
        return ExitCode::from(2);
    }
    let mut tally = Tally::default();
    let started = Instant::now();
    for f in &files {
        if let Err(e) = read_decode(Path::new(f), &mut tally) {
            eprintln!("read_decode: {e}");
            return ExitCode::from(1);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    black_box(tally.checksum);
    println!(
        "frames={} packets={} bytes={} skipped={} seconds={secs:.6} pps={:.0}",
        tally.frames,
        tally.packets,
        tally.bytes,
        tally.skipped,
        tally.frames as f64 / secs.max(1e-9)
    );
    ExitCode::SUCCESS
}
