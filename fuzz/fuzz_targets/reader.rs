//! Fuzz target: the capture file reader on arbitrary bytes must never panic, and what it hands out
//! must agree with its counters; every frame is decoded too.
#![no_main]

use floodwatch::capture::file::FileSource;
use floodwatch::capture::FrameSource;
use floodwatch::decode::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut src) = FileSource::from_reader("fuzz.pcap", std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let mut frames = 0u64;
    while let Ok(Some(f)) = src.next_frame() {
        frames += 1;
        let _ = Decoder.decode(f.link, f.data, f.ts, f.wire_len);
    }
    assert_eq!(src.stats().frames, frames);
    assert!(matches!(src.next_frame(), Ok(None)), "finished stays finished");
});
