//! HTTP/1.1 as the web scenarios' clients and server speak it: who asks ([`Agent`]: browsers and
//! bot tools, each with its User-Agent, header set and TLS stack), what they ask for ([`Ask`]), the
//! request heads they send and the responses the site (nginx) gives.
//!
//! Browser heads are what browsers send over plain HTTP (no Sec-Fetch or client hints there), 300 to
//! 500 bytes; bot heads are those of the tools they imitate (HOIC, Mirai, python-requests,
//! slowloris.py). Response bodies are random bytes behind the right magic (gzip, PNG, JPEG).

use std::fmt::Write as _;

use super::super::rng::Rng;
use super::tls::{self, HelloProfile};

/// Who is on the client side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Agent {
    /// Chrome on Windows (0), macOS (1) or Android (2).
    Chrome(u8),
    /// Edge on Windows.
    Edge,
    /// Firefox on Windows (0) or Linux (1).
    Firefox(u8),
    /// Safari on macOS.
    Safari,
    /// HOIC: stale browser User-Agents (one of [`HOIC_AGENTS`]), random referers, HTTP/1.1.
    Hoic(u8),
    /// Mirai's HTTP flood: one of its five User-Agents.
    Mirai(u8),
    /// A Python script (requests, over OpenSSL).
    PythonRequests,
    /// A Go program (net/http, crypto/tls).
    GoHttp,
    /// slowloris.py with one of its User-Agents.
    Slowloris(u8),
    /// A TLS handshake flooder (OpenSSL 1.1.1, never sends a request).
    HandshakeFlooder,
}

const CHROME_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
];
const EDGE_AGENT: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0";
const FIREFOX_AGENTS: [&str; 2] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
];
const SAFARI_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15";
/// The kind of User-Agents HOIC's booster scripts rotate through: browsers a decade old.
pub(super) const HOIC_AGENTS: [&str; 4] = [
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0; .NET CLR 2.0.50727)",
    "Mozilla/5.0 (Windows; U; Windows NT 6.1; en-US; rv:1.9.2.13) Gecko/20101203 Firefox/3.6.13",
    "Opera/9.80 (Windows NT 6.1; U; en) Presto/2.7.62 Version/11.01",
    "Mozilla/5.0 (Windows; U; Windows NT 6.1; en-US) AppleWebKit/534.10 (KHTML, like Gecko) Chrome/8.0.552.224 Safari/534.10",
];
const HOIC_REFERERS: [&str; 4] = [
    "http://www.google.com/?q=",
    "http://www.bing.com/search?q=",
    "http://search.yahoo.com/search?p=",
    "http://www.ask.com/web?q=",
];
/// Mirai's HTTP flood User-Agents (from its source).
pub(super) const MIRAI_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/51.0.2704.103 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; WOW64; rv:48.0) Gecko/20100101 Firefox/48.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_6) AppleWebKit/601.7.7 (KHTML, like Gecko) Version/9.1.2 Safari/601.7.7",
];
const PYTHON_AGENT: &str = "python-requests/2.31.0";
const GO_AGENT: &str = "Go-http-client/1.1";
/// Three of slowloris.py's User-Agents.
pub(super) const SLOWLORIS_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 6.1; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/53.0.2785.143 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_1) AppleWebKit/602.2.14 (KHTML, like Gecko) Version/10.0.1 Safari/602.2.14",
    "Mozilla/5.0 (Windows NT 10.0; WOW64; rv:49.0) Gecko/20100101 Firefox/49.0",
];

