//! Request recognition (`floodwatch::requests`), per payload: the sniff every TCP payload pays,
//! HTTP/1 heads with our parser against httparse (hyper's) doing the same job, and a TLS
//! ClientHello with its JA4. Run with `cargo bench --bench requests`.
//!
//! The httparse side builds the same `RequestHead` (method, path, Host, User-Agent, complete or
//! not, the same bounded strings) so the two differ only in how they find things: httparse is run
//! as lenient as ours (`ignore_invalid_headers_in_requests`), with 64 header slots, and the whole
//! headers of a partial head are read from the slots it filled.

mod common;
/// The browser head the parser's unit tests use, and the xorshift generator.
#[path = "../tests/common/fixtures.rs"]
mod fixtures;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use fixtures::{XorShift, BROWSER_GET};
use floodwatch::requests::{
    self, bounded_text, HeadKind, Method, RequestHead, HOST_MAX, PATH_MAX, USER_AGENT_MAX,
};

/// The first segment of a slowloris connection: the request line and nothing after it.
const PARTIAL_LINE: &[u8] = b"GET /?4471 HTTP/1.1\r\n";

/// "GET " and 400 bytes of binary (fixed xorshift): a payload that sniffs as HTTP and is not.
fn garbage() -> Vec<u8> {
    let mut x = XorShift(0x2545_f491_4f6c_dd1d);
    let mut v = b"GET ".to_vec();
    v.extend((0..400).map(|_| x.next() as u8));
    v
}

/// A TLS 1.3 ClientHello as a browser sends it: GREASE, SNI, ALPN, 15 ciphers, 18 extensions.
fn client_hello() -> Vec<u8> {
    fn u16s(values: &[u16]) -> Vec<u8> {
        let mut v = ((values.len() * 2) as u16).to_be_bytes().to_vec();
        values
            .iter()
            .for_each(|x| v.extend_from_slice(&x.to_be_bytes()));
        v
    }
    let ciphers = [
        0x0a0a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
        0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ];
    let name = b"www.example.org";
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let alpn = [&[0, 12, 2][..], b"h2", &[8], b"http/1.1"].concat();
    let key_share = [&[0, 36, 0, 0x1d, 0, 32][..], &[0x5a; 32]].concat();
    let extensions: Vec<(u16, Vec<u8>)> = vec![
        (0x1a1a, vec![]),
        (0x0000, sni),
        (0x0017, vec![]),
        (0xff01, vec![0]),
        (0x000a, u16s(&[0x2a2a, 0x001d, 0x0017, 0x0018])),
        (0x000b, vec![1, 0]),
        (0x0023, vec![]),
        (0x0010, alpn),
        (0x0005, vec![1, 0, 0, 0, 0]),
        (
            0x000d,
            u16s(&[
                0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
            ]),
        ),
        (0x0012, vec![]),
        (0x0033, key_share),
        (0x002d, vec![1, 1]),
        (0x002b, [&[6][..], &[0x3a, 0x3a, 3, 4, 3, 3]].concat()),
        (0x001b, vec![2, 0, 2]),
        (0x4469, vec![0, 3, 2, b'h', b'2']),
        (0x4a4a, vec![0]),
        (0x0015, vec![0; 200]),
    ];
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(32);
    body.extend_from_slice(&[0x22; 32]);
    body.extend_from_slice(&u16s(&ciphers));
    body.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    for (t, data) in &extensions {
        exts.extend_from_slice(&t.to_be_bytes());
        exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
        exts.extend_from_slice(data);
    }
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut record = vec![0x16, 3, 1];
    record.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    record.push(1);
    record.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    record.extend_from_slice(&body);
    record
}

/// The same job as `requests::http::parse_head`, done with httparse.
fn httparse_head(data: &[u8]) -> Option<RequestHead> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut slots);
    let mut config = httparse::ParserConfig::default();
    config.ignore_invalid_headers_in_requests(true);
    let complete = config.parse_request(&mut req, data).ok()?.is_complete();
    let method = match req.method? {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "HEAD" => Method::Head,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        "CONNECT" => Method::Connect,
        "TRACE" => Method::Trace,
        _ => return None,
    };
    req.version?; // a partial request line: ours reads it, httparse does not say
    let mut head = RequestHead {
        kind: HeadKind::Http1 { method, complete },
        path: Some(bounded_text(req.path?.as_bytes(), PATH_MAX, false)),
        host: None,
        user_agent: None,
        fingerprint: None,
        alpn: None,
    };
    // On a partial head the slots it filled come first, the rest stay empty.
    for h in req.headers.iter().take_while(|h| !h.name.is_empty()) {
        if head.host.is_none() && h.name.eq_ignore_ascii_case("host") {
            head.host = Some(bounded_text(h.value, HOST_MAX, false));
        } else if head.user_agent.is_none() && h.name.eq_ignore_ascii_case("user-agent") {
            head.user_agent = Some(bounded_text(h.value, USER_AGENT_MAX, false));
        }
    }
    Some(head)
}

