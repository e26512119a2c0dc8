//! The data plane assembled: a [`ConfigSource`] feeds the snapshot builder,
//! whose snapshots the proxy listeners serve on their worker threads.
//!
//! [`DataPlane::start`] only starts building; [`DataPlane::listen`] opens
//! the listeners once the first configuration is applied, so that the
//! status endpoints (which read [`DataPlane::status`]) can answer `/readyz`
//! 503 meanwhile. The binary and the in-process tests assemble it alike.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use shared::config::{Config, ProxyConfig};
use thiserror::Error;
use tokio::sync::watch;

use crate::listener::{ConnectionLimit, Listener, Protocol, Server, Workers};
use crate::proxy::Proxy;
use crate::shutdown::ShutdownSignal;
use crate::snapshot::{self, Snapshot};
use crate::source::ConfigSource;
use crate::status::DataPlaneStatus;

/// Why the proxy listeners could not open.
#[derive(Debug, Error)]
pub enum ListenError {
    #[error("cannot listen on {addr} ({protocol:?})")]
    Bind {
        addr: String,
        protocol: Protocol,
        #[source]
        source: io::Error,
    },
    #[error("cannot listen on {addr} ({protocol:?}) again for another worker")]
    Sibling {
        addr: String,
        protocol: Protocol,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the proxy worker threads")]
    Workers(#[source] io::Error),
}

/// A running data plane.
pub struct DataPlane {
    proxy: ProxyConfig,
    status: DataPlaneStatus,
    server: Arc<Server>,
    /// Stops the workers: they accept no more connections, then drain.
    trigger: watch::Sender<bool>,
    shutdown: ShutdownSignal,
    workers: Option<Workers>,
    addrs: Vec<(SocketAddr, Protocol)>,
}

impl DataPlane {
    /// Starts building snapshots from `source` on the current runtime; no
    /// listener is open yet (see [`DataPlane::listen`]).
    pub fn start(config: &Config, source: ConfigSource) -> DataPlane {
        let fallback_sni = config.proxy.fallback_sni.clone();
        let current = Arc::new(ArcSwap::from_pointee(Snapshot::empty(
            fallback_sni.as_deref(),
        )));
        let watch = source.watch;
        let (tls_changed, tls_changes) = watch::channel(());
        tokio::spawn(snapshot::follow(
            watch.states.clone(),
            Arc::clone(&current),
            fallback_sni,
            tls_changed,
        ));

        let proxy = Arc::new(Proxy::new(Arc::clone(&current)));
        let limit = ConnectionLimit::new(config.proxy.max_connections);
        let server = Server::new(
            proxy,
            Arc::clone(&current),
            tls_changes,
            Arc::clone(&limit),
            &config.proxy,
        );
        let status = DataPlaneStatus {
            states: watch.states,
            sync: watch.status,
            snapshot: current,
            connections: limit,
            cache_path: source.cache_path,
            standalone_file: source.standalone_file,
        };
        let (trigger, shutdown) = ShutdownSignal::new();
        DataPlane {
            proxy: config.proxy.clone(),
            status,
            server,
            trigger,
            shutdown,
            workers: None,
            addrs: Vec::new(),
        }
    }

    /// What the status endpoints report on.
    pub fn status(&self) -> &DataPlaneStatus {
        &self.status
    }

    /// Waits for the first configuration (see
    /// [`DataPlaneStatus::first_load`]), then binds every proxy listener
    /// once per worker thread and starts the workers.
    pub async fn listen(&mut self) -> Result<(), ListenError> {
        self.status.first_load().await;
        let per_worker = self.bind().await?;
        let workers = Workers::start(per_worker, &self.server, &self.shutdown)
            .map_err(ListenError::Workers)?;
        self.workers = Some(workers);
        Ok(())
    }

    /// The addresses the proxy listens on (ports chosen by the system
    /// included), once [`DataPlane::listen`] returned.
    pub fn local_addrs(&self) -> &[(SocketAddr, Protocol)] {
        &self.addrs
    }

    /// Begins the shutdown: no new connections; in-flight requests drain.
    pub fn shutdown(&self) {
        let _ = self.trigger.send(true);
    }

    /// Resolves once every worker has drained (after [`DataPlane::shutdown`]).
    pub async fn wait(self) {
        if let Some(workers) = self.workers {
            workers.drained().await;
        }
    }

    /// One listener per address and worker thread.
    async fn bind(&mut self) -> Result<Vec<Vec<Listener>>, ListenError> {
        let proxy = &self.proxy;
        let workers = worker_count(proxy.worker_threads);
        let addrs = proxy
            .http_listen
            .iter()
            .map(|addr| (addr, Protocol::Http))
            .chain(
                proxy
                    .https_listen
                    .iter()
                    .map(|addr| (addr, Protocol::Https)),
            );
        let mut per_worker: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
        for (addr, protocol) in addrs {
            let bind_error = |source| ListenError::Bind {
                addr: addr.clone(),
                protocol,
                source,
            };
            let first = Listener::bind(addr, protocol, proxy.reuse_port)
                .await
                .map_err(bind_error)?;
            let local = first.local_addr().map_err(bind_error)?;
            tracing::info!(addr = %local, ?protocol, workers, "proxy listening");
            self.addrs.push((local, protocol));
            for listeners in per_worker.iter_mut().skip(1) {
                let sibling =
                    first
                        .sibling(proxy.reuse_port)
                        .map_err(|source| ListenError::Sibling {
                            addr: addr.clone(),
                            protocol,
                            source,
                        })?;
                listeners.push(sibling);
            }
            per_worker[0].push(first);
        }
        Ok(per_worker)
    }
}

/// `proxy.worker_threads`, 0 meaning one per core.
fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

#[cfg(test)]
mod tests;
