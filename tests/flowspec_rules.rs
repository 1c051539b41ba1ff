//! The flowspec rule of an alert (its `mitigation.flowspec`, the ExaBGP command `--exabgp-pipe`
//! announces) must drop the attack and spare the customers: on synth's signature scenarios the
//! rule, translated back to a pcap filter component by component (here, independently of the
//! code that wrote it), matches at least 95 % of the attack's packets and at most 1 % of the
//! legitimate ones, counted by `tcpdump -r`. Skips with a note when tcpdump is absent.

mod common;

use common::{
    assert_takes_the_attack_spares_the_customers, filter_matches,
    signature_scenario_starts_for_tcpdump,
};

/// ExaBGP's TCP flag names and their bits.
fn flag_bits(names: &str) -> u8 {
    names
        .split('+')
        .map(|n| match n {
            "fin" => 0x01,
            "syn" => 0x02,
            "rst" => 0x04,
            "push" => 0x08,
            "ack" => 0x10,
            "urg" => 0x20,
            "ece" => 0x40,
            "cwr" => 0x80,
            other => panic!("unknown TCP flag {other}"),
        })
        .fold(0, |a, b| a | b)
}

/// One `=N` numeric value.
fn eq_value(v: &str) -> &str {
    v.strip_prefix('=')
        .unwrap_or_else(|| panic!("only =N is expected, got {v}"))
}

/// `announce flow route { match { A; B; … } then { … } }` (IPv4) as a pcap filter.
fn flowspec_to_bpf(cmd: &str) -> String {
    let inner = cmd
        .split_once("match {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(m, _)| m)
        .unwrap_or_else(|| panic!("no match block in {cmd}"));
    let mut terms = Vec::new();
    for comp in inner.split(';').map(str::trim).filter(|c| !c.is_empty()) {
        let (name, value) = comp.split_once(' ').expect("component with a value");
        let list: Vec<&str> = value
            .trim_matches(|c| c == '[' || c == ']' || c == ' ')
            .split_whitespace()
            .collect();
        let term = match name {
            "destination" => format!("dst net {value}"),
            "source" => format!("src net {value}"),
            "protocol" => {
                let p = match eq_value(value) {
                    "tcp" => "6",
                    "udp" => "17",
                    "icmp" => "1",
                    n => n,
                };
                format!("ip proto {p}")
            }
            "destination-port" => {
                let ports: Vec<String> = list
                    .iter()
                    .map(|p| format!("dst port {}", eq_value(p)))
                    .collect();
                format!("({})", ports.join(" or "))
            }
            "source-port" => format!("src port {}", eq_value(value)),
            "packet-length" => format!("ip[2:2] == {}", eq_value(value)),
            "tcp-flags" => {
                assert_eq!(list.len(), 1, "one flags expression: {value}");
                let (mut set, mut clear) = (0u8, 0u8);
                for part in list[0].split('&') {
                    if let Some(n) = part.strip_prefix('!') {
                        clear |= flag_bits(n);
                    } else {
                        set |= flag_bits(part.trim_start_matches('='));
                    }
                }
                format!("tcp[13] & 0x{:02x} == 0x{set:02x}", set | clear)
            }
            "fragment" => match list.as_slice() {
                ["=dont-fragment"] => "ip[6] & 0x40 != 0".to_owned(),
                ["!dont-fragment"] => "ip[6] & 0x40 == 0".to_owned(),
                ["=is-fragment"] => "ip[6:2] & 0x3fff != 0".to_owned(),
                ["=is-fragment&!first-fragment"] => "ip[6:2] & 0x1fff != 0".to_owned(),
                other => panic!("unexpected fragment match {other:?}"),
            },
            other => panic!("component {other} not translated"),
        };
        terms.push(term);
    }
    terms.join(" and ")
}

#[test]
fn the_translation_reads_every_component_the_rules_use() {
    let bpf = flowspec_to_bpf(
        "announce flow route { match { destination 198.51.100.10/32; protocol =tcp; \
         destination-port [ =80 =443 ]; source-port =53; tcp-flags [ =syn&!ack ]; \
         packet-length =40; fragment [ !dont-fragment ]; } then { discard; } }",
    );
    assert_eq!(
        bpf,
        "dst net 198.51.100.10/32 and ip proto 6 and (dst port 80 or dst port 443) and \
         src port 53 and tcp[13] & 0x12 == 0x02 and ip[2:2] == 40 and ip[6] & 0x40 == 0"
    );
}

#[test]
fn signature_flowspec_rules_drop_the_attack_and_spare_the_customers() {
    let Some((_dir, starts)) = signature_scenario_starts_for_tcpdump() else {
        return;
    };
    for (scenario, cap, start) in starts {
        let rules = start["mitigation"]["flowspec"]
            .as_array()
            .expect("a flowspec list");
        assert_eq!(rules.len(), 1, "{scenario}: {rules:?}");
        let rule = rules[0].as_str().unwrap();
        assert!(
            rule.starts_with("announce flow route { match { destination 198.51.100.10/32;")
                && rule.ends_with("then { discard; } }"),
            "{rule}"
        );
        let bpf = flowspec_to_bpf(rule);
        let counts = filter_matches(&cap, &bpf);
        let ((att, att_all), (leg, leg_all)) = counts;
        eprintln!(
            "{scenario}: flowspec matches attack {att}/{att_all} ({:.2} %), legitimate {leg}/{leg_all} ({:.2} %): {rule}",
            100.0 * att as f64 / att_all as f64,
            100.0 * leg as f64 / leg_all as f64
        );
        assert!(
            leg_all > 1000 && att_all > 10_000,
            "{scenario}: too few packets"
        );
        assert_takes_the_attack_spares_the_customers(scenario, counts);
    }
}
