//! The bench library's modules import each other in one direction only (the drawing in
//! docs/design.md), and never the command line's files. Read from the sources: each top-level
//! module's `crate::<module>` paths are its edges; a cycle fails, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The module names that follow `crate::` in `text`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(i, _)| text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn bench_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs").to_string();
        if top == "bin" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("crate::commands") && !text.contains("crate::args"), "{}: the library imports the command line", rel.display());
        let deps: Vec<String> = crate_paths(&text).into_iter().filter(|m| *m != top).collect();
        edges.entry(top).or_default().extend(deps);
    }
    assert!(edges.len() >= 10, "found the modules: {edges:?}");
    // Depth-first search; a back edge is a cycle.
    fn visit(m: &str, edges: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} → {m}", path[i..].join(" → "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            visit(d, edges, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(m, &edges, &mut vec![], &mut done);
    }
}
