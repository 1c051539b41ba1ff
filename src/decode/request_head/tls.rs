//! TLS ClientHellos: the SNI host name, the first ALPN protocol and the JA4 fingerprint.
//!
//! # What is read
//!
//! The first TLS record of the payload must be a handshake record (`16 03 00..=04`) whose first
//! message is a ClientHello (type 1). Then, in order and with every length checked against both
//! the length its container declares and the bytes that are there: the legacy version, the random,
//! the session id, the cipher suites, the compression methods and the extensions. Of the
//! extensions: `server_name` (its first `host_name`), `application_layer_protocol_negotiation`
//! (its first protocol), `supported_versions` and `signature_algorithms`.
//!
//! A length that runs past what its container declares is malformed: `None`. A length that runs
//! past the bytes that are there means the hello is cut (by the capture's snaplen, by
//! [`super::PARSE_LIMIT`], or because it continues in the next record or segment): the walk stops
//! there and gives the fields seen so far; the fingerprint needs every extension, so a cut hello
//! has none. The content of a known extension that does not parse leaves its field out without
//! failing the hello (a server would refuse it; the sender still sent a hello). Records after the
//! first are not read: a ClientHello split over several records is seen as cut at the first
//! record's end.
//!
//! # JA4
//!
//! The TLS client fingerprint of FoxIO's JA4 (the BSD-3-Clause part of JA4+), computed as its
//! technical details describe, GREASE values (RFC 8701: `0x?a?a`, both bytes equal) left out
//! everywhere, in the signature algorithms too, as the reference implementations now do:
//!
//! - `a`: `t` (TLS over TCP); the version (the highest of `supported_versions` if the extension is
//!   there, else the legacy version: `13`, `12`, `11`, `10`, `s3`, …, `00` if unknown); `d` if the
//!   SNI extension is there, else `i`; the number of cipher suites and of extensions, two digits
//!   each, at most 99; the first and last characters of the first ALPN protocol (`00` if none; if
//!   either is not alphanumeric, the first and last characters of the protocol's hex form).
//! - `b`: the first 12 hex digits of the SHA-256 of the cipher suites, sorted, as 4-digit lowercase
//!   hex, comma separated (`000000000000` if there are none).
//! - `c`: the same of the extensions, sorted, without SNI (`0000`) and ALPN (`0010`), followed by
//!   `_` and the signature algorithms in the order sent when there are any (`000000000000` if no
//!   extension is left).
//!
//! # Why not tls-parser
//!
//! Rusticata's tls-parser parses a record into owned vectors of typed extensions through nom;
//! here the walk is a cursor over the bytes that reads only the four extensions JA4 and
//! attribution need, and tells a cut hello (give what was seen) from a malformed one (give
//! nothing), which nom reports alike as `Incomplete` or an error. Measured when written on a
//! 512-byte browser hello: this parse, JA4 included, 0.87 µs; tls-parser's walk to the same
//! fields, without JA4, 1.65 µs (criterion, loaded 2-core VM). In instructions (callgrind, where
//! SHA-256 runs without the CPU's SHA extensions): 21.1 k of which 13.8 k SHA-256, against 10.7 k.

use sha2::{Digest, Sha256};

use super::{bounded_text, HeadKind, RequestHead, ALPN_MAX, HOST_MAX};

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_ALPN: u16 = 0x0010;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
/// The SNI name type of a DNS host name (RFC 6066 §3).
const HOST_NAME: u8 = 0;

