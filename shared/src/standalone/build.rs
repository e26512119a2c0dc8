//! Turning a parsed file into a [`ConfigState`]: every object validated with
//! [`crate::validate::validate`], exactly as the admin API and the etcd
//! watcher do, and the whole file refused if any object is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::document::Document;
use super::Problem;
use crate::keyring::Keyring;
use crate::resource::Kind;
use crate::state::{ConfigState, Stored};
use crate::store::RawEntry;
use crate::validate::{self, UpstreamRef, Valid, ValidationError};

/// Validates every object of `document`. Objects whose text did not change
/// since `previous` keep their validated value (and so whatever the
/// gateway built from it); the others get `generation` as revision.
pub(super) fn build(
    document: Document,
    keyring: &Keyring,
    previous: Option<&ConfigState>,
    generation: i64,
) -> Result<ConfigState, Vec<Problem>> {
    let mut state = ConfigState {
        revision: generation,
        ..ConfigState::default()
    };
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for (kind, objects) in document.sections {
        for (index, mut object) in objects.into_iter().enumerate() {
            let path = format!("{kind}[{index}]");
            let id = match object_id(&mut object) {
                Ok(id) => id,
                Err(reason) => {
                    problems.push(Problem::new(format!("{path}.id"), reason));
                    continue;
                }
            };
            if let Some(first) = seen.insert((kind, id.clone()), index) {
                problems.push(Problem::new(
                    format!("{path}.id"),
                    format!("duplicate id {id:?}: {kind}[{first}] has it too"),
                ));
                continue;
            }
            let raw = RawEntry {
                key: format!("{kind}/{id}"),
                value: serde_json::to_vec(&object).expect("a JSON value serialises"),
                mod_revision: generation,
            };
            match reuse(previous, kind, &id, &raw) {
                Some((raw, valid)) => state.insert(kind, id, &raw, valid),
                None => match open_and_validate(kind, &id, object, keyring) {
                    Ok(valid) => state.insert(kind, id, &raw, valid),
                    Err(problem) => problems.push(problem.under(&path)),
                },
            }
        }
    }
    problems.extend(dangling_upstream_ids(&state, &seen));
    if problems.is_empty() {
        Ok(state)
    } else {
        Err(problems)
    }
}

/// The object's `id`, a string or (as APISIX allows) an integer, stored
/// back as a string.
fn object_id(object: &mut Value) -> Result<String, String> {
    let Value::Object(map) = object else {
        return Err("each entry must be an object with an `id`".into());
    };
    let id = match map.get("id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(_) => return Err("must be a string or a non-negative integer".into()),
        None => return Err("required: every object in a standalone file has an `id`".into()),
    };
    validate::check_id(&id).map_err(|e| e.to_string())?;
    map.insert("id".into(), Value::String(id.clone()));
    Ok(id)
}

/// The previous version of this object when its text is unchanged.
fn reuse(
    previous: Option<&ConfigState>,
    kind: Kind,
    id: &str,
    raw: &RawEntry,
) -> Option<(RawEntry, Valid)> {
    fn same<T>(stored: Option<&Stored<T>>, raw: &RawEntry) -> Option<(RawEntry, Arc<T>)> {
        let stored = stored.filter(|s| *s.raw == *raw.value)?;
        let raw = RawEntry {
            mod_revision: stored.mod_revision,
            ..raw.clone()
        };
        Some((raw, Arc::clone(&stored.value)))
    }
    let previous = previous?;
    match kind {
        Kind::Ssls => same(previous.ssls.get(id), raw).map(|(r, v)| (r, Valid::Ssl(v))),
        Kind::Routes => same(previous.routes.get(id), raw).map(|(r, v)| (r, Valid::Route(v))),
        Kind::Upstreams => {
            same(previous.upstreams.get(id), raw).map(|(r, v)| (r, Valid::Upstream(v)))
        }
    }
}

/// Why one object was refused, with the field when validation names one.
struct ObjectProblem {
    field: Option<String>,
    reason: String,
}

impl ObjectProblem {
    fn under(self, path: &str) -> Problem {
        match self.field {
            Some(field) => Problem::new(format!("{path}.{field}"), self.reason),
            None => Problem::new(path, self.reason),
        }
    }
}

fn open_and_validate(
    kind: Kind,
    id: &str,
    mut object: Value,
    keyring: &Keyring,
) -> Result<Valid, ObjectProblem> {
    keyring
        .open_object(kind, &mut object)
        .map_err(|e| ObjectProblem {
            field: None,
            reason: e.to_string(),
        })?;
    validate::validate(kind, id, &object).map_err(|e| match e {
        ValidationError::Field { field, reason } => ObjectProblem {
            field: Some(field),
            reason,
        },
        ValidationError::Schema(message) => schema_problem(message),
        other => ObjectProblem {
            field: None,
            reason: other.to_string(),
        },
    })
}

/// A schema error names its property inside the message (`property "x.y"
/// validation failed: ...`, APISIX's wording, which the admin API returns
/// as is); here the property goes into the path.
fn schema_problem(message: String) -> ObjectProblem {
    let split = message
        .strip_prefix("property \"")
        .and_then(|rest| rest.split_once("\" validation failed: "));
    match split {
        Some((field, reason)) => ObjectProblem {
            field: Some(field.to_owned()),
            reason: reason.to_owned(),
        },
        None => ObjectProblem {
            field: None,
            reason: message,
        },
    }
}

/// Routes naming an upstream the file does not hold: the admin API refuses
/// them, and so does a standalone file.
fn dangling_upstream_ids(
    state: &ConfigState,
    seen: &BTreeMap<(Kind, String), usize>,
) -> Vec<Problem> {
    let upstreams: BTreeSet<&str> = seen
        .keys()
        .filter(|(kind, _)| *kind == Kind::Upstreams)
        .map(|(_, id)| id.as_str())
        .collect();
    state
        .routes
        .iter()
        .filter_map(|(id, route)| match &route.value.upstream {
            UpstreamRef::Id(upstream) if !upstreams.contains(upstream.as_str()) => {
                let index = seen[&(Kind::Routes, id.clone())];
                Some(Problem::new(
                    format!("routes[{index}].upstream_id"),
                    format!("upstream {upstream} is not in the file's `upstreams`"),
                ))
            }
            _ => None,
        })
        .collect()
}
