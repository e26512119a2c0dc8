//! Private keys at rest: `deployment.data_encryption.keyring`.
//!
//! Every private key the admin API writes to etcd (an SSL object's `key` and
//! `keys`, an upstream's `tls.client_key`, also inline in a route) is sealed
//! with AES-256-GCM under the keyring's *first* key, with a fresh random
//! nonce, and stored as `$enc:v1:<base64(nonce || ciphertext || tag)>`.
//! Opening tries every key in turn, so a key is rotated by prepending the new
//! one: new writes use it, old values still open with the old one.
//!
//! The GCM tag authenticates the value: a wrong key and a tampered value are
//! both refused, never decrypted into garbage. Values without the marker are
//! taken as plaintext (written before a keyring was configured).

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;
use thiserror::Error;

use crate::resource::Kind;

/// Marks a sealed value; `v1` = AES-256-GCM, 12-byte nonce first, tag last.
pub const SEALED_PREFIX: &str = "$enc:v1:";

/// Binds ciphertexts to their purpose: a value sealed by anything else with
/// the same key does not open here.
const AAD: &[u8] = b"portcullis private key v1";
const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// Why a key could not be loaded, or a value sealed or opened.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("deployment.data_encryption.keyring[{index}] is not valid base64")]
    NotBase64 { index: usize },
    #[error(
        "deployment.data_encryption.keyring[{index}] is {len} bytes long; AES-256 needs \
         exactly 32 (make one with `openssl rand -base64 32`)"
    )]
    WrongLength { index: usize, len: usize },
    #[error("encryption failed")]
    Seal,
    #[error("the value is encrypted but no deployment.data_encryption.keyring is configured")]
    NoKeyring,
    #[error("the encrypted value is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "none of the {keys} key(s) in deployment.data_encryption.keyring decrypts it \
         (wrong key, or the value was altered)"
    )]
    NoKeyFits { keys: usize },
    #[error("the decrypted value is not UTF-8")]
    NotUtf8,
}

/// A private-key field that could not be sealed or opened.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("cannot {action} private key `{field}`: {reason}")]
pub struct SecretFieldError {
    /// `key`, `keys[1]`, `tls.client_key`, `upstream.tls.client_key`.
    pub field: String,
    action: &'static str,
    pub reason: KeyringError,
}

/// The configured AES-256 keys; cheap to clone. The default keyring is
/// empty: nothing is sealed, and sealed values cannot be opened.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Arc<[RandomizedNonceKey]>,
}

impl Keyring {
    /// Loads base64 32-byte keys, first = the one that seals.
    pub fn from_base64<S: AsRef<str>>(encoded: &[S]) -> Result<Keyring, KeyringError> {
        let keys = encoded
            .iter()
            .enumerate()
            .map(|(index, text)| key(index, text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Keyring { keys: keys.into() })
    }

    /// Whether values are sealed (at least one key is configured).
    pub fn is_enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Seals `plaintext` under the first key; without keys, returns it as is.
    pub fn seal(&self, plaintext: &str) -> Result<String, KeyringError> {
        let Some(key) = self.keys.first() else {
            return Ok(plaintext.to_owned());
        };
        let mut in_out = plaintext.as_bytes().to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(AAD), &mut in_out)
            .map_err(|_| KeyringError::Seal)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(format!("{SEALED_PREFIX}{}", BASE64.encode(sealed)))
    }

