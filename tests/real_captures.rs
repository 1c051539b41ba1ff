//! Every real capture in ../shared/captures replays without a panic and counts exactly the frames
//! INDEX.md lists; the two floods the replay issue names raise their alerts on their victim. Skips
//! with a note when the folder is absent (a user's clone has no shared/).

mod common;

use common::fixtures::{shared_captures, SHARED_CAPTURES};
use common::*;

#[test]
fn every_shared_capture_replays_and_counts_its_frames() {
    let Some(root) = shared_captures() else {
        return;
    };
    let mut listed: Vec<String> = Vec::new();
    for dir in ["attack", "benign"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            listed.push(format!(
                "{dir}/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    for (name, frames) in SHARED_CAPTURES {
        let path = root.join(name);
        let out = run(&["replay", arg(&path)]);
        let err = stderr(&out);
        assert!(out.status.success(), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name} panicked: {err}");
        assert_eq!(
            summary_count(&out, "frames"),
            Some(*frames),
            "{name}: {err}"
        );
        let _ = events(&out);
        // A decode pool (the pcapng has two interfaces of different link types) reads the same.
        let pooled = run(&["replay", "--decode-threads", "2", arg(&path)]);
        assert!(
            pooled.stdout == out.stdout,
            "{name}: alerts differ with --decode-threads 2"
        );
        assert_eq!(
            summary_count(&pooled, "frames"),
            Some(*frames),
            "{name} with --decode-threads 2"
        );
        let undecoded = |o: &std::process::Output| {
            stderr(o)
                .lines()
                .find(|l| l.trim_start().starts_with("not decoded"))
                .map(str::to_owned)
        };
        assert_eq!(
            undecoded(&pooled),
            undecoded(&out),
            "{name}: --decode-threads 2"
        );
        assert_eq!(
            summary_count(&pooled, "packets"),
            summary_count(&out, "packets")
        );
    }
    // A capture in the folders that the table does not list yet still must not panic.
    for name in listed
        .iter()
        .filter(|n| !SHARED_CAPTURES.iter().any(|(c, _)| c == n))
    {
        let out = run(&["replay", root.join(name).to_str().unwrap()]);
        assert!(out.status.code().is_some(), "{name} was killed by a signal");
        assert!(!stderr(&out).contains("panicked"), "{name} panicked");
    }
}

fn assert_alert(name: &str, scope: &str, key: &str, class: &str) {
    let Some(root) = shared_captures() else {
        return;
    };
    let out = run_ok(&["replay", "--quiet", root.join(name).to_str().unwrap()]);
    let ev = events(&out);
    assert!(
        ev.iter().any(|e| e["event"] == "start"
            && e["scope"] == scope
            && e["key"] == key
            && e["class"] == class),
        "{name}: no {class} on {scope} {key}; got:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Every flood in attack/ with a victim raises its class on it. (The textbook PPA capture has no
/// victim: 100 SYNs to 100 random addresses in 16 ms, too little for any floor.)
#[test]
fn every_flood_raises_its_class_on_its_victim() {
    let expected = [
        (
            "attack/synflood_spoofed_stopddos.pcap",
            "10.10.10.10",
            "syn_flood",
        ),
        (
            "attack/synack_reflection_stopddos.pcap",
            "10.10.10.10",
            "tcp_flood",
        ),
        (
            "attack/snmp_amplification_stopddos.pcap",
            "10.10.10.10",
            "snmp_amplification",
        ),
        (
            "attack/dns_reflection_2013_netlyzer.pcap",
            "227.213.154.241",
            "dns_amplification",
        ),
        (
            "attack/cicddos2019_synflood_lucid.pcap",
            "192.168.50.4",
            "syn_flood",
        ),
        (
            "attack/ipv6_exthdr_frag_dos_denial6-6_suricata.pcap",
            "2001:db8:1::1",
            "fragment_flood",
        ),
    ];
    for (name, victim, class) in expected {
        assert_alert(name, "dst_host", victim, class);
    }
    // The NAT'd attacker of the CIC-DDoS2019 flood is named.
    assert_alert(
        "attack/cicddos2019_synflood_lucid.pcap",
        "src_host",
        "172.16.0.5",
        "syn_flood",
    );
}

/// The nmap SYN scan (peak 760 SYN/s) stays under the SYN floor; the benign captures, including
/// 24 500 packets/s of echo traffic on loopback, raise nothing.
#[test]
fn scans_and_benign_traffic_raise_no_alert() {
    let Some(root) = shared_captures() else {
        return;
    };
    let mut quiet = vec![
        "attack/portscan_syn_nonflood_sanders.pcapng".to_owned(),
        "attack/teardrop_wireshark_lwerdna.pcap".to_owned(),
    ];
    for e in std::fs::read_dir(root.join("benign")).unwrap() {
        quiet.push(format!(
            "benign/{}",
            e.unwrap().file_name().to_string_lossy()
        ));
    }
    for name in quiet {
        let out = run(&["replay", "--quiet", root.join(&name).to_str().unwrap()]);
        assert!(out.status.success(), "{name}");
        assert!(
            out.stdout.is_empty(),
            "{name} alerted:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn spoofed_syn_flood_raises_syn_flood_on_its_victim() {
    assert_alert(
        "attack/synflood_spoofed_stopddos.pcap",
        "dst_host",
        "10.10.10.10",
        "syn_flood",
    );
}

#[test]
fn snmp_amplification_is_named() {
    assert_alert(
        "attack/snmp_amplification_stopddos.pcap",
        "dst_host",
        "10.10.10.10",
        "snmp_amplification",
    );
}
