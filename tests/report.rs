//! `floodwatch report` end to end through the real binary: the bundled SYN-flood and benign
//! captures, a capture cut short in the middle of a record, the `--record` / `--from` round trip
//! and recordings it must refuse. (tests/report_browser.rs opens the page in a real browser.)

mod common;

use std::path::{Path, PathBuf};

use common::*;

const SYN_FLOOD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/syn-flood.pcap");
const BENIGN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/benign.pcap");

/// `s` as the page writes it: HTML-escaped the way minijinja does (`/` too).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#x27;")
        .replace('/', "&#x2f;")
}

fn report(args: &[&str], out: &Path) -> (std::process::Output, String) {
    let mut all = vec!["report", "-o", arg(out)];
    all.extend_from_slice(args);
    let o = run(&all);
    let html = std::fs::read_to_string(out).unwrap_or_default();
    (o, html)
}

#[test]
fn the_syn_flood_capture_gets_a_full_report() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("syn.html");
    let alerts = dir.path().join("alerts.jsonl");
    let (out, html) = report(&[SYN_FLOOD, "--alerts", arg(&alerts)], &page);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("report written to"),
        "{}",
        stderr(&out)
    );
    // every alert of the run is on the page, by id
    let lines = std::fs::read_to_string(&alerts).unwrap();
    let starts: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &serde_json::Value| e["event"] == "start")
        .collect();
    assert!(!starts.is_empty());
    for s in &starts {
        let id = s["id"].as_str().unwrap();
        assert!(html.contains(&esc(id)), "{id} missing");
    }
    for want in [
        "Incident report: syn-flood.pcap",
        "2025-11-25",
        "syn_flood",
        "198.51.100.10",
        "17,392", // packets
        "Traffic over time",
        "Alerts in detail",
        "Suggested rules",
        "tcp flags",
        "BGP flowspec (ExaBGP API)",
    ] {
        assert!(html.contains(want), "{want:?} missing");
    }
    let rule = "announce flow route { match { destination 198.51.100.10/32; protocol =tcp;";
    assert!(html.contains(&esc(rule)), "the flowspec rule is missing");
    assert!(!html.contains("No alerts"));
    assert!(!html.contains("<script"));
    // two traffic charts, three for each alert (all drawn in full here)
    let charts = html.matches("<svg").count();
    assert_eq!(charts, charts_declared(&html));
    assert_eq!(charts, 2 + 3 * starts.len());
    assert!(html.len() < 300_000, "{} bytes", html.len());
}

#[test]
fn a_capture_without_alerts_is_traffic_only() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("benign.html");
    let (out, html) = report(&["--quiet", BENIGN], &page);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(html.contains("No alerts: traffic only."));
    assert_eq!(html.matches("<svg").count(), 2);
    assert_eq!(charts_declared(&html), 2);
    assert!(!html.contains("id=\"table\""));
}

/// Offset of a byte in the middle of the record that holds the middle of a classic pcap file.
fn middle_of_a_record(pcap: &[u8]) -> usize {
    let mut at = 24; // global header
    while at + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        let next = at + 16 + incl;
        if next > pcap.len() / 2 {
            return at + 16 + incl / 2;
        }
        at = next;
    }
    panic!("no record past the middle");
}

#[test]
fn a_truncated_capture_still_gets_its_report_saying_where_reading_stopped() {
    let (dir, cap) = temp_synth("syn-flood", SMALL_FLOOD);
    let bytes = std::fs::read(&cap).unwrap();
    let cut_at = middle_of_a_record(&bytes);
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..cut_at]).unwrap();
    let page = dir.path().join("cut.html");
    let (out, html) = report(&["--quiet", arg(&cut)], &page);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    assert!(!html.is_empty(), "no report written");
    assert!(html.contains("Reading stopped early"));
    // where: the file, the byte offset of the cut record, and the last packet time read
    let record_start = {
        let mut at = 24;
        loop {
            let incl = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            if at + 16 + incl > cut_at {
                break at;
            }
            at += 16 + incl;
        }
    };
    assert!(html.contains(&esc(&cut.display().to_string())));
    assert!(
        html.contains(&format!("at byte {record_start}")),
        "offset {record_start} not named"
    );
    assert!(html.contains("The report covers the packets read before that, up to 2025-11-25"));
    // what was read before the cut is charted
    assert_eq!(html.matches("<svg").count(), charts_declared(&html));
    assert!(charts_declared(&html) >= 2);
}

#[test]
fn a_recording_makes_the_same_page_as_the_capture() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("run.json");
    let direct = dir.path().join("direct.html");
    let from = dir.path().join("from.html");
    // the capture's path as given is part of the page (its title and inputs): give the same one
    run_ok(&["replay", "--quiet", "--record", arg(&rec), SYN_FLOOD]);
    let (out, direct_html) = report(&["--quiet", SYN_FLOOD], &direct);
    assert!(out.status.success(), "{}", stderr(&out));
    let (out, from_html) = report(&["--quiet", "--from", arg(&rec)], &from);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(from_html.contains("syn_flood"));
    assert_eq!(
        direct_html, from_html,
        "replay --record + report --from differs"
    );
    // and report --record writes the recording replay --record does
    let again = dir.path().join("again.json");
    let (out, _) = report(
        &["--quiet", "--record", arg(&again), SYN_FLOOD],
        &dir.path().join("again.html"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&rec).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn a_bad_recording_is_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("never.html");
    let check = |from: &PathBuf, want: &str| {
        let (out, _) = report(&["--from", arg(from)], &page);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(want), "{want:?} not in: {err}");
        assert!(
            err.contains(&from.display().to_string()),
            "no path in: {err}"
        );
        assert!(!page.exists(), "a page was written");
    };
    check(
        &dir.path().join("missing.json"),
        "cannot read the recording",
    );
    let garbage = dir.path().join("alerts.jsonl");
    std::fs::write(&garbage, "{\"event\":\"start\"}\n{\"event\":\"end\"}\n").unwrap();
    check(&garbage, "is not a floodwatch recording");
    let future = dir.path().join("future.json");
    let mut v: serde_json::Value = {
        let rec = dir.path().join("ok.json");
        run_ok(&["replay", "--quiet", "--record", arg(&rec), BENIGN]);
        serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap()
    };
    v["format"] = 99.into();
    std::fs::write(&future, v.to_string()).unwrap();
    check(&future, "format 99");
}

