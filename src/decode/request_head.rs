//! Request heads: what the first bytes of a TCP payload say about the request they carry.
//!
//! Request floods (issue 23: HTTP floods, TLS handshake floods, slowloris) are tens to hundreds of
//! packets a second, far below the volumetric floors; what gives them away is the requests inside
//! the packets. This module is the pure parsing part, in the inputs layer inside [`crate::decode`]
//! (which calls it for every request head it meets): bytes in, a [`RequestHead`] out. The connection
//! state the request signals are counted from, and the clients they name, are the engine's
//! ([`crate::requests`]).
//!
//! Two steps, as Suricata probes a flow before its app-layer parser runs:
//!
//! 1. [`sniff`] looks at the payload prefix that every [`crate::decode::PacketSummary`] already
//!    carries (`hdr.prefix()`, at most 4 bytes) and compares it, as one `u32`, against constants:
//!    an HTTP/1 method, the HTTP/2 preface, a TLS record header. Any other payload pays for that
//!    compare and nothing more.
//! 2. [`parse`] reads a payload whose sniff [`wants_parse`] and says what its head is.
//!
//! # What is recognised
//!
//! - **HTTP/1.0 and 1.1 request heads** ([`http`]): `METHOD SP request-target SP HTTP/1.x` on any
//!   port, for the nine methods of [`Method`]; then the `Host` and `User-Agent` headers and whether
//!   the head's end (an empty line) is in the payload. A head cut by the end of the segment is
//!   [`HeadKind::Http1`] with `complete: false`: that is how slowloris looks.
//! - **The HTTP/2 connection preface** (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, prior knowledge h2c):
//!   [`HeadKind::H2Preface`]. Its requests are in HPACK-compressed frames, not parsed here.
//! - **TLS ClientHellos** ([`tls`]): the SNI host name, the first ALPN protocol and the JA4
//!   fingerprint (the TLS client part, BSD-licensed) of the hello.
//!
//! # Bounded work, no panics
//!
//! [`parse`] reads at most the first [`PARSE_LIMIT`] (4 KiB) of a payload, front to back, each byte
//! a small constant number of times: no backtracking, no recursion, no loop that does not consume
//! input. Lengths inside a TLS hello are checked against what is there before use; every read is a
//! `get`, never an index that can panic. What it allocates is bounded too: the strings of a
//! [`RequestHead`] (at most a few hundred bytes) and, for a TLS hello, the lists JA4 sorts (at most
//! 2,048 values out of 4 KiB).
//!
//! # The strings are the sender's
//!
//! Path, host, user agent and ALPN are chosen by whoever sent the packet, and they end up in JSON
//! events, HTML reports and nginx snippets. They are made safe to carry here, not to embed: each is
//! cut to a bound ([`PATH_MAX`], [`HOST_MAX`], [`USER_AGENT_MAX`], [`ALPN_MAX`]; a cut value ends in
//! `…` and the bound includes it), decoded as lossy UTF-8, and every control character (C0, DEL,
//! C1), line or paragraph separator and bidirectional override is replaced by U+FFFD, so no CR, LF,
//! NUL or escape sequence survives. Quotes, `\`, `;`, `{`, `}`, `<` and `&` are left as sent: every
//! consumer escapes for its own output (serde for JSON, the report template's auto-escaping for
//! HTML; an nginx snippet must quote and escape a value, or not write it).

pub mod http;
pub mod tls;

/// How many bytes of a payload [`parse`] looks at, at most.
pub const PARSE_LIMIT: usize = 4096;
/// Longest [`RequestHead::path`], in bytes (including a closing `…` when cut).
pub const PATH_MAX: usize = 128;
/// Longest [`RequestHead::host`], in bytes (including a closing `…` when cut).
pub const HOST_MAX: usize = 96;
/// Longest [`RequestHead::user_agent`], in bytes (including a closing `…` when cut).
pub const USER_AGENT_MAX: usize = 160;
/// Longest [`RequestHead::fingerprint`], in bytes (a JA4 is 36).
pub const FINGERPRINT_MAX: usize = 48;
/// Longest [`RequestHead::alpn`], in bytes (including a closing `…` when cut).
pub const ALPN_MAX: usize = 32;

