//! The report's charts: plotters' SVG backend, one `<svg>` string a chart.
//!
//! Colours follow the page's theme: every colour is drawn as a sentinel ([`Ink`]) that `theme`
//! turns into `currentColor` or a CSS variable afterwards, so one SVG reads in light and dark mode.
//! Nothing from the capture (keys, ids) is written into a chart: its text is numbers, times and
//! fixed names. Every chart has a legend above its plot (never over the data), a time axis with
//! clock-friendly ticks in UTC, and SI prefixes on the value axis. Point counts are bounded: the
//! whole input's traffic is drawn with at most [`MAX_DRAWN_STEPS`] steps, alert spans are merged
//! where they touch at the chart's resolution, and key series hold at most 256 points.

use std::borrow::Cow;
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::format::{si, time_axis_desc, time_ticks};
use super::series::{TrafficSeries, TRAFFIC_CLASSES};
use super::SeriesPoint;

/// A full-width chart, px (the page is read at 1280 px).
pub const FULL: (u32, u32) = (1200, 300);
/// One of two charts side by side, px.
pub const HALF: (u32, u32) = (592, 250);
/// Steps of the whole input's traffic drawn at most (neighbouring steps merge beyond it): about
/// three pixels a step on a full-width chart.
pub const MAX_DRAWN_STEPS: usize = 400;
/// Points of a line drawn at most (a recording's key series hold 256; one read from a file could
/// hold any number): neighbours merge beyond it, keeping their peak.
pub const MAX_DRAWN_POINTS: usize = 512;
/// Alert numbers written over the traffic charts at most (the most severe that fit).
pub const MAX_SPAN_LABELS: usize = 24;
/// Rows of alert numbers above the traffic charts.
const LABEL_ROWS: usize = 2;
const LABEL_ROW_PX: i32 = 16;
/// Space kept between two alert numbers of a row, px.
const LABEL_GAP_PX: f64 = 8.0;

const FONT: &str = "sans-serif";
/// plotters writes `font-size` as size / 1.24: 15 gives 12 px text.
const LABEL_SIZE: f64 = 15.0;
/// Estimated width of one character of 12 px text, px (generous, so estimated boxes never overlap).
const CHAR_PX: i32 = 7;
const LEGEND_ROW_PX: i32 = 22;
const Y_LABEL_AREA: u32 = 64;
const X_LABEL_AREA: u32 = 44;
const MARGIN_RIGHT: u32 = 34;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the {chart} chart: {detail}")]
pub struct ChartError {
    chart: &'static str,
    detail: String,
}

fn chart_err<E: std::fmt::Display>(chart: &'static str) -> impl Fn(E) -> ChartError {
    move |e| ChartError {
        chart,
        detail: e.to_string(),
    }
}

/// A colour of the theme. Drawn as the sentinel `#0101NN` (NN its index), replaced by `theme`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ink {
    /// Text, axes: the page's text colour.
    Fg,
    Grid,
    /// The shade of an alert's span.
    Alert,
    /// A traffic class ([`TRAFFIC_CLASSES`] index).
    Class(u8),
    Rate,
    Threshold,
    Baseline,
    Start,
    Update,
    End,
    Peers,
}

impl Ink {
    const ALL: [Ink; 16] = [
        Ink::Fg,
        Ink::Grid,
        Ink::Alert,
        Ink::Class(0),
        Ink::Class(1),
        Ink::Class(2),
        Ink::Class(3),
        Ink::Class(4),
        Ink::Class(5),
        Ink::Rate,
        Ink::Threshold,
        Ink::Baseline,
        Ink::Start,
        Ink::Update,
        Ink::End,
        Ink::Peers,
    ];

    fn index(self) -> u8 {
        match self {
            Ink::Fg => 0,
            Ink::Grid => 1,
            Ink::Alert => 2,
            Ink::Class(i) => 3 + i.min(5),
            Ink::Rate => 9,
            Ink::Threshold => 10,
            Ink::Baseline => 11,
            Ink::Start => 12,
            Ink::Update => 13,
            Ink::End => 14,
            Ink::Peers => 15,
        }
    }

    /// The CSS value the sentinel becomes (the page's stylesheet defines the variables for both
    /// themes).
    fn css(self) -> String {
        match self {
            Ink::Fg => "currentColor".to_string(),
            Ink::Grid => "var(--grid)".to_string(),
            Ink::Alert => "var(--alert)".to_string(),
            Ink::Class(i) => format!("var(--class-{})", TRAFFIC_CLASSES[usize::from(i.min(5))]),
            Ink::Rate => "var(--rate)".to_string(),
            Ink::Threshold => "var(--threshold)".to_string(),
            Ink::Baseline => "var(--baseline)".to_string(),
            Ink::Start => "var(--start)".to_string(),
            Ink::Update => "var(--update)".to_string(),
            Ink::End => "var(--end)".to_string(),
            Ink::Peers => "var(--peers)".to_string(),
        }
    }

