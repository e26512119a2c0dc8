//! A route's plugin configurations as the validated state keeps them: each
//! as its compact JSON text.
//!
//! As `serde_json::Value`s they cost ~0.6 KB per JSON object (a B-tree node
//! each): at 100,000 routes that was the largest part of the validated
//! state. They are read only when a route's plugins are built, which parses
//! them again.

use std::collections::BTreeMap;

use serde_json::Value;

/// Every plugin configuration of a route, in plugin name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginConfigs {
    configs: Box<[PluginConfig]>,
}

/// One plugin's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginConfig {
    name: Box<str>,
    /// Printed from an already parsed value, so it parses again.
    json: Box<str>,
}

impl PluginConfigs {
    /// Keeps `configs` (as a route's `plugins` holds them).
    pub fn new(configs: &BTreeMap<String, Value>) -> PluginConfigs {
        let configs = configs
            .iter()
            .map(|(name, config)| PluginConfig {
                name: name.as_str().into(),
                json: config.to_string().into_boxed_str(),
            })
            .collect();
        PluginConfigs { configs }
    }

    /// The configuration of the plugin `name`, if the route configures it.
    pub fn get(&self, name: &str) -> Option<&PluginConfig> {
        self.configs.iter().find(|config| &*config.name == name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    /// Every configuration, in plugin name order.
    pub fn iter(&self) -> impl Iterator<Item = &PluginConfig> {
        self.configs.iter()
    }
}

impl PluginConfig {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration as JSON. Parsing text printed by `serde_json`
    /// fails only in theory; callers treat a failure as a configuration the
    /// plugin cannot be built from.
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.json)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn configurations_round_trip_in_name_order() {
        let rewrite = json!({"headers": {"X-A": "$host", "X-B": [1, 2.5, "é\n"]}});
        let auth = json!({"ca": ["PEM"], "depth": 2, "required": null});
        let configs = PluginConfigs::new(&BTreeMap::from([
            ("proxy-rewrite".to_owned(), rewrite.clone()),
            ("client-cert-auth".to_owned(), auth.clone()),
        ]));
        let names: Vec<_> = configs.iter().map(PluginConfig::name).collect();
        assert_eq!(names, ["client-cert-auth", "proxy-rewrite"]);
        assert_eq!(
            configs.get("proxy-rewrite").unwrap().value().unwrap(),
            rewrite
        );
        assert_eq!(
            configs.get("client-cert-auth").unwrap().value().unwrap(),
            auth
        );
        assert!(configs.contains("proxy-rewrite") && !configs.contains("mtls-acl"));
        assert!(PluginConfigs::new(&BTreeMap::new()).is_empty());
    }
}
