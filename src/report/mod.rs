//! Incident reports: what a run records for a person to read afterwards, and the HTML page made
//! from it.
//!
//! - [`record`]: the [`Recording`] of a run — its counters, the whole input's traffic over time by
//!   class, and every alert with its events and its key's rate against baseline and threshold over
//!   time. `replay --record FILE` writes it as JSON; `report --from FILE` reads it back.
//! - [`series`]: the bounded time series behind the charts: [`TrafficSeries`] (filled by the
//!   reading stage, one add per packet) and [`KeyTrace`] (filled by the engine at every evaluation
//!   of a hot key). Both keep a fixed number of points whatever the input's length: when full, two
//!   neighbouring points merge and the step doubles.
//! - [`render`]: the page (a minijinja template filled from a view model of display strings), with
//!   the charts of [`plot`] (plotters' SVG backend) and the numbers and times of [`self::format`].
//! - [`live`]: `--report-dir`, a page per alert when it ends, written by a thread of its own.

pub mod format;
pub mod live;
pub mod plot;
pub mod record;
pub mod render;
pub mod series;

pub use record::{AlertRecord, EventRecord, KeySeries, Recording, SeriesPoint};
/// A file name for an alert id (`dst_host/198.51.100.10/syn_flood/1764081790.250000` →
/// `dst_host_198.51.100.10_syn_flood_1764081790.250000`): every character other than ASCII letters,
/// digits, `.` and `-` becomes `_`, so IPv6 keys (`2001:db8::/64`) make names every file system
/// takes. Ids are unique within a run, and so are their names (the separators are in fixed places).
pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub use render::{render_html, LinkBase, RenderError, RenderOptions};
pub use series::{KeyTrace, TrafficSeries};
