//! The HTML page of a [`Recording`]: a view model of display strings built here, charts from
//! [`super::plot`], laid out by a minijinja template (`page.html`, embedded) with HTML
//! auto-escaping on: everything that comes from a capture (addresses, ids, rules, file names) is
//! untrusted text.
//!
//! The page is bounded whatever the recording holds: the [`RenderOptions::max_detailed`] most
//! severe alerts get a section with charts, the table lists at most [`MAX_TABLE_ROWS`] alerts (the
//! most severe, in order of start) and says how many it leaves out, and every chart has a bounded
//! number of points.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::format::{count, duration, same_day, si, si_unit, utc_datetime, utc_time};
use super::plot::{self, AlertSpan, ChartError, Marker, RatePoint};
use super::{AlertRecord, EventRecord, KeySeries, Recording};

mod requests;

/// Alerts the table lists at most: 10,000 alerts make a page of about a megabyte, not ten.
pub const MAX_TABLE_ROWS: usize = 2000;
/// Rows of a detailed alert's top sources / ports tables.
const MAX_TOP_ROWS: usize = 10;
/// Victims named in the header (the rest are counted).
const MAX_VICTIMS_NAMED: usize = 12;
/// A signature that is not the usual list of fields is shown as JSON, cut to this many bytes.
const MAX_RAW_SIGNATURE: usize = 4096;

const TEMPLATE: &str = include_str!("page.html");

/// How a page is made.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// The page's title; None: from the inputs.
    pub title: Option<String>,
    /// Alerts drawn in full (the most severe); the rest are rows of the table only.
    pub max_detailed: usize,
    /// Where relative links (the evidence files) start from; None: evidence paths as recorded.
    pub links: Option<LinkBase>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            title: None,
            max_detailed: 20,
            links: None,
        }
    }
}