#[test]
fn title_and_detail_options_shape_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("t.html");
    let (out, html) = report(
        &[
            "--quiet",
            "--title",
            "<b>Outage</b> of 25 Nov",
            "--max-detailed",
            "0",
            SYN_FLOOD,
        ],
        &page,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(html.contains(&format!(
        "<title>{}</title>",
        esc("<b>Outage</b> of 25 Nov")
    )));
    assert!(!html.contains("<b>Outage"));
    assert!(!html.contains("Alerts in detail"));
    assert!(html.contains("id=\"table\""));
    assert_eq!(html.matches("<svg").count(), 2);
}

#[test]
fn evidence_files_made_with_the_report_are_linked_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("r.html");
    let ev = dir.path().join("ev");
    let (out, html) = report(
        &[
            "--evidence-dir",
            arg(&ev),
            "--evidence-after",
            "100",
            SYN_FLOOD,
        ],
        &page,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let files: Vec<String> = std::fs::read_dir(&ev)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".pcap"));
    // linked relative to the page, which sits beside the directory
    let href = format!("href=\"{}\"", esc(&format!("ev/{}", files[0])));
    assert!(html.contains(&href), "{href} not in the page");
}

/// The attackers of a synth capture's one labelled attack.
fn attackers(cap: &Path) -> Vec<String> {
    let labels = labels(cap);
    assert_eq!(labels.len(), 1, "one labelled attack");
    labels[0]["attackers"]
        .as_array()
        .expect("attackers")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

#[test]
fn an_http_flood_report_names_its_clients_what_they_asked_for_and_the_nginx_rules() {
    let (dir, cap) = temp_synth("http-flood", &["--seed", "1"]);
    let cap_s = arg(&cap);
    let rec = dir.path().join("run.json");
    run_ok(&["replay", "-q", "--record", arg(&rec), cap_s]);
    let (out, html) = report(
        &["--quiet", "--from", arg(&rec)],
        &dir.path().join("from.html"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // the page of the capture is the page of its recording: the requests made the round trip
    let (out, direct) = report(&["--quiet", cap_s], &dir.path().join("direct.html"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(html, direct, "replay --record + report --from differs");

    assert!(html.contains("http_flood"));
    assert!(html.contains("completed a TCP handshake with the victim"));
    assert!(html.contains("clients the alert names carry"));
    for a in attackers(&cap) {
        // each attacker is a row of the clients table and is denied by the nginx snippet
        assert!(
            html.contains(&format!(
                "<tr><td class=\"mono\">{a}</td><td class=\"num\">"
            )),
            "client {a} missing"
        );
        assert!(html.contains(&format!("deny {a};")), "no deny for {a}");
    }
    for want in [
        "<h4>Paths</h4>",
        "<h4>User agents</h4>",
        "<p class=\"muted\">nginx</p>",
        "limit_req zone=floodwatch_req burst=20 nodelay;",
        "Requests inside TLS are an estimate",
    ] {
        assert!(html.contains(want), "{want:?} missing");
    }
    for want in ["/?id=", "www.example.com", "req/s", "limit_req_zone "] {
        assert!(html.contains(&esc(want)), "{want:?} missing");
    }
    assert_eq!(html.matches("<svg").count(), charts_declared(&html));
}

#[test]
fn paths_and_user_agents_of_a_request_flood_are_escaped() {
    let (dir, cap) = temp_synth("http-flood", &["--seed", "1"]);
    let rec = dir.path().join("run.json");
    run_ok(&["replay", "-q", "--record", arg(&rec), arg(&cap)]);
    // a client chooses its path and user agent: give them markup and quotes
    let evil = "<script>alert(\"x\")</script>'";
    let path = format!("/{evil}");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    let mut edited = 0;
    for a in v["alerts"].as_array_mut().unwrap() {
        for kind in ["start", "end"] {
            if let Some(r) = a[kind].get_mut("requests") {
                r["paths"][0]["value"] = path.clone().into();
                r["user_agents"][0]["value"] = evil.into();
                edited += 1;
            }
        }
    }
    assert!(edited > 0, "no request evidence in the recording");
    let evil_rec = dir.path().join("evil.json");
    std::fs::write(&evil_rec, v.to_string()).unwrap();
    let (out, html) = report(
        &["--quiet", "--from", arg(&evil_rec)],
        &dir.path().join("evil.html"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!html.contains("<script"), "an unescaped tag");
    assert!(!html.contains("alert(\""), "an unescaped quote");
    assert!(html.contains(&format!("<td class=\"mono text\">{}</td>", esc(&path))));
    assert!(html.contains(&format!("<td class=\"mono text\">{}</td>", esc(evil))));
}
