//! The whole pipeline, in packets per second: `pipeline::run` (read, decode, batches, engine shards,
//! sink) over an in-memory synthetic capture read through `FileSource::from_reader`, at 1 and 2
//! threads. The capture is the quick one of benches/replay.sh: a spoofed SYN flood of minimum-size
//! frames at 1 M packets/s for 1 s over 3 s of benign background (~1.06 M frames). Run with
//! `cargo bench --bench pipeline`.

use std::io::{self, Cursor};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use floodwatch::alert_output::{EventWriter, OutputFormat};
use floodwatch::capture::file::FileSource;
use floodwatch::config::DetectConfig;
use floodwatch::pipeline::{self, PipelineConfig};
use floodwatch::synth::{self, Scenario, SynthOptions};

fn synth_capture() -> (Arc<[u8]>, u64) {
    let opts = SynthOptions {
        duration: Duration::from_secs(3),
        attack_start: Duration::from_secs(1),
        attack_duration: Duration::from_secs(1),
        attack_pps: 1_000_000,
        background_pps: 20_000,
        min_size: true,
        ..SynthOptions::default()
    };
    let mut bytes = Vec::new();
    let report = match synth::write_pcap(Scenario::SynFlood, &opts, &mut bytes) {
        Ok(r) => r,
        Err(e) => panic!("synth failed: {e}"),
    };
    (bytes.into(), report.packets)
}

fn whole_pipeline(c: &mut Criterion) {
    let (capture, frames) = synth_capture();
    let detect = DetectConfig {
        hash_seed: 42,
        ..DetectConfig::default()
    };
    let mut g = c.benchmark_group("pipeline_run");
    g.throughput(Throughput::Elements(frames));
    for threads in [1, 2] {
        let pipe = PipelineConfig {
            threads,
            ..PipelineConfig::default()
        };
        g.bench_function(format!("synth_syn_flood_threads_{threads}"), |b| {
            b.iter(|| {
                let mut source = match FileSource::from_reader(
                    "synth.pcap",
                    Cursor::new(Arc::clone(&capture)),
                ) {
                    Ok(s) => s,
                    Err(e) => panic!("synth capture unreadable: {e}"),
                };
                let writer = EventWriter::new(io::sink(), OutputFormat::Json);
                let stop = AtomicBool::new(false);
                match pipeline::run(&mut source, &detect, &pipe, writer, &stop) {
                    Ok(outcome) => assert_eq!(outcome.summary.frames, frames),
                    Err(e) => panic!("pipeline failed: {e}"),
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    targets = whole_pipeline
}
criterion_main!(benches);