/// What the first bytes of a TCP payload are, told from `PacketSummary.hdr.prefix()` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    /// Nothing this module recognises (including a prefix too short to tell).
    None,
    /// The first four bytes of an HTTP/1 request line: `GET `, `POST`, `PUT `, `HEAD`, `DELE`,
    /// `OPTI`, `PATC`, `CONN` or `TRAC`.
    HttpMethod,
    /// `PRI `, the start of the HTTP/2 connection preface.
    H2Preface,
    /// A TLS record header of a handshake message (`16 03 00..=04`): a ClientHello, if the client
    /// sent it.
    TlsHandshake,
    /// A TLS record header of application data (`17 03 01..=04`): a request or response inside TLS.
    TlsAppData,
    /// A TLS change-cipher-spec or alert record header (`14`/`15 03 00..=04`).
    TlsOther,
}

// The four prefix bytes as one big-endian u32. None of these ends in a zero byte, so a shorter
// prefix (zero-filled) never matches one.
const GET: u32 = u32::from_be_bytes(*b"GET ");
const POST: u32 = u32::from_be_bytes(*b"POST");
const PUT: u32 = u32::from_be_bytes(*b"PUT ");
const HEAD: u32 = u32::from_be_bytes(*b"HEAD");
const DELE: u32 = u32::from_be_bytes(*b"DELE");
const OPTI: u32 = u32::from_be_bytes(*b"OPTI");
const PATC: u32 = u32::from_be_bytes(*b"PATC");
const CONN: u32 = u32::from_be_bytes(*b"CONN");
const TRAC: u32 = u32::from_be_bytes(*b"TRAC");
const PRI: u32 = u32::from_be_bytes(*b"PRI ");

/// What the first bytes of a TCP payload are, from at most 4 of them (fewer when the payload or
/// the capture is shorter: an HTTP method needs all 4, a TLS record header its first 3).
///
/// A handful of instructions: the bytes are compared as one `u32` against constants.
#[inline]
pub fn sniff(prefix: &[u8]) -> Sniff {
    let word = match *prefix {
        [a, b, c, d, ..] => u32::from_be_bytes([a, b, c, d]),
        [a, b, c] => u32::from_be_bytes([a, b, c, 0]),
        _ => return Sniff::None,
    };
    match word {
        GET | POST | PUT | HEAD | DELE | OPTI | PATC | CONN | TRAC => return Sniff::HttpMethod,
        PRI => return Sniff::H2Preface,
        _ => {}
    }
    // TLS: content type, major version 3, minor version; the fourth byte is the length's high byte.
    match word >> 8 {
        0x16_03_00..=0x16_03_04 => Sniff::TlsHandshake,
        0x17_03_01..=0x17_03_04 => Sniff::TlsAppData,
        0x14_03_00..=0x14_03_04 | 0x15_03_00..=0x15_03_04 => Sniff::TlsOther,
        _ => Sniff::None,
    }
}

/// Whether a payload with this sniff should go to [`parse`]: an HTTP/1 method, the HTTP/2 preface
/// or a TLS handshake record.
#[inline]
pub fn wants_parse(s: Sniff) -> bool {
    matches!(
        s,
        Sniff::HttpMethod | Sniff::H2Preface | Sniff::TlsHandshake
    )
}

/// What one request head says, for attribution.
///
/// Every string is bounded, lossy UTF-8, with control characters replaced (see the module
/// documentation: safe to carry, still to be escaped by whoever writes it out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// What kind of head this is.
    pub kind: HeadKind,
    /// HTTP/1: the request target as sent (origin-form path and query, or absolute-form URL,
    /// authority-form for CONNECT, `*`); at most [`PATH_MAX`] bytes. A target cut by the end of
    /// the payload ends in `…`.
    pub path: Option<Box<str>>,
    /// HTTP/1: the `Host` header (the first, when sent twice); TLS: the SNI host name. At most
    /// [`HOST_MAX`] bytes.
    pub host: Option<Box<str>>,
    /// HTTP/1: the `User-Agent` header (the first); at most [`USER_AGENT_MAX`] bytes.
    pub user_agent: Option<Box<str>>,
    /// TLS: the JA4 fingerprint (TLS client part, `JA4_a_b_c`) of the ClientHello, when the whole
    /// hello was in the payload. At most [`FINGERPRINT_MAX`] bytes.
    pub fingerprint: Option<Box<str>>,
    /// TLS: the first protocol of the ALPN extension (`h2`, `http/1.1`); at most [`ALPN_MAX`] bytes.
    pub alpn: Option<Box<str>>,
}