impl Agent {
    /// The User-Agent header's value.
    pub(super) fn user_agent(self) -> &'static str {
        let pick = |list: &'static [&'static str], i: u8| list[usize::from(i) % list.len()];
        match self {
            Agent::Chrome(i) => pick(&CHROME_AGENTS, i),
            Agent::Edge => EDGE_AGENT,
            Agent::Firefox(i) => pick(&FIREFOX_AGENTS, i),
            Agent::Safari => SAFARI_AGENT,
            Agent::Hoic(i) => pick(&HOIC_AGENTS, i),
            Agent::Mirai(i) => pick(&MIRAI_AGENTS, i),
            Agent::PythonRequests => PYTHON_AGENT,
            Agent::GoHttp => GO_AGENT,
            Agent::Slowloris(i) => pick(&SLOWLORIS_AGENTS, i),
            Agent::HandshakeFlooder => "",
        }
    }

    /// The ClientHello this agent's TLS stack sends.
    pub(super) fn hello(self) -> &'static HelloProfile {
        match self {
            Agent::Chrome(_) | Agent::Edge => &tls::CHROME,
            Agent::Firefox(_) => &tls::FIREFOX,
            Agent::Safari => &tls::SAFARI,
            Agent::GoHttp => &tls::GO,
            Agent::PythonRequests => &tls::PYTHON,
            Agent::Hoic(_) | Agent::Mirai(_) | Agent::Slowloris(_) => &tls::CURL,
            Agent::HandshakeFlooder => &tls::FLOODER,
        }
    }

    /// Whether this is a browser (over TLS it speaks HTTP/2, whose compressed heads are short).
    fn browser(self) -> bool {
        matches!(
            self,
            Agent::Chrome(_) | Agent::Edge | Agent::Firefox(_) | Agent::Safari
        )
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Resource {
    /// Page `n` of the site (0 is `/`).
    Page,
    Css,
    Js,
    Image,
    Favicon,
    /// A JSON API call.
    Api,
    /// `/?id=<n>`: a HOIC booster's cache-buster.
    RandomId,
    /// `/`, as bots ask for it.
    Root,
    /// `/search.php?q=cheap+flights`: the one path of http-few-heavy's sources.
    Search,
}

/// One request: the resource, a number naming which one (page, image, id), and whether the client
/// holds a cached copy (If-None-Match; the site answers 304) and the site's cookie, and came from a
/// page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ask {
    pub(super) what: Resource,
    pub(super) n: u32,
    pub(super) cached: bool,
    pub(super) cookie: bool,
    /// The page it was linked from (`None`: typed in).
    pub(super) referer: Option<u32>,
    /// Who asks: the site's cookie holds a session id made from it.
    pub(super) visitor: u32,
}

