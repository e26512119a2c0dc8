//! The import graph of one crate's `src/`, between files (and inline modules).
//!
//! Each path a file names (see `scan`) is resolved to the file that defines
//! it: the longest prefix that is a module picks the file, and a name that
//! module only re-exports (`pub use verify::ClientCertError`) is followed to
//! the file it comes from. Such a path depends on both files, the
//! re-exporting one and the defining one, so a re-export through a parent
//! neither hides a cycle between siblings nor one through the parent.
//!
//! A file's edges to its own ancestors (`super::X` with `X` defined in the
//! parent's file) are left out of the cycle check: a child module sees its
//! parent's items by Rust's scoping, and a parent whose `mod.rs` defines the
//! types its children work on and calls into them is the ordinary shape of a
//! module, not two modules depending on each other. Every other edge counts,
//! parent to child included, so a cycle that leaves the module is still found.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs;
use std::path::Path;

use super::scan::{scan, Named, Scanned};

/// How many re-exports are followed before settling for the re-exporting file.
const MAX_REEXPORT_HOPS: usize = 8;

struct File {
    /// Relative to `src/`, with `/` separators.
    path: String,
    module: Vec<String>,
    scanned: Scanned,
}

/// One file naming another, at the first line it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Edge {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) line: usize,
}

/// A file, or an inline module in one (`mod tests { .. }`): a module of its
/// own, so that a file's unit tests importing test helpers that import the
/// file are not taken for a cycle of the file itself.
struct Node {
    name: String,
    module: Vec<String>,
}

pub(crate) struct Graph {
    nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
}

impl Graph {
    /// Reads every `.rs` file under `src` but a binary's (`main.rs`, `bin/`).
    pub(crate) fn load(src: &Path) -> Graph {
        let mut paths = Vec::new();
        collect(src, src, &mut paths);
        paths.sort();
        let files: Vec<File> = paths
            .into_iter()
            .map(|path| {
                let text = fs::read_to_string(src.join(&path)).expect("readable source");
                File {
                    module: module_of(&path),
                    scanned: scan(&text),
                    path,
                }
            })
            .collect();
        let mut nodes = Vec::new();
        for file in &files {
            nodes.push(Node {
                name: file.path.clone(),
                module: file.module.clone(),
            });
            for inline in &file.scanned.inline_modules {
                let name = format!("{}::{}", file.path, inline.join("::"));
                nodes.push(Node {
                    name,
                    module: [file.module.clone(), inline.clone()].concat(),
                });
            }
        }
        let edges = Resolver::new(&files, &nodes).edges();
        Graph { nodes, edges }
    }

    pub(crate) fn name(&self, file: usize) -> &str {
        &self.nodes[file].name
    }

    /// The top-level module a file belongs to (`tls` for `tls/verify.rs`).
    pub(crate) fn top_module(&self, file: usize) -> Option<&str> {
        self.nodes[file].module.first().map(String::as_str)
    }

    /// Whether some file belongs to the top-level module `name`.
    pub(crate) fn has_top_module(&self, name: &str) -> bool {
        self.nodes
            .iter()
            .any(|node| node.module.first().is_some_and(|m| m == name))
    }

    /// Whether `to` is `from`'s ancestor module.
    fn is_ancestor(&self, from: usize, to: usize) -> bool {
        let (from, to) = (&self.nodes[from].module, &self.nodes[to].module);
        to.len() < from.len() && from.starts_with(to)
    }

    /// The edges the cycle check follows (see the module comment).
    fn cycle_edges(&self) -> impl Iterator<Item = &Edge> {
        self.edges
            .iter()
            .filter(|e| !self.is_ancestor(e.from, e.to))
    }

    /// Each set of files that import each other, in a circle: one shortest
    /// cycle through it, as `a.rs:12 -> b.rs:40 -> a.rs`, keyed by its files.
    pub(crate) fn cycles(&self) -> BTreeMap<BTreeSet<String>, String> {
        let mut out = BTreeMap::new();
        for component in self.strongly_connected() {
            if component.len() > 1 {
                let names = component.iter().map(|&f| self.name(f).to_owned()).collect();
                out.insert(names, self.shortest_cycle(&component));
            }
        }
        out
    }

    fn successors(&self) -> Vec<Vec<Edge>> {
        let mut next = vec![Vec::new(); self.nodes.len()];
        for edge in self.cycle_edges() {
            next[edge.from].push(*edge);
        }
        next
    }

    /// Tarjan's algorithm.
    fn strongly_connected(&self) -> Vec<Vec<usize>> {
        struct Walk {
            next: Vec<Vec<Edge>>,
            index: Vec<Option<usize>>,
            low: Vec<usize>,
            stack: Vec<usize>,
            on_stack: Vec<bool>,
            counter: usize,
            out: Vec<Vec<usize>>,
        }
        fn visit(w: &mut Walk, v: usize) {
            w.index[v] = Some(w.counter);
            w.low[v] = w.counter;
            w.counter += 1;
            w.stack.push(v);
            w.on_stack[v] = true;
            for i in 0..w.next[v].len() {
                let u = w.next[v][i].to;
                match w.index[u] {
                    None => {
                        visit(w, u);
                        w.low[v] = w.low[v].min(w.low[u]);
                    }
                    Some(index) if w.on_stack[u] => w.low[v] = w.low[v].min(index),
                    Some(_) => {}
                }
            }
            if Some(w.low[v]) == w.index[v] {
                let mut component = Vec::new();
                while let Some(u) = w.stack.pop() {
                    w.on_stack[u] = false;
                    component.push(u);
                    if u == v {
                        break;
                    }
                }
                component.sort();
                w.out.push(component);
            }
        }
        let n = self.nodes.len();
        let mut w = Walk {
            next: self.successors(),
            index: vec![None; n],
            low: vec![0; n],
            stack: Vec::new(),
            on_stack: vec![false; n],
            counter: 0,
            out: Vec::new(),
        };
        for v in 0..n {
            if w.index[v].is_none() {
                visit(&mut w, v);
            }
        }
        w.out
    }

