//! `gateway`: the Portcullis process. Depending on `deployment.role` it runs
//! the admin API (control plane, the `admin` crate), the proxy (data plane,
//! the `gateway` crate's [`gateway::DataPlane`]), or both. This crate only
//! reads the arguments, sets up logging, picks what the role runs and waits
//! for a signal; it is the only one that depends on both.

mod control_plane;
mod run;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared::config::Config;
use shared::keyring::Keyring;

/// Per-request allocations are many and small; mimalloc serves them faster
/// than glibc's malloc (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Portcullis, the mTLS-first API gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Path to config.yaml.
    #[arg(
        short = 'c',
        long = "config",
        default_value = "conf/config.yaml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks a standalone configuration file offline and prints every
    /// problem with its path (e.g. `routes[3].upstream.nodes`); exits 1 on
    /// any. For CI pipelines.
    Validate {
        /// The file; default: `deployment.standalone.file` of the config.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Reads a PEM private key on standard input and prints it sealed with
    /// the keyring (`deployment.data_encryption.keyring`), for a standalone
    /// file.
    SealKey,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    init_tracing();
    let config = Config::load(&args.config)?;
    match args.command {
        Some(Command::Validate { file }) => validate(&config, &args.config, file.as_deref()),
        Some(Command::SealKey) => {
            let keyring = Keyring::from_base64(&config.deployment.data_encryption.keyring)?;
            println!(
                "{}",
                gateway::source::seal_key(&keyring, &mut std::io::stdin())?
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let runtime = runtime()?;
            runtime.block_on(run::run(config, &args.config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `gateway validate`: exit code 1 when the file has any problem.
fn validate(config: &Config, config_path: &Path, file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = file.map_or_else(
        || config.deployment.standalone.path(config_path),
        Path::to_owned,
    );
    let keyring = Keyring::from_base64(&config.deployment.data_encryption.keyring)?;
    let ok = gateway::source::validate_file(&path, &keyring, &mut std::io::stdout().lock())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// The control runtime: etcd, the admin API, the status endpoints and the
/// snapshot builder. Proxy traffic runs on worker threads of its own
/// ([`gateway::listener::Workers`]), so one thread is plenty here.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
