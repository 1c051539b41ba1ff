//! Tests of the module as a whole (sniff, dispatch, bounded strings), and the fixtures the
//! parsers' own tests share.

use super::*;

/// A browser's GET head (Firefox on Linux), 430 bytes.
pub(crate) const BROWSER_GET: &[u8] = b"GET /search?q=floodwatch&lang=en HTTP/1.1\r\n\
Host: www.example.org\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-User: ?1\r\n\
Priority: u=0, i\r\n\
\r\n";

#[test]
fn sniff_tells_methods_preface_and_tls_records_from_four_bytes() {
    for m in [
        &b"GET "[..],
        b"POST",
        b"PUT ",
        b"HEAD",
        b"DELE",
        b"OPTI",
        b"PATC",
        b"CONN",
        b"TRAC",
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
