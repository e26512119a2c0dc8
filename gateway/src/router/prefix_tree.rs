//! A radix tree of URI prefixes: finds every stored prefix of a path, longest
//! first, in one walk along the path (cost grows with the path, never with
//! the number of routes).
//!
//! The tree is persistent: nodes are shared between copies, and changing a
//! copy copies only the nodes along the changed prefix (at most one per byte
//! of it, each with at most 256 child pointers). A configuration change thus
//! costs the same with ten routes or a hundred thousand.

use std::sync::Arc;

/// Maps byte-string prefixes to values. Cloning is O(1).
pub(crate) struct PrefixTree<T> {
    root: Arc<Node<T>>,
}

struct Node<T> {
    value: Option<T>,
    /// Sorted by the first byte of the label; labels are never empty and no
    /// two share a first byte.
    children: Vec<Edge<T>>,
}

struct Edge<T> {
    label: Arc<[u8]>,
    node: Arc<Node<T>>,
}

impl<T> Clone for PrefixTree<T> {
    fn clone(&self) -> Self {
        PrefixTree {
            root: Arc::clone(&self.root),
        }
    }
}

impl<T: Clone> Clone for Node<T> {
    fn clone(&self) -> Self {
        Node {
            value: self.value.clone(),
            children: self.children.clone(),
        }
    }
}

impl<T> Clone for Edge<T> {
    fn clone(&self) -> Self {
        Edge {
            label: Arc::clone(&self.label),
            node: Arc::clone(&self.node),
        }
    }
}

impl<T> Default for PrefixTree<T> {
    fn default() -> Self {
        PrefixTree {
            root: Arc::new(Node::default()),
        }
    }
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            value: None,
            children: Vec::new(),
        }
    }
}

impl<T: Clone> PrefixTree<T> {
    /// Replaces the value stored for exactly `prefix` with `change(old)`
    /// (`None`: no value). Nodes left without a value or children are
    /// removed, so the tree never grows with values that came and went.
    pub(crate) fn update(&mut self, prefix: &str, change: impl FnOnce(Option<T>) -> Option<T>) {
        // One closure type for every level of the recursion; `update` calls
        // it exactly once.
        let mut change = Some(change);
        let mut once = |old| change.take().and_then(|change| change(old));
        Arc::make_mut(&mut self.root).update(prefix.as_bytes(), &mut once);
    }
}

impl<T> PrefixTree<T> {
    /// Calls `visit` with the value of every stored prefix of `path`, longest
    /// first, until it returns `Some`.
    pub(crate) fn find_longest<'a, R>(
        &'a self,
        path: &str,
        visit: &mut impl FnMut(&'a T) -> Option<R>,
    ) -> Option<R> {
        self.root.find_longest(path.as_bytes(), visit)
    }

    /// The value stored for exactly `prefix`.
    #[cfg(test)]
    pub(crate) fn get(&self, prefix: &str) -> Option<&T> {
        let mut node = &*self.root;
        let mut key = prefix.as_bytes();
        while let Some(&first) = key.first() {
            let edge = node
                .child(first)
                .filter(|edge| key.starts_with(&edge.label))?;
            key = &key[edge.label.len()..];
            node = &edge.node;
        }
        node.value.as_ref()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.root.value.is_none() && self.root.children.is_empty()
    }
}

impl<T> Node<T> {
    fn child(&self, first: u8) -> Option<&Edge<T>> {
        self.children
            .binary_search_by_key(&first, |edge| edge.label[0])
            .ok()
            .map(|i| &self.children[i])
    }

    // Recursion depth is bounded by the number of stored prefixes along one
    // path, i.e. by configuration, not by the request.
    fn find_longest<'a, R>(
        &'a self,
        key: &[u8],
        visit: &mut impl FnMut(&'a T) -> Option<R>,
    ) -> Option<R> {
        let child = key
            .first()
            .and_then(|&first| self.child(first))
            .filter(|edge| key.starts_with(&edge.label));
        if let Some(edge) = child {
            if let Some(found) = edge.node.find_longest(&key[edge.label.len()..], visit) {
                return Some(found);
            }
        }
        self.value.as_ref().and_then(visit)
    }

    fn is_vacant(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }
}

impl<T: Clone> Node<T> {
    // Recursion depth is bounded by the length of a configured prefix.
    fn update(&mut self, key: &[u8], change: &mut dyn FnMut(Option<T>) -> Option<T>) {
        let Some(&first) = key.first() else {
            self.value = change(self.value.take());
            return;
        };
        let index = match self
            .children
            .binary_search_by_key(&first, |edge| edge.label[0])
        {
            Ok(index) => index,
            Err(index) => {
                let Some(value) = change(None) else { return };
                let node = Node {
                    value: Some(value),
                    children: Vec::new(),
                };
                self.children.insert(
                    index,
                    Edge {
                        label: key.into(),
                        node: Arc::new(node),
                    },
                );
                return;
            }
        };
        let edge = &mut self.children[index];
        let common = common_prefix_len(&edge.label, key);
        if common < edge.label.len() {
            // `key` ends inside this edge or leaves it: nothing is stored for
            // it yet, so only an insertion needs the edge split.
            let Some(value) = change(None) else { return };
            edge.split_at(common);
            let mut value = Some(value);
            Arc::make_mut(&mut edge.node).update(&key[common..], &mut |_| value.take());
            return;
        }
        let node = Arc::make_mut(&mut edge.node);
        node.update(&key[common..], change);
        self.prune(index);
    }

