//! `${{VAR}}` and `${{VAR:=default}}` in a standalone file, as APISIX
//! substitutes them: in every string (keys and values) of the parsed
//! document, so a value can never change the document's structure.

use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::{Map, Value};

use super::Problem;

static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?::=([^}]*))?\}\}")
        .expect("the variable pattern compiles")
});

/// Substitutes every variable in `value` from `lookup`; a variable that is
/// unset and has no default is a problem at its path.
pub(super) fn substitute(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) {
    match value {
        Value::String(text) => {
            if let Some(replaced) = substitute_text(text, path, lookup, problems) {
                *text = replaced;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, &format!("{path}[{i}]"), lookup, problems);
            }
        }
        Value::Object(map) => {
            let entries = std::mem::take(map);
            *map = entries
                .into_iter()
                .map(|(key, mut item)| {
                    let key = substitute_text(&key, path, lookup, problems).unwrap_or(key);
                    substitute(&mut item, &join(path, &key), lookup, problems);
                    (key, item)
                })
                .collect::<Map<String, Value>>();
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `None` when `text` holds no variable.
fn substitute_text(
    text: &str,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    if !text.contains("${{") {
        return None;
    }
    let replaced = VARIABLE.replace_all(text, |caps: &Captures<'_>| {
        let name = &caps[1];
        match (lookup(name), caps.get(2)) {
            (Some(value), _) => value,
            (None, Some(default)) => default.as_str().trim().to_owned(),
            (None, None) => {
                problems.push(Problem::new(
                    path,
                    format!("environment variable {name} is not set and `${{{{{name}:=default}}}}` gives no default"),
                ));
                String::new()
            }
        }
    });
    Some(replaced.into_owned())
}

/// `routes[0]` + `uri` → `routes[0].uri`.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(mut value: Value) -> (Value, Vec<Problem>) {
        let lookup = |name: &str| (name == "HOST").then(|| "10.0.0.7".to_owned());
        let mut problems = Vec::new();
        substitute(&mut value, "", &lookup, &mut problems);
        (value, problems)
    }

    #[test]
    fn set_variables_and_defaults_are_substituted_in_keys_and_values() {
        let (value, problems) = run(json!({
            "routes": [{
                "uri": "/${{ PREFIX:=api }}/v1",
                "upstream": {"nodes": {"${{HOST}}:80": 1}, "name": "${{HOST}}-${{NOPE:=x}}"},
                "priority": 3
            }]
        }));
        assert!(problems.is_empty(), "{problems:?}");
        let route = &value["routes"][0];
        assert_eq!(route["uri"], "/api/v1");
        assert_eq!(route["upstream"]["nodes"]["10.0.0.7:80"], 1);
        assert_eq!(route["upstream"]["name"], "10.0.0.7-x");
        assert_eq!(route["priority"], 3);
    }

    #[test]
    fn an_unset_variable_without_default_is_a_problem_at_its_path() {
        let (_, problems) = run(json!({"routes": [{"uri": "/${{MISSING}}"}]}));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "routes[0].uri");
        assert!(
            problems[0].reason.contains("MISSING is not set"),
            "{problems:?}"
        );
    }

    #[test]
    fn text_without_variables_is_left_alone() {
        let (value, problems) = run(json!({"a": "${HOST} $HOST {{HOST}}"}));
        assert!(problems.is_empty());
        assert_eq!(value["a"], "${HOST} $HOST {{HOST}}");
    }
}
