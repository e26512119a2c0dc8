//! Where a data plane's configuration comes from: etcd (list-then-watch,
//! with the last-known-good cache) or a standalone file
//! (`deployment.config_provider: yaml`). Either way the result is the same
//! stream of [`shared::state::ConfigState`]s, which `snapshot::follow`
//! applies.

mod commands;

use std::path::{Path, PathBuf};

use anyhow::Context;
use shared::cache::Cache;
use shared::config::Config;
use shared::keyring::Keyring;
use shared::store::StoreReader;
use shared::watch::Watch;

pub use commands::{seal_key, validate_file};

/// A running configuration source.
pub struct ConfigSource {
    pub watch: Watch,
    /// The last-known-good cache file (etcd with `cache_dir` only).
    pub cache_path: Option<PathBuf>,
    /// The standalone file followed, if that is the source.
    pub standalone_file: Option<PathBuf>,
}

impl ConfigSource {
    /// Follows etcd, with the last-known-good cache when configured.
    pub fn etcd(config: &Config, store: StoreReader, keyring: Keyring) -> ConfigSource {
        let cache = config
            .deployment
            .etcd
            .cache_dir
            .as_ref()
            .map(|dir| Cache::new(dir, store.layout()));
        let cache_path = cache.as_ref().map(|c| c.path().to_owned());
        ConfigSource {
            watch: shared::watch::spawn(store, keyring, cache),
            cache_path,
            standalone_file: None,
        }
    }

    /// Loads the standalone file and follows it; a file that cannot be
    /// loaded stops the start with every problem found.
    pub async fn standalone(file: &Path, keyring: Keyring) -> anyhow::Result<ConfigSource> {
        let watch = shared::standalone::spawn(file.to_owned(), keyring)
            .await
            .context(
                "cannot load the standalone configuration file (deployment.standalone.file)",
            )?;
        Ok(ConfigSource {
            watch,
            cache_path: None,
            standalone_file: Some(file.to_owned()),
        })
    }
}
