//! Incident reports: what a run records for a person to read afterwards, and the HTML page made
//! from it.
//!
//! - [`record`]: the [`Recording`] of a run — its counters, the whole input's traffic over time by
//!   class, and every alert with its events and its key's rate against baseline and threshold over
//!   time. `replay --record FILE` writes it as JSON; `report --from FILE` reads it back.
//! - [`series`]: the bounded time series behind the charts: [`TrafficSeries`] (filled by the
//!   reading stage, one add per packet); with [`KeyTrace`] (src/key_trace.rs, filled by the engine
//!   at every evaluation of a hot key). Both keep a fixed number of points whatever the input's
//!   length: when full, two neighbouring points merge and the step doubles.
//! - [`render`]: the page (a minijinja template filled from a view model of display strings), with
//!   the charts of [`plot`] (plotters' SVG backend) and the numbers and times of [`self::format`].
//! - [`live`]: `--report-dir`, a page per alert when it ends, written by a thread of its own.

pub mod format;
pub mod live;
pub mod plot;
pub mod record;
pub mod render;
pub mod series;

/// The file name of an alert's files without extension: the same as its evidence pcap's.
pub use crate::evidence_pcap::file_stem;
pub use record::{AlertRecord, EventRecord, KeySeries, Recording, SeriesPoint};

pub use crate::key_trace::KeyTrace;
pub use render::{render_html, LinkBase, RenderError, RenderOptions};
pub use series::TrafficSeries;
