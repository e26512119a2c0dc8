//! `config.yaml`: the process configuration (as opposed to the objects stored
//! in etcd). See `conf/config.yaml` for every key with its default.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

use crate::certfile::{CertFileError, PemFile, TlsFiles};

mod observability;
pub use observability::{AccessLogConfig, AccessLogFormat, MetricsConfig};

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
    /// A certificate or key file named in the config cannot be used.
    #[error(transparent)]
    Certificate(#[from] CertFileError),
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
    /// How private keys are stored in etcd.
    #[serde(default)]
    pub data_encryption: DataEncryption,
    /// `/healthz`, `/readyz` and `/status` on their own listener.
    #[serde(default)]
    pub status: Option<StatusConfig>,
    /// Where a data plane reads its routes, upstreams and SSL objects.
    #[serde(default)]
    pub config_provider: ConfigProvider,
    /// `deployment.standalone`, for `config_provider: yaml`.
    #[serde(default)]
    pub standalone: StandaloneConfig,
}

/// `deployment.config_provider`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigProvider {
    /// Objects written by the admin API to etcd.
    #[default]
    Etcd,
    /// One file (APISIX's `apisix.yaml` layout, or JSON), re-read when it
    /// changes; no etcd. See [`crate::standalone`].
    Yaml,
}

/// `deployment.standalone`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandaloneConfig {
    /// The file; relative paths are taken from the directory of
    /// `config.yaml`. Default: `apisix.yaml` beside `config.yaml`.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

impl StandaloneConfig {
    /// The file's path, for the `config.yaml` at `config_path`.
    pub fn path(&self, config_path: &Path) -> PathBuf {
        let dir = config_path.parent().unwrap_or(Path::new(""));
        match &self.file {
            Some(file) => dir.join(file),
            None => dir.join("apisix.yaml"),
        }
    }
}

/// `deployment.status`: the status endpoints' listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// e.g. `127.0.0.1:9090`.
    pub listen: String,
}

/// `deployment.data_encryption`: the keyring that seals private keys at rest
/// (see [`crate::keyring`]).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataEncryption {
    /// Base64 AES-256 keys (32 bytes each). The first seals every private
    /// key written; all of them are tried to open one, so a key is rotated
    /// by prepending its successor. Empty: keys are stored as given.
    #[serde(default)]
    pub keyring: Vec<String>,
}

impl std::fmt::Debug for DataEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataEncryption")
            .field(
                "keyring",
                &format_args!("<{} key(s) redacted>", self.keyring.len()),
            )
            .finish()
    }
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
    /// TLS to etcd (`https://` endpoints), with a client certificate when
    /// etcd runs with `--client-cert-auth`.
    #[serde(default)]
    pub tls: Option<EtcdTls>,
    /// Where a data plane keeps its last-known-good configuration, served
    /// when it starts while etcd is unreachable. Unset: no cache.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: default_endpoints(),
            prefix: default_prefix(),
            timeout: default_etcd_timeout(),
            tls: None,
            cache_dir: None,
        }
    }
}

/// `deployment.etcd.tls`: PEM file paths, re-read when they change.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// The CA that signed etcd's server certificate.
    pub ca: PathBuf,
    /// Our client certificate (chain), for `--client-cert-auth`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its private key.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name sent in SNI and expected in etcd's certificate; default:
    /// the endpoint's host.
    #[serde(default)]
    pub sni: Option<String>,
}

impl EtcdTls {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self
                .cert
                .as_ref()
                .map(|p| PemFile::new("deployment.etcd.tls.cert", p)),
            key: self
                .key
                .as_ref()
                .map(|p| PemFile::new("deployment.etcd.tls.key", p)),
            ca: Some(PemFile::new("deployment.etcd.tls.ca", &self.ca)),
        }
    }
}