    /// The CSS variables the theme's colours refer to (the page must define each).
    pub fn css_variables() -> Vec<String> {
        Ink::ALL
            .iter()
            .filter_map(|i| {
                let css = i.css();
                css.strip_prefix("var(")
                    .and_then(|v| v.strip_suffix(')'))
                    .map(str::to_string)
            })
            .collect()
    }

    fn color(self) -> RGBColor {
        RGBColor(1, 1, self.index())
    }

    fn style(self, width: u32) -> ShapeStyle {
        self.color().stroke_width(width)
    }
}

/// Turns the sentinel colours of a chart into the theme's (`currentColor`, CSS variables) and
/// marks the `<svg>` as a chart with its accessible name.
fn theme(svg: &str, name: &str) -> String {
    let mut out = svg.to_string();
    for ink in Ink::ALL {
        let hex = format!("#0101{:02X}", ink.index());
        let css = ink.css();
        if ink == Ink::Fg {
            out = out.replace(&format!("fill=\"{hex}\""), "fill=\"currentColor\"");
            out = out.replace(&format!("stroke=\"{hex}\""), "stroke=\"currentColor\"");
        } else {
            out = out.replace(&format!("fill=\"{hex}\""), &format!("style=\"fill:{css}\""));
            out = out.replace(
                &format!("stroke=\"{hex}\""),
                &format!("style=\"stroke:{css}\""),
            );
        }
    }
    out.replacen(
        "<svg ",
        &format!("<svg class=\"chart\" role=\"img\" aria-label=\"{name}\" "),
        1,
    )
}

/// How a legend entry is drawn.
#[derive(Clone, Copy, Debug)]
enum Swatch {
    /// A filled square (areas, spans).
    Band,
    /// A short line.
    Line,
    /// A short vertical line (event markers).
    Marker,
}

struct LegendEntry {
    label: String,
    ink: Ink,
    swatch: Swatch,
}

fn entry(label: impl Into<String>, ink: Ink, swatch: Swatch) -> LegendEntry {
    LegendEntry {
        label: label.into(),
        ink,
        swatch,
    }
}

/// Positions of legend entries in rows that fit `width` px from `left`: (row, x) per entry, and
/// the number of rows.
fn legend_layout(entries: &[LegendEntry], left: i32, width: i32) -> (Vec<(i32, i32)>, i32) {
    let mut pos = Vec::with_capacity(entries.len());
    let (mut row, mut x) = (0, left);
    for e in entries {
        let w = 18 + CHAR_PX * e.label.chars().count() as i32 + 16;
        if x + w > width && x > left {
            row += 1;
            x = left;
        }
        pos.push((row, x));
        x += w;
    }
    (pos, if entries.is_empty() { 0 } else { row + 1 })
}

/// The sentinel of [`Ink::Fg`] as a constant (a text style keeps a reference to its colour).
const FG: RGBColor = RGBColor(1, 1, 0);

fn text_style(anchor: (HPos, VPos)) -> TextStyle<'static> {
    TextStyle::from((FONT, LABEL_SIZE).into_font())
        .color(&FG)
        .pos(Pos::new(anchor.0, anchor.1))
}

/// Draws the legend in the strip `area` (rows of [`LEGEND_ROW_PX`]).
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[LegendEntry],
    left: i32,
) -> Result<(), ChartError> {
    let err = chart_err("legend");
    let (width, _) = area.dim_in_pixel();
    let (pos, _) = legend_layout(entries, left, width as i32);
    for (e, (row, x)) in entries.iter().zip(pos) {
        let y = row * LEGEND_ROW_PX + LEGEND_ROW_PX / 2 + 2;
        match e.swatch {
            Swatch::Band => area
                .draw(&Rectangle::new(
                    [(x, y - 6), (x + 14, y + 6)],
                    e.ink.color().filled(),
                ))
                .map_err(&err)?,
            Swatch::Line => area
                .draw(&PathElement::new(vec![(x, y), (x + 14, y)], e.ink.style(3)))
                .map_err(&err)?,
            Swatch::Marker => area
                .draw(&PathElement::new(
                    vec![(x + 7, y - 7), (x + 7, y + 7)],
                    e.ink.style(2),
                ))
                .map_err(&err)?,
        }
        area.draw(&Text::new(
            e.label.clone(),
            (x + 18, y),
            text_style((HPos::Left, VPos::Center)),
        ))
        .map_err(&err)?;
    }
    Ok(())
}

