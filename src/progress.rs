//! The replay progress bar: a [`FrameSource`] wrapper that draws, on stderr, how much of the input
//! files has been read. Part of the binary: the library never draws.
//!
//! The bar appears only when stderr is a terminal, `--quiet` is off and the replay has run for a
//! second (short replays stay clean); it measures bytes of the files (a spinner with bytes read for
//! standard input) and is cleared before the summary is printed.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use floodwatch::capture::file::MultiFileSource;
use floodwatch::capture::{CaptureError, CaptureStats, FrameSource, RawFrame};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Frames between two progress updates (an update is cheap, but not free per packet).
const UPDATE_EVERY: u64 = 16_384;
/// How long a replay runs before the bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A [`MultiFileSource`] that reports its progress on stderr.
pub struct ProgressSource {
    inner: MultiFileSource,
    /// `None` when no bar is wanted (stderr not a terminal, or `--quiet`).
    bar: Option<ProgressBar>,
    started: Instant,
    shown: bool,
    /// Calls to `next_frame`, to space the updates.
    calls: u64,
}

impl ProgressSource {
    /// Wraps `inner`; `wanted` is false for `--quiet`. The bar stays off when stderr is not a terminal.
    pub fn new(inner: MultiFileSource, wanted: bool) -> ProgressSource {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| new_bar(inner.total_bytes()));
        ProgressSource {
            inner,
            bar,
            started: Instant::now(),
            shown: false,
            calls: 0,
        }
    }

    /// Clears the bar (before the summary or an error is printed).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn update(&mut self) {
        let Some(bar) = &self.bar else {
            return;
        };
        if !self.shown {
            if self.started.elapsed() < SHOW_AFTER {
                return;
            }
            bar.set_draw_target(ProgressDrawTarget::stderr());
            self.shown = true;
        }
        bar.set_position(self.inner.bytes_read());
        bar.set_message(format!(
            "{} frames, {}",
            self.inner.stats().frames,
            self.inner.current_path().display()
        ));
    }
}

impl Drop for ProgressSource {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A hidden bar (shown once the replay has run [`SHOW_AFTER`]): bytes against the total when the
/// sizes are known, else a spinner.
fn new_bar(total: Option<u64>) -> ProgressBar {
    let (bar, template) = match total {
        Some(total) => (
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden()),
            "{spinner} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {wide_msg}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()),
            "{spinner} {bytes} read, {bytes_per_sec} {wide_msg}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

impl FrameSource for ProgressSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> {
        self.calls += 1;
        if self.calls.is_multiple_of(UPDATE_EVERY) {
            self.update();
        }
        self.inner.next_frame()
    }

    fn without_idle(&self) -> bool {
        self.inner.without_idle()
    }

    fn next_frames(
        &mut self,
        max: usize,
        each: &mut dyn FnMut(RawFrame<'_>),
    ) -> Result<usize, CaptureError> {
        let before = self.calls;
        let n = self.inner.next_frames(max, each)?;
        self.calls += n as u64;
        if self.calls / UPDATE_EVERY != before / UPDATE_EVERY {
            self.update();
        }
        Ok(n)
    }

    fn stats(&self) -> CaptureStats {
        self.inner.stats()
    }
}
