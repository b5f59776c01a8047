//! Verification of the JWTs that identify end users.
//!
//! Keys are HS256 with a shared secret (the default), one RS256/ES256 public
//! key in PEM, or a JWKS document from an identity provider. Whatever the
//! source, the algorithm a token may use is fixed by the key, never by the
//! token: `alg: none` and algorithm-confusion tokens (HS256 signed with an
//! RSA public key as the secret) are refused before any signature check.
//! `exp` and `sub` are required, `nbf` is honoured, and `iss` and `aud` are
//! checked when configured. An audience is required with keys that come from
//! an identity provider, unless accepting any audience is chosen explicitly.
//!
//! One leeway ([`JwtConfig::leeway`], none by default) applies to `exp`,
//! `nbf` and the maximum lifetime. Callers that act on `exp` (the gateway's
//! connection deadline) or remember revocations take it, and the lengths
//! derived from it, from [`JwtVerifier`], so that every node agrees on when
//! a token stops being accepted.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{
    decode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use crate::jwks::Jwks;
use crate::CLOCK_SKEW_MARGIN_SECS;

/// The user id (`sub`) longer than this is refused: it becomes a column value
/// and a Redis channel name.
pub const MAX_USER_ID_LEN: usize = 191;

/// What the services read from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    /// Issued at; a user disconnect refuses tokens issued before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// The token's id, by which it can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// What the topic policy grants; read from the claim named by
    /// [`JwtConfig::roles_claim`] (`roles` when signing).
    #[serde(default, skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pub roles: Vec<String>,
}

/// Most roles one token may carry.
pub const MAX_ROLES: usize = 32;

/// A token's claims as decoded: the ones every token has, and the rest, of
/// which only the roles claim is kept.
#[derive(Deserialize)]
struct DecodedClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl DecodedClaims {
    /// Refuses a roles claim that is not a list of at most [`MAX_ROLES`]
    /// valid role names: a token whose grants cannot be read is not half
    /// accepted.
    fn into_claims(mut self, roles_claim: &str) -> Result<Claims, AuthError> {
        let roles = match self.other.remove(roles_claim) {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(values)) if values.len() <= MAX_ROLES => {
                let mut roles = Vec::with_capacity(values.len());
                for value in values {
                    match value {
                        serde_json::Value::String(role)
                            if notify_protocol::names::valid_role(&role) =>
                        {
                            if !roles.contains(&role) {
                                roles.push(role)
                            }
                        }
                        _ => return Err(AuthError::Invalid),
                    }
                }
                roles
            }
            Some(_) => return Err(AuthError::Invalid),
        };
        Ok(Claims {
            sub: self.sub,
            exp: self.exp,
            iat: self.iat,
            jti: self.jti,
            roles,
        })
    }
}

/// Why a token was refused. Messages stay short on purpose: a client learns
/// that its token is unusable, not which check it failed beyond expiry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

/// Where the keys that sign user tokens come from.
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 with a shared secret.
    Secret(Vec<u8>),
    /// One public key in PEM, for RS256 or ES256.
    PublicKey { algorithm: Algorithm, pem: Vec<u8> },
    /// A JWKS document: a file path or an `http(s)://` URL. It is fetched
    /// when first needed, again when a token names an unknown `kid` (at most
    /// once per `min_refresh`), and when older than `max_age`.
    Jwks {
        location: String,
        min_refresh: Duration,
        max_age: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub key: JwtKey,
    pub issuer: Option<String>,
    /// The `aud` tokens must carry. Required with a public key or a JWKS
    /// (an identity provider issues tokens for many applications) unless
    /// `accept_any_audience` is set.
    pub audience: Option<String>,
    /// Accept tokens of a public key or JWKS whatever their `aud`.
    pub accept_any_audience: bool,
    /// Tokens valid for longer than this from now are refused, so a
    /// revocation (kept this long) outlives every token it covers.
    pub max_lifetime: Duration,
    /// Clock difference with the token issuer allowed on `exp`, `nbf` and
    /// the maximum lifetime, in whole seconds.
    pub leeway: Duration,
    /// The claim holding the user's roles (an array of strings).
    pub roles_claim: String,
}

