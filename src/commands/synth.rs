//! `floodwatch synth`: writes a labelled synthetic capture and its expected alerts.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::SynthArgs;
use floodwatch::synth;

/// `floodwatch synth SCENARIO -o FILE`: FILE and FILE.labels.jsonl.
pub(crate) fn synth_capture(a: SynthArgs) -> Result<ExitCode> {
    let scenario = a.scenario;
    let defaults = synth::SynthOptions::for_scenario(scenario);
    let opts = synth::SynthOptions {
        seed: a.seed,
        duration: a.duration.unwrap_or(defaults.duration),
        attack_start: a.attack_start.unwrap_or(defaults.attack_start),
        attack_duration: a.attack_duration.unwrap_or(defaults.attack_duration),
        attack_pps: a.attack_pps.unwrap_or(defaults.attack_pps),
        background_pps: a.background_pps.unwrap_or(defaults.background_pps),
        victim: a.victim,
        sources: a.sources,
        src_mac: a.src_mac,
        dst_mac: a.dst_mac,
        min_size: a.min_size,
        start: a.start.unwrap_or(defaults.start),
    };
    let file = File::create(&a.output).with_context(|| {
        format!(
            "cannot create {}: check the directory exists and is writable",
            a.output.display()
        )
    })?;
    let report = synth::write_pcap(scenario, &opts, BufWriter::with_capacity(1 << 20, file))
        .with_context(|| format!("writing {}", a.output.display()))?;
    let mut labels_path = a.output.clone().into_os_string();
    labels_path.push(".labels.jsonl");
    let labels = File::create(&labels_path)
        .with_context(|| format!("cannot create {}", labels_path.to_string_lossy()))?;
    synth::write_labels(&report, BufWriter::new(labels))
        .with_context(|| format!("writing {}", labels_path.to_string_lossy()))?;
    eprintln!(
        "floodwatch: wrote {} ({} packets, {} bytes on the wire, {} expected alert(s) in {})",
        a.output.display(),
        report.packets,
        report.bytes,
        report.labels.len(),
        labels_path.to_string_lossy()
    );
    Ok(ExitCode::SUCCESS)
}
