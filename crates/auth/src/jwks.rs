//! Public keys from an identity provider's JWKS document, cached.
//!
//! The document is read from a file or fetched over http(s). It is fetched
//! again when a token names a `kid` the cache does not hold (the provider
//! rotated its keys) and when the cache is older than its maximum age, but
//! never more often than the minimum refresh interval, so tokens with made-up
//! key ids cannot turn the gateway into a flood against the provider. A
//! failed fetch keeps the keys already known.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::jwt::ASYMMETRIC;

/// Largest JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type Key = (Arc<DecodingKey>, Algorithm);

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Key>,
    /// The only key when the document holds exactly one: tokens without a
    /// `kid` may use it.
    single: Option<Key>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

pub struct Jwks {
    location: String,
    min_refresh: Duration,
    max_age: Duration,
    cache: RwLock<Cache>,
    /// One fetch at a time; the others wait for it and use its result.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    pub fn new(location: String, min_refresh: Duration, max_age: Duration) -> Result<Self, String> {
        let remote = location.starts_with("http://") || location.starts_with("https://");
        if !remote && location.contains("://") {
            return Err(format!(
                "JWKS location {location} is neither a file nor an http(s) URL"
            ));
        }
        Ok(Self {
            location,
            min_refresh,
            max_age,
            cache: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The key for `kid` (or the only key, for tokens without one).
    pub async fn key(&self, kid: Option<&str>) -> Option<Key> {
        let (found, stale) = self.lookup(kid);
        let fetching = match found {
            Some(key) if !stale => return Some(key),
            // A stale key: one request refreshes the cache, the others go on
            // with the cached key instead of queueing behind a slow provider.
            Some(key) => match self.fetching.try_lock() {
                Ok(fetching) => fetching,
                Err(_) => return Some(key),
            },
            None => self.fetching.lock().await,
        };
        self.refresh_unless_recent(fetching).await;
        self.lookup(kid).0
    }

    fn lookup(&self, kid: Option<&str>) -> (Option<Key>, bool) {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let found = match kid {
            Some(kid) => cache.keys.get(kid).cloned(),
            None => cache.single.clone(),
        };
        let stale = cache
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.max_age);
        (found, stale)
    }

    async fn refresh_unless_recent(&self, _fetching: tokio::sync::MutexGuard<'_, ()>) {
        let recent = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache
                .attempted_at
                .is_some_and(|at| at.elapsed() < self.min_refresh)
        };
        if !recent {
            if let Err(error) = self.fetch_and_store().await {
                tracing::warn!(%error, location = %self.location, "could not refresh JWKS");
            }
        }
    }

    /// Fetches the document now (waiting for a fetch in progress first).
    pub async fn refresh(&self) -> Result<(), String> {
        let _fetching = self.fetching.lock().await;
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<(), String> {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .attempted_at = Some(Instant::now());
        let document = fetch(&self.location).await?;
        let set: JwkSet =
            serde_json::from_slice(&document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = HashMap::new();
        let mut usable = Vec::new();
        for jwk in &set.keys {
            let Some(key) = usable_key(jwk) else {
                continue;
            };
            if let Some(kid) = &jwk.common.key_id {
                keys.insert(kid.clone(), key.clone());
            }
            usable.push(key);
        }
        if usable.is_empty() {
            return Err("the JWKS document holds no usable public key".into());
        }
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.single = (usable.len() == 1).then(|| usable.remove(0));
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        tracing::info!(keys = set.keys.len(), location = %self.location, "JWKS loaded");
        Ok(())
    }
}

/// A public signing key and the one algorithm it may verify. Symmetric
/// (`oct`) keys are never taken from a JWKS document.
fn usable_key(jwk: &Jwk) -> Option<Key> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(alg), _) => Algorithm::try_from(*alg).ok()?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, _) => return None,
    };
    if !ASYMMETRIC.contains(&algorithm) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((Arc::new(key), algorithm))
}

async fn fetch(location: &str) -> Result<Vec<u8>, String> {
    if !location.starts_with("http://") && !location.starts_with("https://") {
        let bytes = tokio::fs::read(location)
            .await
            .map_err(|e| format!("could not read {location}: {e}"))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "{location} is larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        return Ok(bytes);
    }
    let client = awc::Client::builder().timeout(FETCH_TIMEOUT).finish();
    let mut response = client
        .get(location)
        .insert_header(("accept", "application/json"))
        .send()
        .await
        .map_err(|e| format!("could not fetch {location}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{location} answered {}", response.status()));
    }
    let body = response
        .body()
        .limit(MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| format!("could not read {location}: {e}"))?;
    Ok(body.to_vec())
}
