//! The path that routes, `skip_mtls_uri_regex` and `$uri` are matched on:
//! percent-decoded and normalised the way nginx builds `$uri` (duplicate
//! slashes merged, `.` and `..` segments resolved), so `/%61dmin` or
//! `/public/../admin` cannot dodge a route or a regex written for `/admin`.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use thiserror::Error;

/// Why a request path cannot be normalised (answered with HTTP 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub(crate) enum PathError {
    #[error("the request path is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    #[error("the request path contains an encoded NUL byte")]
    Nul,
}

/// Decodes and normalises an origin-form request path. Anything that is not
/// an absolute path (`*` of `OPTIONS *`) is returned unchanged: no route
/// can match it.
pub(crate) fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') || is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathError::NotUtf8)?;
    if decoded.contains('\0') {
        return Err(PathError::Nul);
    }
    Ok(Cow::Owned(resolve_segments(&decoded)))
}

/// The common case, checked without allocating: nothing to decode, merge or
/// resolve.
fn is_normal(path: &str) -> bool {
    !path.contains('%') && !path.contains("//") && !path.contains("/.")
}

fn resolve_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/') {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            // Above the root there is nothing to remove: clamp, as browsers do.
            ".." => {
                segments.pop();
            }
            name => segments.push(name),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
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
        for raw in ["/", "/anything", "/a/b/", "/a.b/c.d", "*"] {
            assert!(
                matches!(normalize_path(raw), Ok(Cow::Borrowed(p)) if p == raw),
                "{raw}"
            );
        }
    }

    #[test]
    fn decodes_merges_and_resolves() {
        assert_eq!(norm("/%61dmin"), "/admin");
        assert_eq!(norm("/public/../admin"), "/admin");
        assert_eq!(norm("/public/%2e%2e/admin"), "/admin");
        assert_eq!(norm("//a///b"), "/a/b");
        assert_eq!(norm("/a/./b/."), "/a/b/");
        assert_eq!(norm("/a/b/.."), "/a/");
        assert_eq!(norm("/../../x"), "/x");
        assert_eq!(norm("/.."), "/");
        assert_eq!(norm("/caf%C3%A9"), "/café");
        assert_eq!(norm("/a%20b"), "/a b");
    }

    #[test]
    fn refuses_undecodable_paths() {
        assert_eq!(normalize_path("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(normalize_path("/a%00b"), Err(PathError::Nul));
    }
}