/// Default of [`JwtConfig::roles_claim`].
pub const DEFAULT_ROLES_CLAIM: &str = "roles";

/// Default of [`JwtConfig::max_lifetime`]: one day.
/// The upper bound of `TOKEN_MAX_LIFETIME_SECS`, and so of how long any
/// revocation needs keeping: a year.
pub const LONGEST_LIFETIME_SECS: u64 = 366 * 24 * 3600;

pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Default of [`JwtConfig::leeway`]: none. The JWT library's own default
/// (60 s) let a token that had just expired pass the check before a
/// WebSocket upgrade, only for the gateway to close the connection at once.
pub const DEFAULT_LEEWAY: Duration = Duration::ZERO;

impl JwtConfig {
    /// HS256 with `secret`, no issuer or audience.
    pub fn hs256(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            key: JwtKey::Secret(secret.into()),
            issuer: None,
            audience: None,
            accept_any_audience: false,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            leeway: DEFAULT_LEEWAY,
            roles_claim: DEFAULT_ROLES_CLAIM.to_string(),
        }
    }

    /// Refuses an identity provider's keys without an audience: they would
    /// accept the tokens the provider issued for every other application.
    fn check_audience(&self) -> Result<(), String> {
        let source = match self.key {
            JwtKey::Secret(_) => return Ok(()),
            JwtKey::PublicKey { .. } => "JWT_PUBLIC_KEY_FILE",
            JwtKey::Jwks { .. } => "JWT_JWKS",
        };
        match (&self.audience, self.accept_any_audience) {
            (Some(_), true) => {
                Err("set only one of JWT_AUDIENCE and JWT_ACCEPT_ANY_AUDIENCE".to_string())
            }
            (None, false) => Err(format!(
                "JWT_AUDIENCE is required with {source} (or set JWT_ACCEPT_ANY_AUDIENCE=true to accept tokens issued for any audience)"
            )),
            _ => Ok(()),
        }
    }
}

/// Algorithms a public key may be used with.
pub const ASYMMETRIC: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

enum Keys {
    Static {
        key: DecodingKey,
        validation: Validation,
    },
    Jwks(Jwks),
}

/// Cheap to clone; clones share the JWKS cache.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Arc<Keys>,
    /// Checks shared by every algorithm; the algorithm is set per key.
    base: Arc<Validation>,
    max_lifetime: Duration,
    leeway: Duration,
    roles_claim: Arc<str>,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Result<Self, String> {
        config.check_audience()?;
        let base = base_validation(config);
        let keys = match &config.key {
            JwtKey::Secret(secret) => Keys::Static {
                key: DecodingKey::from_secret(secret),
                validation: with_algorithm(&base, Algorithm::HS256),
            },
            JwtKey::PublicKey { algorithm, pem } => {
                let key = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
                    a if ASYMMETRIC.contains(a) => DecodingKey::from_rsa_pem(pem),
                    other => return Err(format!("{other:?} is not a public-key algorithm")),
                }
                .map_err(|e| format!("invalid {algorithm:?} public key: {e}"))?;
                Keys::Static {
                    key,
                    validation: with_algorithm(&base, *algorithm),
                }
            }
            JwtKey::Jwks {
                location,
                min_refresh,
                max_age,
            } => Keys::Jwks(Jwks::new(location.clone(), *min_refresh, *max_age)?),
        };
        Ok(Self {
            keys: Arc::new(keys),
            base: Arc::new(base),
            max_lifetime: config.max_lifetime,
            leeway: Duration::from_secs(config.leeway.as_secs()),
            roles_claim: Arc::from(config.roles_claim.as_str()),
        })
    }

    /// How long after its `exp` a token is still accepted. A token expiring
    /// at `exp` is accepted while `now < exp + leeway` (Unix seconds), so a
    /// connection that holds it must end at `exp + leeway`.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// How long a user disconnect must be remembered so that no token the
    /// user could use at the time of it is accepted again: the latest `exp`
    /// accepted now is `max_lifetime + leeway` away, and that token is
    /// accepted until `leeway` after it, on a clock that may differ from
    /// this node's by [`CLOCK_SKEW_MARGIN_SECS`].
    pub fn user_revocation_ttl(&self) -> Duration {
        self.max_lifetime + self.leeway * 2 + Duration::from_secs(CLOCK_SKEW_MARGIN_SECS)
    }

    /// How long the revocation of one token must be remembered, at `now`
    /// (Unix seconds): until `leeway` past its `exp` when that is known, as
    /// long as a user disconnect otherwise.
    pub fn token_revocation_ttl(&self, exp: Option<u64>, now: u64) -> Duration {
        match exp {
            Some(exp) => {
                Duration::from_secs(exp.saturating_sub(now))
                    + self.leeway
                    + Duration::from_secs(CLOCK_SKEW_MARGIN_SECS)
            }
            None => self.user_revocation_ttl(),
        }
    }

    /// Fetches the JWKS document now, if keys come from one, so the first
    /// connections do not wait for it.
    pub async fn prefetch(&self) -> Result<(), String> {
        match &*self.keys {
            Keys::Jwks(jwks) => jwks.refresh().await,
            Keys::Static { .. } => Ok(()),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let decoded = match &*self.keys {
            Keys::Static { key, validation } => decode_with(token, key, validation)?,
            Keys::Jwks(jwks) => {
                let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
                let (key, algorithm) = jwks
                    .key(header.kid.as_deref())
                    .await
                    .ok_or(AuthError::Invalid)?;
                // The key decides the algorithm; a token claiming another
                // one is refused.
                if header.alg != algorithm {
                    return Err(AuthError::Invalid);
                }
                decode_with(token, &key, &with_algorithm(&self.base, algorithm))?
            }
        };
        let claims = decoded.into_claims(&self.roles_claim)?;
        if !valid_user_id(&claims.sub) {
            return Err(AuthError::Invalid);
        }
        let longest = crate::unix_now()
            .saturating_add(self.max_lifetime.as_secs())
            .saturating_add(self.leeway.as_secs());
        if claims.exp > longest {
            return Err(AuthError::Invalid);
        }
        Ok(claims)
    }
}

