//! `floodwatch collect`: sFlow, NetFlow and IPFIX telemetry through the detector, heard on UDP
//! sockets (a daemon) or read from capture files.

use std::process::ExitCode;

use anyhow::Result;

use super::cluster::ingest;
use super::output::{open_daemon_output, open_output};
use super::replay::input_names;
use super::run::end_run;
use super::{block_sighup, drop_privileges, install_stop_handler};
use crate::cli::CollectArgs;
use crate::progress::ProgressSource;
use floodwatch::capture::file::MultiFileSource;
use floodwatch::capture::udp::UdpSource;
use floodwatch::capture::FrameSource;
use floodwatch::pipeline::{self, CheckpointClock, PipelineConfig};
use floodwatch::telemetry::TelemetryConfig;

/// `floodwatch collect`: telemetry until Ctrl-C (--listen) or the end of the files (--pcap).
pub(crate) fn collect(args: CollectArgs) -> Result<ExitCode> {
    let live = !args.listen.is_empty();
    if live {
        block_sighup()?;
    }
    let run = args.run();
    let (detect, base) = run.settings(if live {
        CheckpointClock::Wall
    } else {
        CheckpointClock::Packet
    })?;
    let pipe = PipelineConfig {
        live,
        status_interval: Some(args.status_interval).filter(|d| live && !d.is_zero()),
        telemetry: Some(pipeline::CollectConfig {
            telemetry: TelemetryConfig {
                max_exporters: args.max_exporters.max(1),
                max_templates: args.max_templates.max(1),
                allow: args.allow.clone(),
                window_ns: detect.window_ns(),
                tick_ns: detect.tick.as_nanos().clamp(1, u128::from(u64::MAX)) as u64,
            },
            ports: args.port.clone(),
        }),
        ..base
    };
    if let Some(url) = &args.publish.publish {
        let (mut source, _) = collect_source(&args, live)?;
        let stop = install_stop_handler()?;
        drop_privileges(&args.privileges, args.output.quiet)?;
        return ingest(
            url,
            &args.publish,
            source.as_mut(),
            (&detect, &pipe),
            &stop,
            args.output.quiet,
        );
    }
    let (writer, reopen) = if live {
        open_daemon_output(&args.output)?
    } else {
        (open_output(&args.output)?, None)
    };
    let (mut source, listening) = collect_source(&args, live)?;
    let stop = install_stop_handler()?;
    let described = if live {
        format!("telemetry on {}", listening.as_deref().unwrap_or("?"))
    } else {
        format!("telemetry from {}", input_names(&args.pcap).join(", "))
    };
    let mut extras = run.start_daemon(&args.privileges, &pipe, described, live)?;
    if live {
        extras.watch_sighup(&args.detect, &detect, reopen)?;
    }
    // last start-up line: once it is printed, the sockets and the metrics endpoint are ready
    if let (Some(on), false) = (listening, args.output.quiet) {
        eprintln!("floodwatch: collecting telemetry on {on}; Ctrl-C stops");
    }
    let outcome = pipeline::run_input(
        pipeline::Input::One(source.as_mut()),
        &detect,
        &pipe,
        writer,
        &stop,
        extras.integrations(),
    )?;
    drop(source);
    end_run(outcome, &detect, run, extras, &stop)
}

/// The input of `collect`: the --listen sockets (and what they listen on) or the --pcap files.
fn collect_source(
    args: &CollectArgs,
    live: bool,
) -> Result<(Box<dyn FrameSource>, Option<String>)> {
    if !live {
        let files = MultiFileSource::new(args.pcap.clone());
        return Ok((
            Box::new(ProgressSource::new(files, !args.output.quiet)),
            None,
        ));
    }
    let udp = UdpSource::bind(&args.listen, args.recv_buffer)?;
    if !args.output.quiet {
        for w in udp.warnings() {
            eprintln!("floodwatch: warning: {w}");
        }
    }
    let listening = udp.describe();
    Ok((Box::new(udp), Some(listening)))
}