/// Parses a TLS ClientHello at the start of `data` (see the module documentation). `None` when
/// `data` does not start with a handshake record holding a ClientHello, or the hello is malformed.
pub fn parse_client_hello(data: &[u8]) -> Option<RequestHead> {
    let body = hello_body(data)?;
    let mut hello = Hello {
        extensions: Vec::with_capacity(24),
        ..Hello::default()
    };
    match walk(&mut Cursor::new(body.visible, body.declared), &mut hello) {
        Ok(()) => hello.whole = true,
        Err(Stop::Cut) => {}
        Err(Stop::Malformed) => return None,
    }
    let mut head = RequestHead::of_kind(HeadKind::TlsHello);
    head.host = hello.sni.map(|name| bounded_text(name, HOST_MAX, false));
    head.alpn = hello.alpn.map(|p| bounded_text(p, ALPN_MAX, false));
    if hello.whole {
        head.fingerprint = Some(ja4(&hello));
    }
    Some(head)
}

/// The ClientHello body in the first record: the bytes there and the length it declares.
struct HelloBody<'a> {
    visible: &'a [u8],
    declared: usize,
}

/// Checks the record and handshake headers and returns the hello body after them. Only the
/// handshake type needs to be there: a hello cut right after it is still a hello.
fn hello_body(data: &[u8]) -> Option<HelloBody<'_>> {
    let (&[content_type, major, minor, len_hi, len_lo], record) = data.split_first_chunk::<5>()?;
    if content_type != HANDSHAKE || major != 3 || minor > 4 {
        return None;
    }
    let record_len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let record = record.get(..record_len).unwrap_or(record);
    let (&msg_type, message) = record.split_first()?;
    if msg_type != CLIENT_HELLO {
        return None;
    }
    let Some((&[l0, l1, l2], body)) = message.split_first_chunk::<3>() else {
        return Some(HelloBody {
            visible: &[],
            declared: usize::MAX,
        });
    };
    let declared = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
    Some(HelloBody {
        visible: body.get(..declared).unwrap_or(body),
        declared,
    })
}

/// What a ClientHello walk has seen so far.
#[derive(Default)]
struct Hello<'a> {
    legacy_version: u16,
    /// The cipher suite list (2 bytes each, GREASE included).
    ciphers: &'a [u8],
    /// Extension types in the order sent, GREASE left out.
    extensions: Vec<u16>,
    /// The highest non-GREASE `supported_versions` entry.
    supported_version: Option<u16>,
    /// The `signature_algorithms` list (2 bytes each, GREASE included).
    signature_algorithms: &'a [u8],
    sni_present: bool,
    sni: Option<&'a [u8]>,
    alpn: Option<&'a [u8]>,
    /// The walk reached the end of the extensions.
    whole: bool,
}

/// Why a walk stopped before the end.
#[derive(Debug)]
enum Stop {
    /// The data ended before a length it declared.
    Cut,
    /// A length ran past its container's.
    Malformed,
}

/// A reader over `data`, the visible part of a structure that declares `end` bytes.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8], end: usize) -> Cursor<'a> {
        Cursor { data, pos: 0, end }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    /// The next `n` bytes, whole.
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        if n > self.end.saturating_sub(self.pos) {
            return Err(Stop::Malformed);
        }
        let start = self.pos;
        self.pos += n;
        self.data.get(start..self.pos).ok_or(Stop::Cut)
    }

    fn u8(&mut self) -> Result<u8, Stop> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, Stop> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| Stop::Cut)
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self) -> Result<&'a [u8], Stop> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self) -> Result<&'a [u8], Stop> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A cursor over the next `n` bytes (as far as they are there), this one moved past them.
    fn sub(&mut self, n: usize) -> Result<Cursor<'a>, Stop> {
        if n > self.end.saturating_sub(self.pos) {
            return Err(Stop::Malformed);
        }
        let start = self.pos.min(self.data.len());
        let visible_end = (self.pos + n).min(self.data.len());
        self.pos += n;
        Ok(Cursor::new(
            self.data.get(start..visible_end).unwrap_or_default(),
            n,
        ))
    }
}