impl EtcdConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.max(1))
    }

    /// `https://` endpoints and `tls` go together; a certificate needs its key.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let https = |e: &&String| e.starts_with("https://");
        match &self.tls {
            None => {
                if let Some(endpoint) = self.endpoints.iter().find(https) {
                    return Err(ConfigError::Invalid(format!(
                        "deployment.etcd.endpoints: {endpoint} is https:// but deployment.etcd.tls is not set; give at least its `ca`"
                    )));
                }
            }
            Some(tls) => {
                if let Some(endpoint) = self.endpoints.iter().find(|e| !https(e)) {
                    return Err(ConfigError::Invalid(format!(
                        "deployment.etcd.endpoints: {endpoint} must be https:// when deployment.etcd.tls is set"
                    )));
                }
                if tls.cert.is_some() != tls.key.is_some() {
                    return Err(invalid(
                        "deployment.etcd.tls: `cert` and `key` go together (the client certificate and its private key)",
                    ));
                }
                if let Some(sni) = &tls.sni {
                    ServerName::try_from(sni.as_str()).map_err(|_| {
                        ConfigError::Invalid(format!(
                            "deployment.etcd.tls.sni: {sni:?} is not a valid server name"
                        ))
                    })?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    #[serde(default)]
    pub keys: Vec<AdminKey>,
    /// Serve the admin API over HTTPS only (and require client certificates
    /// with `client_ca`).
    #[serde(default)]
    pub tls: Option<AdminTls>,
    /// Source addresses allowed to use the admin API; connections from
    /// others are closed at accept, before any TLS or HTTP work.
    /// Absent: every address. Bare addresses mean a single host.
    #[serde(default, deserialize_with = "allow_list")]
    pub allow: Option<Vec<IpNet>>,
    #[serde(default)]
    pub timeouts: AdminTimeouts,
    /// Concurrent admin connections; beyond it, new connections wait in
    /// the listen backlog until one closes.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: usize,
}

/// `deployment.admin.timeouts`, in seconds (fractions allowed).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTimeouts {
    /// From accept to the end of the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake: f64,
    /// For a client to send a request's headers (also the wait for the
    /// next request on a keep-alive HTTP/1.1 connection), and again for its
    /// body.
    #[serde(default = "default_admin_header_read_timeout")]
    pub header_read: f64,
    /// A connection on which nothing is received or sent for this long is
    /// closed (an HTTP/2 connection without requests, a stalled body, a
    /// client that stops reading).
    #[serde(default = "default_admin_idle_timeout")]
    pub idle: f64,
}

impl Default for AdminTimeouts {
    fn default() -> Self {
        AdminTimeouts {
            handshake: default_handshake_timeout(),
            header_read: default_admin_header_read_timeout(),
            idle: default_admin_idle_timeout(),
        }
    }
}

impl AdminTimeouts {
    /// Valid after [`Config::check`].
    pub fn handshake(&self) -> Duration {
        seconds(self.handshake)
    }

    /// Valid after [`Config::check`].
    pub fn header_read(&self) -> Duration {
        seconds(self.header_read)
    }

    /// Valid after [`Config::check`].
    pub fn idle(&self) -> Duration {
        seconds(self.idle)
    }
}

/// `deployment.admin.tls`: PEM file paths, re-read when they change.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    /// The admin API's certificate (chain).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA: the
    /// handshake fails without one. The API key is still required.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl AdminTls {
    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: Some(PemFile::new("deployment.admin.tls.cert", &self.cert)),
            key: Some(PemFile::new("deployment.admin.tls.key", &self.key)),
            ca: self
                .client_ca
                .as_ref()
                .map(|p| PemFile::new("deployment.admin.tls.client_ca", p)),
        }
    }
}

/// `deployment.admin.allow`: CIDR blocks (`10.0.0.0/8`) or single addresses.
fn allow_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<IpNet>>, D::Error> {
    let entries = Option::<Vec<String>>::deserialize(deserializer)?;
    entries
        .map(|entries| entries.iter().map(|entry| parse_net(entry)).collect())
        .transpose()
        .map_err(serde::de::Error::custom)
}