/// What kind of request head a payload starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// An HTTP/1.x request line (and headers). `complete`: the head's end (CRLF CRLF) is in this
    /// payload (within its first [`PARSE_LIMIT`] bytes).
    Http1 {
        /// The request method.
        method: Method,
        /// Whether the empty line that ends the head is in this payload.
        complete: bool,
    },
    /// The HTTP/2 connection preface (prior knowledge).
    H2Preface,
    /// A TLS ClientHello (possibly cut by the capture's snaplen or the segment's end: then the
    /// fields seen so far).
    TlsHello,
}

/// An HTTP/1 request method: the nine of RFC 9110 and RFC 5789.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `HEAD`
    Head,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
}

impl Method {
    /// The method as it is written in a request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Head => "HEAD",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
        }
    }
}

/// Parses the payload of a TCP segment whose sniff [`wants_parse`].
///
/// Looks at most at the first [`PARSE_LIMIT`] bytes. A payload that is not a request head (`GET`
/// followed by garbage, a TLS record that is not a ClientHello, a sniff that does not want
/// parsing) gives `None`. Never panics, whatever the input.
pub fn parse(payload: &[u8]) -> Option<RequestHead> {
    let data = payload.get(..PARSE_LIMIT).unwrap_or(payload);
    match sniff(data) {
        Sniff::HttpMethod => http::parse_head(data),
        Sniff::H2Preface => h2_preface(data),
        Sniff::TlsHandshake => tls::parse_client_hello(data),
        Sniff::None | Sniff::TlsAppData | Sniff::TlsOther => None,
    }
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The preface, or as much of it as a short capture holds (a snaplen cut counts what is visible).
fn h2_preface(data: &[u8]) -> Option<RequestHead> {
    let seen = data.len().min(H2_PREFACE.len());
    let same = data.get(..seen)? == H2_PREFACE.get(..seen)?;
    same.then(|| RequestHead::of_kind(HeadKind::H2Preface))
}

impl RequestHead {
    /// A head of this kind with no fields yet.
    pub(crate) fn of_kind(kind: HeadKind) -> RequestHead {
        RequestHead {
            kind,
            path: None,
            host: None,
            user_agent: None,
            fingerprint: None,
            alpn: None,
        }
    }
}

/// The closing mark of a value cut to its bound (or by the end of the data).
const CUT_MARK: char = '…';

/// A printable copy of `raw`, at most `max` bytes: lossy UTF-8; control characters, line and
/// paragraph separators and bidirectional overrides replaced by U+FFFD; cut at a char boundary and
/// closed with `…` when longer than `max` or when `cut` says the value itself was cut by the end
/// of the data. Reads at most `max + 1` bytes of `raw`.
///
/// The same cleaning the fields of [`RequestHead`] get, for any other string taken from a payload.
pub fn bounded_text(raw: &[u8], max: usize, cut: bool) -> Box<str> {
    // Every input byte gives at least one output byte, so `max + 1` input bytes are enough to know
    // the value is too long, and a char split by this cut lies past the point where it is cut.
    let look = raw.get(..max.saturating_add(1)).unwrap_or(raw);
    // Most values are printable ASCII and within bounds: one allocation, of the right size. (A
    // fold without an early exit, so the compiler checks many bytes at a time.)
    let printable = look
        .iter()
        .fold(true, |ok, &b| ok & (b' '..=b'~').contains(&b));
    if printable && !cut && look.len() <= max {
        if let Ok(text) = std::str::from_utf8(look) {
            return Box::from(text);
        }
    }
    let mut out = String::with_capacity(look.len() + CUT_MARK.len_utf8());
    for chunk in look.utf8_chunks() {
        for c in chunk.valid().chars() {
            out.push(if is_unsafe(c) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            });
        }
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    if cut || out.len() > max {
        let mut end = max.saturating_sub(CUT_MARK.len_utf8()).min(out.len());
        while !out.is_char_boundary(end) {
            end -= 1; // stops at 0 at the latest: always a boundary
        }
        out.truncate(end);
        out.push(CUT_MARK);
    }
    out.into_boxed_str()
}

/// Characters that never leave a payload as they are: control characters (C0 including CR, LF,
/// NUL and ESC; DEL; C1), the line and paragraph separators (they end a line in JavaScript) and the
/// bidirectional embedding, override and isolate marks (they reorder what a report shows).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests;