/// A time axis: its range as seconds from the UTC day its start falls in (so that ticks land on
/// round clock times), and the ticks.
struct TimeAxis {
    base_ns: u64,
    from_ns: u64,
    to_ns: u64,
    step_ns: u64,
    ticks: Vec<f64>,
    several_days: bool,
}

const NS_PER_DAY: u64 = 86_400_000_000_000;

impl TimeAxis {
    /// An axis over `[from_ns, to_ns]` (at least a millisecond) with at most `max_ticks` ticks.
    fn new(from_ns: u64, to_ns: u64, max_ticks: usize) -> TimeAxis {
        let to_ns = to_ns.max(from_ns.saturating_add(1_000_000));
        let base_ns = from_ns - from_ns % NS_PER_DAY;
        let (step_ns, ticks) = time_ticks(from_ns, to_ns, max_ticks);
        TimeAxis {
            base_ns,
            from_ns,
            to_ns,
            step_ns,
            ticks: ticks.iter().map(|t| (t - base_ns) as f64 / 1e9).collect(),
            several_days: !super::format::same_day(from_ns, to_ns),
        }
    }

    /// The axis coordinate of `ns` (clamped to the axis).
    fn x(&self, ns: u64) -> f64 {
        (ns.clamp(self.from_ns, self.to_ns) - self.base_ns) as f64 / 1e9
    }

    fn range(&self) -> Range<f64> {
        self.x(self.from_ns)..self.x(self.to_ns)
    }

    fn label(&self, x: f64) -> String {
        let ns = self.base_ns + (x.max(0.0) * 1e9).round() as u64;
        super::format::tick_label(ns, self.step_ns, self.several_days)
    }

    fn desc(&self) -> String {
        time_axis_desc(self.from_ns, self.to_ns)
    }
}

/// The x coordinate of a time chart: seconds from the axis's base day, with the axis's own ticks
/// (plotters' f64 coordinate would put them at round numbers of seconds, not of a clock).
struct TimeCoord {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for TimeCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let frac = (value - self.range.start) / span;
        limit.0 + (frac * f64::from(limit.1 - limit.0) + 1e-3).floor() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

type TimeChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<TimeCoord, RangedCoordf64>>;

/// The highest value axis drawn: beyond any real rate, far below where f64 arithmetic on the
/// axis would overflow (a recording is read from a file: it can hold anything).
const Y_LIMIT: f64 = 1e18;

/// A value axis top: a little above the highest value, at least 1, at most [`Y_LIMIT`].
fn y_top(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        (max * 1.08).min(Y_LIMIT)
    } else {
        1.0
    }
}

/// The plot of a time chart in `area`: axes, grid, labels.
fn time_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    axis: &TimeAxis,
    y_max: f64,
    y_desc: &str,
) -> Result<TimeChart<'a, 'b>, ChartError> {
    let err = chart_err("time");
    let mut chart = ChartBuilder::on(area)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .margin_right(MARGIN_RIGHT)
        .margin_top(6)
        .build_cartesian_2d(
            TimeCoord {
                range: axis.range(),
                ticks: axis.ticks.clone(),
            },
            0.0..y_top(y_max),
        )
        .map_err(&err)?;
    let x_fmt = |x: &f64| axis.label(*x);
    let y_fmt = |y: &f64| si(*y);
    chart
        .configure_mesh()
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .y_labels(6)
        .x_desc(axis.desc())
        .y_desc(y_desc)
        .label_style(text_style((HPos::Center, VPos::Top)))
        .axis_desc_style(text_style((HPos::Center, VPos::Top)))
        .axis_style(Ink::Fg.style(1))
        .bold_line_style(Ink::Grid.style(1))
        .light_line_style(TRANSPARENT)
        .draw()
        .map_err(&err)?;
    Ok(chart)
}

/// Draws the legend at the top of a chart's drawing area (with `extra_px` left free below it)
/// and gives the area under it, for the plot.
fn with_legend<'b>(
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    entries: &[LegendEntry],
    extra_px: i32,
) -> Result<DrawingArea<SVGBackend<'b>, Shift>, ChartError> {
    let (width, _) = root.dim_in_pixel();
    let left = Y_LABEL_AREA as i32;
    let (_, rows) = legend_layout(entries, left, width as i32);
    let (top, plot) = root.split_vertically(rows * LEGEND_ROW_PX + 4 + extra_px);
    draw_legend(&top, entries, left)?;
    Ok(plot)
}

/// A line through `points` (already in chart coordinates).
fn draw_line(
    chart: &mut TimeChart<'_, '_>,
    points: Vec<(f64, f64)>,
    ink: Ink,
    width: u32,
) -> Result<(), ChartError> {
    chart
        .draw_series(LineSeries::new(points, ink.style(width)))
        .map_err(chart_err("line"))?;
    Ok(())
}

