//! The bus's NATS facade (async-nats behind blocking calls) against a real nats-server: streams,
//! durable pull consumers with ack-all, the acknowledged publisher (and its outcome when the
//! server goes away), the key-value bucket's compare-and-set and the object store — skipped when
//! nats-server is not installed, unless FLOODWATCH_REQUIRE_NATS=1.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::nats_server::{free_port, NatsServer};
use floodwatch::bus::client::{Client, NatsError, NatsOptions};
use floodwatch::bus::cluster::{join, JoinSettings};
use floodwatch::bus::store::{
    AckOutcome, AckPublisher, ConsumerSpec, JetStream, Kv, ObjectStore, Storage, StreamSpec,
};

const T: Duration = Duration::from_secs(5);

fn connect(server: &NatsServer) -> Client {
    Client::connect(&NatsOptions::new(&server.url(), "floodwatch-test"), T).expect("connect")
}

/// A fresh server (it runs while the value lives) and JetStream on it, or None when nats-server
/// is not installed.
fn jetstream() -> Option<(NatsServer, JetStream)> {
    let server = NatsServer::start()?;
    let js = JetStream::new(&connect(&server));
    Some((server, js))
}

fn spec(name: &str, subject: &str) -> StreamSpec {
    StreamSpec {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        storage: Storage::File,
        max_bytes: -1,
        max_age: Duration::ZERO,
        max_per_subject: 0,
    }
}