    /// Drops the child at `index` when it holds nothing, and merges it with
    /// its only child when it holds no value.
    fn prune(&mut self, index: usize) {
        let edge = &mut self.children[index];
        if edge.node.is_vacant() {
            self.children.remove(index);
            return;
        }
        if edge.node.value.is_none() && edge.node.children.len() == 1 {
            let only = edge.node.children[0].clone();
            let label: Vec<u8> = edge
                .label
                .iter()
                .chain(only.label.iter())
                .copied()
                .collect();
            *edge = Edge {
                label: label.into(),
                node: only.node,
            };
        }
    }
}

impl<T: Clone> Edge<T> {
    /// Splits this edge so that its label ends after `at` bytes; the rest of
    /// the label moves to a new child holding the old subtree.
    fn split_at(&mut self, at: usize) {
        let tail = Edge {
            label: self.label[at..].into(),
            node: Arc::clone(&self.node),
        };
        self.label = self.label[..at].into();
        self.node = Arc::new(Node {
            value: None,
            children: vec![tail],
        });
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(prefixes: &[&str]) -> PrefixTree<String> {
        let mut tree = PrefixTree::default();
        for prefix in prefixes {
            tree.update(prefix, |_| Some((*prefix).to_owned()));
        }
        tree
    }

    fn all_matches(tree: &PrefixTree<String>, path: &str) -> Vec<String> {
        let mut seen = Vec::new();
        tree.find_longest(path, &mut |v: &String| -> Option<()> {
            seen.push(v.clone());
            None
        });
        seen
    }

    /// Every (node, edge) count, to check that removals leave nothing behind.
    fn size<T>(node: &Node<T>) -> usize {
        1 + node.children.iter().map(|e| size(&e.node)).sum::<usize>()
    }

    #[test]
    fn finds_every_prefix_longest_first() {
        let tree = tree(&["/", "/api/", "/api/v1/", "/apx", "", "/api/v2/"]);
        assert_eq!(
            all_matches(&tree, "/api/v1/users"),
            ["/api/v1/", "/api/", "/", ""]
        );
        assert_eq!(all_matches(&tree, "/apx/1"), ["/apx", "/", ""]);
        assert_eq!(all_matches(&tree, "/ap"), ["/", ""]);
        assert_eq!(all_matches(&tree, "x"), [""]);
        assert_eq!(tree.get("/api/").map(String::as_str), Some("/api/"));
        assert_eq!(tree.get("/api"), None);
        assert_eq!(tree.get("/api/v3/"), None);
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let a = tree(&["/a/b/c", "/a/", "/a/b"]);
        let b = tree(&["/a/b", "/a/b/c", "/a/"]);
        for path in ["/a/b/c/d", "/a/b", "/a/x", "/b"] {
            assert_eq!(all_matches(&a, path), all_matches(&b, path), "{path}");
        }
        assert_eq!(all_matches(&a, "/a/b/c/d"), ["/a/b/c", "/a/b", "/a/"]);
    }

    #[test]
    fn updating_a_prefix_sees_its_value() {
        let mut tree = PrefixTree::<Vec<u8>>::default();
        tree.update("/x", |old| {
            Some([old.unwrap_or_default(), vec![1]].concat())
        });
        tree.update("/x", |old| {
            Some([old.unwrap_or_default(), vec![2]].concat())
        });
        assert_eq!(
            tree.find_longest("/xyz", &mut |v| Some(v.clone())),
            Some(vec![1, 2])
        );
    }

    #[test]
    fn stops_at_the_first_accepted_value() {
        let tree = tree(&["/", "/a/"]);
        let found = tree.find_longest("/a/b", &mut |v: &String| (v == "/").then(|| v.clone()));
        assert_eq!(found.as_deref(), Some("/"));
    }

    #[test]
    fn removals_prune_and_leave_other_prefixes_intact() {
        let mut tree = tree(&["/a/", "/a/b/", "/a/c/", "/b"]);
        let full = size(&tree.root);
        tree.update("/a/b/", |_| None);
        tree.update("/nothing/", |_| None);
        tree.update("/a/b", |_| None);
        assert_eq!(all_matches(&tree, "/a/b/x"), ["/a/"]);
        assert_eq!(all_matches(&tree, "/a/c/x"), ["/a/c/", "/a/"]);
        assert!(size(&tree.root) < full);
        for prefix in ["/a/", "/a/c/", "/b"] {
            tree.update(prefix, |_| None);
        }
        assert!(tree.is_empty());
        assert_eq!(size(&tree.root), 1, "every node is gone");
    }

    #[test]
    fn copies_are_independent() {
        let original = tree(&["/a/", "/a/b/"]);
        let mut copy = original.clone();
        copy.update("/a/b/", |_| None);
        copy.update("/a/c/", |_| Some("/a/c/".to_owned()));
        assert_eq!(all_matches(&original, "/a/b/c"), ["/a/b/", "/a/"]);
        assert_eq!(all_matches(&original, "/a/c/d"), ["/a/"]);
        assert_eq!(all_matches(&copy, "/a/b/c"), ["/a/"]);
        assert_eq!(all_matches(&copy, "/a/c/d"), ["/a/c/", "/a/"]);
    }
}