/// Draws a chart into a string and themes it.
fn render(
    size: (u32, u32),
    name: &str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root)?;
        root.present().map_err(chart_err("svg"))?;
    }
    Ok(theme(&svg, name))
}

/// What a traffic chart shows per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficMetric {
    /// Packets per second.
    Packets,
    /// Bits per second.
    Bits,
}

/// An alert on the traffic charts: its number (as in the table) and span.
#[derive(Clone, Copy, Debug)]
pub struct AlertSpan {
    pub number: usize,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// The two charts of the whole input's traffic, and which alerts carry their number on them.
#[derive(Debug)]
pub struct TrafficCharts {
    pub packets_svg: String,
    pub bits_svg: String,
    /// Indices into the spans given, of the alerts whose number is written over the charts, in
    /// order of time.
    pub labelled: Vec<usize>,
}

/// The whole input's traffic rate by class over time, in packets/s and bits/s, with every alert's
/// span shaded and the numbers of the most severe that fit written above them. `label_order`:
/// indices into `spans`, most severe first.
pub fn traffic_charts(
    traffic: &TrafficSeries,
    spans: &[AlertSpan],
    label_order: &[usize],
) -> Result<TrafficCharts, ChartError> {
    let drawn = DrawnTraffic::new(traffic);
    let axis = TimeAxis::new(drawn.start_ns, drawn.end_ns(), 10);
    let labels = place_labels(&axis, spans, label_order);
    let packets_svg = traffic_chart(&drawn, &axis, spans, &labels, TrafficMetric::Packets)?;
    let bits_svg = traffic_chart(&drawn, &axis, spans, &labels, TrafficMetric::Bits)?;
    let mut labelled: Vec<usize> = labels.iter().map(|l| l.span).collect();
    labelled.sort_by_key(|&i| (spans[i].start_ns, i));
    Ok(TrafficCharts {
        packets_svg,
        bits_svg,
        labelled,
    })
}

/// The traffic series as drawn: neighbouring steps merged to at most [`MAX_DRAWN_STEPS`].
struct DrawnTraffic {
    start_ns: u64,
    step_ns: u64,
    packets: Vec<[u64; 6]>,
    bytes: Vec<[u64; 6]>,
}

impl DrawnTraffic {
    fn new(t: &TrafficSeries) -> DrawnTraffic {
        let factor = t.packets.len().div_ceil(MAX_DRAWN_STEPS).max(1);
        let merge = |v: &[[u64; 6]]| -> Vec<[u64; 6]> {
            v.chunks(factor)
                .map(|chunk| {
                    let mut sum = [0u64; 6];
                    for row in chunk {
                        for (s, x) in sum.iter_mut().zip(row) {
                            *s = s.saturating_add(*x);
                        }
                    }
                    sum
                })
                .collect()
        };
        DrawnTraffic {
            start_ns: t.start_ns,
            step_ns: t.step_ns.max(1).saturating_mul(factor as u64),
            packets: merge(&t.packets),
            bytes: merge(&t.bytes),
        }
    }

    fn end_ns(&self) -> u64 {
        self.ns_of(self.packets.len().max(1))
    }

    /// The start of step `i`.
    fn ns_of(&self, i: usize) -> u64 {
        self.start_ns
            .saturating_add(self.step_ns.saturating_mul(i as u64))
    }

