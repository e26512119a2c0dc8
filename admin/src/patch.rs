//! JSON merge patch (RFC 7386), the semantics of APISIX's `PATCH`.

use serde_json::{Map, Value};

/// Applies `patch` to `target`: objects merge key by key, `null` removes a
/// key, anything else (arrays included) replaces the target value.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Fields the server sets on every write: never the subject of a conflict.
const SERVER_FIELDS: [&str; 3] = ["id", "create_time", "update_time"];

/// The field a concurrent write took from `patch`, if any: one that `patch`
/// sets (or removes) and that changed between `base`, the object the patch
/// was first merged on, and `current`, to a value other than the patch's.
/// Merging again on `current` would silently undo that writer's change, so
/// this is a real conflict; a concurrent change of any other field is not.
pub(crate) fn conflicting_field(
    base: &Value,
    current: &Value,
    patch: &Map<String, Value>,
) -> Option<String> {
    patch
        .iter()
        .filter(|(name, _)| !SERVER_FIELDS.contains(&name.as_str()))
        .find_map(|(name, value)| {
            let (base, current) = (base.get(name), current.get(name));
            conflict_at(base, current, value).map(|inner| join(name, &inner))
        })
}

/// [`conflicting_field`] one level down: `patch` is what the patch sets at
/// a field that `base` and `current` hold (or not).
fn conflict_at(base: Option<&Value>, current: Option<&Value>, patch: &Value) -> Option<String> {
    match patch {
        Value::Object(fields) => fields.iter().find_map(|(name, value)| {
            let (base, current) = (child(base, name), child(current, name));
            conflict_at(base, current, value).map(|inner| join(name, &inner))
        }),
        // Removed by the patch: a conflict only if re-added meanwhile.
        Value::Null => (base != current && current.is_some()).then(String::new),
        value => (base != current && current != Some(value)).then(String::new),
    }
}

fn child<'a>(value: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    value.and_then(|value| value.get(name))
}

fn join(name: &str, inner: &str) -> String {
    if inner.is_empty() {
        name.to_owned()
    } else {
        format!("{name}.{inner}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn merged(target: Value, patch: Value) -> Value {
        let mut target = target;
        merge_patch(&mut target, &patch);
        target
    }

    /// The examples of RFC 7386, appendix A.
    #[test]
    fn rfc_7386_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (target, patch, expected) in cases {
            assert_eq!(
                merged(target.clone(), patch.clone()),
                expected,
                "{target} + {patch}"
            );
        }
    }

    #[test]
    fn nested_route_patch_keeps_siblings() {
        let route = json!({
            "uri": "/a",
            "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:1": 1}},
        });
        let patch = json!({"upstream": {"nodes": {"127.0.0.1:2": 1, "127.0.0.1:1": null}}});
        assert_eq!(
            merged(route, patch),
            json!({"uri": "/a", "upstream": {"type": "roundrobin", "nodes": {"127.0.0.1:2": 1}}})
        );
    }

    fn object(value: &Value) -> &Map<String, Value> {
        value.as_object().expect("an object")
    }

    #[test]
    fn concurrent_changes_of_other_fields_are_no_conflict() {
        let base = json!({"uri": "/a", "labels": {"a": "1"}, "update_time": 1});
        let current = json!({"uri": "/b", "labels": {"a": "1", "b": "2"}, "update_time": 2});
        for patch in [
            json!({"labels": {"c": "3"}}),
            json!({"desc": "x"}),
            json!({"labels": {"a": null}}),
            json!({"update_time": 5}),
            json!({"uri": "/b"}),
        ] {
            assert_eq!(
                conflicting_field(&base, &current, object(&patch)),
                None,
                "{patch}"
            );
        }
    }

    #[test]
    fn a_concurrent_change_of_a_patched_field_is_named() {
        let base = json!({"uri": "/a", "labels": {"a": "1"}, "plugins": {"x": {"k": 1}}});
        let current = json!({"uri": "/b", "labels": {"a": "2"}});
        for (patch, field) in [
            (json!({"uri": "/c"}), "uri"),
            (json!({"labels": {"a": "3"}}), "labels.a"),
            (json!({"labels": {"a": null}}), "labels.a"),
            (json!({"plugins": {"x": {"k": 2}}}), "plugins.x.k"),
        ] {
            assert_eq!(
                conflicting_field(&base, &current, object(&patch)).as_deref(),
                Some(field),
                "{patch}"
            );
        }
        let readded = json!({"labels": {"a": "1"}});
        let removed = json!({"labels": {}});
        assert_eq!(
            conflicting_field(&removed, &readded, object(&json!({"labels": {"a": null}})))
                .as_deref(),
            Some("labels.a")
        );
    }
}
