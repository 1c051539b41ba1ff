//! Tests of the page: structure, bounds and escaping, on recordings built by hand.

use super::*;
use crate::report::record::{
    ClientRecord, Counter, DetailRecord, MitigationRecord, NginxRecord, PeerRecord, PortRecord,
    RequestRecord, MAX_SERIES,
};
use crate::report::{KeySeries, SeriesPoint, TrafficSeries};

/// 2025-11-25 14:00:00 UTC.
const T0: u64 = 1_764_079_200_000_000_000;
const SEC: u64 = 1_000_000_000;

fn event(kind: &str, ts_ns: u64, pps: f64) -> EventRecord {
    EventRecord {
        event: kind.to_string(),
        ts_ns,
        pps,
        bps: pps * 480.0,
        total_pps: pps,
        baseline_pps: 2.0,
        threshold_pps: 1000.0,
        peak_pps: pps,
        class_share: 0.98,
        window_s: 1.0,
        packets: (pps * 3.0) as u64,
        bytes: (pps * 180.0) as u64,
        distinct_peers: 4000,
        duration_s: (kind == "end").then_some(3.0),
        reason: (kind == "end").then(|| "below_threshold".to_string()),
        top_peers: vec![PeerRecord {
            ip: "203.0.113.9".to_string(),
            packets: 1201,
        }],
        top_ports: vec![PortRecord {
            port: 80,
            packets: 48_100,
        }],
        top_src_ports: Vec::new(),
        top_hosts: Vec::new(),
        requests: None,
    }
}

fn series(start_ns: u64, points: usize, step_ns: u64) -> KeySeries {
    KeySeries {
        points: (0..points)
            .map(|i| {
                let rate = 1000.0 + (i % 50) as f64 * 97.3;
                SeriesPoint {
                    ts_ns: start_ns + i as u64 * step_ns,
                    rate,
                    baseline: 35.2,
                    threshold: 1000.0,
                    total_pps: rate * 1.02,
                    bps: rate * 480.0,
                    syn: rate,
                    tcp: rate * 0.02,
                    udp: 0.0,
                    icmp: 1.0,
                    fragment: 0.0,
                    distinct_peers: 10 * i as u64,
                }
            })
            .collect(),
    }
}

/// Alert `i` of a run: starts `i` × `gap_ns` after T0, lasts 3 s, peaks at 2000 + 10 i pkt/s.
fn alert(i: usize, gap_ns: u64, series_points: usize) -> AlertRecord {
    let start = T0 + SEC + i as u64 * gap_ns;
    let peak = 2000.0 + 10.0 * i as f64;
    let key = format!("198.51.{}.{}", i / 250, i % 250);
    AlertRecord {
        id: format!("dst_host/{key}/syn_flood/{}.000000", start / SEC),
        scope: "dst_host".to_string(),
        key,
        class: "syn_flood".to_string(),
        signal: "syn".to_string(),
        start: Some(event("start", start, peak)),
        updates: vec![event("update", start + SEC, peak)],
        end: Some(event("end", start + 3 * SEC, peak)),
        mitigation: Some(MitigationRecord {
            nft: vec!["ip daddr 198.51.100.10 tcp flags & (syn|ack) == syn drop".to_string()],
            bpf: "dst host 198.51.100.10 and tcp".to_string(),
            flowspec: vec![
                "announce flow route { match { destination 198.51.100.10/32; protocol =tcp; } then { discard; } }"
                    .to_string(),
            ],
            nginx: None,
        }),
        signature: Some(serde_json::json!([
            {"field": "ip_len", "share": 1.0, "value": 40},
            {"field": "tcp_flags", "share": 0.99, "value": "SYN"}
        ])),
        evidence: None,
        series: (series_points > 0).then(|| series(start - SEC, series_points, 20_000_000)),
    }
}

fn traffic(steps: usize, step_ns: u64) -> TrafficSeries {
    let mut t = TrafficSeries::new(1200);
    t.start_ns = T0;
    t.step_ns = step_ns;
    t.packets = (0..steps)
        .map(|i| [(i % 13) as u64 * 100, 300, 40, 12, 1, 2])
        .collect();
    t.bytes = t.packets.iter().map(|r| r.map(|v| v * 90)).collect();
    t
}