    /// Per step, the rate of each class (packets/s or bits/s).
    fn rates(&self, metric: TrafficMetric) -> Vec<[f64; 6]> {
        let secs = self.step_ns as f64 / 1e9;
        let (rows, scale) = match metric {
            TrafficMetric::Packets => (&self.packets, 1.0),
            TrafficMetric::Bits => (&self.bytes, 8.0),
        };
        rows.iter()
            .map(|row| row.map(|v| v as f64 * scale / secs))
            .collect()
    }
}

/// Adds the step `[x0, x1)` at height `y` to an outline: a run of equal heights stays one segment.
fn push_step(outline: &mut Vec<(f64, f64)>, x0: f64, x1: f64, y: f64) {
    match outline.last_mut() {
        Some(last) if last.1 == y => last.0 = x1,
        _ => outline.extend([(x0, y), (x1, y)]),
    }
}

/// An alert number placed above the traffic charts.
struct PlacedLabel {
    span: usize,
    row: usize,
    x: f64,
}

/// The pixel width of the plot of a full-width chart, and its left edge.
fn plot_px(size: (u32, u32)) -> (i32, i32) {
    let left = Y_LABEL_AREA as i32;
    (left, size.0 as i32 - MARGIN_RIGHT as i32 - left)
}

/// Places the numbers of the alerts in `order` (most severe first) in [`LABEL_ROWS`] rows above
/// the plot, each at its alert's start, skipping those that would touch one already placed.
fn place_labels(axis: &TimeAxis, spans: &[AlertSpan], order: &[usize]) -> Vec<PlacedLabel> {
    let (left, width) = plot_px(FULL);
    let range = axis.range();
    let span_s = (range.end - range.start).max(1e-9);
    let px = |x: f64| left as f64 + (x - range.start) / span_s * width as f64;
    let mut rows: Vec<Vec<(f64, f64)>> = vec![Vec::new(); LABEL_ROWS];
    let mut placed = Vec::new();
    for &i in order.iter().filter(|&&i| i < spans.len()) {
        if placed.len() == MAX_SPAN_LABELS {
            break;
        }
        let x = axis.x(spans[i].start_ns);
        let text_px = (CHAR_PX * (1 + digits(spans[i].number)) + 4) as f64;
        let (a, b) = (px(x), px(x) + text_px);
        if b > (left + width) as f64 + 8.0 {
            continue;
        }
        let free = rows.iter().position(|row| {
            row.iter()
                .all(|&(l, r)| b + LABEL_GAP_PX <= l || a >= r + LABEL_GAP_PX)
        });
        if let Some(row) = free {
            rows[row].push((a, b));
            placed.push(PlacedLabel { span: i, row, x });
        }
    }
    placed
}

fn digits(n: usize) -> i32 {
    n.to_string().len() as i32
}

/// Spans as drawn: clipped to the axis, at least two pixels wide, merged where they touch.
fn merged_spans(axis: &TimeAxis, spans: &[AlertSpan]) -> Vec<(f64, f64)> {
    let range = axis.range();
    let (_, width) = plot_px(FULL);
    let min_w = (range.end - range.start) / width.max(1) as f64 * 2.0;
    let mut xs: Vec<(f64, f64)> = spans
        .iter()
        .map(|s| {
            let a = axis.x(s.start_ns);
            let b = axis.x(s.end_ns.max(s.start_ns)).max(a + min_w);
            (a, b.min(range.end))
        })
        .collect();
    xs.sort_by(|p, q| p.0.total_cmp(&q.0));
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for (a, b) in xs {
        match merged.last_mut() {
            Some(last) if a <= last.1 + min_w / 2.0 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

fn traffic_chart(
    drawn: &DrawnTraffic,
    axis: &TimeAxis,
    spans: &[AlertSpan],
    labels: &[PlacedLabel],
    metric: TrafficMetric,
) -> Result<String, ChartError> {
    let (y_desc, name) = match metric {
        TrafficMetric::Packets => ("packets/s", "traffic by class, packets per second"),
        TrafficMetric::Bits => ("bits/s", "traffic by class, bits per second"),
    };
    let rates = drawn.rates(metric);
    let present: Vec<usize> = (0..TRAFFIC_CLASSES.len())
        .filter(|&c| rates.iter().any(|r| r[c] > 0.0))
        .collect();
    let mut legend: Vec<LegendEntry> = present
        .iter()
        .map(|&c| entry(TRAFFIC_CLASSES[c], Ink::Class(c as u8), Swatch::Band))
        .collect();
    if !spans.is_empty() {
        legend.push(entry(
            "alert (number: # in the table)",
            Ink::Alert,
            Swatch::Band,
        ));
    }
    let lane_px = if spans.is_empty() {
        0
    } else {
        LABEL_ROW_PX * LABEL_ROWS as i32
    };
    let y_max = rates
        .iter()
        .map(|r| r.iter().sum::<f64>())
        .fold(0.0, f64::max);
    render(FULL, name, |root| {
        let err = chart_err("traffic");
        let plot = with_legend(root, &legend, lane_px)?;
        let mut chart = time_chart(&plot, axis, y_max, y_desc)?;
        let x_of = |i: usize| axis.x(drawn.ns_of(i));
        // stacked bands, bottom class first: each from the sum below it to the sum with it
        let mut below = vec![0.0f64; rates.len()];
        for &c in &present {
            let mut top = Vec::with_capacity(rates.len() * 2);
            let mut bottom = Vec::with_capacity(rates.len() * 2);
            for (i, r) in rates.iter().enumerate() {
                let (lo, hi) = (below[i], below[i] + r[c]);
                push_step(&mut top, x_of(i), x_of(i + 1), hi);
                push_step(&mut bottom, x_of(i), x_of(i + 1), lo);
                below[i] = hi;
            }
            top.extend(bottom.into_iter().rev());
            chart
                .draw_series(std::iter::once(Polygon::new(
                    top,
                    Ink::Class(c as u8).color().filled(),
                )))
                .map_err(&err)?;
        }
        let y_top = y_top(y_max);
        chart
            .draw_series(merged_spans(axis, spans).into_iter().map(|(a, b)| {
                Rectangle::new(
                    [(a, 0.0), (b, y_top)],
                    Ink::Alert.color().mix(0.18).filled(),
                )
            }))
            .map_err(&err)?;
        for l in labels {
            let (x, y) = chart.backend_coord(&(l.x, y_top));
            let y = y - 4 - (LABEL_ROWS - 1 - l.row) as i32 * LABEL_ROW_PX;
            let number = spans[l.span].number;
            root.draw(&PathElement::new(
                vec![(x, y + 2), (x, y - LABEL_ROW_PX + 4)],
                Ink::Alert.style(2),
            ))
            .map_err(&err)?;
            root.draw(&Text::new(
                format!("#{number}"),
                (x + 3, y),
                text_style((HPos::Left, VPos::Bottom)),
            ))
            .map_err(&err)?;
        }
        Ok(())
    })
}

/// One evaluation of an alert's key as its rate chart draws it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePoint {
    pub ts_ns: u64,
    pub rate: f64,
    pub baseline: f64,
    pub threshold: f64,
}

/// An alert event marked on its charts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Start,
    Update,
    End,
}

/// `points`, or, when more than [`MAX_DRAWN_POINTS`], runs of neighbours merged by `merge`.
fn thin<T: Clone>(points: &[T], merge: fn(&[T]) -> T) -> Cow<'_, [T]> {
    if points.len() <= MAX_DRAWN_POINTS {
        return Cow::Borrowed(points);
    }
    let run = points.len().div_ceil(MAX_DRAWN_POINTS);
    Cow::Owned(points.chunks(run).map(merge).collect())
}

/// The highest of `f` over a run.
fn peak<T>(run: &[T], f: impl Fn(&T) -> f64) -> f64 {
    run.iter().map(f).fold(f64::NEG_INFINITY, f64::max)
}

/// The x axis of an alert's charts: its points and events, with a little room either side.
fn alert_axis(
    point_ts: impl Iterator<Item = u64>,
    markers: &[(u64, Marker)],
    max_ticks: usize,
) -> TimeAxis {
    let all: Vec<u64> = point_ts.chain(markers.iter().map(|m| m.0)).collect();
    let from = all.iter().copied().min().unwrap_or(0);
    let to = all
        .iter()
        .copied()
        .max()
        .unwrap_or(from)
        .max(from.saturating_add(1_000_000_000));
    let pad = (to - from) / 40;
    TimeAxis::new(from.saturating_sub(pad), to.saturating_add(pad), max_ticks)
}

/// An alert's rate against its learned baseline and threshold over time, with its start, updates
/// and end marked. `unit`: the rate's (`packets/s`, or `bytes/s` for the `bytes` signal).
pub fn alert_rate_chart(
    points: &[RatePoint],
    markers: &[(u64, Marker)],
    signal: &str,
    unit: &str,
) -> Result<String, ChartError> {
    let points = thin(points, |run| {
        let last = run[run.len() - 1];
        RatePoint {
            rate: peak(run, |p| p.rate),
            ..last
        }
    });
    let points = &points[..];
    let axis = alert_axis(points.iter().map(|p| p.ts_ns), markers, 10);
    let mut legend = vec![
        entry(format!("rate ({signal})"), Ink::Rate, Swatch::Line),
        entry("threshold", Ink::Threshold, Swatch::Line),
        entry("learned baseline", Ink::Baseline, Swatch::Line),
    ];
    for (kind, label, ink) in [
        (Marker::Start, "start", Ink::Start),
        (Marker::Update, "update", Ink::Update),
        (Marker::End, "end", Ink::End),
    ] {
        if markers.iter().any(|m| m.1 == kind) {
            legend.push(entry(label, ink, Swatch::Marker));
        }
    }
    let y_max = points
        .iter()
        .map(|p| p.rate.max(p.threshold).max(p.baseline))
        .fold(0.0, f64::max);
    render(
        FULL,
        "the alert's rate against its baseline and threshold",
        |root| {
            let plot = with_legend(root, &legend, 0)?;
            let mut chart = time_chart(&plot, &axis, y_max, unit)?;
            let xy = |f: fn(&RatePoint) -> f64| -> Vec<(f64, f64)> {
                points.iter().map(|p| (axis.x(p.ts_ns), f(p))).collect()
            };
            draw_line(&mut chart, xy(|p| p.baseline), Ink::Baseline, 2)?;
            draw_line(&mut chart, xy(|p| p.threshold), Ink::Threshold, 2)?;
            draw_line(&mut chart, xy(|p| p.rate), Ink::Rate, 2)?;
            draw_markers(&mut chart, &axis, markers, y_top(y_max))
        },
    )
}

fn draw_markers(
    chart: &mut TimeChart<'_, '_>,
    axis: &TimeAxis,
    markers: &[(u64, Marker)],
    y_top: f64,
) -> Result<(), ChartError> {
    // updates first, so start and end stay on top of them
    let mut sorted: Vec<&(u64, Marker)> = markers.iter().collect();
    sorted.sort_by_key(|m| m.1 != Marker::Update);
    chart
        .draw_series(sorted.into_iter().map(|&(ts, kind)| {
            let (ink, width) = match kind {
                Marker::Start => (Ink::Start, 2),
                Marker::Update => (Ink::Update, 1),
                Marker::End => (Ink::End, 2),
            };
            let x = axis.x(ts);
            PathElement::new(vec![(x, 0.0), (x, y_top)], ink.style(width))
        }))
        .map_err(chart_err("markers"))?;
    Ok(())
}

/// An alert key's traffic by class over time (packets/s), one line a class that occurs, and the
/// key's total.
pub fn class_chart(
    points: &[SeriesPoint],
    markers: &[(u64, Marker)],
) -> Result<String, ChartError> {
    type Get = fn(&SeriesPoint) -> f64;
    let classes: [(u8, Get); 5] = [
        (0, |p| p.syn),
        (1, |p| p.tcp),
        (2, |p| p.udp),
        (3, |p| p.icmp),
        (4, |p| p.fragment),
    ];
    let points = thin(points, |run| {
        let last = &run[run.len() - 1];
        SeriesPoint {
            ts_ns: last.ts_ns,
            total_pps: peak(run, |p| p.total_pps),
            syn: peak(run, |p| p.syn),
            tcp: peak(run, |p| p.tcp),
            udp: peak(run, |p| p.udp),
            icmp: peak(run, |p| p.icmp),
            fragment: peak(run, |p| p.fragment),
            ..last.clone()
        }
    });
    let points = &points[..];
    let present: Vec<(u8, Get)> = classes
        .into_iter()
        .filter(|(_, get)| points.iter().any(|p| get(p) > 0.0))
        .collect();
    let mut legend = vec![entry("all", Ink::Fg, Swatch::Line)];
    legend.extend(present.iter().map(|(c, _)| {
        entry(
            TRAFFIC_CLASSES[usize::from(*c)],
            Ink::Class(*c),
            Swatch::Line,
        )
    }));
    let axis = alert_axis(points.iter().map(|p| p.ts_ns), markers, 5);
    let y_max = points.iter().map(|p| p.total_pps).fold(0.0, f64::max);
    render(HALF, "the key's traffic by class", |root| {
        let plot = with_legend(root, &legend, 0)?;
        let mut chart = time_chart(&plot, &axis, y_max, "packets/s")?;
        let line = |get: Get| -> Vec<(f64, f64)> {
            points.iter().map(|p| (axis.x(p.ts_ns), get(p))).collect()
        };
        draw_line(&mut chart, line(|p| p.total_pps), Ink::Fg, 1)?;
        for (c, get) in &present {
            draw_line(&mut chart, line(*get), Ink::Class(*c), 2)?;
        }
        Ok(())
    })
}

/// Distinct peers (sources of a destination key, destinations of a source key) over time.
pub fn peers_chart(
    points: &[(u64, f64)],
    markers: &[(u64, Marker)],
    what: &str,
) -> Result<String, ChartError> {
    let points = thin(points, |run| (run[run.len() - 1].0, peak(run, |p| p.1)));
    let points = &points[..];
    let legend = vec![entry(what, Ink::Peers, Swatch::Line)];
    let axis = alert_axis(points.iter().map(|p| p.0), markers, 5);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max);
    render(HALF, what, |root| {
        let plot = with_legend(root, &legend, 0)?;
        let mut chart = time_chart(&plot, &axis, y_max, "distinct (estimate)")?;
        let line = points.iter().map(|&(t, v)| (axis.x(t), v)).collect();
        draw_line(&mut chart, line, Ink::Peers, 2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_079_200_000_000_000;

    fn traffic(steps: usize) -> TrafficSeries {
        let mut t = TrafficSeries::new(1200);
        t.start_ns = T0;
        t.step_ns = 100_000_000;
        t.packets = (0..steps).map(|i| [i as u64 % 7, 3, 2, 1, 0, 0]).collect();
        t.bytes = t.packets.iter().map(|r| r.map(|v| v * 100)).collect();
        t
    }

    #[test]
    fn sentinel_colours_become_theme_colours() {
        let svg = render(HALF, "x", |root| {
            root.draw(&Rectangle::new(
                [(0, 0), (5, 5)],
                Ink::Grid.color().filled(),
            ))
            .map_err(chart_err("t"))?;
            root.draw(&Text::new("a", (1, 1), text_style((HPos::Left, VPos::Top))))
                .map_err(chart_err("t"))?;
            Ok(())
        })
        .unwrap();
        assert!(!svg.contains("#0101"), "{svg}");
        assert!(svg.contains("style=\"fill:var(--grid)\""));
        assert!(svg.contains("fill=\"currentColor\""));
        assert!(svg.starts_with("<svg class=\"chart\" role=\"img\" aria-label=\"x\" "));
    }

    #[test]
    fn traffic_is_downsampled_for_drawing() {
        let t = traffic(1200);
        let drawn = DrawnTraffic::new(&t);
        assert!(drawn.packets.len() <= MAX_DRAWN_STEPS);
        let total = |v: &[[u64; 6]]| v.iter().flatten().sum::<u64>();
        assert_eq!(total(&drawn.packets), total(&t.packets));
        assert_eq!(drawn.end_ns(), t.start_ns + 1200 * t.step_ns);
    }

    #[test]
    fn long_lines_are_thinned_keeping_their_peak() {
        let pts: Vec<(u64, f64)> = (0..10_000u64)
            .map(|i| (i, if i == 7_777 { 1e6 } else { 1.0 }))
            .collect();
        let thinned = thin(&pts, |run| (run[run.len() - 1].0, peak(run, |p| p.1)));
        assert!(thinned.len() <= MAX_DRAWN_POINTS);
        assert_eq!(thinned.iter().map(|p| p.1).fold(0.0, f64::max), 1e6);
        assert_eq!(thinned.last().map(|p| p.0), Some(9_999));
        let short = &pts[..10];
        assert!(matches!(thin(short, |r| r[0]), Cow::Borrowed(_)));
    }

    #[test]
    fn equal_steps_make_one_segment() {
        let mut o = Vec::new();
        for (i, y) in [0.0, 0.0, 0.0, 5.0, 5.0, 0.0].into_iter().enumerate() {
            push_step(&mut o, i as f64, i as f64 + 1.0, y);
        }
        assert_eq!(
            o,
            vec![
                (0.0, 0.0),
                (3.0, 0.0),
                (3.0, 5.0),
                (5.0, 5.0),
                (5.0, 0.0),
                (6.0, 0.0)
            ]
        );
    }

    #[test]
    fn labels_never_overlap_and_spans_merge() {
        let axis = TimeAxis::new(T0, T0 + 120_000_000_000, 10);
        // 500 alerts one 100 ms apart, each 50 ms long: far more than fit
        let spans: Vec<AlertSpan> = (0..500)
            .map(|i| AlertSpan {
                number: i + 1,
                start_ns: T0 + i as u64 * 100_000_000,
                end_ns: T0 + i as u64 * 100_000_000 + 50_000_000,
            })
            .collect();
        let order: Vec<usize> = (0..500).rev().collect();
        let placed = place_labels(&axis, &spans, &order);
        assert!(!placed.is_empty() && placed.len() <= MAX_SPAN_LABELS);
        let (left, width) = plot_px(FULL);
        let px = |x: f64| {
            let r = axis.range();
            left as f64 + (x - r.start) / (r.end - r.start) * width as f64
        };
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[i + 1..] {
                if a.row == b.row {
                    let wa = (CHAR_PX * (1 + digits(spans[a.span].number))) as f64;
                    let wb = (CHAR_PX * (1 + digits(spans[b.span].number))) as f64;
                    let (xa, xb) = (px(a.x), px(b.x));
                    assert!(xa + wa <= xb || xb + wb <= xa, "labels overlap");
                }
            }
        }
        // 500 spans 2 px apart at most ~4 px wide merge into few rectangles
        let merged = merged_spans(&axis, &spans);
        assert!(merged.len() < 100, "{}", merged.len());
    }

    #[test]
    fn a_traffic_chart_has_a_legend_and_utc_ticks() {
        let t = traffic(80);
        let spans = [AlertSpan {
            number: 1,
            start_ns: T0 + 2_000_000_000,
            end_ns: T0 + 5_000_000_000,
        }];
        let charts = traffic_charts(&t, &spans, &[0]).unwrap();
        assert_eq!(charts.labelled, vec![0]);
        for svg in [&charts.packets_svg, &charts.bits_svg] {
            assert_eq!(svg.matches("<svg").count(), 1);
            for label in [
                "syn",
                "tcp",
                "udp",
                "icmp",
                "alert (number",
                "#1",
                "14:00:02",
            ] {
                assert!(svg.contains(label), "{label} missing");
            }
            assert!(svg.contains("time (UTC, 2025-11-25)"));
            assert!(
                !svg.contains("fragment"),
                "absent classes have no legend entry"
            );
        }
        assert!(charts.packets_svg.contains("packets/s"));
        assert!(charts.bits_svg.contains("bits/s"));
        assert!(
            charts.bits_svg.contains(" k\n"),
            "SI prefixes on the value axis"
        );
    }
}