/// What evidence links are made relative to.
#[derive(Clone, Debug)]
pub struct LinkBase {
    /// The directory relative evidence paths of the recording are relative to (absolute).
    pub cwd: PathBuf,
    /// The directory the page is written to (absolute).
    pub page_dir: PathBuf,
}

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render the report: {0}")]
    Template(#[from] minijinja::Error),
    #[error("cannot render the report: {0}")]
    Chart(#[from] ChartError),
}

/// The page of `rec`.
pub fn render_html(rec: &Recording, opts: &RenderOptions) -> Result<String, RenderError> {
    let page = Page::new(rec, opts)?;
    let mut env = minijinja::Environment::new();
    // every `{{ }}` is HTML-escaped whatever the template's name
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("page.html", TEMPLATE)?;
    let html = env
        .get_template("page.html")?
        .render(minijinja::Value::from(minijinja::value::Serde(&page)))?;
    Ok(html)
}

/// Everything the template shows, as display strings.
#[derive(Debug, Serialize)]
struct Page {
    /// One alert's page (`--report-dir`): the header shows the alert's numbers.
    alert_page: bool,
    title: String,
    generator: String,
    inputs: Vec<String>,
    period: String,
    span: String,
    frames: String,
    packets: String,
    bytes: String,
    distinct_sources: String,
    peak_pps: String,
    peak_bps: String,
    peak_step: String,
    victims: Vec<String>,
    victims_total: usize,
    classes: Vec<NameCount>,
    counters: Vec<CounterView>,
    no_packets: bool,
    stopped: Option<String>,
    stopped_at: Option<String>,
    traffic_packets_svg: Option<String>,
    traffic_bits_svg: Option<String>,
    labelled: Vec<Row>,
    alerts_total: usize,
    detailed: Vec<Detail>,
    detailed_left_out: usize,
    max_detailed: usize,
    rows: Vec<Row>,
    rows_left_out: usize,
    time_header: String,
    /// `<svg>` charts on the page (the browser check counts them).
    charts: usize,
}

#[derive(Debug, Serialize)]
struct NameCount {
    name: String,
    count: usize,
}

#[derive(Debug, Serialize)]
struct CounterView {
    name: String,
    value: String,
    nonzero: bool,
}

/// A row of the alert table.
#[derive(Clone, Debug, Serialize)]
struct Row {
    number: usize,
    id: String,
    scope: String,
    key: String,
    class: String,
    start: String,
    end: String,
    duration: String,
    peak_pps: String,
    severity: String,
    packets: String,
    /// The anchor of its detailed section, if it has one.
    anchor: Option<String>,
}

/// The section of a detailed alert.
#[derive(Debug, Serialize)]
struct Detail {
    number: usize,
    anchor: String,
    id: String,
    scope: String,
    key: String,
    class: String,
    facts: Vec<(String, String)>,
    rate_svg: String,
    class_svg: Option<String>,
    class_note: Option<String>,
    peers_svg: String,
    series_note: Option<String>,
    tops: Vec<TopTable>,
    nft: Vec<String>,
    bpf: Option<String>,
    flowspec: Vec<String>,
    signature: Vec<SignatureRow>,
    signature_raw: Option<String>,
    evidence: Option<Evidence>,
    /// Request floods: who sent it and what they asked for.
    requests: Option<requests::RequestsView>,
    /// Request floods: the nginx snippet, a line each.
    nginx: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TopTable {
    title: String,
    column: String,
    event: String,
    rows: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct SignatureRow {
    field: String,
    value: String,
    share: String,
}

#[derive(Debug, Serialize)]
struct Evidence {
    href: String,
    text: String,
}

/// How the recording's times are written: the time of day when it all falls on one UTC day (its
/// date in the headers), else date and time.
#[derive(Clone, Copy)]
struct Clock {
    one_day: bool,
}

impl Clock {
    fn new(rec: &Recording) -> Clock {
        let mut ends = rec
            .first_ns
            .into_iter()
            .chain(rec.last_ns)
            .chain(rec.alerts.iter().filter_map(|a| a.start_ns()))
            .chain(rec.alerts.iter().filter_map(|a| a.end_ns()));
        let one_day = match ends.next() {
            Some(first) => ends.all(|t| same_day(first, t)),
            None => true,
        };
        Clock { one_day }
    }

    fn at(self, ns: u64) -> String {
        if self.one_day {
            utc_time(ns, 3)
        } else {
            utc_datetime(ns, 3)
        }
    }
}

/// The traffic charts and the table rows of the alerts numbered on them.
struct TrafficView {
    packets_svg: Option<String>,
    bits_svg: Option<String>,
    labelled: Vec<Row>,
}

/// What the parts of the page share: the recording, how times are written, which alerts have a
/// section.
struct Ctx<'a> {
    rec: &'a Recording,
    clock: Clock,
    by_severity: Vec<usize>,
    detailed: HashSet<usize>,
}

impl Ctx<'_> {
    /// The table row of alert `i`.
    fn row(&self, i: usize) -> Row {
        alert_row(
            &self.rec.alerts[i],
            i + 1,
            self.rec.last_ns,
            self.clock,
            self.detailed.contains(&i),
        )
    }

    /// The whole input's traffic charts (none without packets).
    fn traffic(&self) -> Result<TrafficView, RenderError> {
        if self.rec.traffic.is_empty() {
            return Ok(TrafficView {
                packets_svg: None,
                bits_svg: None,
                labelled: Vec::new(),
            });
        }
        let (spans, alert_of) = self.spans();
        // spans hold only alerts with a start event: their indices in order of severity
        let span_of: BTreeMap<usize, usize> =
            alert_of.iter().enumerate().map(|(s, &i)| (i, s)).collect();
        let order: Vec<usize> = self
            .by_severity
            .iter()
            .filter_map(|i| span_of.get(i).copied())
            .collect();
        let t = plot::traffic_charts(&self.rec.traffic, &spans, &order)?;
        Ok(TrafficView {
            packets_svg: Some(t.packets_svg),
            bits_svg: Some(t.bits_svg),
            labelled: t.labelled.iter().map(|&s| self.row(alert_of[s])).collect(),
        })
    }

    /// The spans of the alerts that have a start (an open one lasts to the last packet), and the
    /// alert index of each.
    fn spans(&self) -> (Vec<AlertSpan>, Vec<usize>) {
        self.rec
            .alerts
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let start_ns = a.start_ns()?;
                let end_ns = a.end_ns().or(self.rec.last_ns).unwrap_or(start_ns);
                let span = AlertSpan {
                    number: i + 1,
                    start_ns,
                    end_ns,
                };
                Some((span, i))
            })
            .unzip()
    }
}