fn parse_net(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    let net = match entry.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!("deployment.admin.allow: {entry:?} is neither a CIDR block (e.g. \"10.0.0.0/8\") nor an IP address")
        })?,
    };
    Ok(net)
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
    /// Proxy worker threads, each serving its own connections on its own
    /// listening sockets; 0 = one per core.
    #[serde(default)]
    pub worker_threads: usize,
    #[serde(default)]
    pub timeouts: ProxyTimeouts,
    /// Concurrent client connections over all proxy listeners; beyond it,
    /// new connections are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bind the proxy listeners with `SO_REUSEPORT`, so that a new process
    /// can take over the ports before the old one drains.
    #[serde(default = "default_reuse_port")]
    pub reuse_port: bool,
    #[serde(default)]
    pub access_log: AccessLogConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            http_listen: default_http_listen(),
            https_listen: default_https_listen(),
            fallback_sni: None,
            worker_threads: 0,
            timeouts: ProxyTimeouts::default(),
            max_connections: default_max_connections(),
            reuse_port: default_reuse_port(),
            access_log: AccessLogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// `proxy.timeouts`, in seconds (fractions allowed).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTimeouts {
    /// From accept to the end of the TLS handshake.
    #[serde(default = "default_handshake_timeout")]
    pub handshake: f64,
    /// For a client to send a request's headers (also the idle time
    /// allowed between requests on a keep-alive HTTP/1.1 connection, and
    /// with no stream started on an HTTP/2 connection).
    #[serde(default = "default_header_read_timeout")]
    pub header_read: f64,
}

impl Default for ProxyTimeouts {
    fn default() -> Self {
        ProxyTimeouts {
            handshake: default_handshake_timeout(),
            header_read: default_header_read_timeout(),
        }
    }
}

impl ProxyTimeouts {
    /// Valid after [`Config::check`].
    pub fn handshake(&self) -> Duration {
        seconds(self.handshake)
    }

    /// Valid after [`Config::check`].
    pub fn header_read(&self) -> Duration {
        seconds(self.header_read)
    }

    fn check(&self) -> Result<(), ConfigError> {
        check_seconds(
            "proxy.timeouts",
            &[
                ("handshake", self.handshake),
                ("header_read", self.header_read),
            ],
        )
    }
}

/// The longest timeout accepted: anything longer is a typo.
const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;

fn check_seconds(section: &str, timeouts: &[(&str, f64)]) -> Result<(), ConfigError> {
    for (name, value) in timeouts {
        if !(*value > 0.0 && *value <= MAX_TIMEOUT_SECONDS) {
            return Err(ConfigError::Invalid(format!(
                "{section}.{name}: {value} is not a number of seconds between 0 (excluded) and {MAX_TIMEOUT_SECONDS}"
            )));
        }
    }
    Ok(())
}

