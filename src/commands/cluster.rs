//! The cluster's two roles: `--publish` makes replay, live and collect an ingest node that
//! publishes packet summaries to NATS; `floodwatch detect` is a detector node reading them.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::output::open_daemon_output;
use super::run::Extras;
use super::{detect_config, install_stop_handler, random_seed};
use crate::cli::{self, ClusterArgs, DetectNodeArgs, PublishArgs};
use floodwatch::capture::FrameSource;
use floodwatch::config::DetectConfig;
use floodwatch::pipeline::{self, PipelineConfig};

/// Joins the cluster `c` on NATS at `url`.
fn join_cluster(
    url: &str,
    c: &ClusterArgs,
    detect: &DetectConfig,
    client_name: &str,
) -> Result<floodwatch::bus::cluster::ClusterBus> {
    let sec = &c.security;
    let nats = floodwatch::bus::client::NatsOptions {
        url: url.to_string(),
        name: client_name.to_string(),
        tls_ca: sec.nats_tls_ca.clone(),
        tls_cert: sec.nats_tls_cert.clone(),
        tls_key: sec.nats_tls_key.clone(),
        creds: sec.nats_creds.clone(),
        nkey: sec.nats_nkey.clone(),
        user: sec.nats_user.clone(),
        password_file: sec.nats_password_file.clone(),
        token_file: sec.nats_token_file.clone(),
    };
    let settings = floodwatch::bus::cluster::JoinSettings {
        name: c.cluster.clone(),
        partitions: c.cluster_partitions,
        subnet_v4: detect.subnet_v4,
        subnet_v6: detect.subnet_v6,
        max_bytes: i64::try_from(c.bus_max_bytes).unwrap_or(i64::MAX),
        storage: match c.bus_storage {
            cli::BusStorage::File => floodwatch::bus::store::Storage::File,
            cli::BusStorage::Memory => floodwatch::bus::store::Storage::Memory,
        },
        stream_per_partition: c.bus_stream_per_partition,
    };
    floodwatch::bus::cluster::join(&nats, &settings, random_seed())
        .with_context(|| format!("cannot join cluster {:?} on NATS at {url}", c.cluster))
}