/// Walks a ClientHello body into `hello`, as far as it is there.
fn walk<'a>(c: &mut Cursor<'a>, hello: &mut Hello<'a>) -> Result<(), Stop> {
    hello.legacy_version = c.u16()?;
    c.take(32)?; // random
    let session_id = c.vec8()?;
    if session_id.len() > 32 {
        return Err(Stop::Malformed);
    }
    hello.ciphers = c.vec16()?;
    c.vec8()?; // compression methods
    if c.at_end() {
        return Ok(()); // no extensions (SSL 3.0 style)
    }
    let len = c.u16()?;
    let mut extensions = c.sub(usize::from(len))?;
    while !extensions.at_end() {
        let ext_type = extensions.u16()?;
        let ext_data = extensions.vec16()?;
        hello.on_extension(ext_type, ext_data);
    }
    Ok(())
}

impl<'a> Hello<'a> {
    /// Notes one whole extension.
    fn on_extension(&mut self, ext_type: u16, data: &'a [u8]) {
        if is_grease(ext_type) {
            return;
        }
        self.extensions.push(ext_type);
        match ext_type {
            EXT_SERVER_NAME => {
                self.sni_present = true;
                self.sni = self.sni.or_else(|| first_host_name(data));
            }
            EXT_ALPN => self.alpn = self.alpn.or_else(|| first_protocol(data)),
            EXT_SUPPORTED_VERSIONS => self.supported_version = highest_version(data),
            EXT_SIGNATURE_ALGORITHMS => {
                let mut c = Cursor::new(data, data.len());
                self.signature_algorithms = c.vec16().unwrap_or_default();
            }
            _ => {}
        }
    }
}

/// The first `host_name` of a `server_name` extension's list.
fn first_host_name(data: &[u8]) -> Option<&[u8]> {
    let mut list = Cursor::new(data, data.len());
    let len = list.u16().ok()?;
    let mut names = list.sub(usize::from(len)).ok()?;
    while !names.at_end() {
        let name_type = names.u8().ok()?;
        let name = names.vec16().ok()?;
        if name_type == HOST_NAME {
            return Some(name).filter(|n| !n.is_empty());
        }
    }
    None
}

/// The first protocol of an ALPN extension's list (`None` if the list or the protocol is empty).
fn first_protocol(data: &[u8]) -> Option<&[u8]> {
    let mut list = Cursor::new(data, data.len());
    let len = list.u16().ok()?;
    let mut protocols = list.sub(usize::from(len)).ok()?;
    protocols.vec8().ok().filter(|p| !p.is_empty())
}

/// The highest non-GREASE version of a client's `supported_versions` extension.
fn highest_version(data: &[u8]) -> Option<u16> {
    let mut c = Cursor::new(data, data.len());
    let versions = c.vec8().ok()?;
    u16s(versions).filter(|&v| !is_grease(v)).max()
}

/// A list of 2-byte values (a trailing odd byte is ignored).
fn u16s(bytes: &[u8]) -> impl Iterator<Item = u16> + '_ {
    bytes
        .chunks_exact(2)
        .filter_map(<[u8]>::first_chunk::<2>)
        .map(|&pair| u16::from_be_bytes(pair))
}

/// A GREASE value (RFC 8701): `0x?a?a` with both bytes equal.
pub fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// The length of a JA4 fingerprint: `a` (10), `_`, `b` (12), `_`, `c` (12).
const JA4_LEN: usize = 36;

/// The JA4 fingerprint of a whole hello. (Lists are collected into vectors of their final size
/// and the text is written in place: `format!` and growing vectors were a good part of the cost.)
fn ja4(hello: &Hello<'_>) -> Box<str> {
    let mut ciphers = non_grease(u16s(hello.ciphers), hello.ciphers.len() / 2);
    let mut extensions = Vec::with_capacity(hello.extensions.len());
    extensions.extend(
        hello
            .extensions
            .iter()
            .filter(|&&e| e != EXT_SERVER_NAME && e != EXT_ALPN),
    );
    let signature_algorithms = non_grease(
        u16s(hello.signature_algorithms),
        hello.signature_algorithms.len() / 2,
    );
    let mut out = String::with_capacity(JA4_LEN);
    out.push('t');
    out.push_str(version_code(
        hello.supported_version.unwrap_or(hello.legacy_version),
    ));
    out.push(if hello.sni_present { 'd' } else { 'i' });
    push_two_digits(&mut out, ciphers.len());
    push_two_digits(&mut out, hello.extensions.len());
    let (alpn_first, alpn_last) = alpn_chars(hello.alpn);
    out.push(alpn_first);
    out.push(alpn_last);
    out.push('_');
    ciphers.sort_unstable();
    push_hash12(&mut out, &ciphers, &[]);
    out.push('_');
    extensions.sort_unstable();
    push_hash12(&mut out, &extensions, &signature_algorithms);
    out.into_boxed_str()
}