impl Page {
    fn new(rec: &Recording, opts: &RenderOptions) -> Result<Page, RenderError> {
        let by_severity = by_severity(&rec.alerts);
        let detailed_idx = in_start_order(&by_severity, opts.max_detailed);
        let ctx = Ctx {
            rec,
            clock: Clock::new(rec),
            detailed: detailed_idx.iter().copied().collect(),
            by_severity,
        };
        let rows: Vec<Row> = in_start_order(&ctx.by_severity, MAX_TABLE_ROWS)
            .into_iter()
            .map(|i| ctx.row(i))
            .collect();
        let traffic = ctx.traffic()?;
        let detailed = detailed_idx
            .iter()
            .map(|&i| detail(&rec.alerts[i], i + 1, rec.last_ns, ctx.clock, opts))
            .collect::<Result<Vec<Detail>, RenderError>>()?;
        let charts = 2 * usize::from(traffic.packets_svg.is_some())
            + detailed.iter().map(Detail::charts).sum::<usize>();
        let (victims, victims_total) = victims(&rec.alerts);
        let alert_peak = rec
            .alerts
            .first()
            .and_then(|a| a.end.as_ref().or(a.start.as_ref()))
            .map_or(0.0, |e| e.peak_pps);
        let alert_distinct = rec
            .alerts
            .first()
            .and_then(|a| a.end.as_ref().or(a.start.as_ref()))
            .map_or(0, |e| e.distinct_peers);
        Ok(Page {
            alert_page: rec.alert_page,
            title: title(rec, opts),
            generator: rec.generator.clone(),
            inputs: rec.inputs.clone(),
            period: period(rec),
            span: match (rec.first_ns, rec.last_ns) {
                (Some(a), Some(b)) => duration(b.saturating_sub(a) as f64 / 1e9),
                _ => "–".to_string(),
            },
            frames: count(rec.frames),
            packets: count(rec.packets),
            bytes: format!("{} ({})", si_unit(rec.bytes as f64, "B"), count(rec.bytes)),
            distinct_sources: format!(
                "≈ {}",
                si(if rec.alert_page {
                    alert_distinct as f64
                } else {
                    rec.distinct_sources as f64
                })
            ),
            peak_pps: match (rec.alert_page, rec.alerts.first()) {
                (true, Some(a)) => peak_with_unit(a, alert_peak),
                (true, None) => si_unit(alert_peak, "pkt/s"),
                (false, _) => si_unit(rec.traffic.peak_pps(), "pkt/s"),
            },
            peak_bps: si_unit(rec.traffic.peak_bps(), "bit/s"),
            peak_step: duration(rec.traffic.step_ns as f64 / 1e9),
            victims,
            victims_total,
            classes: classes(&rec.alerts),
            counters: counters(rec),
            no_packets: rec.traffic.is_empty(),
            stopped: rec.stopped.clone(),
            stopped_at: rec
                .stopped
                .as_ref()
                .and(rec.last_ns)
                .map(|ns| utc_datetime(ns, 6)),
            traffic_packets_svg: traffic.packets_svg,
            traffic_bits_svg: traffic.bits_svg,
            labelled: traffic.labelled,
            alerts_total: rec.alerts.len(),
            detailed_left_out: rec.alerts.len() - detailed.len(),
            detailed,
            max_detailed: opts.max_detailed,
            rows_left_out: rec.alerts.len() - rows.len(),
            rows,
            time_header: match (ctx.clock.one_day, rec.first_ns) {
                (true, Some(ns)) => format!("UTC, {}", super::format::utc_date(ns)),
                _ => "UTC".to_string(),
            },
            charts,
        })
    }
}