/// A small value read from a head, which is dropped (its strings freed) inside the timed loop, as
/// the connection tracker will. Handing criterion the whole `Option<RequestHead>` instead costs
/// some 40 ns a call in the harness, which hid the reject path.
fn summary(head: Option<RequestHead>) -> Option<usize> {
    head.map(|h| h.path.or(h.fingerprint).map_or(0, |s| s.len()))
}

fn http1_heads(c: &mut Criterion) {
    let garbage = garbage();
    let cases: [(&str, &[u8]); 3] = [
        ("browser_get_430B", BROWSER_GET),
        ("partial_line", PARTIAL_LINE),
        ("reject_garbage", &garbage),
    ];
    let mut g = c.benchmark_group("http1");
    g.throughput(Throughput::Elements(1));
    for (name, data) in cases {
        // Both must give the same answer, or the comparison is of different work.
        let ours = requests::parse(data);
        assert_eq!(ours, httparse_head(data), "{name}");
        assert_eq!(ours.is_some(), name != "reject_garbage", "{name}");
        g.bench_function(format!("own/{name}"), |b| {
            b.iter(|| summary(requests::parse(black_box(data))))
        });
        g.bench_function(format!("httparse/{name}"), |b| {
            b.iter(|| summary(httparse_head(black_box(data))))
        });
    }
    g.finish();
}

fn sniff_and_tls(c: &mut Criterion) {
    let hello = client_hello();
    let head = requests::parse(&hello).expect("the bench hello parses");
    assert!(head.fingerprint.is_some() && head.host.is_some());
    let mut g = c.benchmark_group("requests");
    g.throughput(Throughput::Elements(1));
    // What a payload that is no request pays: the sniff of its 4-byte prefix.
    let prefixes: [&[u8]; 4] = [b"\x00\x01\x02\x03", b"SSH-", b"HTTP", &[0x17, 3, 3, 0]];
    g.bench_function("sniff_4_payloads", |b| {
        b.iter(|| {
            prefixes
                .iter()
                .filter(|p| requests::wants_parse(requests::sniff(black_box(p))))
                .count()
        })
    });
    g.bench_function(format!("tls_client_hello_{}B_with_ja4", hello.len()), |b| {
        b.iter(|| summary(requests::parse(black_box(&hello))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion(Duration::from_millis(500), Duration::from_secs(2));
    targets = http1_heads, sniff_and_tls
}

/// A head parser, ours or httparse's.
type Parser = fn(&[u8]) -> Option<RequestHead>;

/// `REQUESTS_BENCH_LOOP=case:count` runs one case `count` times and nothing else, for counting
/// instructions under callgrind (wall time on a shared machine is not repeatable; instructions
/// are): the difference between two counts, divided by theirs, is the cost of one call. Cases:
/// `own` or `httparse`, `/`, `browser_get`, `partial_line` or `reject_garbage`; `tls`.
fn count_loop(spec: &str) {
    let (case, count) = spec.split_once(':').expect("case:count");
    let count: usize = count.parse().expect("a count");
    let garbage = garbage();
    let hello = client_hello();
    let (parser, data): (Parser, &[u8]) = match case {
        "own/browser_get" => (requests::parse, BROWSER_GET),
        "own/partial_line" => (requests::parse, PARTIAL_LINE),
        "own/reject_garbage" => (requests::parse, &garbage),
        "httparse/browser_get" => (httparse_head, BROWSER_GET),
        "httparse/partial_line" => (httparse_head, PARTIAL_LINE),
        "httparse/reject_garbage" => (httparse_head, &garbage),
        "tls" => (requests::parse, &hello),
        other => panic!("unknown case {other}"),
    };
    let mut total = 0;
    for _ in 0..count {
        total += summary(parser(black_box(data))).unwrap_or(1);
    }
    black_box(total);
}

fn main() {
    match std::env::var("REQUESTS_BENCH_LOOP") {
        Ok(spec) => count_loop(&spec),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
