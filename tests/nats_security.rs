//! Nodes against a nats-server deployed securely (mutual TLS with a CA and certificates made by
//! the test, an account whose users authenticate with an nkey or a password file, permissions
//! limited to floodwatch's subjects): a node with what it needs joins; a node without TLS, with
//! a CA that did not sign the server, without its client certificate, with a bad file or a
//! credential the server does not know fails at start with a message naming what to fix; a token
//! read from a file; TLS asked of a server without it.

mod common;

use common::{bin, stderr};

use std::time::{Duration, Instant};

use common::secure_nats::{Auth, SecureNats};

/// Runs `floodwatch detect` against `url` with `extra`, bounded; returns (exit code, stderr).
fn detect(url: &str, extra: &[String]) -> (Option<i32>, String) {
    let mut cmd = bin();
    cmd.args([
        "detect",
        "--nats",
        url,
        "--cluster",
        "sec",
        "--partitions",
        "0-3",
    ])
    .args(["--cluster-partitions", "4", "--bus-max-bytes", "16M"]);
    cmd.args(extra);
    let started = Instant::now();
    let out = cmd.output().expect("floodwatch runs");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    (out.status.code(), stderr(&out).into_owned())
}

fn with(mut a: Vec<String>, more: &[&str]) -> Vec<String> {
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

#[test]
fn a_node_with_tls_and_an_nkey_or_a_password_joins_and_a_wrong_one_is_refused_naming_the_fix() {
    let Some(secure) = SecureNats::start() else {
        return;
    };
    let url = secure.server.url();
    let plain_url = url.replace("tls://", "nats://");
    let path = |p: &std::path::Path| p.display().to_string();

    // what a node needs: it joins (and, as a standby never given a lease here, is stopped)
    for auth in [Auth::Nkey, Auth::Password] {
        let mut cmd = bin();
        cmd.args(["replay", "--publish", &url, "--cluster", "sec"])
            .args(["--cluster-partitions", "4", "--bus-max-bytes", "16M"])
            .args(secure.args(auth));
        let dir = tempfile::tempdir().unwrap();
        let pcap = common::synth(dir.path(), "syn-flood", common::SHORT);
        let out = cmd.arg(&pcap).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{auth:?}: {err}");
        assert!(
            err.contains("published:") && err.contains("; dropped 0 summaries"),
            "{auth:?}: {err}"
        );
    }

    // no TLS at all: the server speaks TLS
    let (code, err) = detect(
        &plain_url,
        &with(vec![], &["--nats-nkey", &path(&secure.nkey_seed)]),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("TLS") && err.contains("--nats-tls-ca"),
        "{err}"
    );

    // a CA that did not sign the server's certificate
    let mut a = secure.args(Auth::Nkey);
    a[1] = path(&secure.pki.other_ca);
    let (code, err) = detect(&url, &a);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("TLS") && err.contains("--nats-tls-ca"),
        "{err}"
    );

    // the right CA but no client certificate: the server verifies clients
    let a = with(
        vec!["--nats-tls-ca".into(), path(&secure.pki.ca)],
        &["--nats-nkey", &path(&secure.nkey_seed)],
    );
    let (code, err) = detect(&url, &a);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--nats-tls-cert"), "{err}");

    // a file that is not what its option wants is named
    let mut a = secure.args(Auth::Nkey);
    a[3] = path(&secure.password_file); // --nats-tls-cert: not a certificate
    let (code, err) = detect(&url, &a);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--nats-tls-cert") && err.contains(&path(&secure.password_file)),
        "{err}"
    );

    // a valid seed the server does not know, and a wrong password
    let a = with(
        secure.tls_args(),
        &["--nats-nkey", &path(&secure.stranger_seed)],
    );
    let (code, err) = detect(&url, &a);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains(&path(&secure.stranger_seed)),
        "{err}"
    );
    let wrong = secure.pki.dir.join("wrong-password");
    std::fs::write(&wrong, "not it\n").unwrap();
    let a = with(
        secure.tls_args(),
        &[
            "--nats-user",
            "fw-node",
            "--nats-password-file",
            &path(&wrong),
        ],
    );
    let (code, err) = detect(&url, &a);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains("--nats-password-file"),
        "{err}"
    );

    // no credentials at all
    let (code, err) = detect(&url, &secure.tls_args());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--nats-nkey") && err.contains("--nats-creds"),
        "{err}"
    );
}

#[test]
fn secrets_are_never_taken_from_the_command_line() {
    // the password option takes a file; a user without one is a usage error
    let out = bin()
        .args([
            "detect",
            "--nats",
            "nats://127.0.0.1:1",
            "--partitions",
            "0",
            "--nats-user",
            "u",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--nats-password-file"), "{err}");
    let help = common::help_listing("detect", common::NATS_CLIENT_OPTIONS);
    assert!(
        !help.contains("--nats-password "),
        "a password option on the command line"
    );

    // a creds file that is not one is named before anything is dialled
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("node.creds");
    std::fs::write(&creds, "not a creds file\n").unwrap();
    let (code, err) = detect(
        "nats://127.0.0.1:1",
        &["--nats-creds".to_string(), creds.display().to_string()],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--nats-creds") && err.contains(&creds.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_token_from_a_file_joins_and_a_wrong_one_is_refused_naming_the_option() {
    let Some(server) = common::nats_server::NatsServer::start_configured(
        "authorization { token: \"t0k3n-from-a-file\" }\n",
        "nats",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("token");
    std::fs::write(&good, "t0k3n-from-a-file\n").unwrap();
    let bad = dir.path().join("stale-token");
    std::fs::write(&bad, "t0k3n-of-last-year\n").unwrap();
    let pcap = common::synth(dir.path(), "syn-flood", common::SHORT);
    let out = bin()
        .args(["replay", "--publish", &server.url(), "--cluster", "tok"])
        .args([
            "--cluster-partitions",
            "2",
            "--bus-max-bytes",
            "16M",
            "--nats-token-file",
        ])
        .arg(&good)
        .arg(&pcap)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("; dropped 0 summaries"), "{err}");
    let (code, err) = detect(
        &server.url(),
        &["--nats-token-file".to_string(), bad.display().to_string()],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains("--nats-token-file"),
        "{err}"
    );
    // and without one
    let (code, err) = detect(&server.url(), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--nats-token-file"), "{err}");
    // TLS asked of a server without it
    let tls_url = server.url().replace("nats://", "tls://");
    let (code, err) = detect(&tls_url, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not seem to speak TLS"), "{err}");
}