impl Detail {
    /// Its `<svg>` charts.
    fn charts(&self) -> usize {
        2 + usize::from(self.class_svg.is_some())
    }
}

fn counters(rec: &Recording) -> Vec<CounterView> {
    rec.counters
        .iter()
        .map(|c| CounterView {
            name: c.name.clone(),
            value: count(c.value),
            nonzero: c.value > 0,
        })
        .collect()
}

/// Alert indices, most severe first (ties: earlier start first).
fn by_severity(alerts: &[AlertRecord]) -> Vec<usize> {
    let severity: Vec<f64> = alerts.iter().map(AlertRecord::severity).collect();
    let mut idx: Vec<usize> = (0..alerts.len()).collect();
    idx.sort_by(|&a, &b| severity[b].total_cmp(&severity[a]).then(a.cmp(&b)));
    idx
}

/// The first `n` of `order`, in order of start (index order).
fn in_start_order(order: &[usize], n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = order.iter().copied().take(n).collect();
    v.sort_unstable();
    v
}

fn title(rec: &Recording, opts: &RenderOptions) -> String {
    if let Some(t) = &opts.title {
        return t.clone();
    }
    if let (true, Some(a)) = (rec.alert_page, rec.alerts.first()) {
        return format!("Alert report: {} on {} ({})", a.class, a.key, a.scope);
    }
    let names: Vec<String> = rec
        .inputs
        .iter()
        .map(|i| {
            Path::new(i)
                .file_name()
                .map_or_else(|| i.clone(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    match names.len() {
        0 => "floodwatch incident report".to_string(),
        1..=3 => format!("Incident report: {}", names.join(", ")),
        n => format!(
            "Incident report: {} and {} more",
            names[..2].join(", "),
            n - 2
        ),
    }
}

fn period(rec: &Recording) -> String {
    match (rec.first_ns, rec.last_ns) {
        (Some(a), Some(b)) if same_day(a, b) => {
            format!("{} – {} UTC", utc_datetime(a, 3), utc_time(b, 3))
        }
        (Some(a), Some(b)) => format!("{} – {} UTC", utc_datetime(a, 3), utc_datetime(b, 3)),
        _ => "no packets".to_string(),
    }
}

/// Distinct keys of alerts on destinations, in order of first alert: the first few, and how many.
fn victims(alerts: &[AlertRecord]) -> (Vec<String>, usize) {
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    for a in alerts.iter().filter(|a| a.scope.starts_with("dst")) {
        if seen.insert(a.key.as_str()) {
            keys.push(a.key.clone());
        }
    }
    let total = keys.len();
    keys.truncate(MAX_VICTIMS_NAMED);
    (keys, total)
}

/// Alerts by class, most first.
fn classes(alerts: &[AlertRecord]) -> Vec<NameCount> {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for a in alerts {
        *by.entry(a.class.as_str()).or_default() += 1;
    }
    let mut v: Vec<NameCount> = by
        .into_iter()
        .map(|(name, count)| NameCount {
            name: name.to_string(),
            count,
        })
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.count));
    v
}

/// The event with the alert's totals: its end, else its last update, else its start.
fn last_event(a: &AlertRecord) -> Option<&EventRecord> {
    a.end.as_ref().or(a.updates.last()).or(a.start.as_ref())
}

fn peak_pps(a: &AlertRecord) -> f64 {
    last_event(a).map_or(0.0, |e| e.peak_pps)
}

fn alert_row(
    a: &AlertRecord,
    number: usize,
    last_ns: Option<u64>,
    clock: Clock,
    detailed: bool,
) -> Row {
    let start = a.start_ns();
    let end = a.end_ns();
    let dur = match (start, end.or(last_ns)) {
        (Some(s), Some(e)) => duration(e.saturating_sub(s) as f64 / 1e9),
        _ => "–".to_string(),
    };
    Row {
        number,
        id: a.id.clone(),
        scope: a.scope.clone(),
        key: a.key.clone(),
        class: a.class.clone(),
        start: start.map_or_else(|| "–".to_string(), |t| clock.at(t)),
        end: end.map_or_else(|| "open at the end".to_string(), |t| clock.at(t)),
        duration: dur,
        // the column is in pkt/s: a rate of bytes or requests says its own unit
        peak_pps: match short_unit(&a.signal) {
            "pkt/s" => si(peak_pps(a)),
            _ => peak_with_unit(a, peak_pps(a)),
        },
        severity: format!("{}×", si(a.severity())),
        packets: last_event(a).map_or_else(|| "–".to_string(), |e| count(e.packets)),
        anchor: detailed.then(|| anchor(number)),
    }
}

fn anchor(number: usize) -> String {
    format!("alert-{number}")
}

/// The unit of an alert signal's rate on a chart's axis.
fn rate_unit(signal: &str) -> &'static str {
    if signal == "bytes" {
        "bytes/s"
    } else {
        requests::axis_unit(signal).unwrap_or("packets/s")
    }
}

/// The short unit of an alert signal's rate: B/s for bytes, a request signal's own, else pkt/s.
fn short_unit(signal: &str) -> &'static str {
    if signal == "bytes" {
        "B/s"
    } else {
        requests::short_unit(signal).unwrap_or("pkt/s")
    }
}

