//! The synchronous NATS client and its JetStream subset against a real nats-server (skipped when
//! nats-server is not installed, unless FLOODWATCH_REQUIRE_NATS=1).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::nats_server::{free_port, NatsServer};
use floodwatch::bus::jetstream::{
    AckPolicy, ConsumerConfig, DeliverPolicy, JetStream, Kv, ObjectStore, Storage, StreamConfig,
};
use floodwatch::bus::nats::{Client, NatsError};

const T: Duration = Duration::from_secs(5);

fn connect(server: &NatsServer) -> Client {
    Client::connect(&server.url(), "floodwatch-test", T).expect("connect")
}

#[test]
fn publish_subscribe_and_request_round_trip() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let client = connect(&server);
    assert_eq!(client.server_addr(), format!("127.0.0.1:{}", server.port()));
    assert!(client.max_payload() >= 1024 * 1024);

    let sub = client.subscribe("t.>").unwrap();
    assert_eq!(sub.subject(), "t.>");
    for i in 0..100 {
        client.publish(&format!("t.{i}"), b"hello").unwrap();
    }
    client.flush(T).unwrap();
    for i in 0..100 {
        let m = sub.next_timeout(T).unwrap().expect("message");
        assert_eq!(m.subject, format!("t.{i}"));
        assert_eq!(m.payload, b"hello");
        assert!(m.headers.is_empty() && m.status.is_none());
    }
    assert!(sub
        .next_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());

    // a responder on another connection
    let responder = connect(&server);
    let svc = responder.subscribe("svc.echo").unwrap();
    responder.flush(T).unwrap();
    let worker = thread::spawn(move || {
        for _ in 0..3 {
            let Some(m) = svc.next_timeout(T).unwrap() else {
                return;
            };
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&m.payload);
            responder
                .publish(m.reply.as_deref().unwrap(), &answer)
                .unwrap();
            responder.flush_writes().unwrap();
        }
    });
    // concurrent requests share the inbox
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let c = client.clone();
            thread::spawn(move || c.request("svc.echo", format!("{i}").as_bytes(), T))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let m = h.join().unwrap().unwrap();
        assert_eq!(m.payload, format!("echo:{i}").as_bytes());
    }
    worker.join().unwrap();

    match client.request("nobody.home", b"", T) {
        Err(NatsError::NoResponders { subject }) => assert_eq!(subject, "nobody.home"),
        other => panic!("expected NoResponders, got {other:?}"),
    }
    let inbox = client.new_inbox();
    assert!(inbox.starts_with("_INBOX."), "{inbox}");
    assert_ne!(inbox, client.new_inbox());
    client.close();
    assert!(client.is_closed());
    assert!(matches!(client.publish("t.x", b""), Err(NatsError::Closed)));
}