    /// Opens a sealed value with whichever key fits; a value without the
    /// marker is plaintext and returned as is.
    pub fn open(&self, stored: &str) -> Result<String, KeyringError> {
        let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        if self.keys.is_empty() {
            return Err(KeyringError::NoKeyring);
        }
        let sealed = BASE64
            .decode(encoded.trim())
            .map_err(|_| KeyringError::Malformed("not base64"))?;
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(KeyringError::Malformed("too short"));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let opened = self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut in_out = ciphertext.to_vec();
            let plaintext = key.open_in_place(nonce, Aad::from(AAD), &mut in_out).ok()?;
            Some(plaintext.to_vec())
        });
        let plaintext = opened.ok_or(KeyringError::NoKeyFits {
            keys: self.keys.len(),
        })?;
        String::from_utf8(plaintext).map_err(|_| KeyringError::NotUtf8)
    }

    /// Seals every private key of an object of `kind` (the JSON object
    /// itself, as stored). Values already sealed are left alone.
    pub fn seal_object(&self, kind: Kind, object: &mut Value) -> Result<(), SecretFieldError> {
        if !self.is_enabled() {
            return Ok(());
        }
        for_each_private_key(kind, object, &mut |field, text| {
            if text.starts_with(SEALED_PREFIX) {
                return Ok(());
            }
            *text = self.seal(text).map_err(|reason| SecretFieldError {
                field: field.to_owned(),
                action: "encrypt",
                reason,
            })?;
            Ok(())
        })
    }

    /// Opens every sealed private key of an object of `kind` in place, so
    /// that validation sees PEM.
    pub fn open_object(&self, kind: Kind, object: &mut Value) -> Result<(), SecretFieldError> {
        for_each_private_key(kind, object, &mut |field, text| {
            if !text.starts_with(SEALED_PREFIX) {
                return Ok(());
            }
            *text = self.open(text).map_err(|reason| SecretFieldError {
                field: field.to_owned(),
                action: "decrypt",
                reason,
            })?;
            Ok(())
        })
    }
}

impl fmt::Debug for Keyring {
    /// Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn key(index: usize, text: &str) -> Result<RandomizedNonceKey, KeyringError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| KeyringError::NotBase64 { index })?;
    if bytes.len() != KEY_LEN {
        return Err(KeyringError::WrongLength {
            index,
            len: bytes.len(),
        });
    }
    RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyringError::WrongLength {
        index,
        len: bytes.len(),
    })
}

type FieldFn<'a> = dyn FnMut(&str, &mut String) -> Result<(), SecretFieldError> + 'a;

/// Calls `f` with the name and text of every private key in an object of
/// `kind`: an SSL object's `key` and `keys[i]`, an upstream's
/// `tls.client_key`, a route's `upstream.tls.client_key`. Fields that are not
/// strings are left to validation.
fn for_each_private_key(
    kind: Kind,
    object: &mut Value,
    f: &mut FieldFn<'_>,
) -> Result<(), SecretFieldError> {
    match kind {
        Kind::Ssls => {
            if let Some(Value::String(key)) = object.get_mut("key") {
                f("key", key)?;
            }
            if let Some(Value::Array(keys)) = object.get_mut("keys") {
                for (i, key) in keys.iter_mut().enumerate() {
                    if let Value::String(key) = key {
                        f(&format!("keys[{i}]"), key)?;
                    }
                }
            }
            Ok(())
        }
        Kind::Upstreams => client_key(object, "tls.client_key", f),
        Kind::Routes => match object.get_mut("upstream") {
            Some(upstream) => client_key(upstream, "upstream.tls.client_key", f),
            None => Ok(()),
        },
    }
}

