//! The command line a new user meets, on the real binary: every subcommand's help has examples and
//! the exit codes, every replay option says its default, and completions and man pages generate.

mod common;

use common::*;

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn every_subcommand_help_has_examples_and_exit_codes() {
    let top = stdout_of(&["--help"]);
    assert!(
        top.contains("Examples:") && top.contains("Exit status:"),
        "{top}"
    );
    for sub in ["replay", "synth", "config", "completions", "man"] {
        let help = stdout_of(&[sub, "--help"]);
        assert!(help.contains("Examples:"), "{sub} --help has no examples");
        assert!(
            help.contains("Exit status"),
            "{sub} --help has no exit codes"
        );
        assert!(
            help.contains(&format!("floodwatch {sub}")),
            "{sub} examples do not use it"
        );
    }
}

#[test]
fn every_replay_option_is_explained_with_its_default() {
    let help = stdout_of(&["replay", "--help"]);
    // each option that takes a value shows a default, or says what its default is
    let mut options = 0;
    for block in help.split("\n\n") {
        // the first option under a heading ("Cluster:") shares its block with the heading
        let block = match block.trim_start_matches('\n').split_once('\n') {
            Some((heading, rest)) if !heading.starts_with(' ') && heading.ends_with(':') => rest,
            _ => block,
        };
        let first = block.trim_start();
        if !first.starts_with('-') || !first.contains(" <") || first.starts_with("-h") {
            continue;
        }
        options += 1;
        let lines = block.lines().count();
        assert!(lines >= 2, "no explanation: {block}");
        // options that are off unless given (or whose default is not a fixed value) are listed
        // here on purpose; every other option must show its default
        let optional = [
            "--config",
            "--threads",
            "--seed",
            "--output",
            "--load-baseline",
            "--save-baseline",
            "--state",
            "--metrics-listen",
            "--on-alert",
            "--stats-interval",
            "--record",
            "--report-dir",
            "--evidence-dir",
            "--publish",
            "--exabgp-pipe",
        ];
        // and how an ingest node (--publish) reaches NATS
        let is_optional = optional
            .iter()
            .chain(NATS_CLIENT_OPTIONS)
            .any(|o| first.contains(&format!("{o} <")));
        assert!(
            block.contains("[default:") || is_optional,
            "no default for: {block}"
        );
    }
    assert!(options >= 10, "only {options} options found in:\n{help}");
}

#[test]
fn completions_generate_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(
            script.contains("floodwatch")
                && script.contains("replay")
                && script.contains("min-pps"),
            "{shell} completions lack the subcommands or options"
        );
    }
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn man_pages_are_generated_from_the_clap_definition() {
    let main = stdout_of(&["man"]);
    assert!(main.contains(".TH floodwatch 1"), "{main}");
    assert!(
        main.contains("floodwatch\\-replay(1)"),
        "subcommands are listed"
    );
    assert!(main.contains("Exit status"));
    let replay = stdout_of(&["man", "replay"]);
    assert!(replay.contains(".TH floodwatch-replay 1"), "{replay}");
    assert!(replay.contains("\\-\\-min\\-pps"));
    let out = run(&["man", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nonsense"));
}

#[test]
fn an_unknown_synth_scenario_is_bad_usage_listing_the_valid_ones() {
    let out = run(&["synth", "nope", "-o", "/nonexistent/x.pcap"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("nope") && err.contains("syn-flood"), "{err}");
}