/// The next publish outcome within `T`.
fn outcome(p: &AckPublisher) -> (u64, AckOutcome) {
    let deadline = Instant::now() + T;
    loop {
        if let Some(o) = p.try_outcome() {
            return o;
        }
        assert!(Instant::now() < deadline, "no acknowledgement within {T:?}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn consumer(stream: &str, start: u64) -> ConsumerSpec {
    ConsumerSpec {
        stream: stream.to_string(),
        durable: "detector".to_string(),
        filter: "ev.>".to_string(),
        start,
        ack_wait: Duration::from_secs(30),
        max_ack_pending: 1 << 20,
        batch_messages: 64,
        batch_bytes: 1 << 20,
    }
}

#[test]
fn acknowledged_publishes_come_back_in_order_and_a_pull_consumer_reads_from_a_position() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let client = connect(&server);
    let js = JetStream::new(&client);
    js.check().unwrap();
    js.ensure_stream(&spec("EVENTS", "ev.>")).unwrap();
    js.ensure_stream(&spec("EVENTS", "ev.>")).unwrap(); // again: found as it is
    let publisher = js.publisher();
    for seq in 1..=2000u64 {
        publisher
            .publish(seq, &format!("ev.{}", seq % 7), seq.to_le_bytes().to_vec())
            .unwrap();
    }
    for seq in 1..=2000u64 {
        assert_eq!(outcome(&publisher), (seq, AckOutcome::Stored));
    }
    // a subject no stream captures is refused, with the reason
    publisher.publish(9, "nostream.x", b"x".to_vec()).unwrap();
    let (id, o) = outcome(&publisher);
    assert!(id == 9 && matches!(o, AckOutcome::Refused(_)), "{o:?}");

    // from the middle, as a detector restarting from a checkpoint
    let mut pull = js.pull_consumer(&consumer("EVENTS", 1001)).unwrap();
    let mut last = None;
    for seq in 1001..=2000u64 {
        let m = pull.next_timeout(T).unwrap().expect("a message");
        assert_eq!(m.stream_seq, seq);
        assert_eq!(m.payload(), seq.to_le_bytes());
        last = Some(m);
    }
    assert!(pull
        .next_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
    // ack-all on the last, then a consumer made afresh from a later position sees only what
    // came after it
    last.unwrap().ack(&client).unwrap();
    client.flush().unwrap();
    drop(pull);
    let mut pull = js.pull_consumer(&consumer("EVENTS", 2001)).unwrap();
    assert!(pull
        .next_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
    publisher.publish(1, "ev.1", b"later".to_vec()).unwrap();
    assert_eq!(outcome(&publisher), (1, AckOutcome::Stored));
    let m = pull.next_timeout(T).unwrap().expect("the later message");
    assert_eq!((m.stream_seq, m.payload()), (2001, &b"later"[..]));

    // the last message of a subject, with headers, as the detector reads its events
    client
        .publish_with_headers("ev.h", &[("Fw-Run", "r1"), ("Fw-Pos", "3.0")], b"{}")
        .unwrap();
    client.flush().unwrap();
    let deadline = Instant::now() + T;
    let got = loop {
        if let Some(m) = js.last_message("EVENTS", "ev.h").unwrap() {
            break m;
        }
        assert!(Instant::now() < deadline, "the event was not stored");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        (got.header("fw-run"), got.header("Fw-Pos")),
        (Some("r1"), Some("3.0"))
    );
    assert!(js.last_message("EVENTS", "ev.none").unwrap().is_none());

    // a storage change is refused naming the stream
    let mut memory = spec("EVENTS", "ev.>");
    memory.storage = Storage::Memory;
    let msg = js.ensure_stream(&memory).unwrap_err().to_string();
    assert!(msg.contains("EVENTS"), "{msg}");
    assert!(js.delete_stream("EVENTS").unwrap());
    assert!(!js.delete_stream("EVENTS").unwrap());
}

#[test]
fn jetstream_off_and_no_server_are_named_with_the_fix() {
    let Some(server) = NatsServer::start_without_jetstream() else {
        return;
    };
    let js = JetStream::new(&connect(&server));
    let msg = js.check().unwrap_err().to_string();
    assert!(msg.contains("JetStream is not enabled"), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{}", server.port())),
        "{msg}"
    );
    assert!(msg.contains("-js"), "{msg}");

    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let started = Instant::now();
    let err = Client::connect(&NatsOptions::new(&url, "t"), Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, NatsError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("nats-server"),
        "{msg}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn key_value_compare_and_set() {
    let Some((_server, js)) = jetstream() else {
        return;
    };
    let kv = Kv::ensure(&js, "config", Storage::File).unwrap();
    let kv = Kv::ensure(&js, kv.bucket(), Storage::File).unwrap(); // opens it again
    assert!(kv.get("node.a").unwrap().is_none());
    let r1 = kv.put("node.a", b"one").unwrap();
    let e = kv.get("node.a").unwrap().unwrap();
    assert_eq!((e.value.as_slice(), e.revision), (&b"one"[..], r1));
    assert_eq!(kv.create("node.a", b"x").unwrap(), None);
    let r2 = kv.update("node.a", b"two", r1).unwrap().unwrap();
    assert!(r2 > r1);
    assert_eq!(kv.update("node.a", b"three", r1).unwrap(), None);
    assert_eq!(kv.get("node.a").unwrap().unwrap().value, b"two");
    let r3 = kv.create("node.b", b"new").unwrap().unwrap();
    assert_eq!(kv.get("node.b").unwrap().unwrap().revision, r3);
    assert!(kv.put("bad key", b"").is_err());
}

#[test]
fn object_store_put_get_and_replace() {
    let Some((_server, js)) = jetstream() else {
        return;
    };
    let store = ObjectStore::ensure(&js, "models", Storage::File).unwrap();
    let data: Vec<u8> = (0..1024 * 1024 + 1).map(|i| (i * 31 % 251) as u8).collect();
    assert_eq!(
        store.put("baseline/v1.bin", &data).unwrap(),
        data.len() as u64
    );
    assert_eq!(store.get("baseline/v1.bin").unwrap().unwrap(), data);
    assert!(store.get("absent").unwrap().is_none());
    let small = b"replaced".to_vec();
    store.put("baseline/v1.bin", &small).unwrap();
    assert_eq!(store.get("baseline/v1.bin").unwrap().unwrap(), small);
    let store = ObjectStore::ensure(&js, "models", Storage::File).unwrap(); // opens it again
    assert_eq!(store.get("baseline/v1.bin").unwrap().unwrap(), small);
}

#[test]
fn a_publish_the_server_never_acknowledges_is_reported_lost_and_the_client_reconnects() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let client = connect(&server);
    let js = JetStream::new(&client);
    js.ensure_stream(&spec("K", "k.>")).unwrap();
    let publisher = js.publisher();
    publisher.publish(1, "k.1", b"a".to_vec()).unwrap();
    assert_eq!(outcome(&publisher), (1, AckOutcome::Stored));
    server.kill();
    let deadline = Instant::now() + T;
    while client.is_connected() {
        assert!(Instant::now() < deadline, "the client did not notice");
        thread::sleep(Duration::from_millis(10));
    }
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.is_connected() {
        assert!(Instant::now() < deadline, "the client did not reconnect");
        thread::sleep(Duration::from_millis(10));
    }
    // the file-backed stream is there again and takes new batches
    publisher.publish(2, "k.1", b"b".to_vec()).unwrap();
    assert_eq!(outcome(&publisher), (2, AckOutcome::Stored));
    assert_eq!(js.last_message("K", "k.1").unwrap().unwrap().seq, 2);
}

/// A request NATS delivers and nobody answers (a plain subscriber swallows it): the shape of
/// every publish whose acknowledgement was lost with a connection. Each one's wait must run from
/// its own publish, so that n of them settle within one timeout, not one after another — which
/// once held an ingest node's resent batches behind 2 × 5 s of lost acknowledgements, past its
/// drain time (tests/cluster.rs, the 1 KiB buffer case).
#[test]
fn publishes_never_acknowledged_all_time_out_together_and_the_next_outcome_follows_at_once() {
    use std::io::{BufRead, BufReader, Write};
    let Some((server, js)) = jetstream() else {
        return;
    };
    js.ensure_stream(&spec("ON", "on.>")).unwrap();
    // a plain subscriber on "swallow.>": publishes there are delivered, never acknowledged
    let mut sub = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    sub.set_read_timeout(Some(T)).unwrap();
    let mut lines = BufReader::new(sub.try_clone().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap(); // INFO
    sub.write_all(b"CONNECT {\"verbose\":false}\r\nSUB swallow.> 1\r\nPING\r\n")
        .unwrap();
    loop {
        line.clear();
        lines.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the subscriber's connection closed");
        if line.starts_with("PONG") {
            break;
        }
    }
    let publisher = js.publisher();
    let started = Instant::now();
    for id in 1..=3 {
        publisher.publish(id, "swallow.x", vec![0; 8]).unwrap();
    }
    publisher.publish(4, "on.x", b"kept".to_vec()).unwrap();
    let mut got = Vec::new();
    let deadline = started + 4 * T;
    while got.len() < 4 {
        assert!(Instant::now() < deadline, "outcomes so far: {got:?}");
        match publisher.try_outcome() {
            Some(o) => got.push(o),
            None => thread::sleep(Duration::from_millis(5)),
        }
    }
    let took = started.elapsed();
    assert_eq!(
        got,
        vec![
            (1, AckOutcome::Lost),
            (2, AckOutcome::Lost),
            (3, AckOutcome::Lost),
            (4, AckOutcome::Stored)
        ]
    );
    // one timeout (5 s), not three one after another (15 s)
    assert!(took < 2 * T, "the outcomes took {took:?}");
    drop(sub);
}

/// Nodes started together create their cluster's streams, key-value bucket and object store at
/// the same moment. nats-server 2.9 (Debian's) lists a stream that another client is creating
/// before its store and subscriptions exist: a stream update then crashes the server (a nil
/// store), and a direct get (how a key or an object is read) is dropped unanswered. Every node
/// must join, read a key and an object well within the JetStream timeout, and the server must
/// still be running after each round.
#[test]
fn nodes_joining_one_cluster_at_once_all_join_promptly_and_the_server_stays_up() {
    const NODES: usize = 6;
    const ROUNDS: usize = 60;
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let url = server.url();
    for round in 0..ROUNDS {
        let name = format!("race{round}");
        let nodes: Vec<_> = (0..NODES)
            .map(|n| {
                let (url, name) = (url.clone(), name.clone());
                thread::spawn(move || {
                    let started = Instant::now();
                    let settings = JoinSettings {
                        name,
                        partitions: Some(4),
                        subnet_v4: 24,
                        subnet_v6: 64,
                        max_bytes: 8 << 20,
                        storage: Storage::File,
                        stream_per_partition: false,
                    };
                    let options = NatsOptions::new(&url, &format!("node-{n}"));
                    let bus = join(&options, &settings, 1).map_err(|e| e.to_string())?;
                    bus.kv
                        .get(&format!("lease.{n}"))
                        .map_err(|e| e.to_string())?;
                    bus.state
                        .get(&format!("detector.{n}"))
                        .map_err(|e| e.to_string())?;
                    Ok::<Duration, String>(started.elapsed())
                })
            })
            .collect();
        let results: Vec<_> = nodes
            .into_iter()
            .map(|node| node.join().expect("node thread"))
            .collect();
        assert!(
            server.is_running(),
            "round {round}: nats-server died; its log:\n{}",
            server.log()
        );
        for (n, result) in results.into_iter().enumerate() {
            let took = result.unwrap_or_else(|e| panic!("round {round}, node {n}: {e}"));
            // a dropped request shows as the JetStream timeout (5 s), or 5 s more per retry
            assert!(
                took < Duration::from_secs(4),
                "round {round}, node {n}: joining took {took:?}"
            );
        }
    }
}

/// Where a cluster keeps its partitions' batches: one stream unless the node creating it says
/// `--bus-stream-per-partition`; that choice is the cluster's for life (a node that asks for a
/// stream a partition in a one-stream cluster is refused, naming the option); a cluster whose
/// record an earlier floodwatch wrote (version 1, no such field) keeps its stream a partition.
#[test]
fn a_cluster_keeps_its_batches_in_one_stream_unless_created_with_a_stream_a_partition() {
    use floodwatch::bus::cluster::BatchStreams;
    let Some((server, js)) = jetstream() else {
        return;
    };
    let options = NatsOptions::new(&server.url(), "floodwatch-test");
    let settings = |name: &str, per_partition: bool| JoinSettings {
        name: name.to_string(),
        partitions: Some(4),
        subnet_v4: 24,
        subnet_v6: 64,
        max_bytes: 8 << 20,
        storage: Storage::File,
        stream_per_partition: per_partition,
    };
    // (a stream that does not exist is an error; one that holds nothing on the subject is None)
    let exists = |stream: &str, subject: &str| js.last_message(stream, subject).is_ok();
    // the error a node that must not join gets
    let refusal = |name: &str, per_partition: bool| {
        join(&options, &settings(name, per_partition), 1)
            .err()
            .unwrap_or_else(|| panic!("{name}: the node is refused"))
            .to_string()
    };

    let one = join(&options, &settings("one", false), 1).expect("join");
    assert_eq!(one.streams, BatchStreams::One);
    assert_eq!(one.stream(3), "FW_one_BATCHES");
    assert_eq!(one.stream(0), "FW_one_BATCHES");
    assert!(exists("FW_one_BATCHES", &one.partition_subject(3)));
    assert!(!exists("FW_one_P3", &one.partition_subject(3)));
    // a node asking for a stream a partition of a one-stream cluster
    let refused = refusal("one", true);
    assert!(
        refused.contains("--bus-stream-per-partition") && refused.contains("one stream"),
        "{refused}"
    );

    let per = join(&options, &settings("per", true), 1).expect("join");
    assert_eq!(per.streams, BatchStreams::PerPartition);
    for p in 0..4 {
        assert_eq!(per.stream(p), format!("FW_per_P{p}"));
        assert!(exists(&per.stream(p), &per.partition_subject(p)));
    }
    assert!(!exists("FW_per_BATCHES", &per.partition_subject(0)));
    // a node that does not say joins the cluster's way
    let later = join(&options, &settings("per", false), 1).expect("join");
    assert_eq!(later.streams, BatchStreams::PerPartition);

    let kv = Kv::ensure(&js, "fw_old", Storage::File).expect("bucket");
    let v1 = r#"{"version":1,"partitions":4,"seed":9,"subnet_v4":24,"subnet_v6":64}"#;
    kv.put("cluster", v1.as_bytes()).expect("put");
    let old = join(&options, &settings("old", false), 1).expect("join");
    assert_eq!(old.streams, BatchStreams::PerPartition);
    assert_eq!(old.cluster.seed, 9);
    assert!(exists("FW_old_P2", &old.partition_subject(2)));
    assert!(!exists("FW_old_BATCHES", &old.partition_subject(2)));

    // a cluster whose record was deleted (as the error about an unreadable one advises) keeps
    // the streams it has, whatever the node that writes the record again says
    js.ensure_stream(&spec("FW_gone_P0", "fw.gone.p.0"))
        .expect("stream");
    let again = join(&options, &settings("gone", false), 1).expect("join");
    assert_eq!(again.streams, BatchStreams::PerPartition);
    js.ensure_stream(&spec("FW_gone1_BATCHES", "fw.gone1.p.*"))
        .expect("stream");
    // (the streams say one stream)
    let refused = refusal("gone1", true);
    assert!(refused.contains("--bus-stream-per-partition"), "{refused}");

    // a record of a newer floodwatch: upgrade this node, do not delete the record
    let kv = Kv::ensure(&js, "fw_new", Storage::File).expect("bucket");
    let v9 = r#"{"version":9,"partitions":4,"seed":9,"subnet_v4":24,"subnet_v6":64}"#;
    kv.put("cluster", v9.as_bytes()).expect("put");
    let newer = refusal("new", false);
    assert!(
        newer.contains("newer floodwatch") && newer.contains("upgrade this node"),
        "{newer}"
    );
}