/// The site's session cookie of `visitor`.
fn session(visitor: u32) -> String {
    format!(
        "sid={:016x}",
        u64::from(visitor).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

impl Ask {
    pub(super) fn new(what: Resource, n: u32) -> Ask {
        Ask {
            what,
            n,
            cached: false,
            cookie: false,
            referer: None,
            visitor: 0,
        }
    }
}

const PAGES: [&str; 8] = [
    "/",
    "/about",
    "/products/",
    "/blog/",
    "/contact",
    "/pricing",
    "/products/",
    "/blog/",
];
const BLOG_SLUGS: [&str; 6] = [
    "spring-sale",
    "how-we-roast",
    "new-shop-opening",
    "brewing-guide",
    "meet-the-team",
    "winter-blend",
];
const IMAGES: [&str; 6] = ["hero", "product", "thumb", "banner", "team", "logo"];

/// Appends the path of page `n`.
fn page_path(n: u32, out: &mut String) {
    let base = PAGES[n as usize % PAGES.len()];
    out.push_str(base);
    if base == "/products/" {
        let _ = write!(out, "{}", 100 + n % 97);
    } else if base == "/blog/" {
        out.push_str(BLOG_SLUGS[(n / 8) as usize % BLOG_SLUGS.len()]);
    }
}

/// Appends the path of `ask`.
fn path(ask: &Ask, out: &mut String) {
    let n = ask.n;
    let _ = match ask.what {
        Resource::Page => {
            page_path(n, out);
            Ok(())
        }
        Resource::Css => write!(out, "/static/css/main.{:08x}.css", n % 3 * 0x1f3a_5c77),
        Resource::Js => write!(
            out,
            "/static/js/{}.{:08x}.js",
            ["app", "vendor", "chunk"][n as usize % 3],
            n % 5 * 0x2b81_9d13
        ),
        Resource::Image => write!(
            out,
            "/images/{}-{}.{}",
            IMAGES[n as usize % IMAGES.len()],
            n % 40,
            ["jpg", "png", "webp"][(n / 7) as usize % 3]
        ),
        Resource::Favicon => write!(out, "/favicon.ico"),
        Resource::Api => write!(out, "/api/v1/cart?items={}", n % 9),
        Resource::RandomId => write!(out, "/?id={n}"),
        Resource::Root => write!(out, "/"),
        Resource::Search => write!(out, "/search.php?q=cheap+flights"),
    };
}

/// The Accept header of a browser for `what`.
fn accept(agent: Agent, what: Resource) -> &'static str {
    let firefox = matches!(agent, Agent::Firefox(_));
    match what {
        Resource::Page | Resource::RandomId | Resource::Root | Resource::Search if firefox => {
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        }
        Resource::Page | Resource::RandomId | Resource::Root | Resource::Search => {
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
        }
        Resource::Css => "text/css,*/*;q=0.1",
        Resource::Image | Resource::Favicon if firefox => "image/avif,image/webp,*/*",
        Resource::Image | Resource::Favicon => {
            "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
        }
        Resource::Js | Resource::Api => "*/*",
    }
}

/// Appends `name: value\r\n`.
fn header(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

/// Appends a browser's request head.
fn browser_head(agent: Agent, ask: &Ask, host: &str, out: &mut String) {
    let page = matches!(ask.what, Resource::Page);
    let referer = ask.referer.map(|n| {
        let mut r = format!("http://{host}");
        page_path(n, &mut r);
        r
    });
    let cookie = ask.cookie.then(|| session(ask.visitor));
    let etag = ask.cached.then(|| {
        format!(
            "\"{:x}-{:x}\"",
            ask.n.wrapping_mul(0x2545_f491),
            900 + ask.n % 3000
        )
    });
    let ua = agent.user_agent();
    let accept = accept(agent, ask.what);
    let opt = |out: &mut String, name: &str, v: &Option<String>| {
        if let Some(v) = v {
            header(out, name, v);
        }
    };
    match agent {
        Agent::Firefox(_) => {
            header(out, "Host", host);
            header(out, "User-Agent", ua);
            header(out, "Accept", accept);
            header(out, "Accept-Language", "en-US,en;q=0.5");
            header(out, "Accept-Encoding", "gzip, deflate");
            header(out, "Connection", "keep-alive");
            opt(out, "Referer", &referer);
            opt(out, "Cookie", &cookie);
            if page {
                header(out, "Upgrade-Insecure-Requests", "1");
            }
            opt(out, "If-None-Match", &etag);
        }
        Agent::Safari => {
            header(out, "Host", host);
            header(out, "Accept", accept);
            if page {
                header(out, "Upgrade-Insecure-Requests", "1");
            }
            header(out, "User-Agent", ua);
            header(out, "Accept-Language", "en-GB,en;q=0.9");
            opt(out, "Referer", &referer);
            header(out, "Accept-Encoding", "gzip, deflate");
            header(out, "Connection", "keep-alive");
            opt(out, "Cookie", &cookie);
            opt(out, "If-None-Match", &etag);
        }
        _ => {
            header(out, "Host", host);
            header(out, "Connection", "keep-alive");
            if page {
                header(out, "Upgrade-Insecure-Requests", "1");
            }
            header(out, "User-Agent", ua);
            header(out, "Accept", accept);
            opt(out, "Referer", &referer);
            header(out, "Accept-Encoding", "gzip, deflate");
            header(out, "Accept-Language", "en-US,en;q=0.9");
            opt(out, "Cookie", &cookie);
            opt(out, "If-None-Match", &etag);
        }
    }
}

/// Appends the request head `agent` sends for `ask` to `host`, blank line included.
pub(super) fn request_head(agent: Agent, ask: &Ask, host: &str, out: &mut Vec<u8>) {
    let mut s = String::with_capacity(512);
    s.push_str("GET ");
    path(ask, &mut s);
    s.push_str(" HTTP/1.1\r\n");
    match agent {
        Agent::Hoic(_) => {
            header(&mut s, "Accept", "*/*");
            header(&mut s, "Accept-Language", "en");
            let r = HOIC_REFERERS[ask.n as usize % HOIC_REFERERS.len()];
            header(&mut s, "Referer", &format!("{r}{}", ask.n % 100_000));
            header(&mut s, "User-Agent", agent.user_agent());
            header(&mut s, "Connection", "Keep-Alive");
            header(&mut s, "Host", host);
        }
        Agent::Mirai(_) => {
            header(&mut s, "User-Agent", agent.user_agent());
            header(&mut s, "Host", host);
            header(&mut s, "Connection", "keep-alive");
            header(
                &mut s,
                "Accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            );
            header(&mut s, "Accept-Language", "en-US,en;q=0.8");
        }
        Agent::PythonRequests => {
            header(&mut s, "Host", host);
            header(&mut s, "User-Agent", PYTHON_AGENT);
            header(&mut s, "Accept-Encoding", "gzip, deflate");
            header(&mut s, "Accept", "*/*");
            header(&mut s, "Connection", "keep-alive");
        }
        Agent::GoHttp | Agent::HandshakeFlooder => {
            header(&mut s, "Host", host);
            header(&mut s, "User-Agent", GO_AGENT);
            header(&mut s, "Accept-Encoding", "gzip");
        }
        Agent::Slowloris(_) => {
            header(&mut s, "User-Agent", agent.user_agent());
            header(&mut s, "Accept-language", "en-US,en,q=0.5");
        }
        _ => browser_head(agent, ask, host, &mut s),
    }
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// Appends slowloris.py's opening: the request line and two header lines, without the blank line
/// that would end the head.
pub(super) fn slowloris_head(agent: Agent, n: u32, out: &mut Vec<u8>) {
    let mut s = format!("GET /?{} HTTP/1.1\r\n", n % 2000);
    header(&mut s, "User-Agent", agent.user_agent());
    header(&mut s, "Accept-language", "en-US,en,q=0.5");
    out.extend_from_slice(s.as_bytes());
}

/// Appends one of slowloris.py's keep-alive header lines.
pub(super) fn slowloris_line(n: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("X-a: {}\r\n", 1 + n % 5000).as_bytes());
}

/// The size of the body the site returns for `what` (gzip for text), drawn per request.
fn body_len(what: Resource, rng: &mut Rng) -> usize {
    let (lo, hi) = match what {
        Resource::Page | Resource::Root => (1_500, 3_500),
        Resource::RandomId => (1_200, 2_800),
        Resource::Search => (1_000, 2_400),
        Resource::Css => (600, 2_500),
        Resource::Js => (800, 3_000),
        Resource::Image => (200, 2_500),
        Resource::Favicon => (318, 318),
        Resource::Api => (150, 900),
    };
    rng.range(lo, hi) as usize
}

/// How long the site takes to answer `what` (ns): static files at once, pages and searches later.
pub(super) fn think_ns(what: Resource, rng: &mut Rng) -> u64 {
    let (lo, hi) = match what {
        Resource::Css | Resource::Js | Resource::Image | Resource::Favicon => (100_000, 1_500_000),
        Resource::Api => (2_000_000, 20_000_000),
        Resource::Page | Resource::Root | Resource::RandomId => (3_000_000, 45_000_000),
        Resource::Search => (10_000_000, 60_000_000),
    };
    rng.range(lo, hi)
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends Unix time `secs` as an HTTP date (`Tue, 25 Nov 2025 14:00:31 GMT`).
fn http_date(secs: u64, out: &mut String) {
    let days = secs / 86_400;
    let sod = secs % 86_400;
    // civil from days (Howard Hinnant)
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

/// What a response is made of: (head bytes, body bytes).
pub(super) type Sizes = (usize, usize);

/// Appends nginx's response to `ask` at Unix time `secs`, head and body; returns their sizes.
pub(super) fn response(ask: &Ask, secs: u64, rng: &mut Rng, out: &mut Vec<u8>) -> Sizes {
    let static_file = matches!(
        ask.what,
        Resource::Css | Resource::Js | Resource::Image | Resource::Favicon
    );
    let not_modified = ask.cached && static_file;
    let body = if not_modified {
        0
    } else {
        body_len(ask.what, rng)
    };
    let mut h = String::with_capacity(400);
    h.push_str(if not_modified {
        "HTTP/1.1 304 Not Modified\r\n"
    } else {
        "HTTP/1.1 200 OK\r\n"
    });
    header(&mut h, "Server", "nginx/1.24.0");
    h.push_str("Date: ");
    http_date(secs, &mut h);
    h.push_str("\r\n");
    let (ctype, gzip) = match ask.what {
        Resource::Css => ("text/css", true),
        Resource::Js => ("application/javascript", true),
        Resource::Image if ask.n / 7 % 3 == 1 => ("image/png", false),
        Resource::Image if ask.n / 7 % 3 == 2 => ("image/webp", false),
        Resource::Image => ("image/jpeg", false),
        Resource::Favicon => ("image/x-icon", false),
        Resource::Api => ("application/json", false),
        _ => ("text/html; charset=utf-8", true),
    };
    if !not_modified {
        header(&mut h, "Content-Type", ctype);
        header(&mut h, "Content-Length", &body.to_string());
    }
    header(&mut h, "Connection", "keep-alive");
    if static_file {
        header(&mut h, "Last-Modified", "Mon, 03 Nov 2025 09:12:44 GMT");
        let etag = format!(
            "\"{:x}-{:x}\"",
            ask.n.wrapping_mul(0x2545_f491),
            900 + ask.n % 3000
        );
        header(&mut h, "ETag", &etag);
        header(&mut h, "Cache-Control", "max-age=86400");
    } else if gzip && !not_modified {
        header(&mut h, "Cache-Control", "no-cache");
    }
    if ask.what == Resource::Page && !ask.cookie {
        let cookie = format!("{}; Path=/; HttpOnly", session(ask.visitor));
        header(&mut h, "Set-Cookie", &cookie);
    }
    if gzip && !not_modified {
        header(&mut h, "Vary", "Accept-Encoding");
        header(&mut h, "Content-Encoding", "gzip");
    }
    h.push_str("\r\n");
    out.extend_from_slice(h.as_bytes());
    let start = out.len();
    let magic: &[u8] = match ctype {
        _ if gzip => &[0x1f, 0x8b, 0x08, 0x00],
        "image/png" => b"\x89PNG\r\n\x1a\n",
        "image/jpeg" => &[0xff, 0xd8, 0xff, 0xe0],
        "image/webp" => b"RIFF",
        "application/json" => b"{\"items\":[",
        _ => &[0, 0, 1, 0],
    };
    out.extend_from_slice(&magic[..magic.len().min(body)]);
    while out.len() - start < body {
        let w = rng.next_u64().to_le_bytes();
        let k = (body - (out.len() - start)).min(8);
        out.extend_from_slice(&w[..k]);
    }
    (h.len(), body)
}

/// The plaintext length of a request sent inside TLS: a browser's HTTP/2 HEADERS frame (the
/// connection preface and SETTINGS with the first), or a bot's HTTP/1.1 head of `head_len` bytes.
pub(super) fn tls_request_len(agent: Agent, first: bool, head_len: usize, rng: &mut Rng) -> usize {
    match (agent.browser(), agent, first) {
        (true, _, true) => rng.range(300, 460) as usize,
        (true, _, false) => rng.range(55, 160) as usize,
        // Go speaks HTTP/2 too; its identical requests compress to almost nothing after the first.
        (false, Agent::GoHttp, true) => rng.range(150, 190) as usize,
        (false, Agent::GoHttp, false) => rng.range(38, 52) as usize,
        _ => head_len,
    }
}

/// The plaintext length of a response sent inside TLS: HTTP/2 frames for what speaks HTTP/2 (a
/// compressed head of ~60 bytes), the HTTP/1.1 response itself otherwise.
pub(super) fn tls_response_len(agent: Agent, sizes: Sizes) -> usize {
    let (head, body) = sizes;
    if agent.browser() || agent == Agent::GoHttp {
        9 + 60 + 9 + body
    } else {
        head + body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_rfc_7231() {
        let mut s = String::new();
        http_date(1_764_079_200, &mut s);
        assert_eq!(s, "Tue, 25 Nov 2025 14:00:00 GMT");
        s.clear();
        http_date(951_782_400, &mut s);
        assert_eq!(s, "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    /// Pages never carry If-None-Match (the site marks them no-cache); a navigation with a cookie
    /// and a referer is the longest head, as in real browsers (Edge: 531–545 bytes).
    #[test]
    fn browser_heads_are_300_to_560_bytes() {
        let agents = [
            Agent::Chrome(0),
            Agent::Chrome(1),
            Agent::Chrome(2),
            Agent::Edge,
            Agent::Firefox(0),
            Agent::Firefox(1),
            Agent::Safari,
        ];
        let whats = [
            Resource::Page,
            Resource::Css,
            Resource::Js,
            Resource::Image,
            Resource::Favicon,
            Resource::Api,
        ];
        for agent in agents {
            for what in whats {
                // Only a page can be typed in; assets are asked for by one.
                let typed = (what == Resource::Page).then_some(None);
                for (n, cookie, cached, referer) in [
                    (0, what != Resource::Page, false, typed.unwrap_or(Some(0))),
                    (57, true, what != Resource::Page, Some(3)),
                    (20_011, true, false, Some(10)),
                ] {
                    let ask = Ask {
                        what,
                        n,
                        cached,
                        cookie,
                        referer,
                        visitor: 0x6440_1234,
                    };
                    let mut out = Vec::new();
                    request_head(agent, &ask, "www.example.com", &mut out);
                    let text = String::from_utf8(out).unwrap();
                    assert!(
                        (300..=560).contains(&text.len()),
                        "{agent:?} {ask:?}: {} bytes\n{text}",
                        text.len()
                    );
                    assert!(text.ends_with("\r\n\r\n") && text.matches("\r\n\r\n").count() == 1);
                    for h in ["Host: ", "User-Agent: ", "Accept: "] {
                        assert!(text.contains(h), "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn responses_say_their_length() {
        let mut rng = Rng::new(1, 0);
        for what in [
            Resource::Page,
            Resource::Image,
            Resource::Api,
            Resource::Css,
        ] {
            let mut out = Vec::new();
            let (head, body) = response(&Ask::new(what, 3), 1_764_079_200, &mut rng, &mut out);
            assert_eq!(out.len(), head + body);
            let text = String::from_utf8_lossy(&out[..head]);
            assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\n"));
            assert!(
                text.contains(&format!("Content-Length: {body}\r\n")),
                "{text}"
            );
        }
        let cached = Ask {
            cached: true,
            ..Ask::new(Resource::Js, 4)
        };
        let mut out = Vec::new();
        let (_, body) = response(&cached, 1_764_079_200, &mut rng, &mut out);
        assert_eq!(body, 0);
        assert!(out.starts_with(b"HTTP/1.1 304 Not Modified\r\n"));
    }
}
