//! Tests of the module as a whole (sniff, dispatch, bounded strings, never panicking), and the
//! fixtures the parsers' own tests share.

use super::*;

/// A browser's GET head (Firefox on Linux), 430 bytes; the benches measure the same one.
pub(crate) use crate::fixtures::BROWSER_GET;

/// The request line of [`BROWSER_GET`], with its CRLF.
pub(crate) const BROWSER_GET_LINE: &str = "GET /search?q=floodwatch&lang=en HTTP/1.1\r\n";

/// A Firefox ClientHello to ja4db.com, the handshake message only (no record header), as published
/// beside its JA4 in a JA4 implementation's tests. Firefox's JA4,
/// `t13d1715h2_5b57614c22b0_5c2c66f702b0`, is the one the JA4 database and many tools list for it.
pub(crate) const FIREFOX_HELLO_HEX: &str = "010002880303b1454f846bd902745d988d870726ef0c313ce90f17984d51557964c3e606fa91200b509f238e6769dd3ad25fe6ed13020e3f7b64738a226fc0158ef2b59ba19b2c0022130113031302c02bc02fcca9cca8c02cc030c00ac009c013c014009c009d002f00350100021d0000000e000c0000096a613464622e636f6d00170000ff01000100000a000e000c001d00170018001901000101000b00020100002300000010000e000c02683208687474702f312e310005000501000000000022000a000804030503060302030033006b0069001d0020cb5494b8b6fffd904f2c18eecc978ae6ef7c9c89d347498dae1b66799176554900170041040bbdc463c55494edca30649e6c48e51261c4d61843e7cf607fffddca1d7cf7d8ae69ced9796f6403565655906bbcd7dffc103db95889d5d6774114b6793c4132002b00050403040303000d0018001604030503060308040805080604010501060102030201002d00020101001c00024001fe0d01190000010003d10020b8cdfd2a9b9924e45471c4ebb24514d71a231a49d8d314fbcb75af0214a2e67c00efd356cf2704ea9bb5e85579856bf473cb9b5ae1657b33929c86f5ee4b57cafcac74ecb8fe201f5d9e883efdd391395639d9e42eafa8eae467601838c23c3e239907da1a6983f4e966e4990ff13f74e0159fe37d60535b76d308caea1e114170ce3e3fd67c14a2f5e3e8fe540895e3d6a66fec86e88d2e403f9ff299681748c664572a7e889fe274ec142b2f5eb9445142c16dd98034f92d47be96ead6b030536ca37506cc44c94fd7d1f1b2178b71d5fc5e5339b1c91cf9db67c82099a0f0168ce228947c600a1cd48ee9d9b481c87f052999431bd4b91d2aac4a7dab3090578a64087a3d7cd9c603c6e75c7d878f9d";

/// [`FIREFOX_HELLO_HEX`] in a TLS 1.0 handshake record, as it goes on the wire.
pub(crate) fn firefox_hello() -> Vec<u8> {
    let message = hex(FIREFOX_HELLO_HEX);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(message.len() as u16).to_be_bytes());
    record.extend_from_slice(&message);
    record
}

/// Bytes from hex digits.
pub(crate) fn hex(digits: &str) -> Vec<u8> {
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}

// The deterministic xorshift64 generator of the never-panics test.
use crate::fixtures::XorShift;

#[test]
fn sniff_tells_methods_preface_and_tls_records_from_four_bytes() {
    for m in [
        b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC",
    ] {
        assert_eq!(sniff(m), Sniff::HttpMethod, "{m:?}");
    }
    assert_eq!(sniff(b"PRI "), Sniff::H2Preface);
    assert_eq!(sniff(&[0x16, 0x03, 0x01, 0x02]), Sniff::TlsHandshake);
    assert_eq!(sniff(&[0x16, 0x03, 0x00, 0x00]), Sniff::TlsHandshake);
    assert_eq!(sniff(&[0x17, 0x03, 0x03, 0x00]), Sniff::TlsAppData);
    assert_eq!(sniff(&[0x15, 0x03, 0x03, 0x00]), Sniff::TlsOther);
    assert_eq!(sniff(&[0x14, 0x03, 0x04, 0x00]), Sniff::TlsOther);
    // Three bytes are a whole TLS record type and version.
    assert_eq!(sniff(&[0x16, 0x03, 0x01]), Sniff::TlsHandshake);
}