/// `--publish`: reads `source` as an ingest node of the cluster, publishing the summaries.
pub(crate) fn ingest(
    url: &str,
    p: &PublishArgs,
    source: &mut dyn FrameSource,
    (detect, pipe): (&DetectConfig, &PipelineConfig),
    stop: &AtomicBool,
    quiet: bool,
) -> Result<ExitCode> {
    use floodwatch::bus::publish::{run_publisher, PublishCounters, PublisherConfig};
    let node = p.node_id.unwrap_or_else(|| random_seed() as u32);
    let bus = join_cluster(
        url,
        &p.cluster,
        detect,
        &format!("floodwatch-ingest-{node}"),
    )?;
    let counters = Arc::new(PublishCounters::default());
    let cfg = PublisherConfig {
        url: url.to_string(),
        // each partition's subject, then (at the index after them) this node's watermarks'
        subjects: (0..bus.cluster.partitions)
            .map(|i| bus.partition_subject(i))
            .chain([bus.watermark_subject(node)])
            .collect(),
        buffer_bytes: p.publish_buffer,
        drain_timeout: std::time::Duration::from_secs(10),
        verbose: !quiet,
    };
    if !quiet {
        eprintln!(
            "floodwatch: ingest node {node} of cluster {:?} ({} partitions) publishing to {url}",
            bus.name, bus.cluster.partitions
        );
    }
    let (tx, rx) = crossbeam_channel::bounded(64);
    let out = pipeline::ingest::BusOut {
        cluster: bus.cluster,
        node,
        batch: p.publish_batch,
        tx,
        edge: p.edge_admission,
    };
    let publisher = bus.js.publisher();
    let (summary, error, published) = std::thread::scope(|s| {
        let c = Arc::clone(&counters);
        let h = floodwatch::threads::spawn_named(s, "fw-publish".into(), move || {
            run_publisher(publisher, rx, cfg, c)
        });
        let (summary, error) = pipeline::ingest::run_ingest(source, detect, pipe, out, stop, None);
        (summary, error, h.join())
    });
    let published =
        published.map_err(|_| anyhow::anyhow!("the publisher thread panicked (a bug)"))?;
    // what a batch counts: a summary a packet, or (at the edge) an aggregate a key and tick
    let what = if p.edge_admission {
        "key aggregates"
    } else {
        "summaries"
    };
    if !quiet {
        // an ingest node counts no keys and raises no alert: those lines would only mislead
        let rendered = pipeline::render_summary(&summary);
        for line in rendered.lines().filter(|l| {
            let l = l.trim_start();
            !l.starts_with("peak keys") && !l.starts_with("alerts:")
        }) {
            eprintln!("{line}");
        }
        eprintln!(
            "published: {} {what} in {} batches ({} bytes) to cluster {:?}; dropped {} {what} in {} batches (NATS unreachable and the buffer full{}); {} disconnects, {} batches sent again after one, {} refused by JetStream",
            published.summaries,
            published.batches,
            published.bytes,
            bus.name,
            published.dropped_summaries,
            published.dropped_batches,
            if published.unsent_at_end > 0 {
                format!(", {} still unsent at the end", published.unsent_at_end)
            } else {
                String::new()
            },
            published.disconnects,
            published.resent_batches,
            published.refused_batches
        );
    }
    if let Some(e) = error {
        eprintln!("floodwatch: error: {e}");
        return Ok(ExitCode::from(1));
    }
    if published.unsent_at_end > 0 {
        eprintln!(
            "floodwatch: error: {} batches could not be published to {url} before giving up",
            published.unsent_at_end
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `floodwatch detect`: a detector node of a cluster.
pub(crate) fn detect_node(args: DetectNodeArgs) -> Result<ExitCode> {
    use floodwatch::bus::cluster::{group_name, parse_partitions};
    use floodwatch::bus::detector::{run_detector, DetectorConfig};
    let mut detect = detect_config(&args.detect)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    let instance = format!("{host}-{}", std::process::id());
    let bus = join_cluster(
        &args.nats,
        &args.cluster,
        &detect,
        &format!("floodwatch-detect-{instance}"),
    )?;
    let partitions = parse_partitions(&args.partitions, bus.cluster.partitions)
        .map_err(|e| anyhow::anyhow!("--partitions {}: {e}", args.partitions))?;
    let group = group_name(&partitions);
    if args.detect.threads.is_some_and(|t| t > 1) && !args.output.quiet {
        eprintln!(
            "floodwatch: note: a detector runs one engine; --threads is ignored (to use more cores, run more detectors over fewer partitions each)"
        );
    }
    // a standby must hash keys as the detector it replaces: the seed comes from the cluster's
    if args.detect.seed.is_none() {
        use std::hash::{BuildHasher, Hasher};
        let mut h = foldhash::fast::FixedState::with_seed(bus.cluster.seed).build_hasher();
        h.write(group.as_bytes());
        detect.hash_seed = h.finish();
    }
    let cfg = DetectorConfig {
        partitions,
        group: group.clone(),
        ingest_nodes: args.ingest_nodes as usize,
        silence: args.silence,
        checkpoint_every: args.checkpoint_interval,
        lease_ttl: args.lease_ttl,
        exit_at_end: args.exit_at_end,
        from_start: args.from_start,
        instance,
        verbose: !args.output.quiet,
    };
    let (writer, _reopen) = open_daemon_output(&args.output)?;
    let stop = install_stop_handler()?;
    let extras = Extras::start(
        &args.integrations,
        &args.detect,
        None,
        args.output.quiet,
        format!("partitions {group} of cluster {}", bus.name),
        true,
    )?;
    let started = std::time::Instant::now();
    let (result, tally, _closed) =
        pipeline::run_events(writer, &stop, extras.integrations(), |emit| {
            run_detector(&bus, detect, &cfg, &stop, emit)
        })?;
    let mut extras = extras;
    let bgp_line = extras.finish_bgp(args.output.quiet);
    let stats = result.with_context(|| format!("detector of partitions {group}"))?;
    if !args.output.quiet {
        let m = &stats.merge;
        eprintln!(
            "floodwatch detector summary (partitions {group} of cluster {})\n  {:.1} s; {} summaries from {} batches of the bus ({} repeated and dropped, {} missing, {} malformed); ingest nodes ended {}, fell silent {} times\n  events: {} written, {} already written before a takeover; {} checkpoints (last {} bytes, longest {} ms){}\n  alerts: {} started, {} ended",
            bus.name,
            started.elapsed().as_secs_f64(),
            m.summaries,
            m.batches,
            m.duplicates,
            m.gaps,
            stats.malformed_batches,
            m.ended_nodes,
            m.silent_nodes,
            stats.events,
            stats.events_suppressed,
            stats.checkpoints,
            stats.checkpoint_bytes,
            stats.checkpoint_longest.as_millis(),
            if stats.restored {
                format!("; restored from a checkpoint in {} ms", stats.takeover.as_millis())
            } else {
                String::new()
            },
            tally.started.values().sum::<u64>(),
            tally.ended,
        );
        eprint!("{bgp_line}");
    }
    Ok(ExitCode::SUCCESS)
}