fn client_key(
    upstream: &mut Value,
    field: &str,
    f: &mut FieldFn<'_>,
) -> Result<(), SecretFieldError> {
    let key = upstream
        .get_mut("tls")
        .and_then(|tls| tls.get_mut("client_key"));
    match key {
        Some(Value::String(key)) => f(field, key),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const PEM: &str =
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

    fn ring(keys: &[[u8; 32]]) -> Keyring {
        let encoded: Vec<String> = keys.iter().map(|k| BASE64.encode(k)).collect();
        Keyring::from_base64(&encoded).expect("valid keys")
    }

    #[test]
    fn round_trips_with_a_fresh_nonce_each_time() {
        let keyring = ring(&[[1; 32]]);
        let first = keyring.seal(PEM).expect("sealed");
        let second = keyring.seal(PEM).expect("sealed");
        assert!(first.starts_with(SEALED_PREFIX), "{first}");
        assert!(!first.contains("PRIVATE KEY"));
        assert_ne!(first, second, "the nonce must be random");
        assert_eq!(keyring.open(&first).expect("opens"), PEM);
        assert_eq!(keyring.open(&second).expect("opens"), PEM);
    }

    #[test]
    fn rotation_prepends_a_key_and_old_values_still_open() {
        let old = ring(&[[1; 32]]);
        let sealed_by_old = old.seal(PEM).expect("sealed");
        let rotated = ring(&[[2; 32], [1; 32]]);
        assert_eq!(rotated.open(&sealed_by_old).expect("old key fits"), PEM);
        let sealed_by_new = rotated.seal(PEM).expect("sealed");
        assert!(
            old.open(&sealed_by_new).is_err(),
            "new writes use the first key"
        );
        assert_eq!(ring(&[[2; 32]]).open(&sealed_by_new).expect("opens"), PEM);
    }

    #[test]
    fn a_wrong_key_or_no_key_is_refused() {
        let sealed = ring(&[[1; 32]]).seal(PEM).expect("sealed");
        assert_eq!(
            ring(&[[3; 32]]).open(&sealed),
            Err(KeyringError::NoKeyFits { keys: 1 })
        );
        assert_eq!(
            Keyring::default().open(&sealed),
            Err(KeyringError::NoKeyring)
        );
    }

    #[test]
    fn tampering_is_detected() {
        let keyring = ring(&[[1; 32]]);
        let sealed = keyring.seal(PEM).expect("sealed");
        let mut bytes = BASE64
            .decode(&sealed[SEALED_PREFIX.len()..])
            .expect("base64");
        for position in [0, NONCE_LEN + 3, bytes.len() - 1] {
            bytes[position] ^= 0x01;
            let forged = format!("{SEALED_PREFIX}{}", BASE64.encode(&bytes));
            assert!(
                matches!(keyring.open(&forged), Err(KeyringError::NoKeyFits { .. })),
                "a flipped bit at {position} must be detected"
            );
            bytes[position] ^= 0x01;
        }
        for malformed in ["$enc:v1:%%%", "$enc:v1:AAAA"] {
            assert!(matches!(
                keyring.open(malformed),
                Err(KeyringError::Malformed(_))
            ));
        }
    }

    #[test]
    fn plaintext_passes_through_and_no_keyring_seals_nothing() {
        assert_eq!(ring(&[[1; 32]]).open(PEM).expect("plaintext"), PEM);
        assert_eq!(Keyring::default().seal(PEM).expect("as is"), PEM);
    }

    #[test]
    fn bad_keys_are_named() {
        let short = BASE64.encode([0u8; 16]);
        assert_eq!(
            Keyring::from_base64(&[BASE64.encode([0u8; 32]), short]).err(),
            Some(KeyringError::WrongLength { index: 1, len: 16 })
        );
        assert_eq!(
            Keyring::from_base64(&["not base64!"]).err(),
            Some(KeyringError::NotBase64 { index: 0 })
        );
        let message = KeyringError::WrongLength { index: 1, len: 16 }.to_string();
        assert!(message.contains("keyring[1]") && message.contains("openssl rand"));
    }

    #[test]
    fn objects_seal_and_open_every_private_key_field() {
        let keyring = ring(&[[1; 32]]);
        let mut ssl = json!({"cert": "c", "key": PEM, "certs": ["c"], "keys": [PEM]});
        let mut upstream = json!({"nodes": {}, "tls": {"client_cert": "c", "client_key": PEM}});
        let mut route = json!({"uri": "/", "upstream": upstream.clone()});
        for (kind, value) in [
            (Kind::Ssls, &mut ssl),
            (Kind::Upstreams, &mut upstream),
            (Kind::Routes, &mut route),
        ] {
            let original = value.clone();
            keyring.seal_object(kind, value).expect("sealed");
            let text = value.to_string();
            assert!(!text.contains("PRIVATE KEY"), "{kind}: {text}");
            assert!(text.contains(SEALED_PREFIX), "{kind}: {text}");
            let sealed_once = value.clone();
            keyring.seal_object(kind, value).expect("idempotent");
            assert_eq!(
                *value, sealed_once,
                "{kind}: sealed values stay as they are"
            );
            keyring.open_object(kind, value).expect("opened");
            assert_eq!(*value, original, "{kind}");
        }
    }

    #[test]
    fn object_errors_name_the_field() {
        let sealed = ring(&[[1; 32]]).seal(PEM).expect("sealed");
        let mut route = json!({"upstream": {"tls": {"client_key": sealed}}});
        let err = ring(&[[2; 32]])
            .open_object(Kind::Routes, &mut route)
            .expect_err("wrong key");
        assert_eq!(err.field, "upstream.tls.client_key");
        assert!(err
            .to_string()
            .starts_with("cannot decrypt private key `upstream.tls.client_key`"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let text = format!("{:?}", ring(&[[7; 32]]));
        assert_eq!(text, "Keyring { keys: 1 }");
    }
}
