//! Reading a standalone file: the end flag, YAML or JSON, environment
//! variables, and the split into sections.

use std::path::Path;

use serde_json::Value;

use super::{env, LoadError, Problem};
use crate::resource::Kind;

/// The last line of a YAML file: a file cut short while it was written
/// lacks it and is never loaded.
pub const END_FLAG: &str = "#END";

/// A file larger than this is refused unread.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The objects of one file, section by section, in file order, with the
/// environment already substituted.
#[derive(Debug, Default)]
pub(super) struct Document {
    pub sections: Vec<(Kind, Vec<Value>)>,
}

/// Reads and parses `path` (`.json`: JSON, anything else: YAML).
pub(super) fn read(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, LoadError> {
    let display = path.display().to_string();
    let read_error = |source| LoadError::Read {
        path: display.clone(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge { path: display });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(&text, is_json(path), lookup).map_err(|problems| LoadError::Invalid {
        path: display,
        problems,
    })
}

pub(super) fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

/// Parses the text of a file. YAML must end with [`END_FLAG`]; JSON, which
/// cannot be cut short and still parse, may.
pub(super) fn parse(
    text: &str,
    json: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Document, Vec<Problem>> {
    let body = match strip_end_flag(text) {
        Some(body) => body,
        None if json => text,
        None => {
            return Err(vec![Problem::new(
                "",
                format!("missing valid end flag: the last line must be `{END_FLAG}` (a file without it may be half-written)"),
            )])
        }
    };
    let mut value: Value = if json {
        serde_json::from_str(body).map_err(|e| vec![Problem::new("", format!("not JSON: {e}"))])?
    } else {
        serde_yaml::from_str(body).map_err(|e| vec![Problem::new("", format!("not YAML: {e}"))])?
    };
    if value.is_null() {
        // An empty file (only the end flag) serves nothing.
        value = Value::Object(Default::default());
    }
    let mut problems = Vec::new();
    env::substitute(&mut value, "", lookup, &mut problems);
    let document = sections(value, &mut problems);
    if problems.is_empty() {
        Ok(document)
    } else {
        Err(problems)
    }
}

/// The text before a last non-blank line that is exactly the end flag.
fn strip_end_flag(text: &str) -> Option<&str> {
    let trimmed = text.trim_end();
    let body = trimmed.strip_suffix(END_FLAG)?;
    (body.is_empty() || body.ends_with('\n')).then_some(body)
}

/// `routes:`, `upstreams:`, `ssls:`: each a list of objects. Anything else
/// is refused rather than ignored, so a section this gateway does not serve
/// is never silently dropped.
fn sections(value: Value, problems: &mut Vec<Problem>) -> Document {
    let Value::Object(map) = value else {
        problems.push(Problem::new(
            "",
            "the file must be a mapping of `routes`, `upstreams` and `ssls`",
        ));
        return Document::default();
    };
    let mut document = Document::default();
    for (name, section) in map {
        let Some(kind) = Kind::from_plural(&name) else {
            problems.push(Problem::new(
                &name,
                "unknown section: only `routes`, `upstreams` and `ssls` are served",
            ));
            continue;
        };
        match section {
            Value::Array(objects) => document.sections.push((kind, objects)),
            Value::Null => {}
            _ => problems.push(Problem::new(&name, "must be a list of objects")),
        }
    }
    // A fixed order, whatever the file's: problems are listed stably.
    document.sections.sort_by_key(|(kind, _)| *kind);
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn yaml_needs_the_end_flag() {
        let problems = parse("routes: []\n", false, &no_env).expect_err("no end flag");
        assert!(
            problems[0].reason.starts_with("missing valid end flag"),
            "{problems:?}"
        );
        let problems = parse("routes: []\n#END-ish\n", false, &no_env).expect_err("not the flag");
        assert!(problems[0].reason.starts_with("missing valid end flag"));
        parse("routes: []\n#END\n\n", false, &no_env).expect("trailing blank lines are fine");
        parse("#END\n", false, &no_env).expect("an empty file serves nothing");
    }

    #[test]
    fn json_may_end_with_the_flag() {
        let doc = parse(r#"{"routes": [{"id": 1}]}"#, true, &no_env).expect("json");
        assert_eq!(doc.sections[0].1.len(), 1);
        parse("{\"routes\": []}\n#END\n", true, &no_env).expect("json with the flag");
        let problems = parse("{\"routes\": [", true, &no_env).expect_err("cut short");
        assert!(problems[0].reason.starts_with("not JSON"), "{problems:?}");
    }

    #[test]
    fn unknown_sections_and_shapes_are_refused() {
        let problems = parse(
            "routes: {id: 1}\nconsumers: []\nupstreams: []\n#END\n",
            false,
            &no_env,
        )
        .expect_err("bad");
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["consumers", "routes"]);
        let problems = parse("- 1\n#END\n", false, &no_env).expect_err("a list");
        assert!(problems[0].reason.contains("must be a mapping"));
    }
}
