//! The etcd key layout: every object lives at `<prefix>/<kind>/<id>`.

use crate::resource::Kind;

/// Key layout below one configured prefix (e.g. `/portcullis`).
#[derive(Clone, Debug)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    /// `prefix` is normalised to start with `/` and not end with one.
    pub fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_end_matches('/');
        let prefix = if trimmed.starts_with('/') {
            trimmed.to_owned()
        } else {
            format!("/{trimmed}")
        };
        Self { prefix }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix every watched key starts with (with a trailing `/`).
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The directory holding every object of `kind`, with a trailing `/`.
    pub fn dir(&self, kind: Kind) -> String {
        format!("{}/{}/", self.prefix, kind.as_str())
    }

    pub fn object(&self, kind: Kind, id: &str) -> String {
        format!("{}/{}/{}", self.prefix, kind.as_str(), id)
    }

    /// Splits a full key back into its kind and id. Keys outside the layout
    /// (other kinds, nested paths, empty ids) yield `None`.
    pub fn parse<'k>(&self, key: &'k str) -> Option<(Kind, &'k str)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        let (kind, id) = rest.split_once('/')?;
        let kind = Kind::from_plural(kind)?;
        (!id.is_empty() && !id.contains('/')).then_some((kind, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_keys() {
        let layout = KeyLayout::new("portcullis/");
        assert_eq!(layout.prefix(), "/portcullis");
        let key = layout.object(Kind::Routes, "7");
        assert_eq!(key, "/portcullis/routes/7");
        assert_eq!(layout.parse(&key), Some((Kind::Routes, "7")));
    }

    #[test]
    fn rejects_foreign_keys() {
        let layout = KeyLayout::new("/portcullis");
        assert_eq!(layout.parse("/portcullis/plugins/1"), None);
        assert_eq!(layout.parse("/portcullis/ssls/"), None);
        assert_eq!(layout.parse("/portcullis/ssls/a/b"), None);
        assert_eq!(layout.parse("/other/ssls/1"), None);
        assert_eq!(layout.parse("/portcullisx/ssls/1"), None);
    }
}
