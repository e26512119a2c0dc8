//! `proxy.access_log` and `proxy.metrics`: what the data plane tells an
//! operator about the traffic it serves.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// `proxy.access_log`: one line per request, written by a thread of its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// A file, appended to; unset: standard output.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub format: AccessLogFormat,
    /// Lines waiting for the writer, per worker thread; beyond it lines are
    /// dropped (and counted), never the request.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            path: None,
            format: AccessLogFormat::default(),
            buffer: default_buffer(),
        }
    }
}

impl AccessLogConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.buffer == 0 {
            return Err(ConfigError::Invalid(
                "proxy.access_log.buffer: must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// How an access-log line is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// nginx's `combined`.
    Combined,
}

/// `proxy.metrics`: the Prometheus metrics of `GET /metrics` on the status
/// listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Off: requests and handshakes are not counted (the scrape still
    /// answers, with the gauges read at scrape time).
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

fn enabled() -> bool {
    true
}

fn default_buffer() -> usize {
    16_384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_on_json_to_stdout() {
        let log: AccessLogConfig = serde_yaml::from_str("{}").unwrap();
        assert!(log.enabled);
        assert_eq!(log.path, None);
        assert_eq!(log.format, AccessLogFormat::Json);
        let log: AccessLogConfig =
            serde_yaml::from_str("{path: /var/log/a.log, format: combined}").unwrap();
        assert_eq!(log.format, AccessLogFormat::Combined);
        assert!(serde_yaml::from_str::<AccessLogConfig>("{format: xml}").is_err());
        let empty = AccessLogConfig {
            buffer: 0,
            ..AccessLogConfig::default()
        };
        assert!(empty.check().is_err());
    }
}