/// The values of `values` that are not GREASE, in a vector of room `room`.
fn non_grease(values: impl Iterator<Item = u16>, room: usize) -> Vec<u16> {
    let mut v = Vec::with_capacity(room);
    v.extend(values.filter(|&x| !is_grease(x)));
    v
}

/// `n` as two decimal digits, 99 at most.
fn push_two_digits(out: &mut String, n: usize) {
    let n = n.min(99) as u8;
    out.push(char::from(b'0' + n / 10));
    out.push(char::from(b'0' + n % 10));
}

/// JA4's two characters for a TLS version.
fn version_code(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// JA4's two characters for the first ALPN protocol.
fn alpn_chars(protocol: Option<&[u8]>) -> (char, char) {
    let (Some(&first), Some(&last)) = (
        protocol.and_then(<[u8]>::first),
        protocol.and_then(<[u8]>::last),
    ) else {
        return ('0', '0');
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        (char::from(first), char::from(last))
    } else {
        (hex_digit(first >> 4), hex_digit(last & 0x0f))
    }
}

/// The lowercase hex digit of the low four bits of `nibble`.
fn hex_digit(nibble: u8) -> char {
    char::from(HEX_DIGITS[usize::from(nibble & 0x0f)])
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the first 12 hex digits of the SHA-256 of `list` as comma-separated 4-digit hex, then
/// (if `tail` is not empty) `_` and `tail` the same way; or `000000000000` if `list` is empty.
fn push_hash12(out: &mut String, list: &[u16], tail: &[u16]) {
    if list.is_empty() {
        out.push_str("000000000000");
        return;
    }
    let mut text = Vec::with_capacity(5 * (list.len() + tail.len()));
    push_hex_list(&mut text, list);
    if !tail.is_empty() {
        text.push(b'_');
        push_hex_list(&mut text, tail);
    }
    let digest = Sha256::digest(&text);
    for &byte in digest.iter().take(6) {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte));
    }
}

