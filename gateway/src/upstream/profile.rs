//! TLS profiles: everything that decides how a connection to an `https`
//! upstream is made (client identity, trust anchors, server name), resolved
//! against the SSL objects that `tls.client_cert_id` and `tls.ca_id` name.
//!
//! A profile's [`ProfileKey`] is its identity for connection pooling: two
//! upstreams share pooled connections only when their keys are equal, so
//! two routes presenting different client certificates to the same host
//! never share a connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper_rustls::ConfigBuilderExt as _;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use shared::resource::SslType;
use shared::validate::{ClientIdentity, Trust, UpstreamTlsPolicy, ValidSsl};

use crate::build_error::UpstreamTlsError;
use crate::tls::signature::AnyServerCert;
use crate::tls::CertResolver;

/// The SSL objects of the configuration being built, by id.
pub(crate) type SslObjects = BTreeMap<String, Arc<ValidSsl>>;

/// What makes two upstream TLS connections interchangeable. Compared in
/// full (certificates as DER), never by a digest, so that distinct profiles
/// can never collide.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ProfileKey {
    /// `scheme: http`.
    Plain,
    Tls {
        /// The certificate chain of each client key pair.
        identity: Vec<Vec<CertificateDer<'static>>>,
        trust: TrustKey,
        /// `None`: each node's host.
        server_name: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TrustKey {
    Off,
    WebPki,
    Anchors(Vec<CertificateDer<'static>>),
}

/// A resolved TLS profile, ready to become a rustls `ClientConfig`.
pub(crate) struct TlsProfile {
    identity: Vec<IdentityPair>,
    trust: TrustKey,
    server_name: Option<ServerName<'static>>,
}

struct IdentityPair {
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl TlsProfile {
    /// Resolves `policy`'s references against `ssls`. The error says which
    /// reference is broken; the upstream then answers 502 with it.
    pub(crate) fn resolve(
        policy: &UpstreamTlsPolicy,
        ssls: &SslObjects,
    ) -> Result<Self, UpstreamTlsError> {
        let identity = match &policy.identity {
            None => Vec::new(),
            Some(ClientIdentity::Inline(pair)) => vec![IdentityPair {
                chain: pair.chain.clone(),
                key: Arc::clone(&pair.key),
            }],
            Some(ClientIdentity::SslObject(id)) => client_ssl(id, ssls)?
                .pairs
                .iter()
                .map(|pair| IdentityPair {
                    chain: pair.chain.clone(),
                    key: Arc::clone(&pair.key),
                })
                .collect(),
        };
        let trust = match &policy.trust {
            Trust::Off => TrustKey::Off,
            Trust::WebPki => TrustKey::WebPki,
            Trust::Pem(anchors) => TrustKey::Anchors(anchors.clone()),
            Trust::SslObject(id) => TrustKey::Anchors(ca_of(id, ssls)?),
        };
        let server_name = policy
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned()).map_err(|_| UpstreamTlsError::ServerName {
                    name: name.to_owned(),
                })
            })
            .transpose()?;
        Ok(TlsProfile {
            identity,
            trust,
            server_name,
        })
    }

    pub(crate) fn key(&self) -> ProfileKey {
        ProfileKey::Tls {
            identity: self
                .identity
                .iter()
                .map(|pair| pair.chain.clone())
                .collect(),
            trust: self.trust.clone(),
            server_name: self
                .server_name
                .as_ref()
                .map(|name| name.to_str().into_owned()),
        }
    }

    /// The fixed server name, if the profile overrides each node's host.
    pub(crate) fn server_name(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }

    /// The rustls configuration for this profile (ALPN is left to the
    /// connector, which offers h2 and http/1.1).
    pub(crate) fn client_config(
        &self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<ClientConfig, UpstreamTlsError> {
        let builder = ClientConfig::builder_with_provider(Arc::clone(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamTlsError::Versions(e.to_string()))?;
        let builder = match &self.trust {
            TrustKey::Off => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServerCert::new(
                    provider.signature_verification_algorithms,
                ))),
            TrustKey::WebPki => builder.with_webpki_roots(),
            TrustKey::Anchors(anchors) => builder.with_root_certificates(root_store(anchors)?),
        };
        if self.identity.is_empty() {
            return Ok(builder.with_no_client_auth());
        }
        let pairs = self
            .identity
            .iter()
            .map(|pair| (pair.chain.as_slice(), &*pair.key));
        let resolver = CertResolver::new(pairs, provider)
            .map_err(|(_, e)| UpstreamTlsError::ClientKey(e.to_string()))?;
        Ok(builder.with_client_cert_resolver(Arc::new(resolver)))
    }
}

/// `client_cert_id`: an enabled SSL object of `type: client`.
fn client_ssl<'a>(id: &str, ssls: &'a SslObjects) -> Result<&'a ValidSsl, UpstreamTlsError> {
    let ssl = ssls
        .get(id)
        .ok_or_else(|| UpstreamTlsError::ClientCertMissing { id: id.to_owned() })?;
    if ssl.kind != SslType::Client {
        return Err(UpstreamTlsError::ClientCertNotClient { id: id.to_owned() });
    }
    if !ssl.enabled {
        return Err(UpstreamTlsError::ClientCertDisabled { id: id.to_owned() });
    }
    Ok(ssl)
}

/// `ca_id`: the `client.ca` of that SSL object.
fn ca_of(id: &str, ssls: &SslObjects) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    let ssl = ssls
        .get(id)
        .ok_or_else(|| UpstreamTlsError::CaMissing { id: id.to_owned() })?;
    ssl.client
        .as_ref()
        .map(|client| client.ca.clone())
        .ok_or_else(|| UpstreamTlsError::CaWithoutClientCa { id: id.to_owned() })
}

fn root_store(anchors: &[CertificateDer<'static>]) -> Result<Arc<RootCertStore>, UpstreamTlsError> {
    let mut store = RootCertStore::empty();
    for (index, anchor) in anchors.iter().enumerate() {
        store
            .add(anchor.clone())
            .map_err(|e| UpstreamTlsError::TrustAnchor {
                index,
                reason: e.to_string(),
            })?;
    }
    Ok(Arc::new(store))
}