/// An alert's peak rate with its unit ([`short_unit`]).
fn peak_with_unit(a: &AlertRecord, peak: f64) -> String {
    si_unit(peak, short_unit(&a.signal))
}

/// An alert's events in order: start, updates, end.
fn events_of(a: &AlertRecord) -> Vec<&EventRecord> {
    a.start
        .iter()
        .chain(a.updates.iter())
        .chain(a.end.iter())
        .collect()
}

fn markers_of(events: &[&EventRecord]) -> Vec<(u64, Marker)> {
    events
        .iter()
        .map(|e| {
            let kind = match e.event.as_str() {
                "start" => Marker::Start,
                "end" => Marker::End,
                _ => Marker::Update,
            };
            (e.ts_ns, kind)
        })
        .collect()
}

/// The lines of an alert's rate and peers charts: from its key series, else from its events
/// (saying so).
struct AlertLines {
    rate: Vec<RatePoint>,
    peers: Vec<(u64, f64)>,
    note: Option<String>,
}

impl AlertLines {
    fn new(series: Option<&KeySeries>, events: &[&EventRecord]) -> AlertLines {
        match series {
            Some(s) => AlertLines {
                rate: s
                    .points
                    .iter()
                    .map(|p| RatePoint {
                        ts_ns: p.ts_ns,
                        rate: p.rate,
                        baseline: p.baseline,
                        threshold: p.threshold,
                    })
                    .collect(),
                peers: s
                    .points
                    .iter()
                    .map(|p| (p.ts_ns, p.distinct_peers as f64))
                    .collect(),
                note: None,
            },
            None => AlertLines {
                // an end event's rate is its average over the alert: left out
                rate: events
                    .iter()
                    .filter(|e| e.event != "end")
                    .map(|e| RatePoint {
                        ts_ns: e.ts_ns,
                        rate: e.pps,
                        baseline: e.baseline_pps,
                        threshold: e.threshold_pps,
                    })
                    .collect(),
                peers: events
                    .iter()
                    .map(|e| (e.ts_ns, e.distinct_peers as f64))
                    .collect(),
                note: Some(format!(
                    "Drawn from the alert's events only: a recording keeps the key's series for \
                     the {} alerts furthest over their threshold.",
                    super::record::MAX_SERIES
                )),
            },
        }
    }
}

