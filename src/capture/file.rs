//! TEMPORARY STUB
use std::path::{Path, PathBuf};
use super::{CaptureError, CaptureStats, FrameSource, RawFrame};
pub struct MultiFileSource { paths: Vec<PathBuf> }
impl MultiFileSource {
    pub fn new(paths: Vec<PathBuf>) -> Self { MultiFileSource { paths } }
    pub fn current_path(&self) -> &Path { &self.paths[0] }
}
impl FrameSource for MultiFileSource {
    fn next_frame(&mut self) -> Result<Option<RawFrame<'_>>, CaptureError> { Ok(None) }
    fn stats(&self) -> CaptureStats { CaptureStats::default() }
}
