//! The upstream clients, one per TLS profile, kept across configuration
//! changes.
//!
//! Every [`UpstreamTarget`](super::UpstreamTarget) holds the client of its
//! profile; this map only remembers them weakly, so that the next build
//! finds the client (and its warm connections) of every profile still in
//! use, while a profile no configuration uses any more is dropped with its
//! connections as soon as the last snapshot naming it is gone.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustls::crypto::CryptoProvider;

use super::client::UpstreamClient;
use super::profile::{ProfileKey, TlsProfile};
use crate::build_error::UpstreamTlsError;

/// The clients (and so the connection pools) of the upstream TLS profiles,
/// shared by successive route tables. Create one per process (or let
/// [`RouteTable::build`](crate::router::RouteTable::build) make one) and pass
/// it on to each rebuild.
#[derive(Default)]
pub struct UpstreamPools {
    clients: Mutex<HashMap<ProfileKey, Weak<UpstreamClient>>>,
}

impl UpstreamPools {
    /// The client for plain `http` upstreams.
    pub(crate) fn plain(&self) -> Arc<UpstreamClient> {
        let Ok(client) = self.get_or_insert(ProfileKey::Plain, || {
            Ok::<_, Infallible>(UpstreamClient::plain())
        });
        client
    }

    /// The client for `profile`: the existing one if an equal profile is in
    /// use, else a new one (its rustls configuration built here, once).
    pub(crate) fn tls(
        &self,
        profile: &TlsProfile,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<UpstreamClient>, UpstreamTlsError> {
        self.get_or_insert(profile.key(), || {
            let config = profile.client_config(provider)?;
            Ok(UpstreamClient::tls(config, profile.server_name().cloned()))
        })
    }

    /// How many profiles have a live client.
    pub(crate) fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|c| c.strong_count() > 0)
            .count()
    }

    fn get_or_insert<E>(
        &self,
        key: ProfileKey,
        make: impl FnOnce() -> Result<UpstreamClient, E>,
    ) -> Result<Arc<UpstreamClient>, E> {
        let mut clients = self.lock();
        if let Some(client) = clients.get(&key).and_then(Weak::upgrade) {
            return Ok(client);
        }
        // Forget the profiles nobody uses any more before adding one.
        clients.retain(|_, client| client.strong_count() > 0);
        let client = Arc::new(make()?);
        clients.insert(key, Arc::downgrade(&client));
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProfileKey, Weak<UpstreamClient>>> {
        // The map stays consistent whatever a panicking holder did.
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for UpstreamPools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamPools")
            .field("profiles", &self.len())
            .finish()
    }
}