fn detail(
    a: &AlertRecord,
    number: usize,
    last_ns: Option<u64>,
    clock: Clock,
    opts: &RenderOptions,
) -> Result<Detail, RenderError> {
    let events = events_of(a);
    let markers = markers_of(&events);
    let peers_what = if a.scope.starts_with("src") {
        "distinct destinations"
    } else {
        "distinct sources"
    };
    let series = a.series.as_ref().filter(|s| !s.points.is_empty());
    let lines = AlertLines::new(series, &events);
    let class_svg = series
        .map(|s| plot::class_chart(&s.points, &markers))
        .transpose()?;
    let class_note = match (&class_svg, &a.start) {
        (None, Some(s)) => Some(format!(
            "At its start, {} % of the key's packets were of the alert's signal ({}).",
            si(s.class_share * 100.0),
            a.signal
        )),
        _ => None,
    };
    let mitigation = a.mitigation.as_ref();
    Ok(Detail {
        number,
        anchor: anchor(number),
        id: a.id.clone(),
        scope: a.scope.clone(),
        key: a.key.clone(),
        class: a.class.clone(),
        facts: facts(a, last_ns, clock, peers_what),
        rate_svg: plot::alert_rate_chart(&lines.rate, &markers, &a.signal, rate_unit(&a.signal))?,
        class_svg,
        class_note,
        peers_svg: plot::peers_chart(&lines.peers, &markers, peers_what)?,
        series_note: lines.note,
        tops: tops(a),
        nft: mitigation.map(|m| m.nft.clone()).unwrap_or_default(),
        bpf: mitigation.map(|m| m.bpf.clone()).filter(|b| !b.is_empty()),
        flowspec: mitigation.map(|m| m.flowspec.clone()).unwrap_or_default(),
        signature: signature_rows(a.signature.as_ref()),
        signature_raw: signature_raw(a.signature.as_ref()),
        evidence: a
            .evidence
            .as_ref()
            .map(|e| evidence(e, opts.links.as_ref())),
        requests: requests::view(a),
        nginx: mitigation
            .and_then(|m| m.nginx.as_ref())
            .map(requests::nginx_lines)
            .unwrap_or_default(),
    })
}

fn facts(
    a: &AlertRecord,
    last_ns: Option<u64>,
    clock: Clock,
    peers_what: &str,
) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = Vec::new();
    let mut add = |k: &str, v: String| f.push((k.to_string(), v));
    let unit = short_unit(&a.signal);
    if let Some(s) = &a.start {
        add("start", clock.at(s.ts_ns));
    }
    match &a.end {
        Some(e) => {
            let why = e.reason.as_deref().unwrap_or("below threshold");
            add(
                "end",
                format!("{} ({})", clock.at(e.ts_ns), why.replace('_', " ")),
            );
        }
        None => add("end", "still active when the input ended".to_string()),
    }
    let dur = match (a.start_ns(), a.end_ns().or(last_ns)) {
        (Some(s), Some(e)) => duration(e.saturating_sub(s) as f64 / 1e9),
        _ => "–".to_string(),
    };
    add("duration", dur);
    add("signal", a.signal.clone());
    if let Some(s) = &a.start {
        add("threshold at start", si_unit(s.threshold_pps, unit));
        add("learned baseline at start", si_unit(s.baseline_pps, unit));
    }
    add("peak rate", peak_with_unit(a, peak_pps(a)));
    add("peak / threshold", format!("{}×", si(a.severity())));
    if let Some(e) = last_event(a) {
        add("packets", count(e.packets));
        add("bytes", si_unit(e.bytes as f64, "B"));
        let peers = match (e.distinct_peers, requests::short_unit(&a.signal)) {
            // a request signal alone does not watch the key's packets: nothing was counted
            (0, Some(_)) => "not counted (a request signal: see the clients)".to_string(),
            (n, _) => format!("≈ {}", si(n as f64)),
        };
        add(peers_what, peers);
    }
    add("updates", a.updates.len().to_string());
    f
}

