//! The import rule of `docs/architecture.md`, checked on the source files: the protocol
//! (`src/coordinator/` outside the application modules, and `proto/`) imports neither `nn` nor
//! the training and prediction modules, names no dataset or model, and its files import each
//! other without cycles.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Application modules under `src/coordinator/` (relative paths without `.rs`, or folders).
const APPLICATION: [&str; 5] = [
    "secure_training",
    "secure_prediction",
    "training",
    "prediction",
    "net/prediction",
];

/// What a protocol file may not import.
const FORBIDDEN_IMPORTS: [&str; 6] = [
    "crate::nn",
    "cryptonn::nn",
    "coordinator::secure_training",
    "coordinator::secure_prediction",
    "coordinator::training",
    "net::prediction",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, as paths relative to `src/coordinator/` without `.rs`.
fn rust_files(dir: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, base, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(base).unwrap().with_extension("");
            out.push((rel.to_string_lossy().replace('\\', "/"), p));
        }
    }
}

fn is_application(module: &str) -> bool {
    APPLICATION
        .iter()
        .any(|a| module == *a || module.starts_with(&format!("{a}/")))
}

/// The protocol files: `(module path, file)`.
fn protocol_files() -> Vec<(String, PathBuf)> {
    let base = root().join("src/coordinator");
    let mut files = Vec::new();
    rust_files(&base, &base, &mut files);
    files.retain(|(m, _)| !is_application(m));
    assert!(
        files.len() >= 15,
        "expected the protocol files, found {files:?}"
    );
    files
}

/// Lines of code, without `//` comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .filter(|l| !l.trim().is_empty())
}

#[test]
fn protocol_imports_neither_nn_nor_the_application() {
    let mut offences = Vec::new();
    for (module, path) in protocol_files() {
        let text = fs::read_to_string(&path).unwrap();
        for line in code_lines(&text) {
            for f in FORBIDDEN_IMPORTS {
                if line.contains(f) {
                    offences.push(format!("{module}: {}", line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "protocol files import nn or the application:\n{}",
        offences.join("\n")
    );
}

/// MNIST, LeNet, 784 or 28 as a word, anywhere (comments count).
fn names_a_dataset(text: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lower = line.to_lowercase();
        let words = lower.split(|c: char| !c.is_ascii_alphanumeric());
        if lower.contains("mnist")
            || lower.contains("lenet")
            || words.into_iter().any(|w| w == "28" || w == "784")
        {
            hits.push(format!("{}: {}", i + 1, line.trim()));
        }
    }
    hits
}

#[test]
fn protocol_names_no_dataset_or_model() {
    let mut offences = Vec::new();
    let mut files = protocol_files();
    for proto in fs::read_dir(root().join("proto")).unwrap() {
        let p = proto.unwrap().path();
        files.push((p.display().to_string(), p));
    }
    for (module, path) in files {
        for hit in names_a_dataset(&fs::read_to_string(&path).unwrap()) {
            offences.push(format!("{module}:{hit}"));
        }
    }
    assert!(
        offences.is_empty(),
        "the protocol names a dataset or model:\n{}",
        offences.join("\n")
    );
}

/// The protocol file a `crate::coordinator::…` path in `line` refers to, if any (paths through
/// the module roots `coordinator` and `net`, which only re-export, are not edges).
fn referenced_modules(line: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in line.match_indices("crate::coordinator::") {
        let rest = &line[i + "crate::coordinator::".len()..];
        let segs: Vec<&str> = rest
            .split("::")
            .map(|s| {
                s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")
            })
            .collect();
        let candidates = [
            segs.iter().take(2).copied().collect::<Vec<_>>().join("/"),
            segs.first().copied().unwrap_or("").to_string(),
        ];
        if let Some(m) = candidates.into_iter().find(|c| modules.contains(c)) {
            out.push(m);
        }
    }
    out
}

#[test]
fn protocol_files_import_each_other_without_cycles() {
    let files = protocol_files();
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let deps = edges.entry(module.clone()).or_default();
        for line in code_lines(text) {
            for m in referenced_modules(line, &modules) {
                if &m != module {
                    deps.insert(m);
                }
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|s| s == m).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
            panic!("import cycle among protocol files: {}", cycle.join(" -> "));
        }
    }
    // The edges the rule is about exist in the expected direction.
    let has = |a: &str, b: &str| edges.get(a).is_some_and(|d| d.contains(b));
    assert!(has("messages", "placement"));
    assert!(has("net/remote", "net/channel"));
    assert!(!has("net/channel", "net/remote"));
    assert!(has("matmul", "decrypt"));
}