#[test]
fn sniff_rejects_near_misses_and_short_prefixes() {
    for p in [
        &b""[..],
        b"G",
        b"GET",
        b"get ",
        b"GETX",
        b"HTTP",
        b"PRI",
        b"SSH-",
        &[0x16, 0x03],
        &[0x16, 0x03, 0x05, 0x00],
        &[0x16, 0x02, 0x01, 0x00],
        &[0x17, 0x03, 0x00, 0x00],
        &[0x18, 0x03, 0x03, 0x00],
        &[0, 0, 0, 0],
    ] {
        assert_eq!(sniff(p), Sniff::None, "{p:?}");
    }
}

#[test]
fn only_heads_are_worth_parsing() {
    assert!(wants_parse(Sniff::HttpMethod));
    assert!(wants_parse(Sniff::H2Preface));
    assert!(wants_parse(Sniff::TlsHandshake));
    assert!(!wants_parse(Sniff::TlsAppData));
    assert!(!wants_parse(Sniff::TlsOther));
    assert!(!wants_parse(Sniff::None));
}

#[test]
fn parse_dispatches_on_the_sniff() {
    let http = parse(BROWSER_GET).unwrap();
    assert!(matches!(http.kind, HeadKind::Http1 { .. }));
    assert_eq!(parse(&firefox_hello()).unwrap().kind, HeadKind::TlsHello);
    assert_eq!(parse(H2_PREFACE).unwrap().kind, HeadKind::H2Preface);
    assert_eq!(parse(&[0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3]), None);
    assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\n"), None);
    assert_eq!(parse(b""), None);
}

#[test]
fn the_h2_preface_is_recognised_whole_or_cut_and_nothing_else_is() {
    let mut with_settings = H2_PREFACE.to_vec();
    with_settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(
        parse(&with_settings),
        Some(RequestHead::of_kind(HeadKind::H2Preface))
    );
    assert_eq!(parse(&H2_PREFACE[..10]).unwrap().kind, HeadKind::H2Preface);
    assert_eq!(parse(b"PRI * HTTP/1.1\r\n\r\n"), None);
    assert_eq!(parse(b"PRI /index.html HTTP/1.1\r\n"), None);
}

#[test]
fn parse_looks_at_4_kib_at_most() {
    // The head's end lies past the limit: the head is seen, not its end.
    let mut long = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    long.resize(PARSE_LIMIT + 10, b'a');
    long.extend_from_slice(b"\r\nHost: late\r\n\r\n");
    let head = parse(&long).unwrap();
    assert_eq!(
        head.kind,
        HeadKind::Http1 {
            method: Method::Get,
            complete: false
        }
    );
    assert_eq!(head.host, None);
}

#[test]
fn method_names_round_trip() {
    for (m, s) in [
        (Method::Get, "GET"),
        (Method::Post, "POST"),
        (Method::Put, "PUT"),
        (Method::Head, "HEAD"),
        (Method::Delete, "DELETE"),
        (Method::Options, "OPTIONS"),
        (Method::Patch, "PATCH"),
        (Method::Connect, "CONNECT"),
        (Method::Trace, "TRACE"),
    ] {
        assert_eq!(m.as_str(), s);
        let head = parse(format!("{s} / HTTP/1.1\r\n\r\n").as_bytes()).unwrap();
        assert_eq!(
            head.kind,
            HeadKind::Http1 {
                method: m,
                complete: true
            }
        );
    }
}

#[test]
fn bounded_text_keeps_short_values_and_cuts_long_ones_at_a_char_boundary() {
    assert_eq!(&*bounded_text(b"abc", 8, false), "abc");
    assert_eq!(&*bounded_text(b"12345678", 8, false), "12345678");
    assert_eq!(&*bounded_text(b"123456789", 8, false), "12345…");
    // "é" is two bytes: the cut (8 - 3 for the mark) falls inside the second one and backs off
    // to its start.
    let cut = bounded_text("aaéééé".as_bytes(), 8, false);
    assert_eq!(&*cut, "aaé…");
    assert!(cut.len() <= 8);
    // A value cut by the end of the data is marked even when short.
    assert_eq!(&*bounded_text(b"/ab", 8, true), "/ab…");
    assert_eq!(&*bounded_text(b"", 8, true), "…");
}

