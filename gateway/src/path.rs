//! The path that routes, `skip_mtls_uri_regex` and `$uri` are matched on:
//! percent-decoded, with duplicate slashes merged (as nginx builds `$uri`),
//! so `/%61dmin` or `/admin//x` cannot dodge a route or a regex written for
//! `/admin`.
//!
//! The upstream receives the path as the client sent it, so the gateway
//! must never judge a path the upstream could read as another one. Paths
//! with a `.` or `..` segment (RFC 3986 clients resolve them before
//! sending), in any encoding and in the servlet forms `..;x` and `.;x`, are
//! therefore refused rather than resolved; so is a path starting with `//`,
//! which URL parsers read as `//host/path`. WHATWG URL parsers and IIS read
//! `\` as `/`: a raw `\` is not an RFC 3986 character and is refused, and
//! an encoded one (`%5c`) separates segments when looking for dot-segments.
//! Merging an inner `//` keeps every segment, so the routed path and the
//! sent one name the same resource to any upstream.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use thiserror::Error;

/// Why a request path is refused (answered with HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum PathError {
    #[error("the request path is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    #[error("the request path contains an encoded NUL byte")]
    Nul,
    #[error("the request path has a `.` or `..` segment (clients resolve dot-segments before sending, RFC 3986 §5.2.4)")]
    DotSegment,
    #[error("the request path starts with `//`, which URL parsers read as a host name")]
    LeadingDoubleSlash,
    #[error("the request path contains a raw `\\` (not an RFC 3986 character; some upstreams read it as `/`)")]
    Backslash,
}

impl PathError {
    /// What the client is told: the reason, in a few words.
    pub(crate) fn public_message(self) -> &'static str {
        match self {
            PathError::NotUtf8 => "invalid request path: not UTF-8 once percent-decoded",
            PathError::Nul => "invalid request path: encoded NUL byte",
            PathError::DotSegment => "invalid request path: `.` or `..` segment",
            PathError::LeadingDoubleSlash => "invalid request path: starts with `//`",
            PathError::Backslash => "invalid request path: raw `\\`",
        }
    }
}

/// Decodes and normalises an origin-form request path. Anything that is not
/// an absolute path (`*` of `OPTIONS *`) is returned unchanged: no route
/// can match it.
pub(crate) fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') || is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    if raw.starts_with("//") {
        return Err(PathError::LeadingDoubleSlash);
    }
    if raw.contains('\\') {
        return Err(PathError::Backslash);
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)?;
    if decoded.contains('\0') {
        return Err(PathError::Nul);
    }
    if any_dot_segment(decoded.as_bytes()) {
        return Err(PathError::DotSegment);
    }
    if !decoded.contains("//") {
        return Ok(decoded);
    }
    Ok(Cow::Owned(merge_slashes(&decoded)))
}

/// The common case, checked without allocating: nothing to decode, merge or
/// refuse (a dot-segment starts after a `/`).
fn is_normal(path: &str) -> bool {
    !path.contains(['%', '\\']) && !path.contains("//") && !path.contains("/.")
}

/// Whether `path` (percent-encoded or not) has a `.` or `..` segment once
/// decoded, also in the servlet forms: what an upstream could resolve into
/// another path than the one the gateway judged.
pub(crate) fn has_dot_segment(path: &str) -> bool {
    let decoded: Cow<'_, [u8]> = percent_decode_str(path).into();
    any_dot_segment(&decoded)
}

/// Whether a decoded path has a dot-segment, split as the most lenient
/// upstream splits it: `\` separates segments too.
fn any_dot_segment(decoded: &[u8]) -> bool {
    decoded
        .split(|&b| matches!(b, b'/' | b'\\'))
        .any(is_dot_segment)
}

/// `.` or `..`, alone or with servlet path parameters (`..;jsessionid=x`),
/// which Tomcat and Jetty strip before resolving the segment.
fn is_dot_segment(segment: &[u8]) -> bool {
    let name = segment.split(|&b| b == b';').next().unwrap_or(segment);
    matches!(name, b"." | b"..")
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> String {
        normalize_path(raw).unwrap().into_owned()
    }

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        for raw in [
            "/",
            "/anything",
            "/a/b/",
            "/a.b/c.d",
            "*",
            "/.well-known/x",
            "/a/..b/c.",
        ] {
            assert!(
                matches!(normalize_path(raw), Ok(Cow::Borrowed(p)) if p == raw),
                "{raw}"
            );
        }
    }

    #[test]
    fn decodes_and_merges_slashes() {
        assert_eq!(norm("/%61dmin"), "/admin");
        assert_eq!(norm("/a///b"), "/a/b");
        assert_eq!(norm("/a/b//"), "/a/b/");
        assert_eq!(norm("/a%2F%2Fb"), "/a/b");
        assert_eq!(norm("/caf%C3%A9"), "/café");
        assert_eq!(norm("/a%20b"), "/a b");
        assert_eq!(norm("/a/...%2e/b"), "/a/..../b", "not a dot-segment");
        assert_eq!(norm("/a/..x;y/b"), "/a/..x;y/b");
    }

    #[test]
    fn refuses_dot_segments_in_every_form() {
        for raw in [
            "/..",
            "/.",
            "/public/../admin",
            "/public/./admin",
            "/a/b/..",
            "/a/b/.",
            "/admin/%2e%2e/public/x",
            "/admin/%2E%2E/public/x",
            "/admin/.%2E/public/x",
            "/admin/%2e./public/x",
            "/public/%2e/admin",
            "/public/..%2Fadmin",
            "/public%2F..%2Fadmin",
            "/public/..;/admin",
            "/public/..;jsessionid=1/admin",
            "/public/.;x/admin",
            "/public/%2e%2e%3bx/admin",
            "/a//../b",
            "/anything%5c..%5cuuid",
            "/anything%5C..%5Cuuid",
            "/a/..%5cb",
            "/a%5c.%5cb",
        ] {
            assert_eq!(normalize_path(raw), Err(PathError::DotSegment), "{raw}");
        }
    }

    #[test]
    fn finds_dot_segments_in_any_encoding() {
        for path in [
            "/a/../b",
            "/a/%2E%2e/b",
            "/a/.%2e",
            "/a/..%3Bx/b",
            "/a/.;x",
            "/a%2F.%2Fb",
            "/a%5c..%5cb",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in ["/a/b", "/a/..b/c", "/a/%252e%252e/b", "/a/.../b", "/a/%ff"] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }

    #[test]
    fn refuses_a_raw_backslash() {
        for raw in ["/anything\\..\\uuid", "/a\\b", "/\\", "/a%20\\b"] {
            assert_eq!(normalize_path(raw), Err(PathError::Backslash), "{raw}");
        }
        assert_eq!(norm("/a%5cb"), "/a\\b", "encoded: judged as decoded");
    }

    #[test]
    fn refuses_a_leading_double_slash() {
        for raw in ["//admin", "///a", "//a/%2e%2e/b"] {
            assert_eq!(
                normalize_path(raw),
                Err(PathError::LeadingDoubleSlash),
                "{raw}"
            );
        }
        assert_eq!(norm("/%2Fadmin"), "/admin", "sent encoded: no host to read");
    }

    #[test]
    fn refuses_undecodable_paths() {
        assert_eq!(normalize_path("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalize_path("/a%00b"), Err(PathError::Nul));
    }
}
