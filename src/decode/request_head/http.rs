//! HTTP/1.x request heads: the request line, the `Host` and `User-Agent` headers, and whether the
//! head ends in this payload.
//!
//! # What is accepted
//!
//! - The request line is `METHOD SP request-target SP HTTP/1.0|HTTP/1.1` and a line end, with one
//!   space each (RFC 9112 §3). The method is one of [`Method`]'s nine, in capitals. The target is
//!   at least one byte, starts like one of RFC 9112's forms (`/` origin-form, a letter for
//!   absolute-form or CONNECT's authority-form, `[` for an IPv6 authority, `*`), and holds no
//!   whitespace or control byte (bytes above 0x7f pass: raw UTF-8 paths are sent in the wild).
//!   Anything else (another version, HTTP/0.9, binary after `GET `) is not a request: `None`.
//! - A line ends with CRLF or with a bare LF: RFC 9112 §2.2 lets a recipient take a bare LF as a
//!   line end, and servers do (nginx, and hyper's httparse), so a client that sends one gets
//!   served and its requests count. A CR elsewhere is part of the value (and replaced when
//!   cleaned).
//! - Headers: the head ends at the first empty line. `Host` and `User-Agent` are found whatever
//!   their case; the first of each wins; the value is trimmed of spaces and tabs. Other lines are
//!   skipped unread: a line that is not `name: value`, junk after the request line or an
//!   obsolete folded continuation (a line starting with a space or tab; its text is not added to
//!   the value before it). A server would answer 400 to some of these, but the request was sent,
//!   and it is the sending that a flood is made of.
//!
//! # Cut heads
//!
//! The end of the data (the segment's end, the snaplen, or [`super::PARSE_LIMIT`]) can come
//! anywhere. Once the method, its space and the target's first byte are there, every byte seen
//! must still fit a request line; the head is then [`HeadKind::Http1`] with `complete: false`, a target cut before its
//! space is closed with `…`, and only headers whose line end was seen are read. A head whose end
//! never comes is what a slowloris connection looks like.
//!
//! # Why not httparse
//!
//! `benches/requests.rs` measures this parser against httparse doing the same job (same fields,
//! same strings, httparse as lenient as this). When written, in instructions a call (callgrind)
//! and wall time (criterion, a loaded 2-core VM): a 430-byte browser GET 3.1 k against 5.0 k
//! (273 ns against 543 ns), a one-line partial head 0.66 k against 1.04 k (58 against 127 ns),
//! `GET ` and binary 118 against 379 (13 against 88 ns). Besides, this parser reads only the two
//! headers it needs, gives the whole headers of a cut head (httparse's `Partial` does not say
//! which headers it finished), and reads a cut request line.

use memchr::memchr;

use super::{bounded_text, HeadKind, Method, RequestHead, HOST_MAX, PATH_MAX, USER_AGENT_MAX};

/// Parses an HTTP/1.x request head at the start of `data` (see the module documentation for what
/// is accepted). `None` when `data` does not start with one.
pub fn parse_head(data: &[u8]) -> Option<RequestHead> {
    let (method, after_method) = method(data)?;
    let line = request_line(after_method)?;
    let mut head = RequestHead::of_kind(HeadKind::Http1 {
        method,
        complete: false,
    });
    head.path = Some(bounded_text(line.target, PATH_MAX, line.target_cut));
    if let Some(rest) = line.rest {
        let complete = headers(rest, &mut head);
        head.kind = HeadKind::Http1 { method, complete };
    }
    Some(head)
}

/// The method at the start of `data` and what follows its space. The first four bytes are told
/// apart as one `u32` (as [`super::sniff`] does), the rest of the name compared after.
fn method(data: &[u8]) -> Option<(Method, &[u8])> {
    let (&word, _) = data.split_first_chunk::<4>()?;
    let (method, name): (Method, &[u8]) = match u32::from_be_bytes(word) {
        super::GET => (Method::Get, b"GET "),
        super::POST => (Method::Post, b"POST "),
        super::PUT => (Method::Put, b"PUT "),
        super::HEAD => (Method::Head, b"HEAD "),
        super::DELE => (Method::Delete, b"DELETE "),
        super::OPTI => (Method::Options, b"OPTIONS "),
        super::PATC => (Method::Patch, b"PATCH "),
        super::CONN => (Method::Connect, b"CONNECT "),
        super::TRAC => (Method::Trace, b"TRACE "),
        _ => return None,
    };
    let (seen, rest) = data.split_at_checked(name.len())?;
    (seen.get(4..) == name.get(4..)).then_some((method, rest))
}

