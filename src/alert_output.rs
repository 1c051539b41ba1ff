//! How alert events are written: JSON lines or readable text ([`OutputFormat`]), one line per
//! event flushed as it happens ([`EventWriter`]). A line is the engine's [`AlertEvent`] with what
//! the writer adds ([`EventLine`]): the `mitigation` rules of a `start` (src/mitigation.rs) and the
//! `evidence` file the sink names. It sits above the rules it writes; the event types themselves are
//! the engine's (src/alert.rs).

use std::fmt;

use serde::Serialize;

use crate::alert::{AlertEvent, EventKind, StatsEvent};

/// How events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One JSON object per line (the machine interface).
    #[default]
    Json,
    /// One readable line per event, for people.
    Text,
}

/// Writes events to a stream, one line each, flushed per event so `| jq` sees alerts as they happen.
pub struct EventWriter<W: std::io::Write> {
    out: W,
    format: OutputFormat,
}

impl<W: std::io::Write> EventWriter<W> {
    /// A writer of `format` lines to `out`.
    pub fn new(out: W, format: OutputFormat) -> Self {
        EventWriter { out, format }
    }

    /// Writes and flushes one event.
    pub fn write_event(&mut self, e: &AlertEvent) -> std::io::Result<()> {
        self.write_line(&EventLine::of(e))
    }

    /// Writes and flushes one event with what the sink added to it (its `evidence` file).
    pub fn write_line(&mut self, line: &EventLine<'_>) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Json => {
                serde_json::to_writer(&mut self.out, line)?;
                self.out.write_all(b"\n")?;
            }
            OutputFormat::Text => match &line.evidence {
                Some(path) => writeln!(self.out, "{} evidence {path}", TextLine(line.event))?,
                None => writeln!(self.out, "{}", TextLine(line.event))?,
            },
        }
        self.out.flush()
    }

    /// Writes and flushes one `stats` event.
    pub fn write_stats(&mut self, s: &StatsEvent) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Json => {
                serde_json::to_writer(&mut self.out, s)?;
                self.out.write_all(b"\n")?;
            }
            OutputFormat::Text => writeln!(
                self.out,
                "{} STATS  {} packets, {} bytes, {} active alert(s)",
                s.ts, s.packets, s.bytes, s.active_alerts
            )?,
        }
        self.out.flush()
    }
}

/// An alert event as written: the engine's fields, then what the writer adds (the `mitigation`
/// suggestion of a `start` event, and with `--evidence-dir` the `evidence` file the sink gave it).
#[derive(Serialize)]
pub struct EventLine<'a> {
    #[serde(flatten)]
    pub event: &'a AlertEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mitigation: Option<crate::mitigation::Mitigation>,
    /// `start` with `--evidence-dir`: the pcap file of the alert's packets (`DIR/NAME.pcap`),
    /// complete under that name once written (docs/alerts.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

impl<'a> EventLine<'a> {
    /// The line for `e`.
    pub fn of(e: &'a AlertEvent) -> Self {
        EventLine {
            event: e,
            mitigation: crate::mitigation::for_event(e),
            evidence: None,
        }
    }

    /// The JSON text of the line (no newline), as `--format json` writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `--format text` rendering of an event.
pub struct TextLine<'a>(pub &'a AlertEvent);

impl fmt::Display for TextLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let kind = match e.event {
            EventKind::Start => "START ",
            EventKind::Update => "UPDATE",
            EventKind::End => "END   ",
        };
        write!(
            f,
            "{} {kind} {} {} {} {:.0} {}/s (threshold {:.0}{}, baseline {:.0}, {:.1} Mbit/s)",
            e.ts,
            e.scope,
            e.key,
            e.class,
            e.pps,
            if e.signal == "bytes" { "B" } else { "pkt" },
            e.threshold_pps,
            if e.quiet_host { " quiet host" } else { "" },
            e.baseline_pps,
            e.bps / 1e6
        )?;
        if let Some(d) = e.duration_s {
            write!(f, " after {d:.1}s, {} packets", e.packets)?;
        }
        if let Some(r) = e.reason {
            write!(
                f,
                " ({})",
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )?;
        }
        if e.distinct_peers > 0 {
            let what = if e.scope.is_destination() {
                "sources"
            } else {
                "destinations"
            };
            write!(f, " ~{} {what}", e.distinct_peers)?;
        }
        if !e.top_peers.is_empty() {
            let peers: Vec<String> = e
                .top_peers
                .iter()
                .take(3)
                .map(|p| format!("{} ({})", p.ip, p.packets))
                .collect();
            let label = if e.scope.is_destination() {
                "from"
            } else {
                "to"
            };
            write!(f, " {label} {}", peers.join(", "))?;
        }
        Ok(())
    }
}
