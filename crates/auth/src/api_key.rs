//! API keys that other servers use to send notifications.
//!
//! Only SHA-256 digests of the configured keys are kept in memory, and a
//! presented key is compared against every one of them in constant time, so
//! neither timing nor a memory dump gives a key away.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// A stable, non-secret name for a key: the first 12 hex digits of its
/// SHA-256. Stored as the `source` of the notifications the key sent and used
/// to scope idempotency keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyId(pub String);

#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// Parses a comma-separated list; blank entries are ignored.
    pub fn parse(list: &str) -> Self {
        let digests = list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| Sha256::digest(k.as_bytes()).into())
            .collect();
        Self { digests }
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    pub fn verify(&self, presented: &str) -> Option<ApiKeyId> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        let mut matched = [0u8; 32];
        for known in &self.digests {
            let eq = known.ct_eq(&digest);
            found |= eq;
            for (m, k) in matched.iter_mut().zip(known) {
                *m = u8::conditional_select(m, k, eq);
            }
        }
        bool::from(found).then(|| ApiKeyId(hex(&matched[..6])))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_any_configured_key() {
        let keys = ApiKeys::parse(" k1 ,k2,,");
        let a = keys.verify("k1").unwrap();
        let b = keys.verify("k2").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.0.len(), 12);
        assert!(keys.verify("k3").is_none());
        assert!(keys.verify("").is_none());
        assert!(ApiKeys::parse("").is_empty());
    }
}
