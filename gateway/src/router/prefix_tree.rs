//! A radix tree of URI prefixes: finds every stored prefix of a path, longest
//! first, in one walk along the path (cost grows with the path, never with
//! the number of routes).

/// Maps byte-string prefixes to values.
pub(crate) struct PrefixTree<T> {
    root: Node<T>,
}

struct Node<T> {
    value: Option<T>,
    /// Sorted by the first byte of the label; labels are never empty and no
    /// two share a first byte.
    children: Vec<Edge<T>>,
}

struct Edge<T> {
    label: Box<[u8]>,
    node: Node<T>,
}

impl<T> Default for PrefixTree<T> {
    fn default() -> Self {
        PrefixTree {
            root: Node::default(),
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

impl<T> PrefixTree<T> {
    /// The value stored for exactly `prefix`, inserted with `init` when absent.
    pub(crate) fn entry_or_insert_with(
        &mut self,
        prefix: &str,
        init: impl FnOnce() -> T,
    ) -> &mut T {
        self.root.slot(prefix.as_bytes()).get_or_insert_with(init)
    }

    /// Calls `visit` with the value of every stored prefix of `path`, longest
    /// first, until it returns `Some`.
    pub(crate) fn find_longest<'a, R>(
        &'a self,
        path: &str,
        visit: &mut impl FnMut(&'a T) -> Option<R>,
    ) -> Option<R> {
        self.root.find_longest(path.as_bytes(), visit)
    }

    /// Every stored value, in no particular order.
    pub(crate) fn values_mut(&mut self) -> Vec<&mut T> {
        let mut out = Vec::new();
        self.root.collect_mut(&mut out);
        out
    }
}

impl<T> Node<T> {
    fn slot(&mut self, key: &[u8]) -> &mut Option<T> {
        let Some(&first) = key.first() else {
            return &mut self.value;
        };
        match self
            .children
            .binary_search_by_key(&first, |edge| edge.label[0])
        {
            Ok(i) => {
                let edge = &mut self.children[i];
                let common = common_prefix_len(&edge.label, key);
                if common < edge.label.len() {
                    edge.split_at(common);
                }
                edge.node.slot(&key[common..])
            }
            Err(i) => {
                self.children.insert(
                    i,
                    Edge {
                        label: key.into(),
                        node: Node::default(),
                    },
                );
                &mut self.children[i].node.value
            }
        }
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
            .and_then(|first| {
                self.children
                    .binary_search_by_key(first, |edge| edge.label[0])
                    .ok()
            })
            .map(|i| &self.children[i])
            .filter(|edge| key.starts_with(&edge.label));
        if let Some(edge) = child {
            if let Some(found) = edge.node.find_longest(&key[edge.label.len()..], visit) {
                return Some(found);
            }
        }
        self.value.as_ref().and_then(visit)
    }

    fn collect_mut<'a>(&'a mut self, out: &mut Vec<&'a mut T>) {
        if let Some(value) = self.value.as_mut() {
            out.push(value);
        }
        for edge in &mut self.children {
            edge.node.collect_mut(out);
        }
    }
}

impl<T> Edge<T> {
    /// Splits this edge so that its label ends after `at` bytes; the rest of
    /// the label moves to a new child holding the old subtree.
    fn split_at(&mut self, at: usize) {
        let tail = Edge {
            label: self.label[at..].into(),
            node: std::mem::take(&mut self.node),
        };
        self.label = self.label[..at].into();
        self.node.children.push(tail);
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
            *tree.entry_or_insert_with(prefix, String::new) = (*prefix).to_owned();
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
    fn reinserting_a_prefix_reuses_its_value() {
        let mut tree = PrefixTree::<Vec<u8>>::default();
        tree.entry_or_insert_with("/x", Vec::new).push(1);
        tree.entry_or_insert_with("/x", Vec::new).push(2);
        assert_eq!(tree.values_mut().len(), 1);
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
}