/// The rest of a request line after the method.
struct RequestLine<'a> {
    /// The request target, or as much of it as there is.
    target: &'a [u8],
    /// The data ended inside the target.
    target_cut: bool,
    /// What follows the line end; `None` when the data ended inside the line.
    rest: Option<&'a [u8]>,
}

/// The two versions accepted.
const HTTP_1_1: &[u8; 8] = b"HTTP/1.1";
const HTTP_1_0: &[u8; 8] = b"HTTP/1.0";

/// Reads `target SP HTTP/1.x` and its line end, front to back: garbage stops it at its first byte.
/// When the data ends inside the line, what is there must still fit one.
fn request_line(data: &[u8]) -> Option<RequestLine<'_>> {
    let &first = data.first()?;
    let starts_ok = first == b'/' || first == b'*' || first == b'[' || first.is_ascii_alphabetic();
    if !starts_ok {
        return None;
    }
    // The target ends at the first whitespace or control byte; only a space may end it.
    let len = data
        .iter()
        .position(|&b| b <= b' ' || b == 0x7f)
        .unwrap_or(data.len());
    let (target, after) = data.split_at_checked(len)?;
    let mut line = RequestLine {
        target,
        target_cut: false,
        rest: None,
    };
    let version = match after.split_first() {
        None => {
            line.target_cut = true;
            return Some(line);
        }
        Some((b' ', version)) => version,
        Some(_) => return None, // a line without a version (HTTP/0.9), or a control byte
    };
    let Some((v, end)) = version.split_first_chunk::<8>() else {
        // Cut inside the version: what is there must begin one.
        return (HTTP_1_1.starts_with(version) || HTTP_1_0.starts_with(version)).then_some(line);
    };
    if v != HTTP_1_1 && v != HTTP_1_0 {
        return None;
    }
    line.rest = match end {
        [b'\n', rest @ ..] | [b'\r', b'\n', rest @ ..] => Some(rest),
        [] | [b'\r'] => None, // cut before the line end
        _ => return None,
    };
    Some(line)
}

/// The line at the start of `data` without its line end (CRLF or LF), and what follows the line
/// end; `None` for the rest when the data ends before a line end (then the line is all of `data`).
fn split_line(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr(b'\n', data) {
        Some(lf) => {
            let line = data.get(..lf).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (line, Some(data.get(lf + 1..).unwrap_or_default()))
        }
        None => (data, None),
    }
}

/// Reads header lines until the empty line that ends the head, filling `head`'s host and user
/// agent. Returns whether that empty line was seen.
fn headers(mut data: &[u8], head: &mut RequestHead) -> bool {
    loop {
        let (line, rest) = split_line(data);
        let Some(rest) = rest else {
            return false; // a line the data ends in: not whole, not read
        };
        if line.is_empty() {
            return true;
        }
        header(line, head);
        data = rest;
    }
}

/// One whole header line: keeps it if it is the first `Host` or `User-Agent`.
fn header(line: &[u8], head: &mut RequestHead) {
    if head.host.is_none() {
        if let Some(value) = value_of(line, b"host:") {
            head.host = Some(bounded_text(value, HOST_MAX, false));
            return;
        }
    }
    if head.user_agent.is_none() {
        if let Some(value) = value_of(line, b"user-agent:") {
            head.user_agent = Some(bounded_text(value, USER_AGENT_MAX, false));
        }
    }
}

/// The value of `line` if it is the header `name_colon` (lowercase, with its colon), trimmed of
/// spaces and tabs.
fn value_of<'a>(line: &'a [u8], name_colon: &[u8]) -> Option<&'a [u8]> {
    let name = line.get(..name_colon.len())?;
    if !name.eq_ignore_ascii_case(name_colon) {
        return None;
    }
    let value = line.get(name_colon.len()..)?;
    Some(trim_ows(value))
}