#[test]
fn connecting_to_a_closed_port_says_where_and_what_to_do() {
    let port = free_port();
    let err = Client::connect(&format!("127.0.0.1:{port}"), "t", T).unwrap_err();
    assert!(matches!(err, NatsError::Connect { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("nats-server -js"), "{msg}");
    let err = Client::connect("tls://127.0.0.1", "t", T).unwrap_err();
    assert!(matches!(err, NatsError::Url { .. }), "{err:?}");
}

#[test]
fn headers_and_reply_subjects_arrive() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let client = connect(&server);
    let sub = client.subscribe("h").unwrap();
    client
        .publish_with_headers(
            "h",
            Some("back.here"),
            &[("Nats-Msg-Id", "1"), ("X-Kind", "a b")],
            b"body",
        )
        .unwrap();
    client
        .publish_with_headers("h", Some("r2"), &[], b"plain")
        .unwrap();
    client.flush(T).unwrap();
    let m = sub.next_timeout(T).unwrap().unwrap();
    assert_eq!(m.reply.as_deref(), Some("back.here"));
    assert_eq!(m.header("nats-msg-id"), Some("1"));
    assert_eq!(m.header("X-Kind"), Some("a b"));
    assert_eq!(m.payload, b"body");
    let m = sub.next_timeout(T).unwrap().unwrap();
    assert_eq!(
        (m.reply.as_deref(), m.payload.as_slice()),
        (Some("r2"), &b"plain"[..])
    );
    assert!(m.headers.is_empty());
    assert!(matches!(
        client.publish_with_headers("h", None, &[("Bad:Name", "x")], b""),
        Err(NatsError::InvalidHeader { .. })
    ));
    assert!(matches!(
        client.publish("a b", b""),
        Err(NatsError::InvalidSubject { .. })
    ));
}

#[test]
fn payload_above_max_payload_is_refused_before_sending() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let client = connect(&server);
    let max = client.max_payload();
    let sub = client.subscribe("big").unwrap();
    let err = client.publish("big", &vec![0u8; max + 1]).unwrap_err();
    match &err {
        NatsError::TooLarge { size, max: m } => assert_eq!((*size, *m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("max_payload"));
    // with headers the total counts
    assert!(matches!(
        client.publish_with_headers("big", None, &[("A", "b")], &vec![0u8; max]),
        Err(NatsError::TooLarge { .. })
    ));
    // the connection is still fine, and exactly max_payload passes
    client.publish("big", &vec![7u8; max]).unwrap();
    client.flush(T).unwrap();
    assert_eq!(sub.next_timeout(T).unwrap().unwrap().payload.len(), max);
    assert!(!client.is_closed());
}

#[test]
fn jetstream_check_without_js_says_how_to_enable_it() {
    let Some(server) = NatsServer::start_without_jetstream() else {
        return;
    };
    let js = JetStream::new(connect(&server), T);
    let err = js.check().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("JetStream is not enabled"), "{msg}");
    assert!(
        msg.contains(&format!("127.0.0.1:{}", server.port())),
        "{msg}"
    );
    assert!(msg.contains("-js"), "{msg}");
}

/// Drains `n` messages, checking stream sequences from `first`; acks only the last (ack all).
fn consume(js: &JetStream, stream: &str, durable: &str, first: u64, n: u64) {
    let mut pull = js.pull(stream, durable).unwrap();
    let mut last = None;
    for seq in first..first + n {
        let m = pull
            .next_timeout(T)
            .unwrap()
            .unwrap_or_else(|| panic!("no message {seq} within {T:?}"));
        assert_eq!(m.stream_seq, seq);
        assert_eq!(m.consumer_seq, seq - first + 1);
        assert_eq!(m.delivered, 1);
        assert_eq!(m.subject, format!("ev.{}", seq % 7));
        assert_eq!(m.payload, seq.to_le_bytes());
        last = Some(m);
    }
    assert!(pull
        .next_timeout(Duration::from_millis(300))
        .unwrap()
        .is_none());
    last.unwrap().ack(js.client()).unwrap();
    js.client().flush(T).unwrap();
}

fn wait_ack_floor(js: &JetStream, stream: &str, durable: &str, want: u64) {
    let deadline = Instant::now() + T;
    loop {
        let info = js.consumer_info(stream, durable).unwrap().unwrap();
        if info.ack_floor_stream_seq == want {
            assert_eq!(info.num_ack_pending, 0);
            assert_eq!(info.num_pending, 0);
            assert_eq!(info.delivered_stream_seq, want);
            return;
        }
        assert!(Instant::now() < deadline, "ack floor stuck: {info:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stream_and_durable_pull_consumer_deliver_in_order() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = JetStream::new(connect(&server), T);
    js.check().unwrap();
    let mut cfg = StreamConfig::new("EVENTS", &["ev.>"]);
    js.ensure_stream(&cfg).unwrap();
    js.ensure_stream(&cfg).unwrap(); // idempotent
    for seq in 1..=10_000u64 {
        js.client()
            .publish(&format!("ev.{}", seq % 7), &seq.to_le_bytes())
            .unwrap();
    }
    js.client().flush(T).unwrap();

    let mut cc = ConsumerConfig::new("detector", "ev.>");
    cc.ack = AckPolicy::All;
    js.create_consumer("EVENTS", &cc).unwrap();
    consume(&js, "EVENTS", "detector", 1, 10_000);
    wait_ack_floor(&js, "EVENTS", "detector", 10_000);

    // again from the middle
    assert!(js.delete_consumer("EVENTS", "detector").unwrap());
    assert!(!js.delete_consumer("EVENTS", "detector").unwrap());
    assert!(js.consumer_info("EVENTS", "detector").unwrap().is_none());
    cc.deliver = DeliverPolicy::StartSequence(5001);
    js.create_consumer("EVENTS", &cc).unwrap();
    consume(&js, "EVENTS", "detector", 5001, 5000);
    wait_ack_floor(&js, "EVENTS", "detector", 10_000);

    // publish with an ack, compare-and-set on the subject's last sequence, message get
    let ack = js.publish("ev.x", &[], b"acked").unwrap();
    assert_eq!(
        (ack.stream.as_str(), ack.seq, ack.duplicate),
        ("EVENTS", 10_001, false)
    );
    let err = js
        .publish("ev.x", &[("Nats-Expected-Last-Subject-Sequence", "3")], b"")
        .unwrap_err();
    assert!(
        matches!(
            err,
            NatsError::JetStream {
                err_code: 10071,
                ..
            }
        ),
        "{err:?}"
    );
    let last = js.last_message("EVENTS", "ev.x").unwrap().unwrap();
    assert_eq!((last.seq, last.payload.as_slice()), (10_001, &b"acked"[..]));
    assert!(js.last_message("EVENTS", "ev.none").unwrap().is_none());
    assert!(matches!(
        js.publish("nostream.x", &[], b""),
        Err(NatsError::NoResponders { .. })
    ));

    // updates go through; a storage change is refused naming the stream
    cfg.max_msgs_per_subject = 100;
    js.ensure_stream(&cfg).unwrap();
    cfg.storage = Storage::Memory;
    let msg = js.ensure_stream(&cfg).unwrap_err().to_string();
    assert!(msg.contains("EVENTS"), "{msg}");
    assert!(matches!(
        js.ensure_stream(&StreamConfig::new("bad.name", &["x"])),
        Err(NatsError::InvalidName { .. })
    ));
    assert!(js.delete_stream("EVENTS").unwrap());
    assert!(!js.delete_stream("EVENTS").unwrap());
}

#[test]
fn a_pull_outlives_its_expiry_and_an_unknown_consumer_is_named() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = JetStream::new(connect(&server), T);
    js.ensure_stream(&StreamConfig::new("SLOW", &["slow"]))
        .unwrap();
    js.create_consumer("SLOW", &ConsumerConfig::new("d", ""))
        .unwrap();
    let mut pull = js.pull("SLOW", "d").unwrap();
    pull.set_expires(Duration::from_millis(200));
    pull.set_batch(4);
    // several pulls expire (408) while nothing comes
    assert!(pull
        .next_timeout(Duration::from_millis(900))
        .unwrap()
        .is_none());
    for i in 1..=10u8 {
        js.publish("slow", &[], &[i]).unwrap();
    }
    for i in 1..=10u8 {
        let m = pull.next_timeout(T).unwrap().expect("message after expiry");
        assert_eq!(
            (m.payload.as_slice(), m.stream_seq),
            (&[i][..], u64::from(i))
        );
        m.ack(js.client()).unwrap();
    }
    js.client().flush(T).unwrap();

    let err = js.pull("SLOW", "nobody").err().expect("no such consumer");
    let msg = err.to_string();
    assert!(msg.contains("nobody") && msg.contains("SLOW"), "{msg}");
}

#[test]
fn key_value_put_get_create_update() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = JetStream::new(connect(&server), T);
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
    // a delete marker (as `nats kv del` writes it) reads as absent and can be created over
    js.publish("$KV.config.node.b", &[("KV-Operation", "DEL")], b"")
        .unwrap();
    assert!(kv.get("node.b").unwrap().is_none());
    assert!(kv.create("node.b", b"again").unwrap().is_some());
    assert!(matches!(
        kv.put("bad key", b""),
        Err(NatsError::InvalidName { .. })
    ));
    assert!(matches!(
        Kv::ensure(&js, "bad.bucket", Storage::File),
        Err(NatsError::InvalidName { .. })
    ));
}

#[test]
fn object_store_put_get_and_replace_purges_old_chunks() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let js = JetStream::new(connect(&server), T);
    let store = ObjectStore::ensure(&js, "models", Storage::File).unwrap();
    let data: Vec<u8> = (0..1024 * 1024 + 1).map(|i| (i * 31 % 251) as u8).collect();
    let meta = store.put("baseline/v1.bin", &data).unwrap();
    assert_eq!((meta.size, meta.chunks), (data.len() as u64, 9));
    assert_eq!(store.get("baseline/v1.bin").unwrap().unwrap(), data);
    assert!(store.get("absent").unwrap().is_none());

    let small = b"replaced".to_vec();
    let meta2 = store.put("baseline/v1.bin", &small).unwrap();
    assert_ne!(meta2.nuid, meta.nuid);
    assert_eq!(store.get("baseline/v1.bin").unwrap().unwrap(), small);
    let old_chunks = format!("$O.models.C.{}", meta.nuid);
    assert!(js
        .next_message("OBJ_models", 1, &old_chunks)
        .unwrap()
        .is_none());
    // the empty object has no chunks
    let meta3 = store.put("empty", b"").unwrap();
    assert_eq!(meta3.chunks, 0);
    assert_eq!(store.get("empty").unwrap().unwrap(), b"");
}

