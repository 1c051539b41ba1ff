//! `floodwatch replay`: capture files through the detector, with the progress bar, or published
//! to a cluster with --publish; also the file replay that `report` shares.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Result;

use super::cluster::ingest;
use super::output::{check_can_create, open_output};
use super::run::end_run;
use super::{evidence_config, install_stop_handler, prepare_state};
use crate::cli::ReplayArgs;
use crate::progress::ProgressSource;
use floodwatch::alert_output::EventWriter;
use floodwatch::capture::file::MultiFileSource;
use floodwatch::config::DetectConfig;
use floodwatch::evidence_pcap::EvidenceConfig;
use floodwatch::pipeline::{self, CheckpointClock, Integrations, PipelineConfig};

/// `floodwatch replay`: the captures through the pipeline; alerts on the output, the summary on
/// stderr.
pub(crate) fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let run = args.run();
    let (detect, base) = run.settings(CheckpointClock::Packet)?;
    let evidence = evidence_config(&args.evidence)?;
    if evidence.is_some() && args.decode_threads.is_some_and(|n| n > 0) && !args.output.quiet {
        eprintln!(
            "floodwatch: note: --evidence-dir reads the capture on one thread; --decode-threads is ignored"
        );
    }
    let pipe = PipelineConfig {
        realtime: args.realtime,
        speed: args.speed,
        decode_threads: decode_threads_for(evidence.as_ref(), args.decode_threads),
        evidence,
        record: args.record.is_some(),
        ..base
    };
    if let Some(url) = &args.publish.publish {
        let stop = install_stop_handler()?;
        let mut source =
            ProgressSource::new(MultiFileSource::new(args.files.clone()), !args.output.quiet);
        let code = ingest(
            url,
            &args.publish,
            &mut source,
            (&detect, &pipe),
            &stop,
            args.output.quiet,
        );
        source.finish();
        return code;
    }
    if let Some(path) = &args.record {
        check_can_create(path, "the --record file")?;
    }
    prepare_state(&args.baseline.state, args.output.quiet)?;
    let writer = open_output(&args.output)?;
    let stop = install_stop_handler()?;
    let extras = run.extras(input_names(&args.files).join(", "), false)?;
    let mut outcome = replay_files(
        &args.files,
        !args.output.quiet,
        (&detect, &pipe),
        writer,
        &stop,
        extras.integrations(),
    )?;
    // a recording that cannot be written must not cost the baselines, the state or the summary
    let mut record_error = None;
    if let (Some(path), Some(mut rec)) = (&args.record, outcome.recording.take()) {
        rec.inputs = input_names(&args.files);
        record_error = rec.save(path).err().map(anyhow::Error::from);
    }
    let code = end_run(outcome, &detect, run, extras, &stop)?;
    match record_error {
        Some(e) => {
            eprintln!("floodwatch: error: {e:#}");
            Ok(ExitCode::from(1))
        }
        None => Ok(code),
    }
}

/// Replays capture files through the pipeline, with a progress bar when `progress` (what `replay`
/// and `report` share).
pub(crate) fn replay_files<W: Write + Send>(
    files: &[std::path::PathBuf],
    progress: bool,
    (detect, pipe): (&DetectConfig, &PipelineConfig),
    writer: EventWriter<W>,
    stop: &AtomicBool,
    integ: Integrations<'_>,
) -> Result<pipeline::RunOutcome> {
    let mut source = ProgressSource::new(MultiFileSource::new(files.to_vec()), progress);
    let outcome = pipeline::run_input(
        pipeline::Input::Pooled(&mut source),
        detect,
        pipe,
        writer,
        stop,
        integ,
    );
    source.finish();
    Ok(outcome?)
}

/// The capture files as a report names its inputs.
pub(crate) fn input_names(files: &[std::path::PathBuf]) -> Vec<String> {
    files.iter().map(|f| f.display().to_string()).collect()
}

/// Decode threads of a replay: none with --evidence-dir (the sample needs the frames on the
/// reading thread), else as asked or the default.
pub(crate) fn decode_threads_for(evidence: Option<&EvidenceConfig>, asked: Option<u16>) -> usize {
    if evidence.is_some() {
        0
    } else {
        asked.map_or_else(default_decode_threads, usize::from)
    }
}

/// Decode threads by default: none up to four cores (a decode thread, the router's and the shards
/// would share too few), else a quarter of the cores, at most 8.
pub(crate) fn default_decode_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 4 {
        0
    } else {
        (cores / 4).clamp(1, 8)
    }
}
