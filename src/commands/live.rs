//! `floodwatch live`: a daemon on a network interface, and the opening of its capture backend
//! (AF_PACKET rings in a fanout group on Linux, or libpcap with `--features libpcap`).

use std::process::ExitCode;

use anyhow::Result;

use super::cluster::ingest;
use super::output::open_daemon_output;
use super::run::end_run;
use super::{block_sighup, drop_privileges, evidence_config, install_stop_handler};
use crate::cli::{Backend, LiveArgs};
use floodwatch::capture::FrameSource;
use floodwatch::pipeline::{self, CheckpointClock, PipelineConfig};

/// `floodwatch live`: captures until Ctrl-C; alerts on the output, the summary on stderr.
pub(crate) fn live(args: LiveArgs) -> Result<ExitCode> {
    block_sighup()?;
    let run = args.run();
    let (detect, base) = run.settings(CheckpointClock::Wall)?;
    let pipe = PipelineConfig {
        live: true,
        status_interval: Some(args.status_interval).filter(|d| !d.is_zero()),
        evidence: evidence_config(&args.evidence)?,
        ..base
    };
    if let Some(url) = &args.publish.publish {
        let (input, described) = open_live(&args)?;
        let LiveInput::One(mut source) = input else {
            anyhow::bail!("--publish reads with one capture thread: leave out --capture-threads");
        };
        let stop = install_stop_handler()?;
        drop_privileges(&args.privileges, args.output.quiet)?;
        if !args.output.quiet {
            eprintln!(
                "floodwatch: capturing on {} ({described}) for cluster {:?}; Ctrl-C stops",
                args.interface, args.publish.cluster.cluster
            );
        }
        return ingest(
            url,
            &args.publish,
            source.as_mut(),
            (&detect, &pipe),
            &stop,
            args.output.quiet,
        );
    }
    let (writer, reopen) = open_daemon_output(&args.output)?;
    let (input, described) = open_live(&args)?;
    let stop = install_stop_handler()?;
    let mut extras = run.start_daemon(
        &args.privileges,
        &pipe,
        format!("interface {}", args.interface),
        true,
    )?;
    extras.watch_sighup(&args.detect, &detect, reopen)?;
    if !args.output.quiet {
        eprintln!(
            "floodwatch: capturing on {} ({described}); Ctrl-C stops",
            args.interface
        );
    }
    let mut one;
    let input = match input {
        LiveInput::One(source) => {
            one = source;
            pipeline::Input::One(one.as_mut())
        }
        LiveInput::Group(sources) => pipeline::Input::Many(sources),
    };
    let outcome = pipeline::run_input(input, &detect, &pipe, writer, &stop, extras.integrations())?;
    end_run(outcome, &detect, run, extras, &stop)
}

/// A live capture: one source read on the pipeline's thread, or a fanout group, a thread each.
enum LiveInput {
    One(Box<dyn FrameSource>),
    Group(Vec<Box<dyn FrameSource + Send>>),
}

/// Capture threads by default: one up to three cores (the reader, the shards and the sink share
/// them), else a quarter of the cores, at most 16.
fn default_capture_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores <= 3 {
        1
    } else {
        (cores / 4).clamp(1, 16)
    }
}

/// Opens the capture backend the options ask for; returns it with a short description.
fn open_live(args: &LiveArgs) -> Result<(LiveInput, String)> {
    match args.backend {
        Backend::Afpacket => {
            if args.filter.is_some() {
                anyhow::bail!(
                    "--filter needs --backend pcap (the AF_PACKET backend takes no BPF expressions)"
                );
            }
            open_afpacket(args)
        }
        Backend::Pcap => {
            if args.capture_threads.is_some_and(|n| n > 1) {
                anyhow::bail!(
                    "--capture-threads needs the afpacket backend: the pcap backend reads with one \
                     thread (drop --backend pcap, or --capture-threads)"
                );
            }
            let (source, described) = open_pcap(args)?;
            Ok((LiveInput::One(source), described))
        }
    }
}

#[cfg(target_os = "linux")]
fn open_afpacket(args: &LiveArgs) -> Result<(LiveInput, String)> {
    use crate::cli::CaptureSpread;
    use floodwatch::capture::afpacket::{AfPacketSource, RingConfig, Spread};
    let ring = RingConfig {
        block_size: args.ring_block_size,
        block_count: args.ring_blocks,
        promiscuous: !args.no_promisc,
        ..RingConfig::default()
    };
    let threads = args
        .capture_threads
        .map_or_else(default_capture_threads, usize::from);
    let spread = match args.capture_spread {
        CaptureSpread::WhenBehind => Spread::WhenBehind,
        CaptureSpread::Always => Spread::Always,
    };
    let mut group = AfPacketSource::open_fanout(&args.interface, ring, threads, spread)?;
    let link = group.first().map_or(0, |s| s.link_type().0);
    let sockets = if threads > 1 {
        let when = match spread {
            Spread::WhenBehind => {
                "the others get a ring and packets, spread by flow, only while the first falls behind"
            }
            Spread::Always => "packets spread by flow",
        };
        format!("{threads} sockets in a PACKET_FANOUT group ({when}), each ring")
    } else {
        "ring".to_string()
    };
    let described = format!(
        "AF_PACKET TPACKET_V3, {sockets} {} × {} KiB, link type {link}",
        ring.block_count,
        ring.block_size >> 10,
    );
    if group.len() == 1 {
        if let Some(source) = group.pop() {
            return Ok((LiveInput::One(Box::new(source)), described));
        }
    }
    let sources = group
        .into_iter()
        .map(|s| Box::new(s) as Box<dyn FrameSource + Send>)
        .collect();
    Ok((LiveInput::Group(sources), described))
}

#[cfg(not(target_os = "linux"))]
fn open_afpacket(_: &LiveArgs) -> Result<(LiveInput, String)> {
    anyhow::bail!(
        "the AF_PACKET backend is Linux only: use --backend pcap (build with --features libpcap)"
    )
}

#[cfg(feature = "libpcap")]
fn open_pcap(args: &LiveArgs) -> Result<(Box<dyn FrameSource>, String)> {
    use floodwatch::capture::libpcap::{PcapConfig, PcapSource};
    let cfg = PcapConfig {
        buffer_bytes: args.ring_block_size.saturating_mul(args.ring_blocks),
        promiscuous: !args.no_promisc,
        filter: args.filter.clone(),
        ..PcapConfig::default()
    };
    let buffer = cfg.buffer_bytes;
    let source = PcapSource::open(&args.interface, cfg)?;
    let described = format!(
        "libpcap, buffer {} KiB, link type {}{}",
        buffer >> 10,
        source.link_type().0,
        args.filter
            .as_deref()
            .map(|f| format!(", filter `{f}`"))
            .unwrap_or_default()
    );
    Ok((Box::new(source), described))
}

#[cfg(not(feature = "libpcap"))]
fn open_pcap(_: &LiveArgs) -> Result<(Box<dyn FrameSource>, String)> {
    anyhow::bail!(
        "this floodwatch was built without libpcap: use the default --backend afpacket, or rebuild \
         with `cargo build --release --features libpcap` (needs libpcap-dev)"
    )
}
