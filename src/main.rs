//! The `floodwatch` binary: parses the command line and wires the library's stages together.

mod cli;
mod commands;
mod progress;

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser};

use cli::{Cli, Command, CompletionsArgs, ManArgs, SynthArgs};
use commands::cluster::detect_node;
use commands::collect::collect;
use commands::live::live;
use commands::output::write_stdout;
use commands::replay::replay;
use commands::report::report;
use floodwatch::synth;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => replay(*args),
        Command::Live(args) => live(*args),
        Command::Collect(args) => collect(*args),
        Command::Report(args) => report(*args),
        Command::Detect(args) => detect_node(*args),
        Command::Synth(args) => synth_capture(args),
        Command::Config(_) => write_stdout(floodwatch::config::DEFAULT_CONFIG.as_bytes()),
        Command::Completions(args) => completions(args),
        Command::Man(args) => man_page(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floodwatch: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn synth_capture(a: SynthArgs) -> Result<ExitCode> {
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

/// `floodwatch completions SHELL`: the script on stdout.
fn completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "floodwatch", &mut script);
    write_stdout(&script)
}

/// `floodwatch man [SUBCOMMAND]`: the roff page on stdout.
fn man_page(a: ManArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match &a.subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name).cloned() else {
                let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                cmd.error(
                    clap::error::ErrorKind::InvalidValue,
                    format!("no subcommand `{name}` (one of: {})", names.join(", ")),
                )
                .exit();
            };
            sub.name(format!("floodwatch-{name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("rendering the man page")?;
    write_stdout(&roff)
}
