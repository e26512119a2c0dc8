//! `config.yaml`: the process configuration (as opposed to the objects stored
//! in etcd). See `conf/config.yaml` for every key with its default.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// Why the configuration file cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub deployment: Deployment,
    #[serde(default)]
    pub proxy: ProxyConfig,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub etcd: EtcdConfig,
    #[serde(default)]
    pub admin: Option<AdminConfig>,
}

/// What one process does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Admin API and data plane in one process.
    #[default]
    Traditional,
    /// Traffic only; never writes to etcd.
    DataPlane,
    /// Admin API only.
    ControlPlane,
}

impl Role {
    pub fn serves_admin(self) -> bool {
        matches!(self, Role::Traditional | Role::ControlPlane)
    }

    pub fn serves_traffic(self) -> bool {
        matches!(self, Role::Traditional | Role::DataPlane)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Several endpoints = failover.
    #[serde(default = "default_endpoints")]
    pub endpoints: Vec<String>,
    /// Every key lives under it.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Per-request timeout, seconds.
    #[serde(default = "default_etcd_timeout")]
    pub timeout: u64,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: default_endpoints(),
            prefix: default_prefix(),
            timeout: default_etcd_timeout(),
        }
    }
}

impl EtcdConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    #[serde(default)]
    pub keys: Vec<AdminKey>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminKey {
    pub name: String,
    pub key: String,
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default = "default_http_listen")]
    pub http_listen: Vec<String>,
    #[serde(default = "default_https_listen")]
    pub https_listen: Vec<String>,
    /// Used when a client sends no SNI; without it such handshakes are refused.
    #[serde(default)]
    pub fallback_sni: Option<String>,
    /// Worker threads of the runtime; 0 = one per core.
    #[serde(default)]
    pub worker_threads: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            http_listen: default_http_listen(),
            https_listen: default_https_listen(),
            fallback_sni: None,
            worker_threads: 0,
        }
    }
}

impl Config {
    /// Reads, parses and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        let config: Config = serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: display,
            source,
        })?;
        config.check()?;
        Ok(config)
    }

    /// Semantic checks serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let d = &self.deployment;
        if d.etcd.endpoints.is_empty() {
            return Err(invalid("deployment.etcd.endpoints must name at least one endpoint"));
        }
        if d.role.serves_admin() {
            let admin = d.admin.as_ref().ok_or_else(|| {
                invalid("deployment.admin is required for the traditional and control_plane roles")
            })?;
            if admin.keys.is_empty() || admin.keys.iter().any(|k| k.key.trim().is_empty()) {
                return Err(invalid(
                    "deployment.admin.keys must hold at least one non-empty key: refusing to serve an unprotected admin API",
                ));
            }
        }
        if d.role.serves_traffic() && self.proxy.http_listen.is_empty() && self.proxy.https_listen.is_empty() {
            return Err(invalid("proxy.http_listen and proxy.https_listen are both empty"));
        }
        Ok(())
    }
}

fn invalid(msg: &str) -> ConfigError {
    ConfigError::Invalid(msg.to_owned())
}

fn default_endpoints() -> Vec<String> {
    vec!["http://127.0.0.1:2379".to_owned()]
}

fn default_prefix() -> String {
    "/portcullis".to_owned()
}

fn default_etcd_timeout() -> u64 {
    5
}

fn default_admin_listen() -> String {
    "127.0.0.1:9180".to_owned()
}

fn default_http_listen() -> Vec<String> {
    vec!["0.0.0.0:9080".to_owned()]
}

fn default_https_listen() -> Vec<String> {
    vec!["0.0.0.0:9443".to_owned()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_yaml::from_str(yaml).expect("yaml");
        config.check().map(|()| config)
    }

    #[test]
    fn issue_example_parses() {
        let config = parse(
            r#"
deployment:
  role: traditional
  etcd:
    endpoints: ["http://127.0.0.1:2379"]
    prefix: /portcullis
  admin:
    listen: "127.0.0.1:9180"
    keys:
      - name: admin
        key: "change-me"
proxy:
  http_listen: ["0.0.0.0:9080"]
  https_listen: ["0.0.0.0:9443"]
"#,
        )
        .expect("valid");
        assert_eq!(config.deployment.role, Role::Traditional);
        assert_eq!(config.deployment.etcd.prefix, "/portcullis");
    }

    #[test]
    fn refuses_admin_without_key() {
        let err = parse("deployment: {admin: {listen: '127.0.0.1:1'}}").unwrap_err();
        assert!(err.to_string().contains("admin.keys"), "{err}");
        let err = parse("deployment: {admin: {keys: [{name: a, key: ' '}]}}").unwrap_err();
        assert!(err.to_string().contains("admin.keys"), "{err}");
    }

    #[test]
    fn data_plane_needs_no_admin() {
        parse("deployment: {role: data_plane}").expect("valid");
    }

    #[test]
    fn debug_never_prints_admin_keys() {
        let key = AdminKey {
            name: "admin".into(),
            key: "s3cret".into(),
        };
        assert!(!format!("{key:?}").contains("s3cret"));
    }
}