/// `values` as 4-digit lowercase hex, comma separated.
fn push_hex_list(text: &mut Vec<u8>, values: &[u16]) {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        for shift in [12, 8, 4, 0] {
            text.push(HEX_DIGITS[usize::from((v >> shift) & 0x0f)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::request_head::tests::firefox_hello;

    /// A ClientHello record built from its parts (legacy version 0x0303 unless told).
    struct HelloSpec {
        legacy_version: u16,
        ciphers: Vec<u16>,
        extensions: Vec<(u16, Vec<u8>)>,
    }

    impl HelloSpec {
        fn record(&self) -> Vec<u8> {
            let mut body = self.legacy_version.to_be_bytes().to_vec();
            body.extend_from_slice(&[0x11; 32]); // random
            body.push(32);
            body.extend_from_slice(&[0x22; 32]); // session id
            body.extend_from_slice(&((self.ciphers.len() * 2) as u16).to_be_bytes());
            for c in &self.ciphers {
                body.extend_from_slice(&c.to_be_bytes());
            }
            body.extend_from_slice(&[1, 0]); // compression: null
            let mut exts = Vec::new();
            for (t, data) in &self.extensions {
                exts.extend_from_slice(&t.to_be_bytes());
                exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
                exts.extend_from_slice(data);
            }
            body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
            body.extend_from_slice(&exts);
            let mut message = vec![CLIENT_HELLO];
            message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            message.extend_from_slice(&body);
            let mut record = vec![HANDSHAKE, 3, 1];
            record.extend_from_slice(&(message.len() as u16).to_be_bytes());
            record.extend_from_slice(&message);
            record
        }
    }

    fn list16(values: &[u16]) -> Vec<u8> {
        let mut v = ((values.len() * 2) as u16).to_be_bytes().to_vec();
        for x in values {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    fn sni(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![HOST_NAME];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        (EXT_SERVER_NAME, data)
    }

    fn alpn(protocols: &[&[u8]]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for p in protocols {
            list.push(p.len() as u8);
            list.extend_from_slice(p);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        (EXT_ALPN, data)
    }

    fn supported_versions(versions: &[u16]) -> (u16, Vec<u8>) {
        let mut data = vec![(versions.len() * 2) as u8];
        for v in versions {
            data.extend_from_slice(&v.to_be_bytes());
        }
        (EXT_SUPPORTED_VERSIONS, data)
    }

    /// The example of JA4's technical details, with GREASE added where browsers put it.
    ///
    /// Ciphers (15 without GREASE) `1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,
    /// 009d,002f,0035`; extensions (16 without GREASE) `001b,0000,0033,0010,4469,0017,002d,000d,
    /// 0005,0023,0012,002b,ff01,000b,000a,0015`; signature algorithms `0403,0804,0401,0503,0805,
    /// 0501,0806,0601`; supported versions TLS 1.3 and 1.2; ALPN `h2`. The spec computes
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1` from these lists.
    fn spec_example() -> HelloSpec {
        let mut ciphers = vec![0x0a0a];
        ciphers.extend([
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ]);
        let sigalgs = list16(&[
            0x3a3a, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ]);
        let extensions = vec![
            (0x1a1a, vec![]),
            (0x001b, vec![2, 0, 2]),
            sni("example.com"),
            (0x0033, vec![0, 0]),
            alpn(&[b"h2", b"http/1.1"]),
            (0x4469, vec![0, 3, 2, b'h', b'2']),
            (0x0017, vec![]),
            (0x002d, vec![1, 1]),
            (EXT_SIGNATURE_ALGORITHMS, sigalgs),
            (0x0005, vec![1, 0, 0, 0, 0]),
            (0x0023, vec![]),
            (0x0012, vec![]),
            supported_versions(&[0x4a4a, 0x0304, 0x0303]),
            (0xff01, vec![0]),
            (0x000b, vec![1, 0]),
            (0x000a, list16(&[0x5a5a, 0x001d, 0x0017])),
            (0x2a2a, vec![0]),
            (0x0015, vec![0; 8]),
        ];
        HelloSpec {
            legacy_version: 0x0303,
            ciphers,
            extensions,
        }
    }

    #[test]
    fn a_published_firefox_hello_gives_its_published_ja4() {
        let head = parse_client_hello(&firefox_hello()).unwrap();
        assert_eq!(head.kind, HeadKind::TlsHello);
        assert_eq!(head.host.as_deref(), Some("ja4db.com"));
        assert_eq!(head.alpn.as_deref(), Some("h2"));
        assert_eq!(
            head.fingerprint.as_deref(),
            Some("t13d1715h2_5b57614c22b0_5c2c66f702b0")
        );
        assert_eq!((head.path, head.user_agent), (None, None));
    }

    #[test]
    fn the_spec_example_gives_the_spec_fingerprint_grease_left_out() {
        let head = parse_client_hello(&spec_example().record()).unwrap();
        assert_eq!(head.host.as_deref(), Some("example.com"));
        assert_eq!(head.alpn.as_deref(), Some("h2"));
        assert_eq!(
            head.fingerprint.as_deref(),
            Some("t13d1516h2_8daaf6152771_e5627efa2ab1")
        );
    }

    #[test]
    fn without_signature_algorithms_the_extension_hash_has_no_underscore_part() {
        // The spec: "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01" hashes
        // to 6d807ffa2a79.
        let mut out = String::new();
        let exts = [
            0x0005, 0x000a, 0x000b, 0x000d, 0x0012, 0x0015, 0x0017, 0x001b, 0x0023, 0x002b, 0x002d,
            0x0033, 0x4469, 0xff01,
        ];
        push_hash12(&mut out, &exts, &[]);
        assert_eq!(out, "6d807ffa2a79");
    }

    #[test]
    fn a_tls_1_2_hello_without_sni_or_alpn() {
        let spec = HelloSpec {
            legacy_version: 0x0303,
            ciphers: vec![0xc02f, 0x009c],
            extensions: vec![(0x000a, list16(&[0x0017])), (0x000b, vec![1, 0])],
        };
        let head = parse_client_hello(&spec.record()).unwrap();
        assert_eq!((head.host, head.alpn), (None, None));
        // a: t, 12 (legacy version), i (no SNI), 02 ciphers, 02 extensions, 00 (no ALPN).
        // b: sha256("009c,c02f"); c: sha256("000a,000b"), no signature algorithms.
        let b = hash12_of("009c,c02f");
        let c = hash12_of("000a,000b");
        assert_eq!(
            head.fingerprint.as_deref(),
            Some(format!("t12i020200_{b}_{c}").as_str())
        );
    }

    fn hash12_of(text: &str) -> String {
        Sha256::digest(text.as_bytes())
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn supported_versions_decides_the_version_grease_left_out() {
        for (versions, code) in [
            (&[0x0304, 0x0303][..], "t13"),
            (&[0x7a7a, 0x0303], "t12"),
            (&[0x0303, 0x0304, 0xfafa], "t13"),
        ] {
            let spec = HelloSpec {
                legacy_version: 0x0301,
                ciphers: vec![0x1301],
                extensions: vec![supported_versions(versions)],
            };
            let head = parse_client_hello(&spec.record()).unwrap();
            assert!(head.fingerprint.unwrap().starts_with(code), "{versions:?}");
        }
        for (legacy, code) in [(0x0301, "t10"), (0x0300, "ts3"), (0x0305, "t00")] {
            let spec = HelloSpec {
                legacy_version: legacy,
                ciphers: vec![0x1301],
                extensions: vec![],
            };
            let head = parse_client_hello(&spec.record()).unwrap();
            assert!(head.fingerprint.unwrap().starts_with(code), "{legacy:04x}");
        }
    }

    #[test]
    fn alpn_characters_follow_the_spec() {
        for (protocol, chars) in [
            (&b"h2"[..], "h2"),
            (b"http/1.1", "h1"),
            (b"x", "xx"),
            (&[0xab], "ab"),
            (&[0xab, 0xcd], "ad"),
            (&[0x30, 0xab], "3b"),
            (&[0x30, 0x31, 0xab, 0xcd], "3d"),
            (&[0x30, 0xab, 0xcd, 0x31], "01"),
        ] {
            let (a, b) = alpn_chars(Some(protocol));
            assert_eq!(format!("{a}{b}"), chars, "{protocol:?}");
        }
        assert_eq!(alpn_chars(None), ('0', '0'));
    }

    #[test]
    fn empty_lists_hash_to_zeros() {
        let spec = HelloSpec {
            legacy_version: 0x0303,
            ciphers: vec![0x2a2a],
            extensions: vec![sni("only.sni"), alpn(&[b"h2"])],
        };
        let head = parse_client_hello(&spec.record()).unwrap();
        assert_eq!(
            head.fingerprint.as_deref(),
            Some("t12d0002h2_000000000000_000000000000")
        );
    }

    #[test]
    fn grease_is_both_bytes_equal_ending_in_a() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && is_grease(0x3a3a));
        assert!(!is_grease(0x0a1a) && !is_grease(0x0a0b) && !is_grease(0x0303));
    }

    #[test]
    fn a_cut_hello_gives_the_fields_seen_and_no_fingerprint() {
        let record = firefox_hello();
        // The SNI extension is the first: its end is 5 + 4 + 2+32 + 1+32 + 2+34 + 1+1 + 2 + 4+14.
        let sni_end = 5 + 4 + 34 + 33 + 36 + 2 + 2 + 18;
        for len in 6..record.len() {
            let head = parse_client_hello(&record[..len]).unwrap();
            assert_eq!(head.kind, HeadKind::TlsHello, "cut at {len}");
            assert_eq!(head.fingerprint, None, "cut at {len}");
            let want_host = (len >= sni_end).then_some("ja4db.com");
            assert_eq!(head.host.as_deref(), want_host, "cut at {len}");
        }
        for len in 0..6 {
            assert_eq!(parse_client_hello(&record[..len]), None);
        }
    }

    #[test]
    fn a_hello_split_over_two_records_is_cut_at_the_first() {
        let whole = firefox_hello();
        let message = &whole[5..];
        let mut split = vec![HANDSHAKE, 3, 1, 0, 100];
        split.extend_from_slice(&message[..100]);
        split.extend_from_slice(&[HANDSHAKE, 3, 1]);
        split.extend_from_slice(&((message.len() - 100) as u16).to_be_bytes());
        split.extend_from_slice(&message[100..]);
        let head = parse_client_hello(&split).unwrap();
        assert_eq!((head.host, head.fingerprint), (None, None));
    }

    #[test]
    fn malformed_hellos_and_other_records_are_refused() {
        let good = spec_example().record();
        // A cipher list longer than the hello.
        let mut bad = good.clone();
        bad[5 + 4 + 2 + 32 + 1 + 32] = 0xff;
        assert_eq!(parse_client_hello(&bad), None);
        // A session id longer than 32.
        let mut bad = good.clone();
        bad[5 + 4 + 2 + 32] = 33;
        assert_eq!(parse_client_hello(&bad), None);
        // A ServerHello, an alert, application data, a zero-length record.
        let mut server = good.clone();
        server[5] = 2;
        assert_eq!(parse_client_hello(&server), None);
        assert_eq!(parse_client_hello(&[0x15, 3, 3, 0, 2, 2, 40]), None);
        assert_eq!(parse_client_hello(&[0x17, 3, 3, 0, 2, 1, 1]), None);
        assert_eq!(parse_client_hello(&[0x16, 3, 1, 0, 0, 1, 0]), None);
    }

    #[test]
    fn a_malformed_sni_or_alpn_leaves_its_field_out_not_the_hello() {
        let spec = HelloSpec {
            legacy_version: 0x0303,
            ciphers: vec![0x1301],
            extensions: vec![
                (EXT_SERVER_NAME, vec![0, 9, 0, 0, 3, b'a']),
                (EXT_ALPN, vec![0, 3, 5, b'h']),
            ],
        };
        let head = parse_client_hello(&spec.record()).unwrap();
        assert_eq!((head.host, head.alpn), (None, None));
        let fingerprint = head.fingerprint.unwrap();
        assert!(fingerprint.starts_with("t12d010200_"), "{fingerprint}");
    }

    #[test]
    fn long_or_hostile_names_are_bounded_and_cleaned() {
        let long = "a".repeat(200);
        let spec = HelloSpec {
            legacy_version: 0x0303,
            ciphers: vec![0x1301],
            extensions: vec![sni(&long), alpn(&[b"h2\r\n\x00evil"])],
        };
        let head = parse_client_hello(&spec.record()).unwrap();
        assert_eq!(head.host.unwrap().len(), HOST_MAX);
        assert_eq!(head.alpn.as_deref(), Some("h2\u{fffd}\u{fffd}\u{fffd}evil"));
    }
}