fn recording(alerts: usize, gap_ns: u64, series_points: usize) -> Recording {
    let steps = 1200;
    let step_ns = 3 * SEC;
    Recording {
        format: 1,
        generator: "floodwatch 0.1.0".to_string(),
        inputs: vec!["captures/day.pcap".to_string()],
        first_ns: Some(T0 + 19_113_000),
        last_ns: Some(T0 + steps as u64 * step_ns - 1),
        frames: 17_392,
        packets: 17_390,
        bytes: 1_516_684,
        distinct_sources: 15_906,
        counters: vec![
            Counter {
                name: "frames not decoded".to_string(),
                value: 2,
            },
            Counter {
                name: "kernel drops".to_string(),
                value: 0,
            },
        ],
        stopped: None,
        traffic: traffic(steps, step_ns),
        alerts: (0..alerts)
            // the recorder keeps the series of the most severe: here the last ones
            .map(|i| {
                let kept = i + MAX_SERIES >= alerts;
                alert(i, gap_ns, if kept { series_points } else { 0 })
            })
            .collect(),
        alert_page: false,
    }
}

/// `s` as the page writes it (minijinja escapes `/` too).
fn esc(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

fn render(rec: &Recording) -> String {
    render_html(rec, &RenderOptions::default()).unwrap()
}

fn charts_declared(html: &str) -> usize {
    let at = html.find("name=\"floodwatch-charts\" content=\"").unwrap();
    let rest = &html[at + 34..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

#[test]
fn the_header_has_the_run_s_numbers() {
    let html = render(&recording(3, 60 * SEC, 100));
    for want in [
        "Incident report: day.pcap",
        "2025-11-25 14:00:00.019 – 14:59:59.999 UTC",
        "17,390",              // packets
        "1.52 MB (1,516,684)", // bytes
        "≈ 15.9 k",            // distinct sources
        "frames not decoded",
        "kernel drops",
        "syn_flood ×3",
        "198.51.0.0, 198.51.0.1, 198.51.0.2", // victims
        "per 3 s step",
    ] {
        assert!(html.contains(want), "{want:?} missing");
    }
    // peak: 1200 + 300 + 40 + 12 + 1 + 2 packets in a 3 s step
    let peak = si_unit(1555.0 / 3.0, "pkt/s");
    assert!(html.contains(&esc(&peak)), "{peak} missing");
    assert!(!html.contains("No alerts"));
    assert!(!html.contains("Reading stopped early"));
}

#[test]
fn one_svg_per_chart() {
    // two traffic charts; an alert with a series has three, one without has two
    let mut rec = recording(3, 60 * SEC, 100);
    rec.alerts[1].series = None;
    let html = render(&rec);
    assert_eq!(html.matches("<svg").count(), 2 + 3 + 2 + 3);
    assert_eq!(charts_declared(&html), 10);
    assert!(html.contains(&esc("Drawn from the alert's events only")));
    assert!(html.contains(&esc("% of the key's packets were of the alert's signal")));
    // every chart has a legend and a dated UTC time axis
    for svg in html.split("<svg").skip(1) {
        let svg = &svg[..svg.find("</svg>").unwrap()];
        assert!(svg.contains("time (UTC, 2025-11-25)"), "time axis");
        assert!(!svg.contains("#0101"), "an unthemed colour");
    }
}

#[test]
fn every_alert_is_in_the_table_in_order_of_start() {
    let rec = recording(30, 60 * SEC, 0);
    let html = render(&rec);
    let table = &html[html.find("id=\"table\"").unwrap()..];
    let mut last = 0;
    for a in &rec.alerts {
        let at = table
            .find(&esc(&a.id))
            .unwrap_or_else(|| panic!("{} missing", a.id));
        assert!(at > last, "not in order of start");
        last = at;
    }
    // the 20 most severe (the last 20: they peak highest) have sections, linked from the table
    assert_eq!(html.matches("<article class=\"alert\"").count(), 20);
    assert!(html.contains("href=\"#alert-30\""));
    assert!(!html.contains("href=\"#alert-10\""));
    assert!(html.contains("id=\"alert-11\""));
}

#[test]
fn without_alerts_the_page_says_traffic_only() {
    let html = render(&recording(0, SEC, 0));
    assert!(html.contains("No alerts: traffic only."));
    assert_eq!(charts_declared(&html), 2);
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(!html.contains("id=\"table\""));
}

#[test]
fn without_packets_the_page_says_so() {
    let rec = Recording {
        format: 1,
        traffic: TrafficSeries::new(10),
        ..Recording::default()
    };
    let html = render(&rec);
    assert!(html.contains("No packets were read"));
    assert_eq!(html.matches("<svg").count(), 0);
}

#[test]
fn a_stopped_read_says_where() {
    let mut rec = recording(1, SEC, 50);
    rec.stopped = Some(
        "cut.pcap: truncated at byte 799954: the last record is cut short (was the capture \
         interrupted?); packets before it were read"
            .to_string(),
    );
    let html = render(&rec);
    assert!(html.contains("Reading stopped early"));
    assert!(html.contains("truncated at byte 799954"));
    assert!(html.contains("up to 2025-11-25 14:59:59.999999 UTC"));
}

#[test]
fn strings_from_the_input_are_escaped() {
    let evil = "<script>alert(1)</script>";
    let mut rec = recording(1, SEC, 50);
    rec.inputs = vec![format!("/tmp/{evil}.pcap")];
    rec.generator = format!("floodwatch \"{evil}");
    rec.counters[0].name = evil.to_string();
    let a = &mut rec.alerts[0];
    a.id = format!("dst_host/{evil}/x");
    a.key = evil.to_string();
    a.scope = format!("dst_{evil}");
    a.class = evil.to_string();
    a.signal = evil.to_string();
    if let Some(m) = a.mitigation.as_mut() {
        m.nft = vec![evil.to_string()];
        m.bpf = evil.to_string();
        m.flowspec = vec![evil.to_string()];
    }
    a.signature = Some(serde_json::json!([{"field": evil, "value": evil, "share": 1.0}]));
    a.evidence = Some(format!("ev/\"><{evil}.pcap"));
    if let Some(e) = a.end.as_mut() {
        e.reason = Some(evil.to_string());
        e.top_peers[0].ip = evil.to_string();
    }
    let opts = RenderOptions {
        title: Some(format!("{evil}&")),
        ..RenderOptions::default()
    };
    let html = render_html(&rec, &opts).unwrap();
    assert!(!html.contains("<script"), "an unescaped tag");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;&amp;"));
    // the evidence link is percent-encoded, its text escaped
    assert!(html.contains(&format!("href=\"{}", esc("ev/%22%3E%3C%3Cscript%3E"))));
}

#[test]
fn a_one_hour_capture_with_20_alerts_stays_under_2_mb() {
    // 1200 steps of 3 s, 20 alerts with 256-point series, all drawn in full
    let rec = recording(20, 170 * SEC, 256);
    let html = render(&rec);
    eprintln!("1 hour, 20 alerts: {} bytes", html.len());
    assert!(html.len() <= 2 << 20, "{} bytes", html.len());
    assert_eq!(charts_declared(&html), 2 + 20 * 3);
    assert_eq!(html.matches("<svg").count(), 2 + 20 * 3);
}

#[test]
fn ten_thousand_alerts_make_a_small_page() {
    let rec = recording(10_000, 350_000_000, 256);
    let html = render(&rec);
    eprintln!("10,000 alerts: {} bytes", html.len());
    assert!(html.len() <= 3 << 20, "{} bytes", html.len());
    assert_eq!(html.matches("<article class=\"alert\"").count(), 20);
    assert!(html.contains(&format!(
        "{} of 10000 alerts are left out",
        10_000 - MAX_TABLE_ROWS
    )));
    // the most severe (the last) is in the table, the least (the first) is not
    assert!(html.contains(&esc(&rec.alerts[9_999].id)));
    assert!(!html.contains(&esc(&rec.alerts[0].id)));
    let shown = html.matches("<td class=\"id\">").count();
    assert_eq!(shown, MAX_TABLE_ROWS);
}

#[test]
fn open_alerts_and_missing_events_do_not_break_the_page() {
    let mut rec = recording(2, 60 * SEC, 0);
    rec.alerts[0].end = None;
    rec.alerts[0].updates.clear();
    rec.alerts[1].start = None;
    rec.alerts[1].signature = Some(serde_json::json!({"odd": [1, 2]}));
    let html = render(&rec);
    assert!(html.contains("still active when the input ended"));
    assert!(html.contains("open at the end"));
    assert!(
        html.contains("&quot;odd&quot;"),
        "a signature of another shape as JSON"
    );
}

#[test]
fn the_page_is_deterministic() {
    let rec = recording(5, 60 * SEC, 64);
    assert_eq!(render(&rec), render(&rec));
}

#[test]
fn the_stylesheet_defines_every_chart_colour_for_both_themes() {
    let dark_at = TEMPLATE.find("prefers-color-scheme: dark").unwrap();
    let (light, dark) = TEMPLATE.split_at(dark_at);
    for var in plot::Ink::css_variables() {
        assert!(light.contains(&format!("{var}:")), "{var} (light)");
        assert!(dark.contains(&format!("{var}:")), "{var} (dark)");
    }
    assert!(!TEMPLATE.contains("<script"));
    assert!(!TEMPLATE.contains("http://") && !TEMPLATE.contains("https://"));
}

#[test]
fn evidence_links_are_relative_to_the_page() {
    let base = LinkBase {
        cwd: PathBuf::from("/work/run"),
        page_dir: PathBuf::from("/work/run/reports"),
    };
    assert_eq!(
        evidence("ev/a b.pcap", Some(&base)).href,
        "../ev/a%20b.pcap"
    );
    assert_eq!(
        evidence("/srv/ev/x.pcap", Some(&base)).href,
        "../../../srv/ev/x.pcap"
    );
    assert_eq!(evidence("ev/x.pcap", None).href, "ev/x.pcap");
    assert_eq!(
        relative_path(Path::new("/a/b"), Path::new("/a/b/./c/../d.pcap")),
        "d.pcap"
    );
    let mut rec = recording(1, SEC, 10);
    rec.alerts[0].evidence = Some("ev/x.pcap".to_string());
    let opts = RenderOptions {
        links: Some(base),
        ..RenderOptions::default()
    };
    let html = render_html(&rec, &opts).unwrap();
    assert!(html.contains(&format!(
        "<a href=\"{}\">{}</a>",
        esc("../ev/x.pcap"),
        esc("ev/x.pcap")
    )));
}

#[test]
fn a_recording_with_absurd_numbers_still_renders() {
    // `report --from` reads any JSON: times at the ends of u64, counts that overflow a sum,
    // a zero step, rates far beyond any link, and a series far longer than a recorder keeps
    let mut rec = recording(3, 60 * SEC, 0);
    rec.first_ns = Some(0);
    rec.last_ns = Some(u64::MAX);
    rec.distinct_sources = u64::MAX;
    rec.counters[0].value = u64::MAX;
    rec.traffic.start_ns = u64::MAX - 10;
    rec.traffic.step_ns = 0;
    rec.traffic.packets = vec![[u64::MAX; 6]; 3];
    rec.traffic.bytes = vec![[u64::MAX; 6]; 3];
    let a = &mut rec.alerts[0];
    a.start = Some(event("start", u64::MAX, 1e300));
    a.end = Some(event("end", 0, -5.0));
    let mut s = series(0, 100_000, u64::MAX / 100_000);
    s.points[5].rate = f64::MAX;
    s.points[6].threshold = -1e300;
    a.series = Some(s);
    rec.alerts[1].series = Some(KeySeries::default());
    let started = std::time::Instant::now();
    let html = render(&rec);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(html.len() < 2 << 20, "{} bytes", html.len());
    assert_eq!(html.matches("<svg").count(), charts_declared(&html));
}

#[test]
fn an_alert_page_shows_the_alert_s_numbers_not_a_missing_run() {
    let mut a = alert(0, SEC, 50);
    a.end = Some(EventRecord {
        distinct_peers: 4321,
        ..event("end", T0 + 9 * SEC, 100.0)
    });
    let rec = Recording {
        inputs: vec!["interface eth0".into()],
        alerts: vec![a],
        alert_page: true,
        ..Recording::default()
    };
    let html = render(&rec);
    assert!(
        html.contains("Alert report: syn_flood on 198.51.0.0"),
        "{html}"
    );
    assert!(html.contains("The page of one alert"));
    assert!(!html.contains("No packets were read"));
    assert!(!html.contains("frames read"));
    assert!(html.contains("≈ 4.3"), "the key's distinct sources");
}

/// Alert 0 of [`recording`] made an HTTP flood: its start names two clients and what they asked
/// for (`path` and `agent` chosen by the test), its mitigation the nginx snippet.
fn http_flood(path: &str, agent: &str) -> Recording {
    let mut rec = recording(1, SEC, 50);
    let a = &mut rec.alerts[0];
    a.class = "http_flood".to_string();
    a.signal = "http_requests".to_string();
    a.signature = None;
    let detail = |v: &str, n: u32| DetailRecord {
        value: v.to_string(),
        requests: n,
    };
    let client = |ip: &str, requests: u32| ClientRecord {
        ip: ip.to_string(),
        requests,
        connections: 4,
        held_s: 0,
    };
    if let Some(s) = a.start.as_mut() {
        s.requests = Some(RequestRecord {
            verified_sources: true,
            clients: vec![client("203.0.113.7", 4_812), client("203.0.113.9", 3_977)],
            top_share: 0.964,
            clients_seen: 41,
            tls_requests_estimated: true,
            paths: vec![detail(path, 8_000), detail("/", 12)],
            hosts: vec![detail("www.example.com", 8_012)],
            user_agents: vec![detail(agent, 8_000)],
            fingerprints: Vec::new(),
        });
    }
    if let Some(m) = a.mitigation.as_mut() {
        m.nft = vec![
            "ip saddr { 203.0.113.7, 203.0.113.9 } ip daddr 198.51.0.0 meta l4proto tcp drop"
                .to_string(),
        ];
        m.nginx = Some(NginxRecord {
            deny: vec!["deny 203.0.113.7;".into(), "deny 203.0.113.9;".into()],
            limit: vec![
                "limit_req_zone $binary_remote_addr zone=floodwatch_req:10m rate=10r/s;".into(),
                "limit_req zone=floodwatch_req burst=20 nodelay;".into(),
            ],
        });
    }
    rec
}

#[test]
fn a_request_alert_shows_its_clients_what_they_asked_for_and_the_nginx_rules() {
    let html = render(&http_flood("/search.php?q=cheap", "python-requests/2.31.0"));
    for want in [
        "Clients <span class=\"muted\">(start event)</span>",
        "completed a TCP handshake with the victim",
        "<td class=\"mono\">203.0.113.7</td><td class=\"num\">4,812</td>",
        "The 2 clients the alert names carry 96.4 % of the requests (http_requests)",
        "41 clients seen",
        "Requests inside TLS are an estimate",
        "Hosts and TLS server names",
        "www.example.com",
        "<p class=\"muted\">nginx</p>",
        "limit_req zone=floodwatch_req burst=20 nodelay;\ndeny 203.0.113.7;",
    ] {
        assert!(html.contains(want), "{want:?} missing");
    }
    for want in [
        "/search.php?q=cheap",
        "python-requests/2.31.0",
        "# in the http block",
    ] {
        assert!(html.contains(&esc(want)), "{want:?} missing");
    }
    // no JA4 was seen: no empty table
    assert!(!html.contains("TLS fingerprints"));
    // the rates are in requests: the facts, the table, the rate chart's axis
    let peak = format!("peak rate</span>{}", esc("2 k req/s"));
    assert!(html.contains(&peak), "{peak:?} missing");
    assert!(html.contains(&format!("<td class=\"num\">{}</td>", esc("2 k req/s"))));
    assert!(html.contains("requests/s"));
}

#[test]
fn request_strings_are_escaped() {
    let evil = "<script>alert(\"x\")</script>\'";
    let html = render(&http_flood(&format!("/{evil}"), evil));
    assert!(!html.contains("<script"), "an unescaped tag");
    assert!(!html.contains("alert(\""), "an unescaped quote");
    assert!(html.contains(&esc(&format!("/{evil}"))));
    assert_eq!(
        html.matches(&esc(evil)).count(),
        2,
        "the path and the agent"
    );
}

#[test]
fn packet_alerts_have_no_request_part() {
    let html = render(&recording(2, 60 * SEC, 50));
    assert!(!html.contains("Clients <span"));
    assert!(!html.contains("nginx"));
    assert!(!html.contains(&esc("req/s")));
}

#[test]
fn a_bytes_alert_states_its_rate_in_bytes() {
    let mut rec = recording(2, 60 * SEC, 50);
    let a = &mut rec.alerts[0];
    a.signal = "bytes".to_string();
    a.class = "udp_flood".to_string();
    let html = render(&rec);
    // the table's column is in pkt/s: the bytes alert's peak carries its own unit there, and
    // its details say B/s; the packet alert's peak stays a bare number
    let bytes_peak = esc(&si_unit(peak_pps(&rec.alerts[0]), "B/s"));
    assert!(html.contains(&bytes_peak), "{bytes_peak} missing");
    let syn_peak = si(peak_pps(&rec.alerts[1]));
    assert!(
        html.contains(&format!(">{syn_peak}<")),
        "{syn_peak} missing"
    );
    assert!(!html.contains(&esc(&si_unit(peak_pps(&rec.alerts[0]), "pkt/s"))));
}