/// Out-of-range values (refused by `check`) fall back to one second rather
/// than panicking in `Duration::from_secs_f64`.
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::from_secs(1))
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
        config.check_files()?;
        Ok(config)
    }

    /// Reads every certificate and key file the config names and checks it
    /// (PEM parses, key matches certificate), so that a typo in a path stops
    /// the gateway at once with the setting and the reason.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let d = &self.deployment;
        if let Some(tls) = &d.etcd.tls {
            tls.files().load()?;
        }
        let admin_tls = d.admin.as_ref().and_then(|a| a.tls.as_ref());
        if let Some(tls) = admin_tls.filter(|_| d.role.serves_admin()) {
            tls.files().load()?;
        }
        Ok(())
    }

    /// Semantic checks serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let d = &self.deployment;
        if d.etcd.endpoints.is_empty() {
            return Err(invalid(
                "deployment.etcd.endpoints must name at least one endpoint",
            ));
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
            if admin.allow.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    "deployment.admin.allow is empty, which would refuse every client: list the allowed networks, or remove the key to allow all",
                ));
            }
            let t = &admin.timeouts;
            check_seconds(
                "deployment.admin.timeouts",
                &[
                    ("handshake", t.handshake),
                    ("header_read", t.header_read),
                    ("idle", t.idle),
                ],
            )?;
            if !(1..=MAX_CONNECTIONS_LIMIT).contains(&admin.max_connections) {
                return Err(ConfigError::Invalid(format!(
                    "deployment.admin.max_connections: {} is not between 1 and {MAX_CONNECTIONS_LIMIT}",
                    admin.max_connections
                )));
            }
        }
        d.etcd.check_tls()?;
        if d.config_provider == ConfigProvider::Yaml && d.role != Role::DataPlane {
            return Err(invalid(
                "deployment.config_provider: yaml needs deployment.role: data_plane (a file has no admin API to write it)",
            ));
        }
        if d.role.serves_traffic()
            && self.proxy.http_listen.is_empty()
            && self.proxy.https_listen.is_empty()
        {
            return Err(invalid(
                "proxy.http_listen and proxy.https_listen are both empty",
            ));
        }
        self.proxy.timeouts.check()?;
        self.proxy.access_log.check()?;
        if self.proxy.worker_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid(format!(
                "proxy.worker_threads: {} is more than {MAX_WORKER_THREADS}",
                self.proxy.worker_threads
            )));
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.proxy.max_connections) {
            return Err(ConfigError::Invalid(format!(
                "proxy.max_connections: {} is not between 1 and {MAX_CONNECTIONS_LIMIT}",
                self.proxy.max_connections
            )));
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

fn default_admin_max_connections() -> usize {
    128
}

fn default_admin_header_read_timeout() -> f64 {
    10.0
}

fn default_admin_idle_timeout() -> f64 {
    60.0
}

fn default_admin_listen() -> String {
    "127.0.0.1:9180".to_owned()
}

/// More would exceed what one process can hold open anyway.
const MAX_CONNECTIONS_LIMIT: usize = 100_000_000;
/// Far above any core count; a typo's thousands of threads are refused.
const MAX_WORKER_THREADS: usize = 1024;

fn default_max_connections() -> usize {
    100_000
}

fn default_reuse_port() -> bool {
    true
}

fn default_handshake_timeout() -> f64 {
    10.0
}

fn default_header_read_timeout() -> f64 {
    30.0
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
    fn admin_limits_have_defaults_and_ranges() {
        let keys = "keys: [{name: a, key: k}]";
        let config = parse(&format!("deployment: {{admin: {{{keys}}}}}")).expect("defaults");
        let admin = config.deployment.admin.expect("admin");
        assert_eq!(admin.timeouts.handshake(), Duration::from_secs(10));
        assert_eq!(admin.timeouts.header_read(), Duration::from_secs(10));
        assert_eq!(admin.timeouts.idle(), Duration::from_secs(60));
        assert_eq!(admin.max_connections, 128);
        let set = format!(
            "deployment: {{admin: {{{keys}, timeouts: {{idle: 0.5}}, max_connections: 2}}}}"
        );
        let admin = parse(&set).expect("set").deployment.admin.expect("admin");
        assert_eq!(admin.timeouts.idle(), Duration::from_millis(500));
        assert_eq!(admin.max_connections, 2);
        for (bad, named) in [
            (
                "timeouts: {header_read: 0}",
                "deployment.admin.timeouts.header_read",
            ),
            (
                "timeouts: {handshake: -1}",
                "deployment.admin.timeouts.handshake",
            ),
            ("max_connections: 0", "deployment.admin.max_connections"),
        ] {
            let err = parse(&format!("deployment: {{admin: {{{keys}, {bad}}}}}")).unwrap_err();
            assert!(err.to_string().contains(named), "{bad}: {err}");
        }
    }

    #[test]
    fn refuses_admin_without_key() {
        let err = parse("deployment: {admin: {listen: '127.0.0.1:1'}}").unwrap_err();
        assert!(err.to_string().contains("admin.keys"), "{err}");
        let err = parse("deployment: {admin: {keys: [{name: a, key: ' '}]}}").unwrap_err();
        assert!(err.to_string().contains("admin.keys"), "{err}");
    }

    #[test]
    fn hardening_keys_parse_and_are_checked() {
        let config = parse(
            "deployment: {role: data_plane, status: {listen: '127.0.0.1:9090'}, etcd: {cache_dir: /var/cache/portcullis}}\nproxy: {timeouts: {handshake: 0.5}, max_connections: 5, reuse_port: false}",
        )
        .expect("valid");
        assert_eq!(
            config.proxy.timeouts.handshake(),
            Duration::from_millis(500)
        );
        assert_eq!(config.proxy.timeouts.header_read(), Duration::from_secs(30));
        assert_eq!(config.proxy.max_connections, 5);
        assert!(!config.proxy.reuse_port);
        assert_eq!(
            config.deployment.status.expect("status").listen,
            "127.0.0.1:9090"
        );
        let defaults = parse("deployment: {role: data_plane}").expect("valid");
        assert!(defaults.proxy.reuse_port && defaults.deployment.etcd.cache_dir.is_none());
        assert_eq!(defaults.proxy.timeouts.handshake(), Duration::from_secs(10));

        let err = parse("deployment: {role: data_plane}\nproxy: {timeouts: {header_read: 0}}")
            .expect_err("zero");
        assert!(
            err.to_string().contains("proxy.timeouts.header_read"),
            "{err}"
        );
        let err = parse("deployment: {role: data_plane}\nproxy: {timeouts: {handshake: .nan}}")
            .expect_err("NaN");
        assert!(
            err.to_string().contains("proxy.timeouts.handshake"),
            "{err}"
        );
        let err =
            parse("deployment: {role: data_plane}\nproxy: {max_connections: 0}").expect_err("zero");
        assert!(err.to_string().contains("proxy.max_connections"), "{err}");
        let err = parse("deployment: {role: data_plane}\nproxy: {worker_threads: 100000}")
            .expect_err("too many threads");
        assert!(err.to_string().contains("proxy.worker_threads"), "{err}");
    }

    #[test]
    fn standalone_is_a_data_plane_with_a_file() {
        let config = parse("deployment: {role: data_plane, config_provider: yaml}").expect("valid");
        let d = &config.deployment;
        assert_eq!(d.config_provider, ConfigProvider::Yaml);
        let conf = Path::new("/etc/portcullis/config.yaml");
        assert_eq!(
            d.standalone.path(conf),
            Path::new("/etc/portcullis/apisix.yaml")
        );
        let config = parse(
            "deployment: {role: data_plane, config_provider: yaml, standalone: {file: routes/apisix.json}}",
        )
        .expect("valid");
        assert_eq!(
            config.deployment.standalone.path(conf),
            Path::new("/etc/portcullis/routes/apisix.json")
        );
        let config = parse("deployment: {role: data_plane, standalone: {file: /srv/a.yaml}}")
            .expect("valid");
        assert_eq!(
            config.deployment.standalone.path(conf),
            Path::new("/srv/a.yaml")
        );
        assert_eq!(config.deployment.config_provider, ConfigProvider::Etcd);
        let err = parse("deployment: {config_provider: yaml, admin: {keys: [{name: a, key: k}]}}")
            .expect_err("traditional");
        assert!(
            err.to_string()
                .contains("needs deployment.role: data_plane"),
            "{err}"
        );
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
    #[test]
    fn admin_tls_and_allow_list_parse() {
        let config = parse(
            r#"
deployment:
  admin:
    keys: [{name: a, key: k}]
    tls: {cert: /certs/tls.crt, key: /certs/tls.key, client_ca: /certs/ca.crt}
    allow: ["127.0.0.0/8", "10.1.2.3/8", "192.168.1.7", "::1"]
"#,
        )
        .expect("valid");
        let admin = config.deployment.admin.expect("admin");
        let tls = admin.tls.expect("tls");
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/certs/ca.crt")));
        let allow: Vec<String> = admin
            .allow
            .expect("allow")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            allow,
            ["127.0.0.0/8", "10.0.0.0/8", "192.168.1.7/32", "::1/128"]
        );
    }

    #[test]
    fn refuses_a_bad_or_empty_allow_list() {
        let err = serde_yaml::from_str::<Config>(
            "deployment: {admin: {keys: [{name: a, key: k}], allow: ['10.0.0.0/33']}}",
        )
        .expect_err("bad CIDR");
        assert!(
            err.to_string()
                .contains("\"10.0.0.0/33\" is neither a CIDR block"),
            "{err}"
        );
        let err = parse("deployment: {admin: {keys: [{name: a, key: k}], allow: []}}")
            .expect_err("empty");
        assert!(
            err.to_string().contains("deployment.admin.allow is empty"),
            "{err}"
        );
    }

    #[test]
    fn etcd_tls_and_https_endpoints_go_together() {
        let err = parse("deployment: {role: data_plane, etcd: {endpoints: ['https://etcd:2379']}}")
            .expect_err("no tls");
        assert!(
            err.to_string()
                .contains("https://etcd:2379 is https:// but deployment.etcd.tls is not set"),
            "{err}"
        );
        let err = parse("deployment: {role: data_plane, etcd: {endpoints: ['http://etcd:2379'], tls: {ca: /ca.crt}}}")
            .expect_err("http with tls");
        assert!(
            err.to_string()
                .contains("http://etcd:2379 must be https://"),
            "{err}"
        );
        let err = parse("deployment: {role: data_plane, etcd: {endpoints: ['https://etcd:2379'], tls: {ca: /ca.crt, cert: /c.crt}}}")
            .expect_err("cert without key");
        assert!(
            err.to_string().contains("`cert` and `key` go together"),
            "{err}"
        );
        let err = parse("deployment: {role: data_plane, etcd: {endpoints: ['https://etcd:2379'], tls: {ca: /ca.crt, sni: 'bad name!'}}}")
            .expect_err("bad sni");
        assert!(err.to_string().contains("deployment.etcd.tls.sni"), "{err}");
        let config = parse(
            "deployment: {role: data_plane, etcd: {endpoints: ['https://127.0.0.1:2379'], tls: {ca: /ca.crt, cert: /c.crt, key: /c.key, sni: etcd}}}",
        )
        .expect("valid");
        let files = config.deployment.etcd.tls.expect("tls").files();
        assert_eq!(files.ca.expect("ca").setting, "deployment.etcd.tls.ca");
    }

    /// A config file naming certificate files written into `dir`.
    fn load_with_files(dir: &Path, cert: &str, key: &str, ca: &str) -> Result<Config, ConfigError> {
        for (name, pem) in [("tls.crt", cert), ("tls.key", key), ("ca.crt", ca)] {
            std::fs::write(dir.join(name), pem).expect("write pem");
        }
        let d = dir.display();
        let yaml = format!(
            "deployment:\n  etcd:\n    endpoints: [\"https://127.0.0.1:2379\"]\n    tls: {{ca: {d}/ca.crt, cert: {d}/tls.crt, key: {d}/tls.key}}\n  admin:\n    keys: [{{name: a, key: k}}]\n    tls: {{cert: {d}/tls.crt, key: {d}/tls.key, client_ca: {d}/ca.crt}}\n"
        );
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).expect("write config");
        Config::load(&path)
    }

    #[test]
    fn load_checks_the_certificate_files() {
        use crate::x509::test_pki::TestCa;
        let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
        let ca = TestCa::new("Config CA", alg);
        let leaf = ca.leaf("admin", &["admin.test"], vec![], alg);
        let other = ca.leaf("other", &["other.test"], vec![], alg);
        let dir = tempfile::tempdir().expect("temp dir");

        load_with_files(dir.path(), &leaf.cert, &leaf.key, &ca.cert_pem()).expect("valid files");

        let err = load_with_files(dir.path(), &leaf.cert, &other.key, &ca.cert_pem())
            .expect_err("mismatch");
        let msg = err.to_string();
        assert!(
            msg.contains("deployment.etcd.tls.key") && msg.contains("not the private key"),
            "{msg}"
        );

        let err =
            load_with_files(dir.path(), &leaf.cert, &leaf.key, "not a pem").expect_err("bad CA");
        let msg = err.to_string();
        assert!(
            msg.contains("deployment.etcd.tls.ca") && msg.contains("ca.crt"),
            "{msg}"
        );

        std::fs::remove_file(dir.path().join("tls.key")).expect("remove key");
        let path = dir.path().join("config.yaml");
        let msg = Config::load(&path).expect_err("missing key").to_string();
        assert!(
            msg.contains("tls.key") && msg.contains("cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn the_keyring_parses_and_never_prints() {
        let config =
            parse("deployment: {role: data_plane, data_encryption: {keyring: [s3cretkey, other]}}")
                .expect("valid");
        assert_eq!(config.deployment.data_encryption.keyring.len(), 2);
        let debug = format!("{:?}", config.deployment);
        assert!(!debug.contains("s3cretkey"), "{debug}");
        let typo = "deployment: {role: data_plane, data_encryption: {keys: []}}";
        assert!(
            serde_yaml::from_str::<Config>(typo).is_err(),
            "unknown fields are refused"
        );
    }
}