#[test]
fn bounded_text_replaces_invalid_utf8_and_unsafe_characters() {
    assert_eq!(&*bounded_text(b"a\xffb", 16, false), "a\u{fffd}b");
    assert_eq!(
        &*bounded_text(b"a\r\nb\x00c\x1b[1m\x7f", 32, false),
        "a\u{fffd}\u{fffd}b\u{fffd}c\u{fffd}[1m\u{fffd}"
    );
    let separators = "x\u{2028}y\u{202e}z\u{85}";
    assert_eq!(
        &*bounded_text(separators.as_bytes(), 32, false),
        "x\u{fffd}y\u{fffd}z\u{fffd}"
    );
    // Quotes, semicolons and braces are the consumers' to escape.
    assert_eq!(&*bounded_text(b"\"a\";{b}<c>", 32, false), "\"a\";{b}<c>");
}

/// Checks what holds for any head: strings within bounds, no control character.
fn assert_sane(head: &RequestHead, input: &[u8]) {
    for (value, max) in [
        (&head.path, PATH_MAX),
        (&head.host, HOST_MAX),
        (&head.user_agent, USER_AGENT_MAX),
        (&head.fingerprint, FINGERPRINT_MAX),
        (&head.alpn, ALPN_MAX),
    ] {
        if let Some(v) = value {
            assert!(v.len() <= max, "{v:?} from {input:?}");
            assert!(!v.chars().any(is_unsafe), "{v:?} from {input:?}");
        }
    }
}

/// Valid heads of every kind, to be cut and mutated.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        BROWSER_GET.to_vec(),
        b"POST /login HTTP/1.0\nhost: a\nuser-agent: b\n\nname=x".to_vec(),
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n".to_vec(),
        H2_PREFACE.to_vec(),
        firefox_hello(),
    ]
}

#[test]
fn no_input_makes_parse_panic_or_break_its_bounds() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let seeds = seeds();
    let prefixes: [&[u8]; 6] = [
        b"GET ",
        b"POST ",
        b"PRI ",
        &[0x16, 0x03, 0x01],
        &[0x16, 0x03, 0x03, 0x00, 0x40, 0x01],
        b"OPTIONS ",
    ];
    // Every cut of every seed.
    for seed in &seeds {
        for len in 0..=seed.len() {
            if let Some(head) = parse(&seed[..len]) {
                assert_sane(&head, &seed[..len]);
            }
        }
    }
    for round in 0..60_000 {
        let mut input = match round % 3 {
            // Random bytes behind a plausible start.
            0 => {
                let mut v = prefixes[rng.index(prefixes.len())].to_vec();
                let n = rng.index(300);
                v.extend((0..n).map(|_| rng.next() as u8));
                v
            }
            // A seed with a few bytes changed, inserted or removed, then maybe cut.
            _ => {
                let mut v = seeds[rng.index(seeds.len())].clone();
                for _ in 0..1 + rng.index(4) {
                    let at = rng.index(v.len());
                    match rng.index(3) {
                        0 => v[at] = rng.next() as u8,
                        1 => v.insert(at, rng.next() as u8),
                        _ => {
                            v.remove(at);
                        }
                    }
                }
                v
            }
        };
        if rng.index(2) == 0 {
            input.truncate(rng.index(input.len() + 1));
        }
        if let Some(head) = parse(&input) {
            assert_sane(&head, &input);
        }
    }
}

#[test]
fn every_cut_of_a_get_head_past_its_request_line_is_an_open_head_with_its_path() {
    let line = BROWSER_GET_LINE.len();
    for len in line..BROWSER_GET.len() {
        let head = parse(&BROWSER_GET[..len]).unwrap();
        assert_eq!(
            head.kind,
            HeadKind::Http1 {
                method: Method::Get,
                complete: false
            },
            "cut at {len}"
        );
        assert_eq!(head.path.as_deref(), Some("/search?q=floodwatch&lang=en"));
    }
    let whole = parse(BROWSER_GET).unwrap();
    assert_eq!(
        whole.kind,
        HeadKind::Http1 {
            method: Method::Get,
            complete: true
        }
    );
    // Shorter cuts, once the target has begun, still fit a request line: the path seen so far,
    // marked as cut while its closing space is not there.
    for len in "GET /".len()..line {
        let head = parse(&BROWSER_GET[..len]).unwrap();
        let path = head.path.unwrap();
        let seen = path.strip_suffix('…').unwrap_or(&path);
        assert!(
            "/search?q=floodwatch&lang=en".starts_with(seen),
            "cut at {len}: {path}"
        );
    }
}
