use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What every stored object carries besides its own settings: its `id`, a
/// description, labels, and the times the admin API maintains. Flattened
/// into [`super::Route`], [`super::Ssl`] and [`super::Upstream`], so the
/// JSON keeps these fields at its top level.
///
/// `name` is not here: SSL objects have none (as in APISIX).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::optional_id"
    )]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_time: Option<i64>,
}
