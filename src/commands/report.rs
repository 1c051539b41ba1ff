//! `floodwatch report`: one self-contained HTML page from a recording, made here by replaying the
//! captures or read with --from.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::output::{check_can_create, write_atomically};
use super::replay::{decode_threads_for, input_names, replay_files};
use super::{evidence_config, install_stop_handler, settings};
use crate::cli::{BaselineArgs, ReportArgs, StateArgs};
use floodwatch::alert_output::{EventWriter, OutputFormat};
use floodwatch::pipeline::{self, CheckpointClock, Integrations, PipelineConfig};
use floodwatch::report::{LinkBase, Recording, RenderOptions};

/// `floodwatch report`: a recording (made here by replaying the captures, or read with --from)
/// rendered as one HTML page.
pub(crate) fn report(args: ReportArgs) -> Result<ExitCode> {
    check_can_create(&args.output, "the report")?;
    if let Some(path) = &args.record {
        check_can_create(path, "the --record file")?;
    }
    let mut failed = false;
    let recording = match &args.from {
        Some(path) => Recording::load(path)?,
        None => {
            let baseline = BaselineArgs {
                load_baseline: args.load_baseline.clone(),
                save_baseline: None,
                state: StateArgs {
                    state: None,
                    state_interval: std::time::Duration::from_secs(300),
                },
            };
            let (detect, base) =
                settings(&args.detect, &baseline, CheckpointClock::Packet, args.quiet)?;
            let evidence = evidence_config(&args.evidence)?;
            let pipe = PipelineConfig {
                // evidence needs the frames on the reading thread (as replay)
                decode_threads: decode_threads_for(evidence.as_ref(), None),
                evidence,
                record: true,
                ..base
            };
            let out: Box<dyn Write + Send> = match &args.alerts {
                Some(path) => Box::new(BufWriter::new(File::create(path).with_context(|| {
                    format!("cannot create the alerts file {}", path.display())
                })?)),
                None => Box::new(io::sink()),
            };
            let writer = EventWriter::new(out, OutputFormat::Json);
            let stop = install_stop_handler()?;
            let mut outcome = replay_files(
                &args.files,
                !args.quiet,
                (&detect, &pipe),
                writer,
                &stop,
                Integrations::default(),
            )?;
            if let Some(e) = &outcome.capture_error {
                eprintln!("floodwatch: error: {e} (the report covers what was read before it)");
                failed = true;
            }
            if !args.quiet {
                eprint!("{}", pipeline::render_summary(&outcome.summary));
            }
            let mut rec = outcome
                .recording
                .take()
                .context("the run recorded nothing (a bug: please report it)")?;
            rec.inputs = input_names(&args.files);
            if let Some(path) = &args.record {
                rec.save(path)?;
            }
            rec
        }
    };
    let opts = RenderOptions {
        title: args.title.clone(),
        max_detailed: args.max_detailed as usize,
        links: link_base(&args.output),
    };
    let html = floodwatch::report::render_html(&recording, &opts)?;
    write_atomically(&args.output, html.as_bytes())
        .with_context(|| format!("cannot write the report {}", args.output.display()))?;
    if !args.quiet {
        eprintln!(
            "floodwatch: report written to {} ({} alert(s), {} KB)",
            args.output.display(),
            recording.alerts.len(),
            html.len().div_ceil(1024)
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Evidence links of a page written to `output`: relative paths of the recording are relative to
/// the current directory; the page links them relative to its own directory. None when the
/// current directory is unknown (the paths are then linked as recorded).
fn link_base(output: &std::path::Path) -> Option<LinkBase> {
    let cwd = std::env::current_dir().ok()?;
    let page = cwd.join(output);
    let page_dir = page
        .parent()
        .map_or_else(|| cwd.clone(), |d| d.to_path_buf());
    Some(LinkBase { cwd, page_dir })
}