/// `value` without the optional whitespace (spaces and tabs, RFC 9110 §5.6.3) around it.
fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::request_head::tests::BROWSER_GET;

    fn http1(method: Method, complete: bool) -> HeadKind {
        HeadKind::Http1 { method, complete }
    }

    /// Asserts `text` gives no head.
    #[track_caller]
    fn assert_refused(text: &[u8]) {
        let shown = String::from_utf8_lossy(text);
        assert_eq!(parse_head(text), None, "{shown:?}");
    }

    #[test]
    fn a_browser_head_gives_path_host_user_agent_and_its_end() {
        let head = parse_head(BROWSER_GET).unwrap();
        assert_eq!(head.kind, http1(Method::Get, true));
        assert_eq!(head.path.as_deref(), Some("/search?q=floodwatch&lang=en"));
        assert_eq!(head.host.as_deref(), Some("www.example.org"));
        assert_eq!(
            head.user_agent.as_deref(),
            Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
        );
        assert_eq!((head.fingerprint, head.alpn), (None, None));
    }

    #[test]
    fn every_method_and_target_form_is_read() {
        for (text, method, path) in [
            ("GET / HTTP/1.1", Method::Get, "/"),
            ("POST /form HTTP/1.0", Method::Post, "/form"),
            ("PUT /f.txt HTTP/1.1", Method::Put, "/f.txt"),
            ("HEAD /x?y=1 HTTP/1.1", Method::Head, "/x?y=1"),
            ("DELETE /item/7 HTTP/1.1", Method::Delete, "/item/7"),
            ("OPTIONS * HTTP/1.1", Method::Options, "*"),
            ("PATCH /item/7 HTTP/1.1", Method::Patch, "/item/7"),
            (
                "CONNECT example.com:443 HTTP/1.1",
                Method::Connect,
                "example.com:443",
            ),
            (
                "CONNECT [2001:db8::1]:443 HTTP/1.1",
                Method::Connect,
                "[2001:db8::1]:443",
            ),
            ("TRACE / HTTP/1.1", Method::Trace, "/"),
            (
                "GET http://example.com/a?b=c HTTP/1.1",
                Method::Get,
                "http://example.com/a?b=c",
            ),
            ("GET /caf\u{e9} HTTP/1.1", Method::Get, "/caf\u{e9}"),
        ] {
            let head = parse_head(format!("{text}\r\n\r\n").as_bytes()).unwrap();
            assert_eq!(head.kind, http1(method, true), "{text}");
            assert_eq!(head.path.as_deref(), Some(path), "{text}");
        }
    }

    #[test]
    fn request_lines_that_are_not_http_1_are_refused() {
        for text in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b"GET /\r\n\r\n",           // HTTP/0.9
            b"GET  / HTTP/1.1\r\n\r\n", // empty target
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET /a\tb HTTP/1.1\r\n\r\n",
            b"GET /a\x00 HTTP/1.1\r\n\r\n",
            b"GET %2f HTTP/1.1\r\n\r\n",
            b"GETS / HTTP/1.1\r\n\r\n",
            b"DELEGATE / HTTP/1.1\r\n\r\n",
            b"POSTMAN / HTTP/1.1\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET \x89PNG\r\n\x1a\n\0\0\0\rIHDR",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1.1x",
            b"GET / HTTP/1.\r",
        ] {
            assert_refused(text);
        }
    }

    #[test]
    fn header_names_are_matched_whatever_their_case_and_the_first_wins() {
        let head = parse_head(
            b"GET / HTTP/1.1\r\nhost: lower.example\r\nUSER-AGENT: Upper/1\r\n\
              HOST: second.example\r\nuser-agent: second\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.host.as_deref(), Some("lower.example"));
        assert_eq!(head.user_agent.as_deref(), Some("Upper/1"));
    }

    #[test]
    fn values_are_trimmed_and_may_be_empty() {
        let head =
            parse_head(b"GET / HTTP/1.1\r\nHost:\t a.example \t\r\nUser-Agent:\r\n\r\n").unwrap();
        assert_eq!(head.host.as_deref(), Some("a.example"));
        assert_eq!(head.user_agent.as_deref(), Some(""));
    }

    #[test]
    fn folded_lines_and_junk_after_the_request_line_are_skipped() {
        let head = parse_head(
            b"GET / HTTP/1.1\r\nthis is not a header\r\n\x00\x01\x02\r\n\
              User-Agent: first part\r\n  folded second part\r\nHost : spaced\r\n\
              Host: h.example\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.kind, http1(Method::Get, true));
        assert_eq!(head.user_agent.as_deref(), Some("first part"));
        // `Host :` (a space before the colon) is not a Host header (RFC 9112 §5.1).
        assert_eq!(head.host.as_deref(), Some("h.example"));
    }

    #[test]
    fn a_bare_lf_ends_lines_as_crlf_does() {
        let lf = parse_head(b"GET /a HTTP/1.1\nHost: h\nUser-Agent: u\n\n").unwrap();
        let crlf = parse_head(b"GET /a HTTP/1.1\r\nHost: h\r\nUser-Agent: u\r\n\r\n").unwrap();
        assert_eq!(lf, crlf);
        assert_eq!(lf.kind, http1(Method::Get, true));
        // Mixed, as some scripts send.
        let mixed = parse_head(b"GET /a HTTP/1.1\r\nHost: h\n\r\n").unwrap();
        assert_eq!(mixed.kind, http1(Method::Get, true));
        // A lone CR is not a line end: it stays in the value, replaced.
        let cr = parse_head(b"GET /a HTTP/1.1\r\nHost: a\rb\r\n\r\n").unwrap();
        assert_eq!(cr.host.as_deref(), Some("a\u{fffd}b"));
    }

    #[test]
    fn a_cut_head_gives_the_whole_lines_only() {
        let head = parse_head(b"GET /x HTTP/1.1\r\nHost: h.example\r\nUser-Agent: Mozil").unwrap();
        assert_eq!(head.kind, http1(Method::Get, false));
        assert_eq!(head.host.as_deref(), Some("h.example"));
        assert_eq!(head.user_agent, None);
        // Slowloris: a head that keeps going with junk headers, its end never sent.
        let slow = parse_head(b"GET /?4471 HTTP/1.1\r\nUser-Agent: x\r\nX-a: 5121\r\n").unwrap();
        assert_eq!(slow.kind, http1(Method::Get, false));
        assert_eq!(slow.path.as_deref(), Some("/?4471"));
        // The last CR of the head is there, its LF is not.
        let almost = parse_head(b"GET / HTTP/1.1\r\n\r").unwrap();
        assert_eq!(almost.kind, http1(Method::Get, false));
    }

    #[test]
    fn a_request_line_cut_by_the_end_of_the_data_is_read_as_far_as_it_fits() {
        for (text, path) in [
            (&b"GET /ab"[..], "/ab\u{2026}"),
            (b"GET /ab ", "/ab"),
            (b"GET /ab HTT", "/ab"),
            (b"GET /ab HTTP/1.0", "/ab"),
            (b"GET /ab HTTP/1.1\r", "/ab"),
        ] {
            let head = parse_head(text).unwrap();
            assert_eq!(head.kind, http1(Method::Get, false));
            assert_eq!(head.path.as_deref(), Some(path));
        }
        for text in [
            &b"GET "[..],
            b"GET /ab X",
            b"GET /ab HTTP/2",
            b"POST",
            b"DELETE",
        ] {
            assert_refused(text);
        }
    }

    #[test]
    fn long_values_are_cut_and_marked() {
        let path = format!("/{}", "p".repeat(300));
        let ua = "U".repeat(500);
        let host = "h".repeat(200);
        let text = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n\r\n");
        let head = parse_head(text.as_bytes()).unwrap();
        let cut_path = head.path.unwrap();
        assert_eq!(cut_path.len(), PATH_MAX);
        assert!(cut_path.ends_with('…') && path.starts_with(cut_path.trim_end_matches('…')));
        assert_eq!(head.host.unwrap().len(), HOST_MAX);
        assert_eq!(head.user_agent.unwrap().len(), USER_AGENT_MAX);
    }

    #[test]
    fn control_characters_never_come_out() {
        let head = parse_head(
            b"GET /\xff HTTP/1.1\r\nUser-Agent: evil\x1b[2J\"; rm\x00\r\nHost: a\x0bb\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.path.as_deref(), Some("/\u{fffd}"));
        assert_eq!(
            head.user_agent.as_deref(),
            Some("evil\u{fffd}[2J\"; rm\u{fffd}")
        );
        assert_eq!(head.host.as_deref(), Some("a\u{fffd}b"));
    }
}