/// The top tables of an alert, each from the latest event that has it.
fn tops(a: &AlertRecord) -> Vec<TopTable> {
    let events: Vec<&EventRecord> = a
        .end
        .iter()
        .chain(a.updates.iter().rev())
        .chain(a.start.iter())
        .collect();
    let src_scope = a.scope.starts_with("src");
    let peers_title = if src_scope {
        "Top destinations"
    } else {
        "Top sources"
    };
    let mut out = Vec::new();
    let mut table = |title: &str, column: &str, rows: Option<(&str, Vec<(String, String)>)>| {
        if let Some((event, rows)) = rows {
            out.push(TopTable {
                title: title.to_string(),
                column: column.to_string(),
                event: event.to_string(),
                rows,
            });
        }
    };
    let pick = |get: &dyn Fn(&EventRecord) -> Vec<(String, String)>| {
        events.iter().find_map(|e| {
            let mut rows = get(e);
            rows.truncate(MAX_TOP_ROWS);
            (!rows.is_empty()).then_some((e.event.as_str(), rows))
        })
    };
    let peers = |v: &[super::record::PeerRecord]| -> Vec<(String, String)> {
        v.iter().map(|p| (p.ip.clone(), count(p.packets))).collect()
    };
    let ports = |v: &[super::record::PortRecord]| -> Vec<(String, String)> {
        v.iter()
            .map(|p| (p.port.to_string(), count(p.packets)))
            .collect()
    };
    table(peers_title, "address", pick(&|e| peers(&e.top_peers)));
    table("Destination ports", "port", pick(&|e| ports(&e.top_ports)));
    table("Source ports", "port", pick(&|e| ports(&e.top_src_ports)));
    table(
        "Busiest hosts of the subnet",
        "address",
        pick(&|e| peers(&e.top_hosts)),
    );
    out
}

/// The usual signature (a list of `{field, value, share}`) as rows.
fn signature_rows(sig: Option<&serde_json::Value>) -> Vec<SignatureRow> {
    let Some(list) = sig.and_then(|s| s.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|f| {
            let field = f.get("field")?.as_str()?.to_string();
            let value = match f.get("value")? {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let share = f
                .get("share")
                .and_then(|s| s.as_f64())
                .map_or_else(|| "–".to_string(), |s| format!("{} %", si(s * 100.0)));
            Some(SignatureRow {
                field,
                value,
                share,
            })
        })
        .collect()
}

/// A signature that is not a list of fields, as JSON (bounded).
fn signature_raw(sig: Option<&serde_json::Value>) -> Option<String> {
    let sig = sig.filter(|s| !s.is_null())?;
    if !signature_rows(Some(sig)).is_empty() || sig.as_array().is_some_and(|a| a.is_empty()) {
        return None;
    }
    let mut s = serde_json::to_string_pretty(sig).unwrap_or_default();
    if s.len() > MAX_RAW_SIGNATURE {
        let mut cut = MAX_RAW_SIGNATURE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" …");
    }
    Some(s)
}

fn evidence(path: &str, links: Option<&LinkBase>) -> Evidence {
    let href = match links {
        Some(base) => {
            let p = Path::new(path);
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.cwd.join(p)
            };
            relative_path(&base.page_dir, &abs)
        }
        None => path.to_string(),
    };
    Evidence {
        href: percent_encode_path(&href),
        text: path.to_string(),
    }
}

/// `target` relative to the directory `from` (both absolute), `/`-separated; `.` and `..` are
/// resolved lexically.
pub fn relative_path(from: &Path, target: &Path) -> String {
    fn parts(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::Normal(s) => v.push(s.to_string_lossy().into_owned()),
                Component::ParentDir => {
                    v.pop();
                }
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        v
    }
    let (f, t) = (parts(from), parts(target));
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out: Vec<&str> = vec![".."; f.len() - common];
    out.extend(t[common..].iter().map(String::as_str));
    out.join("/")
}

/// A path as a URL path: everything but unreserved characters and `/` percent-encoded.
fn percent_encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
