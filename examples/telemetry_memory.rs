//! Memory of the telemetry stage at its caps: `EXPORTERS` NetFlow v9 exporters each defining
//! `TEMPLATES` templates (10 fields each) and sending one data record, then the process's peak
//! resident memory. `cargo run --release --example telemetry_memory [EXPORTERS] [TEMPLATES]`.

use std::net::IpAddr;

use floodwatch::telemetry::build::netflow;
use floodwatch::telemetry::{Datagram, Telemetry, TelemetryConfig};
use floodwatch::time::Timestamp;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let exporters: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let templates: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let before = rss_kib("VmRSS:");
    let mut t = Telemetry::new(TelemetryConfig {
        max_exporters: exporters as usize,
        max_templates: usize::from(templates),
        ..TelemetryConfig::default()
    });
    // one 60-byte SYN (the source port, 40000, does not matter to the memory measured)
    let rec = netflow::tcp(0x02, 1, 60, 1000, 1000);
    let mut out = Vec::new();
    let ts = Timestamp::from_secs_nanos(1_764_079_200, 0);
    for e in 0..exporters {
        let exporter = IpAddr::from((0x0a00_0000u32 + e).to_be_bytes());
        let mut send = |payload: &[u8]| {
            let datagram = Datagram {
                ts,
                exporter,
                payload,
            };
            t.datagram(&datagram, &mut out)
        };
        for id in 0..templates {
            // the builder's template is id 256 at bytes 24..26: renumber it
            let mut d = netflow::v9(1_764_079_200, 1000, 0, true, None, &[]);
            d[24..26].copy_from_slice(&(256 + id).to_be_bytes());
            send(&d);
        }
        send(&netflow::v9(1_764_079_200, 1000, 0, false, None, &[rec]));
        out.clear();
    }
    let st = t.stats();
    let peak = rss_kib("VmHWM:");
    println!(
        "exporters={} templates={} records={} refused={} rss_before_kib={before} peak_rss_kib={peak} per_template_bytes={:.0}",
        t.exporters().len(),
        st.templates,
        st.flow_records,
        st.templates_refused + st.exporters_refused,
        (peak.saturating_sub(before) * 1024) as f64 / st.templates.max(1) as f64
    );
}
