//! The top-level modules of `src/` form layers (docs/architecture.md, "Layers"): each module uses
//! only modules of the layers below and those listed before it in its own, so no two modules use
//! each other. A reader can learn the program bottom-up, and a change stays in its layer.
//!
//! The graph is read from the source, as issue 25 measured it: every `crate::m` path (and every
//! item of a `use crate::{…}` group) in a file's non-test code — the text before its first
//! `#[cfg(test)]`, line comments dropped; none in a `tests.rs` its parent declares under
//! `#[cfg(test)]` — is an edge from the file's top-level module to `m`.
//! `main.rs`, `cli.rs`, `progress.rs` and `commands/` are the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. Every top-level module of `src/` is in exactly one, and within a layer
/// each module uses only those listed before it (so no two use each other).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "time",
            "key",
            "attack_class",
            "privileges",
            "prefetch",
            "threads",
            "engine_state",
            "atomic_file",
        ],
    ),
    ("inputs", &["decode", "pcap_writer", "capture", "telemetry"]),
    (
        "engine",
        &[
            "signature",
            "window",
            "key_trace",
            "baseline",
            "state",
            "config",
            "clock",
            "population",
            "table",
            "requests",
            "alert",
            "attribution",
            "aggregate",
            "detect",
        ],
    ),
    (
        "outputs",
        &[
            "mitigation",
            "alert_output",
            "hook",
            "evidence_pcap",
            "metrics",
            "report",
            "bus",
            "synth",
        ],
    ),
    ("pipeline", &["reload", "pipeline"]),
    ("binary", &[BIN]),
];

/// The binary's files, taken as one node.
const BIN: &str = "(bin)";
const BIN_MODULES: &[&str] = &["main", "cli", "commands", "progress"];

/// `a -> b`, with where each use was found (file: path text).
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn node(top: &str) -> String {
    if BIN_MODULES.contains(&top) {
        BIN.to_string()
    } else {
        top.to_string()
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The non-test code of a file: before its first `#[cfg(test)]`, without line comments.
fn code_of(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// True when `file` is a `tests.rs` that its parent module (`../x.rs` or `../mod.rs`) declares
/// under `#[cfg(test)]`: a file of tests, all of it test code.
fn is_test_file(file: &Path) -> bool {
    if file.file_name().is_none_or(|n| n != "tests.rs") {
        return false;
    }
    let dir = file.parent().unwrap();
    let parents = [dir.with_extension("rs"), dir.join("mod.rs")];
    parents.iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|text| {
            let lines: Vec<&str> = text.lines().map(str::trim).collect();
            lines
                .windows(2)
                .any(|w| w[0] == "#[cfg(test)]" && w[1].ends_with("mod tests;"))
        })
    })
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier at the start of `s` (after spaces).
fn ident_at(s: &str) -> &str {
    let s = s.trim_start();
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a file's code names through `crate::`.
fn crate_uses(code: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        if code[..i].ends_with(|c: char| is_ident(c)) {
            continue; // `floodwatch_crate::` and the like
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b, c::{Y, Z}}`: the first name of each item at depth 1
            let mut depth = 1;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident_at(&group[j..]);
                        if !name.is_empty() && name != "self" {
                            found.push((name.to_string(), format!("crate::{{{name}…}}")));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            let end = rest
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(rest.len());
            if !name.is_empty() {
                found.push((name.to_string(), format!("crate::{}", &rest[..end])));
            }
        }
    }
    found
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let top = parts[0].as_str();
        if top == "lib" {
            continue;
        }
        let from = node(top);
        g.entry(from.clone()).or_default();
        if is_test_file(&f) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let code = code_of(&text);
        for (to, what) in crate_uses(&code) {
            let to = node(&to);
            if to != from {
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(format!("{}: {what}", rel.display()));
            }
        }
    }
    g
}

/// Each module's layer and its place in the layer's list.
fn layer_of() -> BTreeMap<&'static str, (usize, usize)> {
    let mut m = BTreeMap::new();
    for (i, (_, modules)) in LAYERS.iter().enumerate() {
        for (j, &module) in modules.iter().enumerate() {
            assert!(
                m.insert(module, (i, j)).is_none(),
                "{module} is in two layers of LAYERS"
            );
        }
    }
    m
}

/// The modules of a cycle in `g`, if it has one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        v: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(v) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let at = path.iter().position(|p| p == v).unwrap_or(0);
                let mut cycle = path[at..].to_vec();
                cycle.push(v.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(v.to_string(), Mark::Open);
        path.push(v.to_string());
        for w in g.get(v).into_iter().flat_map(|e| e.keys()) {
            if let Some(c) = visit(g, w, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(v.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for v in g.keys() {
        if let Some(c) = visit(g, v, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn every_module_is_in_a_layer_and_every_layer_names_a_module() {
    let layers = layer_of();
    let g = graph();
    let missing: Vec<&String> = g
        .keys()
        .filter(|m| !layers.contains_key(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "top-level modules in no layer: {missing:?}; add them to LAYERS in tests/layers.rs and to \
         the Layers section of docs/architecture.md"
    );
    let gone: Vec<&&str> = layers.keys().filter(|m| !g.contains_key(**m)).collect();
    assert!(
        gone.is_empty(),
        "LAYERS names modules src/ does not have: {gone:?}"
    );
}

#[test]
fn modules_use_only_those_before_them_in_their_layer_and_the_layers_below() {
    let layers = layer_of();
    let mut upward = Vec::new();
    for (from, edges) in &graph() {
        let Some(&(lf, pf)) = layers.get(from.as_str()) else {
            continue; // the test above names it
        };
        for (to, places) in edges {
            let Some(&(lt, pt)) = layers.get(to.as_str()) else {
                upward.push(format!(
                    "{from} -> {to} (not a module in LAYERS): {places:?}"
                ));
                continue;
            };
            if lt > lf {
                upward.push(format!(
                    "{from} ({}) -> {to} ({}): {places:?}",
                    LAYERS[lf].0, LAYERS[lt].0
                ));
            } else if lt == lf && pt > pf {
                upward.push(format!(
                    "{from} -> {to}, listed after it in {}: {places:?} (if {to} does not use \
                     {from}, list it first)",
                    LAYERS[lf].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "uses of a higher layer, or of a module listed later in the same one:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_modules_use_each_other_without_a_cycle() {
    let g = graph();
    if let Some(cycle) = find_cycle(&g) {
        let mut why = Vec::new();
        for pair in cycle.windows(2) {
            why.push(format!(
                "{} -> {}: {:?}",
                pair[0], pair[1], g[&pair[0]][&pair[1]]
            ));
        }
        panic!("a cycle: {}\n{}", cycle.join(" -> "), why.join("\n"));
    }
}

#[test]
fn a_file_of_tests_is_test_code_and_a_module_is_not() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(is_test_file(&src.join("decode/request_head/tests.rs")));
    assert!(is_test_file(&src.join("synth/tests.rs")));
    assert!(!is_test_file(&src.join("decode/request_head.rs")));
}

#[test]
fn the_reader_sees_every_kind_of_path() {
    let code = code_of(
        "use crate::{a::X, b, c::{D, e::F}};\n\
         // crate::commented\n\
         fn f() { crate::g::h(); }\n\
         #[cfg(test)]\nmod tests { use crate::k; }",
    );
    let names: Vec<String> = crate_uses(&code).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a", "b", "c", "g"]);
}