    /// Breadth-first from the component's first file back to itself.
    fn shortest_cycle(&self, component: &[usize]) -> String {
        let next = self.successors();
        let start = component[0];
        let mut came_by: HashMap<usize, Edge> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            for edge in next[v].iter().filter(|e| component.contains(&e.to)) {
                if edge.to == start {
                    let mut hops = vec![*edge];
                    let mut at = v;
                    while at != start {
                        let edge = came_by[&at];
                        hops.push(edge);
                        at = edge.from;
                    }
                    hops.reverse();
                    let mut text: Vec<String> = hops
                        .iter()
                        .map(|e| format!("{}:{}", self.name(e.from), e.line))
                        .collect();
                    text.push(self.name(start).to_owned());
                    return text.join(" -> ");
                }
                if !came_by.contains_key(&edge.to) && edge.to != start {
                    came_by.insert(edge.to, *edge);
                    queue.push_back(edge.to);
                }
            }
        }
        unreachable!("a strongly connected component has a cycle through each file")
    }
}

fn collect(src: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        let rel = path
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if path.is_dir() {
            if rel != "bin" {
                collect(src, &path, out);
            }
        } else if rel.ends_with(".rs") && rel != "main.rs" {
            out.push(rel);
        }
    }
}

/// `tls/verify.rs` -> `tls::verify`; `tls/mod.rs` -> `tls`; `lib.rs` -> the root.
fn module_of(path: &str) -> Vec<String> {
    let mut module: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(module.last().map(String::as_str), Some("mod")) || path == "lib.rs" {
        module.pop();
    }
    module
}

/// Maps module paths to nodes, and names a module binds with `use` to what
/// they stand for.
struct Resolver<'a> {
    files: &'a [File],
    modules: HashMap<Vec<String>, usize>,
    bindings: HashMap<(Vec<String>, String), Vec<String>>,
}

impl<'a> Resolver<'a> {
    fn new(files: &'a [File], nodes: &[Node]) -> Self {
        let modules = (nodes.iter().enumerate())
            .map(|(index, node)| (node.module.clone(), index))
            .collect();
        let mut resolver = Resolver {
            files,
            modules,
            bindings: HashMap::new(),
        };
        for file in files {
            for named in &file.scanned.paths {
                if let (Some(name), Some(path)) = (&named.binds, resolver.absolute(file, named)) {
                    let scope = [file.module.clone(), named.scope.clone()].concat();
                    resolver.bindings.insert((scope, name.clone()), path);
                }
            }
        }
        resolver
    }

    fn edges(&self) -> Vec<Edge> {
        let mut first: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        for file in self.files {
            for named in &file.scanned.paths {
                let from = self.modules[&[file.module.clone(), named.scope.clone()].concat()];
                let Some(path) = self.absolute(file, named) else {
                    continue;
                };
                let mut targets = Vec::new();
                self.files_of(&path, 0, &mut targets);
                for to in targets.into_iter().filter(|&to| to != from) {
                    let line = first.entry((from, to)).or_insert(named.line);
                    *line = (*line).min(named.line);
                }
            }
        }
        first
            .into_iter()
            .map(|((from, to), line)| Edge { from, to, line })
            .collect()
    }

    /// The path from the crate root, or `None` for another crate's.
    fn absolute(&self, file: &File, named: &Named) -> Option<Vec<String>> {
        let here = [file.module.clone(), named.scope.clone()].concat();
        let segments = &named.segments;
        let (mut base, rest) = match segments[0].as_str() {
            "crate" => (Vec::new(), &segments[1..]),
            "self" => (here, &segments[1..]),
            "super" => {
                let supers = segments.iter().take_while(|s| *s == "super").count();
                let mut base = here;
                for _ in 0..supers {
                    base.pop()?;
                }
                (base, &segments[supers..])
            }
            child
                if self
                    .modules
                    .contains_key(&[here.clone(), vec![child.to_owned()]].concat()) =>
            {
                (here, &segments[..])
            }
            _ => return None,
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file defining `path` and each file that re-exports it on the way:
    /// a path through a re-export depends on the re-exporting module too.
    fn files_of(&self, path: &[String], hops: usize, out: &mut Vec<usize>) {
        let Some(module_len) = (0..=path.len())
            .rev()
            .find(|&n| self.modules.contains_key(&path[..n]))
        else {
            return;
        };
        out.push(self.modules[&path[..module_len]]);
        let reexport = path.get(module_len).and_then(|name| {
            self.bindings
                .get(&(path[..module_len].to_vec(), name.clone()))
        });
        if let Some(target) = reexport.filter(|_| hops < MAX_REEXPORT_HOPS) {
            let mut target = target.clone();
            target.extend(path[module_len + 1..].iter().cloned());
            self.files_of(&target, hops + 1, out);
        }
    }
}
