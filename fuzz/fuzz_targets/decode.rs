//! Fuzz target: `Decoder::decode` on arbitrary frames of every link type must never panic.
#![no_main]

use floodwatch::decode::{Decoder, LinkType};
use floodwatch::time::Timestamp;
use libfuzzer_sys::fuzz_target;

/// The link types the decoder reads, and one it must refuse.
const LINK_TYPES: [u32; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147];

fuzz_target!(|data: &[u8]| {
    // the first byte picks the link type, the next four the original length, the rest is the frame
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let link = LinkType(LINK_TYPES[usize::from(pick) % LINK_TYPES.len()]);
    let (wire_len, frame) = match rest.split_first_chunk::<4>() {
        Some((w, frame)) => (u32::from_le_bytes(*w), frame),
        None => (0, rest),
    };
    if let Ok(p) = Decoder.decode(link, frame, Timestamp(1), wire_len) {
        assert!(p.wire_len as usize >= frame.len());
    }
});
