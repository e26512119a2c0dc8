//! Which handshakes must ask for a client certificate on behalf of routes
//! that verify it themselves (`client-cert-auth`), and which CA names they
//! list.
//!
//! A route can be reached through any SNI whose pattern overlaps one of its
//! hosts (a route without hosts through every SNI). The overlap is
//! conservative: asking for an optional certificate where no such route is
//! finally served costs a client nothing, while not asking would make the
//! route unusable.

use shared::validate::HostPattern;

/// Client-certificate requests of routes, by the hosts they serve.
#[derive(Debug, Default)]
pub struct RouteCertRequests {
    requests: Vec<Request>,
}

#[derive(Debug)]
struct Request {
    /// Empty: every host.
    hosts: Vec<HostPattern>,
    /// DER `Name`s of the CAs the route trusts.
    names: Vec<Vec<u8>>,
}

impl RouteCertRequests {
    /// Records a route serving `hosts` (empty: every host) that verifies
    /// client certificates issued by the CAs named `names` (DER `Name`s).
    pub fn add(&mut self, hosts: &[HostPattern], names: Vec<Vec<u8>>) {
        self.requests.push(Request {
            hosts: hosts.to_vec(),
            names,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// For an SSL object serving `snis`: `None` when no recorded route can
    /// be reached through it, else the CA names of those that can, sorted
    /// and without duplicates (so that equal requests compare equal).
    pub(crate) fn names_for(&self, snis: &[HostPattern]) -> Option<Vec<Vec<u8>>> {
        let mut reachable = self
            .requests
            .iter()
            .filter(|request| request.reachable_through(snis))
            .peekable();
        reachable.peek()?;
        let mut names: Vec<Vec<u8>> = reachable
            .flat_map(|request| request.names.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        Some(names)
    }
}

impl Request {
    fn reachable_through(&self, snis: &[HostPattern]) -> bool {
        self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|host| snis.iter().any(|sni| overlaps(host, sni)))
    }
}

/// Whether some name matches both patterns (a wildcard covers exactly one
/// label).
fn overlaps(a: &HostPattern, b: &HostPattern) -> bool {
    use HostPattern::{Any, Exact, Wildcard};
    match (a, b) {
        (Any, _) | (_, Any) => true,
        (Exact(a), Exact(b)) | (Wildcard(a), Wildcard(b)) => a == b,
        (Exact(name), Wildcard(suffix)) | (Wildcard(suffix), Exact(name)) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(raw: &[&str]) -> Vec<HostPattern> {
        raw.iter().map(|p| HostPattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn patterns_overlap_as_sni_lookups_would_match() {
        let cases = [
            ("a.example.com", "a.example.com", true),
            ("a.example.com", "b.example.com", false),
            ("a.example.com", "*.example.com", true),
            ("a.b.example.com", "*.example.com", false),
            ("example.com", "*.example.com", false),
            ("*.example.com", "*.example.com", true),
            ("*.example.com", "*.example.org", false),
            ("*", "anything.test", true),
        ];
        for (a, b, expected) in cases {
            let (a, b) = (&patterns(&[a])[0], &patterns(&[b])[0]);
            assert_eq!(overlaps(a, b), expected, "{a:?} / {b:?}");
            assert_eq!(overlaps(b, a), expected, "{b:?} / {a:?}");
        }
    }

    #[test]
    fn collects_the_names_of_reachable_routes_only() {
        let mut requests = RouteCertRequests::default();
        assert!(requests.is_empty());
        requests.add(
            &patterns(&["api.example.com"]),
            vec![b"B".to_vec(), b"A".to_vec()],
        );
        requests.add(&patterns(&["other.test"]), vec![b"C".to_vec()]);
        assert_eq!(
            requests.names_for(&patterns(&["*.example.com"])),
            Some(vec![b"A".to_vec(), b"B".to_vec()])
        );
        assert_eq!(requests.names_for(&patterns(&["www.example.org"])), None);
        // A route without hosts is reachable through every SNI.
        requests.add(&[], vec![b"A".to_vec()]);
        assert_eq!(
            requests.names_for(&patterns(&["www.example.org"])),
            Some(vec![b"A".to_vec()])
        );
    }
}

#[cfg(test)]
mod handshake_tests;
