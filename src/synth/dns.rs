//! DNS messages: queries and their one-record answers, for the background's few names and for the
//! legitimate clients' varied ones.

use super::address::{v6_server, V4_SERVERS};
use super::rng::splitmix64;

const TLDS: [&str; 6] = ["com", "net", "org", "io", "de", "example"];
const NAME_CHARS: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A DNS query for the name drawn from `name` (1–3 labels of 2–14 letters and digits, then a TLD), or
/// its one-record answer, into `buf`; returns the length.
pub(super) fn legit_dns(
    buf: &mut [u8; 512],
    qid: u16,
    name: u64,
    aaaa: bool,
    response: bool,
) -> usize {
    let mut x = name;
    let h = splitmix64(&mut x);
    let mut p = dns_header(buf, qid, response);
    let mut label = [0u8; 14];
    for _ in 0..1 + h % 3 {
        let n = 2 + (splitmix64(&mut x) % 13) as usize;
        for b in &mut label[..n] {
            *b = NAME_CHARS[(splitmix64(&mut x) % NAME_CHARS.len() as u64) as usize];
        }
        p = dns_label(buf, p, &label[..n]);
    }
    let tld = TLDS[((h >> 8) % TLDS.len() as u64) as usize];
    p = dns_label(buf, p, tld.as_bytes());
    dns_tail(buf, p, aaaa, response, 1 + (h >> 16) as u32 % 250)
}

/// A DNS header (one question; one answer in a response) into `buf`; returns where the name goes.
pub(super) fn dns_header(buf: &mut [u8], qid: u16, response: bool) -> usize {
    buf[0..2].copy_from_slice(&qid.to_be_bytes());
    buf[2..4].copy_from_slice(&(if response { 0x8180u16 } else { 0x0100 }).to_be_bytes());
    buf[4..6].copy_from_slice(&1u16.to_be_bytes());
    buf[6..8].copy_from_slice(&u16::from(response).to_be_bytes());
    buf[8..12].fill(0);
    12
}

/// One name label at `p`; returns the position after it.
pub(super) fn dns_label(buf: &mut [u8], p: usize, label: &[u8]) -> usize {
    buf[p] = label.len() as u8;
    buf[p + 1..p + 1 + label.len()].copy_from_slice(label);
    p + 1 + label.len()
}

/// The end of the name at `p`, the question's type and class, and in a response the A/AAAA record
/// of server `host`; returns the message length.
pub(super) fn dns_tail(
    buf: &mut [u8],
    mut p: usize,
    aaaa: bool,
    response: bool,
    host: u32,
) -> usize {
    buf[p] = 0;
    let qtype: u16 = if aaaa { 28 } else { 1 };
    buf[p + 1..p + 3].copy_from_slice(&qtype.to_be_bytes());
    buf[p + 3..p + 5].copy_from_slice(&1u16.to_be_bytes());
    p += 5;
    if response {
        buf[p..p + 2].copy_from_slice(&0xc00cu16.to_be_bytes());
        buf[p + 2..p + 4].copy_from_slice(&qtype.to_be_bytes());
        buf[p + 4..p + 6].copy_from_slice(&1u16.to_be_bytes());
        buf[p + 6..p + 10].copy_from_slice(&300u32.to_be_bytes());
        p += 10;
        if aaaa {
            buf[p..p + 2].copy_from_slice(&16u16.to_be_bytes());
            buf[p + 2..p + 18].copy_from_slice(&v6_server(host).to_be_bytes());
            p += 18;
        } else {
            buf[p..p + 2].copy_from_slice(&4u16.to_be_bytes());
            buf[p + 2..p + 6].copy_from_slice(&(V4_SERVERS | host).to_be_bytes());
            p += 6;
        }
    }
    p
}
