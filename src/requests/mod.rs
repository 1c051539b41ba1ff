//! Requests: what a TCP payload's first bytes say (an HTTP request head, a TLS record), and the
//! connection state the request signals are counted from ([`conn`]).

pub mod clients;
pub mod conn;

/// What the first bytes of a TCP payload are, told from [`crate::decode::HeaderFields::prefix`]
/// alone (at most 4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    None,
    HttpMethod,
    H2Preface,
    TlsHandshake,
    TlsAppData,
    TlsOther,
}

/// [`Sniff`] of a payload prefix: one compare of the four bytes per request method.
#[inline]
pub fn sniff(prefix: &[u8]) -> Sniff {
    let Some(&[a, b, c, d]) = prefix.first_chunk::<4>() else {
        return Sniff::None;
    };
    match (a, b, c) {
        (0x16, 3, 0..=4) => return Sniff::TlsHandshake,
        (0x17, 3, 1..=4) => return Sniff::TlsAppData,
        (0x14 | 0x15, 3, 0..=4) => return Sniff::TlsOther,
        _ => {}
    }
    match &[a, b, c, d] {
        b"GET " | b"POST" | b"PUT " | b"HEAD" | b"DELE" | b"OPTI" | b"PATC" | b"CONN" | b"TRAC" => {
            Sniff::HttpMethod
        }
        b"PRI " => Sniff::H2Preface,
        _ => Sniff::None,
    }
}
