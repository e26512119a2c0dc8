//! The built-in plugins' configurations: one module per plugin, holding
//! everything the model knows about it — its JSON schema, its typed
//! configuration and its semantic checks ([`PluginSpec`]). Validation returns
//! the typed configuration, which the validated route carries
//! ([`PluginConfigs`]); the gateway builds its runtime plugin from it and
//! never reads the JSON again, so a rule cannot be checked by the admin API
//! and differently by the gateway.
//!
//! # Adding a plugin
//!
//! 1. Here, `plugins/<name>.rs`: a type implementing [`PluginSpec`], and a
//!    `mod` line plus one line in the `registry!` below.
//! 2. In the gateway, `plugins/<name>.rs`: its runtime plugin, built from
//!    that type, plus one line in the gateway's registry (a missing one does
//!    not compile: [`PluginConfig`] is matched exhaustively there).
//!
//! Layering: below [`crate::validate`] (which calls [`check_schemas`] and
//! [`PluginConfigs::from_checked`]), above [`crate::schema`],
//! [`crate::client_chain`] and [`crate::error`].

pub mod client_cert_auth;
pub mod forward_client_cert;
pub mod mtls_acl;
pub mod mtls_auth;
pub mod proxy_rewrite;
pub mod template;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jsonschema::Validator;
use serde_json::Value;

use crate::error::ValidationError;
use crate::schema;

/// What the model knows about one plugin.
pub trait PluginSpec: Sized {
    /// The name a route's `plugins` configures it under.
    const NAME: &'static str;

    /// The shape of its configuration (`additionalProperties: false`).
    fn schema() -> Value;

    /// The typed configuration, from JSON that passed [`Self::schema`]:
    /// everything that needs parsing or more than one field is checked
    /// here. `route` is every plugin configuration of the route, for rules
    /// between plugins. Field names in errors are relative to the plugin
    /// (`uri`, `certificates[1]`).
    fn validate(config: &Value, route: &BTreeMap<String, Value>) -> Result<Self, ValidationError>;
}

/// Declares the plugins of this build: [`PluginConfig`] (one variant each),
/// [`PLUGINS`], and the dispatch from a name to its module.
macro_rules! registry {
    ($($variant:ident($spec:ty),)*) => {
        /// One plugin's validated configuration.
        #[derive(Clone, Debug)]
        pub enum PluginConfig {
            // Boxed: the variants differ much in size.
            $($variant(Box<$spec>),)*
        }

        impl PluginConfig {
            /// The plugin's name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(PluginConfig::$variant(_) => <$spec as PluginSpec>::NAME,)*
                }
            }
        }

        /// Names of the plugins this build knows.
        pub const PLUGINS: &[&str] = &[$(<$spec as PluginSpec>::NAME,)*];

        fn compile_schemas() -> BTreeMap<&'static str, Validator> {
            BTreeMap::from([
                $((<$spec as PluginSpec>::NAME, schema::compile(&<$spec as PluginSpec>::schema())),)*
            ])
        }

        /// `None` for a name this build does not know.
        fn validate_one(
            name: &str,
            config: &Value,
            route: &BTreeMap<String, Value>,
        ) -> Option<Result<PluginConfig, ValidationError>> {
            $(
                if name == <$spec as PluginSpec>::NAME {
                    let valid = <$spec as PluginSpec>::validate(config, route);
                    return Some(valid.map(|spec| PluginConfig::$variant(Box::new(spec))));
                }
            )*
            None
        }
    };
}

registry! {
    ProxyRewrite(proxy_rewrite::ProxyRewrite),
    MtlsAuth(mtls_auth::MtlsAuth),
    MtlsAcl(mtls_acl::MtlsAcl),
    ClientCertAuth(client_cert_auth::ClientCertAuth),
    ForwardClientCert(forward_client_cert::ForwardClientCert),
}

static SCHEMAS: LazyLock<BTreeMap<&'static str, Validator>> = LazyLock::new(compile_schemas);

/// Checks each of a route's `plugins` against its schema; unknown plugin
/// names are refused. Errors name `plugins.<name>.<field>`.
pub fn check_schemas<'a>(
    plugins: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> Result<(), ValidationError> {
    for (name, config) in plugins {
        let validator = SCHEMAS
            .get(name.as_str())
            .ok_or_else(|| ValidationError::Schema(format!("unknown plugin {name}")))?;
        schema::first_error(validator, config, &format!("plugins.{name}"))?;
    }
    Ok(())
}

/// Every plugin configuration of a route, validated, in plugin name order.
#[derive(Clone, Debug, Default)]
pub struct PluginConfigs {
    configs: Box<[PluginConfig]>,
}

impl PluginConfigs {
    /// Validates a route's `plugins`: each against its schema, then its
    /// semantic checks.
    pub fn validate(plugins: &BTreeMap<String, Value>) -> Result<PluginConfigs, ValidationError> {
        check_schemas(plugins)?;
        PluginConfigs::from_checked(plugins)
    }

    /// The typed configurations of `plugins`, which passed
    /// [`check_schemas`]. Errors name `plugins.<name>.<field>`.
    pub fn from_checked(
        plugins: &BTreeMap<String, Value>,
    ) -> Result<PluginConfigs, ValidationError> {
        let configs = plugins
            .iter()
            .map(|(name, config)| {
                validate_one(name, config, plugins)
                    .unwrap_or_else(|| {
                        Err(ValidationError::Schema(format!("unknown plugin {name}")))
                    })
                    .map_err(|e| e.within(&format!("plugins.{name}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(PluginConfigs { configs })
    }

    /// Configurations built by hand (tests, other sources), kept in plugin
    /// name order.
    pub fn from_configs(configs: impl IntoIterator<Item = PluginConfig>) -> PluginConfigs {
        let mut configs: Vec<_> = configs.into_iter().collect();
        configs.sort_by_key(PluginConfig::name);
        PluginConfigs {
            configs: configs.into_boxed_slice(),
        }
    }

    /// The configuration of the plugin `name`, if the route configures it.
    pub fn get(&self, name: &str) -> Option<&PluginConfig> {
        self.configs.iter().find(|config| config.name() == name)
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

    /// The route's `client-cert-auth`, if any.
    pub fn client_cert_auth(&self) -> Option<&client_cert_auth::ClientCertAuth> {
        self.configs.iter().find_map(|config| match config {
            PluginConfig::ClientCertAuth(auth) => Some(&**auth),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests;
