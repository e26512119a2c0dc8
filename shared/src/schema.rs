//! JSON schemas of the stored resources and of the built-in plugins, compiled
//! once per process.

use serde_json::Value;

use crate::resource::Kind;
use crate::validate::ValidationError;

/// Checks `value` against the schema of `kind` (plugins included).
pub fn check(kind: Kind, value: &Value) -> Result<(), ValidationError> {
    let _ = (kind, value);
    todo!("validate helper")
}

/// Names of the plugins this build knows.
pub const PLUGINS: &[&str] = &["proxy-rewrite"];
