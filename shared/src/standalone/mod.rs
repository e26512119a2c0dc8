//! Standalone mode: the configuration read from a file instead of etcd
//! (`deployment.config_provider: yaml`).
//!
//! The file has APISIX's layout: top-level `routes:`, `upstreams:` and
//! `ssls:`, each a list of the objects the admin API takes, each with its
//! `id`. YAML files end with the line `#END`, so that a file still being
//! written is never loaded; `.json` files are JSON. `${{VAR}}` and
//! `${{VAR:=default}}` are replaced from the environment. Private keys may be
//! sealed with the keyring, as in etcd.
//!
//! A file is applied whole or not at all: every object is validated with
//! [`crate::validate::validate`] first, and any problem refuses the whole
//! file (the previous configuration stays). [`follow`] re-reads the file when
//! it changes and publishes the same [`ConfigState`] the etcd watcher does.

mod build;
mod document;
mod env;
mod follow;

use std::fmt;
use std::path::Path;

use thiserror::Error;

pub use document::END_FLAG;
pub use follow::{spawn, POLL_INTERVAL};

use crate::keyring::Keyring;
use crate::state::ConfigState;

/// One thing wrong with a file, at a path such as `routes[3].upstream.nodes`
/// (empty for the file as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

impl Problem {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Why a file was not loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is larger than 256 MiB; refusing to load it")]
    TooLarge { path: String },
    #[error("{path}: {}", summary(.problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

impl LoadError {
    /// Every problem found; one for a file that cannot be read.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Invalid { problems, .. } => problems.clone(),
            other => vec![Problem::new("", other.to_string())],
        }
    }
}

fn summary(problems: &[Problem]) -> String {
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    match problems.len() {
        1 => listed[0].clone(),
        n => format!("{n} problems: {}", listed.join("; ")),
    }
}

/// Reads, checks and validates the file at `path` with the process
/// environment. Objects unchanged since `previous` are reused; the state's
/// revision is `generation`.
pub fn load(
    path: &Path,
    keyring: &Keyring,
    previous: Option<&ConfigState>,
    generation: i64,
) -> Result<ConfigState, LoadError> {
    let lookup = |name: &str| std::env::var(name).ok();
    let document = document::read(path, &lookup)?;
    build::build(document, keyring, previous, generation).map_err(|problems| LoadError::Invalid {
        path: path.display().to_string(),
        problems,
    })
}

#[cfg(test)]
mod tests;