#[test]
fn a_killed_server_gives_closed_not_a_hang() {
    let Some(mut server) = NatsServer::start() else {
        return;
    };
    let client = connect(&server);
    let js = JetStream::new(client.clone(), T);
    js.ensure_stream(&StreamConfig::new("K", &["k.>"])).unwrap();
    js.create_consumer("K", &ConsumerConfig::new("c", ""))
        .unwrap();
    let mut pull = js.pull("K", "c").unwrap();
    let sub = client.subscribe("x").unwrap();
    client.flush(T).unwrap();

    server.kill();
    let deadline = Instant::now() + T;
    while !client.is_closed() {
        assert!(Instant::now() < deadline, "the client did not notice");
        thread::sleep(Duration::from_millis(10));
    }
    let started = Instant::now();
    assert!(matches!(client.publish("x", b"1"), Err(NatsError::Closed)));
    assert!(matches!(client.flush_writes(), Err(NatsError::Closed)));
    assert!(matches!(client.flush(T), Err(NatsError::Closed)));
    assert!(matches!(
        client.request("x", b"", T),
        Err(NatsError::Closed)
    ));
    assert!(matches!(client.subscribe("y"), Err(NatsError::Closed)));
    assert!(matches!(sub.next_timeout(T), Err(NatsError::Closed)));
    assert!(matches!(js.check(), Err(NatsError::Closed)));
    assert!(matches!(pull.next_timeout(T), Err(NatsError::Closed)));
    assert!(started.elapsed() < Duration::from_secs(1));

    // a new client after a restart finds the file-backed stream again
    server.restart();
    let js = JetStream::new(connect(&server), T);
    assert!(js.consumer_info("K", "c").unwrap().is_some());
}
