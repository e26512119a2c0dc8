//! The boundaries the dependency graph holds: the data plane (`gateway`)
//! cannot reach the admin API, nor the admin API the data plane; only the
//! binary (this crate) links both. Read from `cargo metadata --no-deps`
//! (the workspace's own manifests: no download, so it runs offline on a
//! fresh machine; crates from the registry cannot depend on ours), so a
//! dependency added anywhere, directly or through another crate, fails here.

use std::collections::{HashMap, HashSet};
use std::process::Command;

use serde_json::Value;

/// Each workspace crate and what it must never depend on.
const FORBIDDEN: &[(&str, &str)] = &[
    ("portcullis-gateway", "portcullis-admin"),
    ("portcullis-admin", "portcullis-gateway"),
    ("portcullis-shared", "portcullis-admin"),
    ("portcullis-shared", "portcullis-gateway"),
];

#[test]
fn no_crate_depends_on_what_it_must_not() {
    let graph = Graph::of_workspace();
    let broken: Vec<String> = FORBIDDEN
        .iter()
        .filter(|(from, to)| graph.reaches(from, to))
        .map(|(from, to)| format!("{from} depends on {to}"))
        .collect();
    assert!(broken.is_empty(), "forbidden dependencies: {broken:?}");
}

#[test]
fn the_binary_links_both_planes() {
    let graph = Graph::of_workspace();
    assert!(graph.reaches("portcullis", "portcullis-admin"));
    assert!(graph.reaches("portcullis", "portcullis-gateway"));
}

/// The check above can fail: a dependency two steps away is found, and
/// only in its own direction.
#[test]
fn a_transitive_dependency_is_found() {
    let graph = Graph(HashMap::from([
        ("a".to_owned(), vec!["b".to_owned()]),
        ("b".to_owned(), vec!["c".to_owned()]),
        ("c".to_owned(), vec![]),
    ]));
    assert!(graph.reaches("a", "c"));
    assert!(!graph.reaches("c", "a"));
}

/// Workspace package name -> the workspace packages it lists as normal or
/// build dependencies (dev dependencies are not linked into the library).
struct Graph(HashMap<String, Vec<String>>);

impl Graph {
    fn of_workspace() -> Graph {
        let output = Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--offline",
            ])
            .arg("--manifest-path")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
        let packages = metadata["packages"].as_array().expect("packages");
        let members: HashSet<&str> = packages
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        let edges = packages
            .iter()
            .map(|package| {
                let deps = package["dependencies"].as_array().expect("dependencies");
                let linked = deps
                    .iter()
                    .filter(|dep| dep["kind"].as_str() != Some("dev"))
                    .filter_map(|dep| dep["name"].as_str())
                    .filter(|name| members.contains(name))
                    .map(str::to_owned);
                (
                    package["name"].as_str().expect("name").to_owned(),
                    linked.collect(),
                )
            })
            .collect();
        Graph(edges)
    }

    /// Whether `from` depends on `to`, directly or transitively.
    fn reaches(&self, from: &str, to: &str) -> bool {
        for name in [from, to] {
            assert!(self.0.contains_key(name), "no package {name}");
        }
        let (mut seen, mut queue) = (HashSet::new(), vec![from]);
        while let Some(name) = queue.pop() {
            for dep in self.0.get(name).into_iter().flatten() {
                if dep == to {
                    return true;
                }
                if seen.insert(dep.as_str()) {
                    queue.push(dep);
                }
            }
        }
        false
    }
}
