//! The part of a request-flood alert's section (`http_flood`, `connection_flood`, `slowloris`)
//! that packet floods do not have: the clients that sent it, what they asked for, the nginx
//! snippet, and the units of the request signals.
//!
//! Paths, hosts, user agents and fingerprints are strings the clients chose; like everything else
//! on the page they go to the template as plain text, which escapes them.

use serde::Serialize;

use super::super::format::{count, si};
use super::super::record::{DetailRecord, NginxRecord, RequestRecord};
use super::{AlertRecord, EventRecord};

/// Rows of a detail table: the alert event keeps five of each.
const MAX_DETAIL_ROWS: usize = 5;
/// Clients listed at most.
const MAX_CLIENT_ROWS: usize = 16;

/// The request signals, with the unit of their rate in a chart's axis and beside a number.
const SIGNALS: [(&str, &str, &str); 3] = [
    ("http_requests", "requests/s", "req/s"),
    ("handshakes", "handshakes/s", "handshakes/s"),
    // each connection holding a head open adds one a second: the rate is how many there are
    ("incomplete_heads", "connections held", "held"),
];

/// The unit of a request signal's rate on a chart's axis (None for packet signals).
pub(super) fn axis_unit(signal: &str) -> Option<&'static str> {
    SIGNALS.iter().find(|s| s.0 == signal).map(|s| s.1)
}

/// The unit written after a number of a request signal (None for packet signals).
pub(super) fn short_unit(signal: &str) -> Option<&'static str> {
    SIGNALS.iter().find(|s| s.0 == signal).map(|s| s.2)
}

/// Who sent a request flood, as the page shows it.
#[derive(Debug, Serialize)]
pub(super) struct RequestsView {
    /// The event the lists come from (`start`, `update`, `end`).
    event: String,
    /// Every client listed completed a handshake.
    verified: bool,
    clients: Vec<ClientRow>,
    /// What the listed clients carry and how many were counted, as a sentence.
    share: String,
    /// Requests inside TLS were estimated: say so (`http_requests` alerts).
    tls_estimated: bool,
    details: Vec<DetailTable>,
}

#[derive(Debug, Serialize)]
struct ClientRow {
    ip: String,
    requests: String,
    connections: String,
    held_s: String,
}

#[derive(Debug, Serialize)]
struct DetailTable {
    title: String,
    column: String,
    rows: Vec<(String, String)>,
}

/// The requests evidence of alert `a`, from the latest event that has it (None for other
/// alerts).
pub(super) fn view(a: &AlertRecord) -> Option<RequestsView> {
    let (event, r) = a
        .end
        .iter()
        .chain(a.updates.iter().rev())
        .chain(a.start.iter())
        .find_map(|e: &EventRecord| Some((e.event.as_str(), e.requests.as_ref()?)))?;
    let clients: Vec<ClientRow> = r
        .clients
        .iter()
        .take(MAX_CLIENT_ROWS)
        .map(|c| ClientRow {
            ip: c.ip.clone(),
            requests: count(u64::from(c.requests)),
            connections: count(u64::from(c.connections)),
            held_s: count(u64::from(c.held_s)),
        })
        .collect();
    Some(RequestsView {
        event: event.to_string(),
        verified: r.verified_sources,
        share: share(r, &a.signal),
        tls_estimated: r.tls_requests_estimated && a.signal == "http_requests",
        clients,
        details: details(r),
    })
}

/// "The 4 clients the alert names carry 97 % of the requests (http_requests) …; 37 clients
/// seen."
fn share(r: &RequestRecord, signal: &str) -> String {
    let what = match signal {
        "handshakes" => "the handshakes",
        "incomplete_heads" => "the time request heads were held open",
        _ => "the requests",
    };
    let listed = match r.clients.len() {
        1 => "The client the alert names carries".to_string(),
        n if n > MAX_CLIENT_ROWS => {
            format!("The {n} clients the alert names (the heaviest {MAX_CLIENT_ROWS} listed) carry")
        }
        n => format!("The {n} clients the alert names carry"),
    };
    let seen = match r.clients_seen {
        1 => "1 client seen".to_string(),
        n => format!("{} clients seen", count(n)),
    };
    format!(
        "{listed} {} % of {what} ({signal}) since the victim came near its threshold; {seen}.",
        si(r.top_share * 100.0)
    )
}

