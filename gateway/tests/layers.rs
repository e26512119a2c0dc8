//! The module structure holds: no two files of a crate
//! import each other, directly or around a circle, and `gateway`'s request
//! path imports only downward through the layers of [`GATEWAY_LAYERS`].
//!
//! Paths are read from the source text (`use` trees and inline paths from
//! `crate::`, `super::`, `self::` or a child module) and resolved to the file
//! that defines them; see `layers/graph.rs` for the rules.

#[path = "layers/graph.rs"]
mod graph;
#[path = "layers/scan.rs"]
mod scan;

use std::path::{Path, PathBuf};

use graph::Graph;

/// `gateway`'s layers, top to bottom: a module imports only from its own
/// layer or one below. Modules not listed (the control path: `snapshot`,
/// `source`, `status`, `metrics`, `access_log`) are held by the cycle check
/// alone. `tls` sits below `upstream` although a handshake comes before a
/// request: the request path builds on its pieces (the SNI table the mTLS
/// gate reads, the trust sets of `client-cert-auth`, the certificate
/// resolver of upstream TLS), while `tls` itself needs only the bottom layer.
const GATEWAY_LAYERS: &[&[&str]] = &[
    &["listener"],
    &["proxy"],
    &["router", "plugins"],
    &["upstream"],
    &["tls"],
    &[
        "reply",
        "path",
        "context",
        "shutdown",
        "build_error",
        "json_text",
    ],
];

fn src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

/// Each cycle found, as `file:line -> file:line -> ...`.
fn cycles(graph: &Graph) -> Vec<String> {
    graph
        .cycles()
        .iter()
        .map(|(files, cycle)| format!("cycle between {files:?}: {cycle}"))
        .collect()
}

/// Each import from a layer to one above it, as `file:line imports file`.
/// Panics on a layer naming no module, which would hold vacuously.
fn upward_imports(graph: &Graph, layers: &[&[&str]]) -> Vec<String> {
    for name in layers.iter().copied().flatten() {
        assert!(graph.has_top_module(name), "no module {name} in the layers");
    }
    let layer = |file: usize| {
        let module = graph.top_module(file)?;
        layers.iter().position(|names| names.contains(&module))
    };
    graph
        .edges
        .iter()
        .filter(|e| matches!((layer(e.from), layer(e.to)), (Some(from), Some(to)) if to < from))
        .map(|e| {
            format!(
                "{}:{} imports {}",
                graph.name(e.from),
                e.line,
                graph.name(e.to)
            )
        })
        .collect()
}

/// Every crate of the workspace: no two files import each other, directly
/// or around a circle.
#[test]
fn no_crate_has_import_cycles() {
    for krate in ["shared", "admin", "gateway", "portcullis"] {
        let problems = cycles(&Graph::load(&src(krate)));
        assert!(
            problems.is_empty(),
            "import cycles in {krate}:\n{}",
            problems.join("\n")
        );
    }
}

#[test]
fn gateway_imports_only_downward() {
    let problems = upward_imports(&Graph::load(&src("gateway")), GATEWAY_LAYERS);
    assert!(
        problems.is_empty(),
        "upward imports in gateway:\n{}",
        problems.join("\n")
    );
}

/// The checks above can fail: a planted cycle and an upward import are found.
#[test]
fn a_planted_cycle_and_upward_import_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod a;\nmod b;\n");
    write("a/mod.rs", "mod inner;\npub use inner::Thing;\n");
    write(
        "a/inner.rs",
        "use crate::b::{other, Other};\npub struct Thing;\n",
    );
    write(
        "b.rs",
        "pub struct Other;\npub fn f() -> crate::a::Thing { crate::a::Thing }\n",
    );
    let graph = Graph::load(dir.path());
    let cycles: Vec<String> = graph.cycles().into_values().collect();
    assert_eq!(cycles, ["a/inner.rs:1 -> b.rs:2 -> a/inner.rs"]);
    let upward = upward_imports(&graph, &[&["a"], &["b"]]);
    assert_eq!(
        upward,
        ["b.rs:2 imports a/inner.rs", "b.rs:2 imports a/mod.rs"]
    );
}

#[test]
#[should_panic(expected = "no module c in the layers")]
fn a_layer_naming_no_module_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod a;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "pub struct A;\n").unwrap();
    upward_imports(&Graph::load(dir.path()), &[&["a"], &["c"]]);
}
