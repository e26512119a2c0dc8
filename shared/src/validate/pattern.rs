//! Host/SNI name patterns and URI patterns.

use std::net::Ipv6Addr;

/// Longest DNS name (without the trailing dot), RFC 1035.
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label, RFC 1035.
const MAX_LABEL_LEN: usize = 63;
/// Longest route URI we accept; request lines longer than this are refused
/// anyway by any sane HTTP stack.
const MAX_URI_LEN: usize = 4096;

/// A host or SNI pattern, lowercased and without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com`: exactly one label in front of the stored suffix
    /// (`example.com`).
    Wildcard(String),
    /// `*`: every name.
    Any,
}

impl HostPattern {
    /// Parses an operator-supplied pattern. `*.example.com` covers one label;
    /// `*` covers all; anything else must be a valid DNS name (or a bracketed
    /// IPv6 literal such as `[::1]`, for `Host` routes).
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let lower = raw.to_ascii_lowercase();
        let name = lower.strip_suffix('.').unwrap_or(&lower);
        if name == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(suffix) = name.strip_prefix("*.") {
            check_dns_name(suffix, raw)?;
            if 2 + suffix.len() > MAX_NAME_LEN {
                return Err(format!("{raw:?} is longer than {MAX_NAME_LEN} characters"));
            }
            return Ok(HostPattern::Wildcard(suffix.to_owned()));
        }
        if is_ipv6_literal(name) {
            return Ok(HostPattern::Exact(name.to_owned()));
        }
        check_dns_name(name, raw)?;
        Ok(HostPattern::Exact(name.to_owned()))
    }

    /// Whether an already normalised name (see [`normalize_host`]) matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => name == exact,
            HostPattern::Wildcard(suffix) => name
                .strip_suffix(suffix.as_str())
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            HostPattern::Any => true,
        }
    }
}

/// `[` IPv6 address `]`.
fn is_ipv6_literal(name: &str) -> bool {
    name.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|addr| addr.parse::<Ipv6Addr>().is_ok())
}

/// A lowercase DNS name without trailing dot: labels of `[a-z0-9_-]`, not
/// starting or ending with `-`, within the RFC 1035 length limits. `raw` is
/// the operator's spelling, for the message.
pub(super) fn check_dns_name(name: &str, raw: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{raw:?} is not a host name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("{raw:?} is longer than {MAX_NAME_LEN} characters"));
    }
    for label in name.split('.') {
        check_label(label, raw)?;
    }
    Ok(())
}

fn check_label(label: &str, raw: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!("{raw:?} has an empty label"));
    }
    if label.contains('*') {
        return Err(format!(
            "{raw:?}: `*` is only allowed as the whole leftmost label (`*.example.com`) or alone"
        ));
    }
    if label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "{raw:?} has a label longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if let Some(bad) = label
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!("{raw:?} contains the invalid character {bad:?}"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("{raw:?} has a label starting or ending with `-`"));
    }
    Ok(())
}

/// Lowercases a name and strips one trailing dot and any `:port`. A bracketed
/// IPv6 literal keeps its brackets (`[::1]:8443` -> `[::1]`); a bare IPv6
/// address (several colons) is left whole.
pub fn normalize_host(raw: &str) -> String {
    let host = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |end| &raw[..=end])
    } else {
        match raw.split_once(':') {
            Some((host, port)) if !port.contains(':') => host,
            _ => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    host.to_ascii_lowercase()
}

/// A route URI: exact, or a prefix when it ends in `*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum UriPattern {
    Exact(String),
    /// The part before the `*` (`/api/*` -> `/api/`).
    Prefix(String),
}

impl UriPattern {
    /// Parses a route `uri`: it starts with `/`, may end in one `*` (prefix
    /// match), and has no `*` elsewhere, no query, fragment, whitespace or
    /// control characters.
    pub fn parse(raw: &str) -> Result<UriPattern, String> {
        if !raw.starts_with('/') {
            return Err(format!("{raw:?} must start with `/`"));
        }
        if raw.len() > MAX_URI_LEN {
            return Err(format!("is longer than {MAX_URI_LEN} characters"));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
        {
            return Err(format!("{raw:?} contains the invalid character {bad:?}"));
        }
        let (body, prefix) = match raw.strip_suffix('*') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        if body.contains('*') {
            return Err(format!(
                "{raw:?}: `*` is only allowed at the end (prefix match)"
            ));
        }
        Ok(if prefix {
            UriPattern::Prefix(body.to_owned())
        } else {
            UriPattern::Exact(body.to_owned())
        })
    }

    /// Whether a request path matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            UriPattern::Exact(exact) => path == exact,
            UriPattern::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> HostPattern {
        HostPattern::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn host_patterns_are_normalised() {
        assert_eq!(
            host("API.Example.COM."),
            HostPattern::Exact("api.example.com".into())
        );
        assert_eq!(
            host("*.Example.com"),
            HostPattern::Wildcard("example.com".into())
        );
        assert_eq!(host("*"), HostPattern::Any);
        assert_eq!(host("[::1]"), HostPattern::Exact("[::1]".into()));
        assert_eq!(host("127.0.0.1"), HostPattern::Exact("127.0.0.1".into()));
    }

    #[test]
    fn malformed_host_patterns_are_refused() {
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 4].join(".") + ".b";
        for bad in [
            "",
            ".",
            "a..b",
            ".a",
            "**.example.com",
            "a.*.example.com",
            "*example.com",
            "foo*.example.com",
            "a b.com",
            "a/b.com",
            "a.com:443",
            "-a.com",
            "a-.com",
            "ex\u{e4}mple.com",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(HostPattern::parse(&["a".repeat(63).as_str(); 4].join(".")[..253]).is_ok());
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let wildcard = host("*.example.com");
        assert!(wildcard.matches("api.example.com"));
        assert!(!wildcard.matches("a.b.example.com"));
        assert!(!wildcard.matches("example.com"));
        assert!(!wildcard.matches(".example.com"));
        assert!(!wildcard.matches("apiexample.com"));
        assert!(host("*").matches("anything.at.all"));
        assert!(host("api.example.com").matches("api.example.com"));
        assert!(!host("api.example.com").matches("www.example.com"));
    }

    #[test]
    fn normalize_host_strips_port_and_trailing_dot() {
        assert_eq!(normalize_host("API.Example.com.:8443"), "api.example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("example.com"), "example.com");
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("::1"), "::1");
        assert_eq!(normalize_host("10.0.0.1:80"), "10.0.0.1");
    }

    #[test]
    fn uri_patterns() {
        assert_eq!(
            UriPattern::parse("/a/b"),
            Ok(UriPattern::Exact("/a/b".into()))
        );
        assert_eq!(
            UriPattern::parse("/api/*"),
            Ok(UriPattern::Prefix("/api/".into()))
        );
        assert_eq!(UriPattern::parse("/*"), Ok(UriPattern::Prefix("/".into())));
        for bad in [
            "", "a/b", "*", "/a*/b", "/a/**", "/a b", "/a?x=1", "/a#f", "/a\n",
        ] {
            assert!(UriPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        let prefix = UriPattern::Prefix("/api/".into());
        assert!(prefix.matches("/api/"));
        assert!(prefix.matches("/api/x/y"));
        assert!(!prefix.matches("/api"));
        assert!(UriPattern::Exact("/a".into()).matches("/a"));
        assert!(!UriPattern::Exact("/a".into()).matches("/a/"));
    }
}