/// The tables of paths, hosts, user agents and fingerprints that have rows.
fn details(r: &RequestRecord) -> Vec<DetailTable> {
    [
        ("Paths", "path", &r.paths),
        ("Hosts and TLS server names", "host", &r.hosts),
        ("User agents", "user agent", &r.user_agents),
        ("TLS fingerprints (JA4)", "fingerprint", &r.fingerprints),
    ]
    .into_iter()
    .filter(|(_, _, v)| !v.is_empty())
    .map(
        |(title, column, v): (&str, &str, &Vec<DetailRecord>)| DetailTable {
            title: title.to_string(),
            column: column.to_string(),
            rows: v
                .iter()
                .take(MAX_DETAIL_ROWS)
                .map(|d| (d.value.clone(), count(u64::from(d.requests))))
                .collect(),
        },
    )
    .collect()
}

/// The nginx snippet as lines to paste, each part under a comment saying where it goes: the
/// `*_zone` lines in the `http` block, the rest where the site is served.
pub(super) fn nginx_lines(n: &NginxRecord) -> Vec<String> {
    let (zones, uses): (Vec<&String>, Vec<&String>) =
        n.limit.iter().partition(|l| l.contains("_zone "));
    let mut out = Vec::new();
    if !zones.is_empty() {
        out.push("# in the http block".to_string());
        out.extend(zones.into_iter().cloned());
    }
    if !uses.is_empty() || !n.deny.is_empty() {
        out.push("# in the server or location block of the site".to_string());
        out.extend(uses.into_iter().cloned());
        out.extend(n.deny.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record::ClientRecord;

    fn record() -> RequestRecord {
        RequestRecord {
            verified_sources: true,
            clients: vec![ClientRecord {
                ip: "203.0.113.7".into(),
                requests: 12_345,
                connections: 12,
                held_s: 0,
            }],
            top_share: 0.9712,
            clients_seen: 37,
            tls_requests_estimated: true,
            paths: vec![DetailRecord {
                value: "/".into(),
                requests: 12_000,
            }],
            ..RequestRecord::default()
        }
    }

    #[test]
    fn the_share_sentence_names_the_signal_and_the_clients_seen() {
        assert_eq!(
            share(&record(), "http_requests"),
            "The client the alert names carries 97.1 % of the requests (http_requests) since the victim \
             came near its threshold; 37 clients seen."
        );
    }

    #[test]
    fn only_tables_with_rows_are_shown() {
        let d = details(&record());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].rows, vec![("/".to_string(), "12,000".to_string())]);
    }

    #[test]
    fn the_nginx_zone_goes_in_the_http_block() {
        let n = NginxRecord {
            deny: vec!["deny 203.0.113.7;".into()],
            limit: vec![
                "limit_conn_zone $binary_remote_addr zone=floodwatch_conn:10m;".into(),
                "limit_conn floodwatch_conn 8;".into(),
            ],
        };
        assert_eq!(
            nginx_lines(&n),
            [
                "# in the http block",
                "limit_conn_zone $binary_remote_addr zone=floodwatch_conn:10m;",
                "# in the server or location block of the site",
                "limit_conn floodwatch_conn 8;",
                "deny 203.0.113.7;",
            ]
        );
    }

    #[test]
    fn request_signals_have_their_own_units() {
        assert_eq!(axis_unit("http_requests"), Some("requests/s"));
        assert_eq!(short_unit("incomplete_heads"), Some("held"));
        assert_eq!(axis_unit("syn"), None);
    }
}