fn base_validation(config: &JwtConfig) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_nbf = true;
    validation.leeway = config.leeway.as_secs();
    // `exp` is the first second a token is no longer valid (RFC 7519), so a
    // token is accepted while `now < exp + leeway`; the library would also
    // accept it during the second `exp + leeway` itself.
    validation.reject_tokens_expiring_in_less_than = 1;
    let mut required = vec!["exp", "sub"];
    match &config.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        // Without a configured audience (our own HS256 tokens, or an
        // explicit choice to accept any) the library would refuse every
        // token that carries `aud`; identity providers often add one.
        None => validation.validate_aud = false,
    }
    if let Some(iss) = &config.issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn with_algorithm(base: &Validation, algorithm: Algorithm) -> Validation {
    let mut validation = base.clone();
    validation.algorithms = vec![algorithm];
    validation
}

fn decode_with(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<DecodedClaims, AuthError> {
    decode::<DecodedClaims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })
}

/// A user id is 1..=191 characters, with no control characters and no
/// surrounding whitespace (MySQL compares trailing spaces as equal).
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_USER_ID_LEN
        && id.trim() == id
        && !id.chars().any(char::is_control)
}

/// Signs a development token. Used by the `token` command of the api and by
/// tests; production tokens come from the identity provider.
pub fn sign_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use jsonwebtoken::jwk::{Jwk, JwkSet};

    use super::*;

    const RSA_PRIVATE: &[u8] = include_bytes!("../../testkit/keys/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../../testkit/keys/rsa-public.pem");
    const RSA_OTHER: &[u8] = include_bytes!("../../testkit/keys/rsa-other-private.pem");
    const EC_PRIVATE: &[u8] = include_bytes!("../../testkit/keys/ec-private.pem");
    const EC_PUBLIC: &[u8] = include_bytes!("../../testkit/keys/ec-public.pem");

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&JwtConfig::hs256(b"secret".to_vec())).unwrap()
    }

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            iat: None,
            jti: None,
            roles: Vec::new(),
        }
    }

    #[actix_web::test]
    async fn roles_come_from_the_configured_claim() {
        let key = EncodingKey::from_secret(b"secret");
        let exp = crate::unix_now() + 60;
        let token = |extra: serde_json::Value| {
            let mut claims = serde_json::json!({"sub": "ann", "exp": exp});
            if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
                claims.extend(extra.clone());
            }
            sign_with(Algorithm::HS256, None, &key, &claims)
        };
        let roles = |t: &str, v: &JwtVerifier| {
            let v = v.clone();
            let t = t.to_owned();
            async move { v.verify(&t).await.map(|c| c.roles) }
        };
        let default = verifier();
        let both = token(serde_json::json!({"roles": ["admin", "ops", "admin"], "groups": ["x"]}));
        assert_eq!(
            roles(&both, &default).await,
            Ok(vec!["admin".into(), "ops".into()])
        );
        assert_eq!(
            roles(&token(serde_json::json!({})), &default).await,
            Ok(vec![])
        );
        let groups = JwtVerifier::new(&JwtConfig {
            roles_claim: "groups".into(),
            ..JwtConfig::hs256(b"secret".to_vec())
        })
        .unwrap();
        assert_eq!(roles(&both, &groups).await, Ok(vec!["x".into()]));
        for bad in [
            serde_json::json!({"roles": "admin"}),
            serde_json::json!({"roles": [1]}),
            serde_json::json!({"roles": ["has space"]}),
            serde_json::json!({"roles": (0..33).map(|i| format!("r{i}")).collect::<Vec<_>>()}),
        ] {
            assert_eq!(
                roles(&token(bad.clone()), &default).await,
                Err(AuthError::Invalid),
                "{bad}"
            );
        }
    }

    fn sign_with(
        alg: Algorithm,
        kid: Option<&str>,
        key: &EncodingKey,
        claims: &serde_json::Value,
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// The audience public-key and JWKS verifiers of these tests require.
    const AUD: &str = "notify";

    fn good_claims() -> serde_json::Value {
        serde_json::json!({"sub": "alice", "aud": AUD, "exp": now() + 600})
    }

    fn public_key_config(algorithm: Algorithm, pem: &[u8]) -> JwtConfig {
        JwtConfig {
            key: JwtKey::PublicKey {
                algorithm,
                pem: pem.to_vec(),
            },
            audience: Some(AUD.into()),
            ..JwtConfig::hs256(Vec::new())
        }
    }

    fn public_key(algorithm: Algorithm, pem: &[u8]) -> JwtVerifier {
        JwtVerifier::new(&public_key_config(algorithm, pem)).unwrap()
    }

    #[actix_web::test]
    async fn accepts_valid_token() {
        let token = sign_hs256(b"secret", &claims("alice", now() + 60)).unwrap();
        assert_eq!(verifier().verify(&token).await.unwrap().sub, "alice");
    }

    #[actix_web::test]
    async fn refuses_expired_forged_and_unsigned() {
        let v = verifier();
        let expired = sign_hs256(b"secret", &claims("alice", now() - 3600)).unwrap();
        assert_eq!(v.verify(&expired).await.unwrap_err(), AuthError::Expired);
        let forged = sign_hs256(b"other", &claims("alice", now() + 60)).unwrap();
        assert_eq!(v.verify(&forged).await.unwrap_err(), AuthError::Invalid);
        // alg: none, unsigned
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(v.verify(none).await.unwrap_err(), AuthError::Invalid);
        assert_eq!(v.verify("garbage").await.unwrap_err(), AuthError::Invalid);
        let no_sub = sign_with(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(b"secret"),
            &serde_json::json!({"exp": now() + 60}),
        );
        assert_eq!(v.verify(&no_sub).await.unwrap_err(), AuthError::Invalid);
    }

    #[actix_web::test]
    async fn refuses_bad_subjects() {
        let v = verifier();
        for sub in ["", " alice", "a\nb", &"x".repeat(192)] {
            let token = sign_hs256(b"secret", &claims(sub, now() + 60)).unwrap();
            assert_eq!(
                v.verify(&token).await.unwrap_err(),
                AuthError::Invalid,
                "{sub:?}"
            );
        }
    }

    #[actix_web::test]
    async fn checks_audience_when_configured() {
        let v = JwtVerifier::new(&JwtConfig {
            issuer: Some("idp".into()),
            audience: Some("notify".into()),
            ..JwtConfig::hs256(b"secret".to_vec())
        })
        .unwrap();
        let key = EncodingKey::from_secret(b"secret");
        let sign = |claims: &serde_json::Value| sign_with(Algorithm::HS256, None, &key, claims);
        let exp = now() + 60;
        for refused in [
            serde_json::json!({"sub": "a", "exp": exp}),
            serde_json::json!({"sub": "a", "exp": exp, "iss": "idp"}),
            serde_json::json!({"sub": "a", "exp": exp, "iss": "idp", "aud": "other"}),
            serde_json::json!({"sub": "a", "exp": exp, "iss": "evil", "aud": "notify"}),
        ] {
            assert_eq!(
                v.verify(&sign(&refused)).await.unwrap_err(),
                AuthError::Invalid,
                "{refused}"
            );
        }
        let good =
            sign(&serde_json::json!({"sub": "a", "exp": exp, "iss": "idp", "aud": "notify"}));
        assert_eq!(v.verify(&good).await.unwrap().sub, "a");
    }

    #[actix_web::test]
    async fn refuses_tokens_valid_for_longer_than_the_maximum_lifetime() {
        let v = verifier();
        let day = DEFAULT_MAX_LIFETIME.as_secs();
        let long = sign_hs256(b"secret", &claims("alice", now() + day + 3600)).unwrap();
        assert_eq!(v.verify(&long).await.unwrap_err(), AuthError::Invalid);
        let forever = sign_hs256(b"secret", &claims("alice", u64::MAX)).unwrap();
        assert_eq!(v.verify(&forever).await.unwrap_err(), AuthError::Invalid);
        let day_long = sign_hs256(b"secret", &claims("alice", now() + day)).unwrap();
        assert_eq!(v.verify(&day_long).await.unwrap().sub, "alice");
    }

    #[actix_web::test]
    async fn checks_not_before() {
        let token = sign_with(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(b"secret"),
            &serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}),
        );
        assert_eq!(
            verifier().verify(&token).await.unwrap_err(),
            AuthError::Invalid
        );
    }

    #[actix_web::test]
    async fn ignores_audience_when_not_configured() {
        let token = sign_with(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(b"secret"),
            &serde_json::json!({"sub": "a", "exp": now() + 600, "aud": "anything"}),
        );
        assert_eq!(verifier().verify(&token).await.unwrap().sub, "a");
    }

    #[actix_web::test]
    async fn verifies_rs256_and_es256_public_keys() {
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let rs_verifier = public_key(Algorithm::RS256, RSA_PUBLIC);
        let es_verifier = public_key(Algorithm::ES256, EC_PUBLIC);
        let rs = sign_with(Algorithm::RS256, None, &rsa, &good_claims());
        let es = sign_with(Algorithm::ES256, None, &ec, &good_claims());
        assert_eq!(rs_verifier.verify(&rs).await.unwrap().sub, "alice");
        assert_eq!(es_verifier.verify(&es).await.unwrap().sub, "alice");
        // Wrong key, wrong family.
        assert!(rs_verifier.verify(&es).await.is_err());
        assert!(es_verifier.verify(&rs).await.is_err());
        let other = EncodingKey::from_rsa_pem(RSA_OTHER).unwrap();
        let forged = sign_with(Algorithm::RS256, None, &other, &good_claims());
        assert_eq!(
            rs_verifier.verify(&forged).await.unwrap_err(),
            AuthError::Invalid
        );
        // Right key, another RSA algorithm than the configured one.
        let rs512 = sign_with(Algorithm::RS512, None, &rsa, &good_claims());
        assert_eq!(
            rs_verifier.verify(&rs512).await.unwrap_err(),
            AuthError::Invalid
        );
        let error = JwtVerifier::new(&public_key_config(Algorithm::RS256, b"not a key"))
            .err()
            .unwrap();
        assert!(error.contains("invalid RS256 public key"), "{error}");
    }

    #[actix_web::test]
    async fn refuses_hs256_signed_with_the_public_key() {
        // The classic confusion: the attacker knows the public key and uses
        // it as an HMAC secret.
        let confused = sign_with(
            Algorithm::HS256,
            None,
            &EncodingKey::from_secret(RSA_PUBLIC),
            &good_claims(),
        );
        let v = public_key(Algorithm::RS256, RSA_PUBLIC);
        assert_eq!(v.verify(&confused).await.unwrap_err(), AuthError::Invalid);
        let jwks = jwks_file(&[(RSA_PRIVATE, "k1")]);
        let v = jwks_verifier(jwks.path().to_str().unwrap(), Duration::ZERO);
        let confused = sign_with(
            Algorithm::HS256,
            Some("k1"),
            &EncodingKey::from_secret(RSA_PUBLIC),
            &good_claims(),
        );
        assert_eq!(v.verify(&confused).await.unwrap_err(), AuthError::Invalid);
    }

    fn jwk(private_pem: &[u8], kid: &str) -> Jwk {
        let key = EncodingKey::from_rsa_pem(private_pem).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk
    }

    fn document(keys: &[(&[u8], &str)]) -> String {
        serde_json::to_string(&JwkSet {
            keys: keys.iter().map(|(pem, kid)| jwk(pem, kid)).collect(),
        })
        .unwrap()
    }

    struct TempFile(std::path::PathBuf);
    impl TempFile {
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn jwks_file(keys: &[(&[u8], &str)]) -> TempFile {
        let path = std::env::temp_dir().join(format!("jwks-{}.json", rand_suffix()));
        std::fs::write(&path, document(keys)).unwrap();
        TempFile(path)
    }

    fn rand_suffix() -> String {
        format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    fn jwks_config(location: &str, min_refresh: Duration) -> JwtConfig {
        JwtConfig {
            key: JwtKey::Jwks {
                location: location.into(),
                min_refresh,
                max_age: Duration::from_secs(3600),
            },
            audience: Some(AUD.into()),
            ..JwtConfig::hs256(Vec::new())
        }
    }

    fn jwks_verifier(location: &str, min_refresh: Duration) -> JwtVerifier {
        JwtVerifier::new(&jwks_config(location, min_refresh)).unwrap()
    }

    #[actix_web::test]
    async fn jwks_file_selects_the_key_by_kid() {
        let file = jwks_file(&[(RSA_PRIVATE, "k1"), (RSA_OTHER, "k2")]);
        let v = jwks_verifier(file.path().to_str().unwrap(), Duration::ZERO);
        let k1 = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let k2 = EncodingKey::from_rsa_pem(RSA_OTHER).unwrap();
        let t1 = sign_with(Algorithm::RS256, Some("k1"), &k1, &good_claims());
        let t2 = sign_with(Algorithm::RS256, Some("k2"), &k2, &good_claims());
        assert_eq!(v.verify(&t1).await.unwrap().sub, "alice");
        assert_eq!(v.verify(&t2).await.unwrap().sub, "alice");
        // Signed by k2's key but naming k1; unknown kid; no kid with two keys.
        let wrong = sign_with(Algorithm::RS256, Some("k1"), &k2, &good_claims());
        assert_eq!(v.verify(&wrong).await.unwrap_err(), AuthError::Invalid);
        let unknown = sign_with(Algorithm::RS256, Some("k9"), &k1, &good_claims());
        assert_eq!(v.verify(&unknown).await.unwrap_err(), AuthError::Invalid);
        let no_kid = sign_with(Algorithm::RS256, None, &k1, &good_claims());
        assert_eq!(v.verify(&no_kid).await.unwrap_err(), AuthError::Invalid);
    }

    /// A JWKS endpoint whose document can be replaced and which counts how
    /// often it is fetched.
    struct JwksServer {
        url: String,
        document: Arc<Mutex<String>>,
        fetches: Arc<AtomicUsize>,
        handle: actix_web::dev::ServerHandle,
    }

    async fn jwks_server(document: String) -> JwksServer {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let shared = Arc::new(Mutex::new(document));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (shared.clone(), fetches.clone());
        let server = HttpServer::new(move || {
            let (doc, count) = (doc.clone(), count.clone());
            App::new().route(
                "/.well-known/jwks.json",
                web::get().to(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = doc.lock().unwrap().clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        JwksServer {
            url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
            document: shared,
            fetches,
            handle,
        }
    }

    #[actix_web::test]
    async fn jwks_url_is_cached_and_refreshed_on_unknown_kid() {
        let server = jwks_server(document(&[(RSA_PRIVATE, "k1")])).await;
        let v = jwks_verifier(&server.url, Duration::ZERO);
        let k1 = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let k2 = EncodingKey::from_rsa_pem(RSA_OTHER).unwrap();
        let t1 = sign_with(Algorithm::RS256, Some("k1"), &k1, &good_claims());
        for _ in 0..3 {
            assert_eq!(v.verify(&t1).await.unwrap().sub, "alice");
        }
        assert_eq!(server.fetches.load(Ordering::SeqCst), 1, "cached");
        // The provider rotates to k2: the first token naming it triggers a
        // refresh and is accepted.
        *server.document.lock().unwrap() = document(&[(RSA_PRIVATE, "k1"), (RSA_OTHER, "k2")]);
        let t2 = sign_with(Algorithm::RS256, Some("k2"), &k2, &good_claims());
        assert_eq!(v.verify(&t2).await.unwrap().sub, "alice");
        assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
        server.handle.stop(false).await;
    }

    #[actix_web::test]
    async fn unknown_kids_do_not_flood_the_provider() {
        let server = jwks_server(document(&[(RSA_PRIVATE, "k1")])).await;
        let v = jwks_verifier(&server.url, Duration::from_secs(60));
        let k1 = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        for i in 0..20 {
            let kid = format!("made-up-{i}");
            let token = sign_with(Algorithm::RS256, Some(&kid), &k1, &good_claims());
            assert_eq!(v.verify(&token).await.unwrap_err(), AuthError::Invalid);
        }
        assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
        // Known keys keep working meanwhile.
        let t1 = sign_with(Algorithm::RS256, Some("k1"), &k1, &good_claims());
        assert_eq!(v.verify(&t1).await.unwrap().sub, "alice");
        server.handle.stop(false).await;
    }

    #[actix_web::test]
    async fn jwks_never_yields_symmetric_keys() {
        let path = std::env::temp_dir().join(format!("jwks-oct-{}.json", rand_suffix()));
        std::fs::write(
            &path,
            r#"{"keys":[{"kty":"oct","kid":"s","alg":"HS256","k":"c2VjcmV0"}]}"#,
        )
        .unwrap();
        let file = TempFile(path);
        let v = jwks_verifier(file.path().to_str().unwrap(), Duration::ZERO);
        let token = sign_with(
            Algorithm::HS256,
            Some("s"),
            &EncodingKey::from_secret(b"secret"),
            &good_claims(),
        );
        assert_eq!(v.verify(&token).await.unwrap_err(), AuthError::Invalid);
        assert!(v.prefetch().await.is_err());
    }

    #[actix_web::test]
    async fn refuses_a_token_that_expired_seconds_ago() {
        // With the library's default leeway these passed the check before a
        // WebSocket upgrade, and the gateway closed the connection at once.
        let v = verifier();
        assert_eq!(v.leeway(), Duration::ZERO);
        for exp in [now() - 10, now()] {
            let token = sign_hs256(b"secret", &claims("alice", exp)).unwrap();
            assert_eq!(v.verify(&token).await.unwrap_err(), AuthError::Expired);
        }
    }

    #[actix_web::test]
    async fn a_configured_leeway_applies_to_exp_and_the_maximum_lifetime() {
        let v = JwtVerifier::new(&JwtConfig {
            leeway: Duration::from_secs(30),
            ..JwtConfig::hs256(b"secret".to_vec())
        })
        .unwrap();
        assert_eq!(v.leeway(), Duration::from_secs(30));
        let sign = |exp| sign_hs256(b"secret", &claims("alice", exp)).unwrap();
        assert_eq!(v.verify(&sign(now() - 10)).await.unwrap().sub, "alice");
        assert_eq!(
            v.verify(&sign(now() - 30)).await.unwrap_err(),
            AuthError::Expired
        );
        let day = DEFAULT_MAX_LIFETIME.as_secs();
        assert_eq!(
            v.verify(&sign(now() + day + 20)).await.unwrap().sub,
            "alice"
        );
        assert_eq!(
            v.verify(&sign(now() + day + 40)).await.unwrap_err(),
            AuthError::Invalid
        );
    }

    #[actix_web::test]
    async fn revocations_outlast_every_token_they_cover() {
        let leeway = 30;
        let v = JwtVerifier::new(&JwtConfig {
            leeway: Duration::from_secs(leeway),
            max_lifetime: Duration::from_secs(3600),
            ..JwtConfig::hs256(b"secret".to_vec())
        })
        .unwrap();
        let now = now();
        // The longest-lived token accepted now...
        let exp = now + 3600 + leeway;
        let longest = sign_hs256(b"secret", &claims("alice", exp)).unwrap();
        assert!(v.verify(&longest).await.is_ok());
        // ...is accepted until `leeway` after its exp: a revocation made now
        // must be remembered beyond that.
        let accepted_for = exp + leeway - now;
        assert!(v.user_revocation_ttl().as_secs() > accepted_for);
        assert!(v.token_revocation_ttl(None, now).as_secs() > accepted_for);
        let exp = now + 600;
        assert!(v.token_revocation_ttl(Some(exp), now).as_secs() > exp + leeway - now);
        // An exp long past still leaves a moment for lagging clocks.
        assert!(v.token_revocation_ttl(Some(now - 3600), now) > Duration::ZERO);
    }

    #[actix_web::test]
    async fn identity_provider_keys_require_an_audience_or_an_explicit_opt_out() {
        let jwks = jwks_file(&[(RSA_PRIVATE, "k1")]);
        let location = jwks.path().to_str().unwrap();
        for (config, setting) in [
            (
                public_key_config(Algorithm::RS256, RSA_PUBLIC),
                "JWT_PUBLIC_KEY_FILE",
            ),
            (jwks_config(location, Duration::ZERO), "JWT_JWKS"),
        ] {
            let missing = JwtConfig {
                audience: None,
                ..config.clone()
            };
            let error = JwtVerifier::new(&missing).err().unwrap();
            assert!(
                error.starts_with("JWT_AUDIENCE is required with"),
                "{error}"
            );
            assert!(error.contains(setting), "{error}");
            assert!(error.contains("JWT_ACCEPT_ANY_AUDIENCE=true"), "{error}");
            assert!(!error.contains('\n'));
            let both = JwtConfig {
                accept_any_audience: true,
                ..config.clone()
            };
            assert!(JwtVerifier::new(&both).is_err());
            let any = JwtConfig {
                audience: None,
                accept_any_audience: true,
                ..config.clone()
            };
            assert!(JwtVerifier::new(&any).is_ok());
            assert!(JwtVerifier::new(&config).is_ok());
        }
        // Our own HS256 tokens need none.
        assert!(JwtVerifier::new(&JwtConfig::hs256(b"secret".to_vec())).is_ok());
    }

    #[actix_web::test]
    async fn identity_provider_tokens_for_another_audience_are_refused() {
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        let jwks = jwks_file(&[(RSA_PRIVATE, "k1")]);
        let location = jwks.path().to_str().unwrap();
        let exp = now() + 600;
        let token = |aud: Option<&str>| {
            let mut claims = serde_json::json!({"sub": "alice", "exp": exp});
            if let Some(aud) = aud {
                claims["aud"] = aud.into();
            }
            sign_with(Algorithm::RS256, Some("k1"), &rsa, &claims)
        };
        let pem = public_key(Algorithm::RS256, RSA_PUBLIC);
        let jwks = jwks_verifier(location, Duration::ZERO);
        for v in [&pem, &jwks] {
            assert_eq!(v.verify(&token(Some(AUD))).await.unwrap().sub, "alice");
            for refused in [Some("billing"), None] {
                assert_eq!(
                    v.verify(&token(refused)).await.unwrap_err(),
                    AuthError::Invalid,
                    "{refused:?}"
                );
            }
        }
        // Opting out accepts any audience, and none.
        let any = JwtVerifier::new(&JwtConfig {
            audience: None,
            accept_any_audience: true,
            ..public_key_config(Algorithm::RS256, RSA_PUBLIC)
        })
        .unwrap();
        for aud in [Some("billing"), None] {
            assert_eq!(any.verify(&token(aud)).await.unwrap().sub, "alice");
        }
    }
}
