//! The HTML page of a [`Recording`]. PLACEHOLDER: replaced by the real renderer (plotters SVG
//! charts, minijinja template) before this lands.

use super::Recording;

/// How a page is made.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// The page's title; None: from the inputs.
    pub title: Option<String>,
    /// Alerts drawn in full (the most severe); the rest are rows of the table only.
    pub max_detailed: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            title: None,
            max_detailed: 20,
        }
    }
}

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render the report: {0}")]
    Template(String),
}

/// The page of `rec`.
pub fn render_html(rec: &Recording, _opts: &RenderOptions) -> Result<String, RenderError> {
    Ok(format!(
        "<!doctype html><title>floodwatch</title><p>{} alerts</p>",
        rec.alerts.len()
    ))
}
