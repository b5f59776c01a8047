//! Signed webhooks, as the Standard Webhooks specification defines them.
//!
//! A sender signs `"{webhook-id}.{webhook-timestamp}.{body}"` with
//! HMAC-SHA256 and sends `webhook-signature: v1,<base64>`; several
//! space-separated signatures may be sent while a secret is being rotated.
//! Each sender has a name and one or more secrets (`whsec_<base64>`), all
//! active at once, so a new secret can be added before the old one is
//! removed. Comparisons are constant-time, and the timestamp must be within
//! [`TOLERANCE_SECS`] of the server's clock. Replays of a `webhook-id` within
//! that window are the caller's to refuse (they need shared state),
//! remembering each id for [`REPLAY_TTL_SECS`].

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::CLOCK_SKEW_MARGIN_SECS;

/// How far a `webhook-timestamp` may be from the server's clock.
pub const TOLERANCE_SECS: u64 = 5 * 60;
/// How long an accepted `webhook-id` must be remembered to refuse its
/// replays: a request is accepted from `TOLERANCE_SECS` before its timestamp
/// to `TOLERANCE_SECS` after it, so an id first used at the start of that
/// window can be replayed until its end, and on a node whose clock is behind
/// by up to [`CLOCK_SKEW_MARGIN_SECS`] a little longer.
pub const REPLAY_TTL_SECS: u64 = 2 * TOLERANCE_SECS + CLOCK_SKEW_MARGIN_SECS;
/// Longest accepted `webhook-id`.
pub const MAX_ID_LEN: usize = 255;
/// Longest sender name; it becomes the `source` of stored notifications.
pub const MAX_SENDER_LEN: usize = 32;
/// At most this many signatures in one header are looked at.
const MAX_SIGNATURES: usize = 8;

/// Why a signed request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("webhook-id must be 1 to {MAX_ID_LEN} visible ASCII characters")]
    InvalidId,
    #[error(
        "webhook-timestamp must be Unix seconds within {TOLERANCE_SECS} s of the server's clock"
    )]
    InvalidTimestamp,
    #[error("no valid v1 signature in webhook-signature")]
    InvalidSignature,
}

/// The three `webhook-*` headers of one request.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

#[derive(Clone)]
struct Secret {
    sender: String,
    key: Vec<u8>,
}

/// Every sender's active secrets.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    secrets: Vec<Secret>,
}

impl WebhookSecrets {
    /// Parses `name=whsec_...` entries separated by commas or whitespace; a
    /// name may appear several times (rotation).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut secrets = Vec::new();
        for entry in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
        {
            let (sender, secret) = entry
                .split_once('=')
                .ok_or_else(|| "each entry must be name=whsec_<base64>".to_string())?;
            if sender.is_empty()
                || sender.len() > MAX_SENDER_LEN
                || !sender
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "sender names are 1 to {MAX_SENDER_LEN} letters, digits, '_' or '-'"
                ));
            }
            let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
            let key = BASE64
                .decode(encoded)
                .map_err(|_| format!("the secret of {sender} is not base64"))?;
            if key.len() < 24 {
                return Err(format!("the secret of {sender} is shorter than 24 bytes"));
            }
            secrets.push(Secret {
                sender: sender.to_string(),
                key,
            });
        }
        Ok(Self { secrets })
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Checks the headers against `body` at time `now` (Unix seconds) and
    /// returns the name of the sender whose secret signed it.
    pub fn verify(
        &self,
        headers: SignedHeaders<'_>,
        body: &[u8],
        now: u64,
    ) -> Result<&str, SignatureError> {
        let id = headers.id;
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SignatureError::InvalidId);
        }
        let timestamp: u64 = headers
            .timestamp
            .parse()
            .map_err(|_| SignatureError::InvalidTimestamp)?;
        if timestamp.abs_diff(now) > TOLERANCE_SECS {
            return Err(SignatureError::InvalidTimestamp);
        }
        let presented: Vec<Vec<u8>> = headers
            .signature
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .take(MAX_SIGNATURES)
            .filter_map(|s| BASE64.decode(s).ok())
            .collect();
        // Every secret is tried against every signature, so the time taken
        // does not tell which one matched.
        let mut matched = None;
        for secret in &self.secrets {
            let expected = sign_raw(&secret.key, id, headers.timestamp, body);
            let mut any = subtle::Choice::from(0);
            for signature in &presented {
                any |= expected.as_slice().ct_eq(signature.as_slice());
            }
            if bool::from(any) && matched.is_none() {
                matched = Some(secret.sender.as_str());
            }
        }
        matched.ok_or(SignatureError::InvalidSignature)
    }
}

fn sign_raw(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` value a sender holding `secret` (`whsec_...`)
/// sends; for senders' tests and examples.
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> Result<String, String> {
    let key = BASE64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "secret is not base64".to_string())?;
    let raw = sign_raw(&key, id, &timestamp.to_string(), body);
    Ok(format!("v1,{}", BASE64.encode(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_dGhpcy1pcy1hLW5ldy1zZWNyZXQtZm9yLXRlc3Rz";
    const NOW: u64 = 1_700_000_000;

    fn secrets() -> WebhookSecrets {
        WebhookSecrets::parse(&format!("billing={OLD}, billing={NEW} crm={NEW}")).unwrap()
    }

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            id,
            timestamp: ts,
            signature: sig,
        }
    }

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks specification.
        let secrets = WebhookSecrets::parse(&format!("s={OLD}")).unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let h = headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig);
        assert_eq!(secrets.verify(h, body, 1_614_265_330), Ok("s"));
        assert_eq!(
            sign(OLD, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body).unwrap(),
            sig
        );
    }

    #[test]
    fn accepts_any_active_secret_and_names_the_sender() {
        let s = secrets();
        let ts = NOW.to_string();
        let old = sign(OLD, "m1", NOW, b"{}").unwrap();
        assert_eq!(
            s.verify(headers("m1", &ts, &old), b"{}", NOW),
            Ok("billing")
        );
        // Rotation: the sender signs with both; either alone also works.
        let both = format!("{} {}", sign(NEW, "m1", NOW, b"{}").unwrap(), old);
        assert_eq!(
            s.verify(headers("m1", &ts, &both), b"{}", NOW),
            Ok("billing")
        );
    }

    #[test]
    fn refuses_tampering_empty_and_truncated_signatures() {
        let s = secrets();
        let ts = NOW.to_string();
        let good = sign(OLD, "m1", NOW, b"{}").unwrap();
        let truncated = &good[..good.len() - 4];
        for bad in [
            "",
            "v1,",
            "v1",
            truncated,
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,not base64!",
            &good.replace("v1,", "v1a,"),
        ] {
            assert_eq!(
                s.verify(headers("m1", &ts, bad), b"{}", NOW),
                Err(SignatureError::InvalidSignature),
                "{bad:?}"
            );
        }
        // Body, id or timestamp changed after signing.
        assert!(s.verify(headers("m1", &ts, &good), b"{ }", NOW).is_err());
        assert!(s.verify(headers("m2", &ts, &good), b"{}", NOW).is_err());
        let later = (NOW + 1).to_string();
        assert!(s.verify(headers("m1", &later, &good), b"{}", NOW).is_err());
    }

    #[test]
    fn refuses_timestamps_outside_the_tolerance_and_bad_ids() {
        let s = secrets();
        for ts in [NOW - TOLERANCE_SECS - 1, NOW + TOLERANCE_SECS + 1] {
            let sig = sign(OLD, "m1", ts, b"{}").unwrap();
            assert_eq!(
                s.verify(headers("m1", &ts.to_string(), &sig), b"{}", NOW),
                Err(SignatureError::InvalidTimestamp)
            );
        }
        let sig = sign(OLD, "m1", NOW, b"{}").unwrap();
        for ts in ["", "abc", "-1", "1.5"] {
            assert_eq!(
                s.verify(headers("m1", ts, &sig), b"{}", NOW),
                Err(SignatureError::InvalidTimestamp)
            );
        }
        let long = "x".repeat(MAX_ID_LEN + 1);
        for id in ["", "a b", "é", &long] {
            assert_eq!(
                s.verify(headers(id, &NOW.to_string(), &sig), b"{}", NOW),
                Err(SignatureError::InvalidId)
            );
        }
    }

    #[test]
    fn refuses_bad_configuration() {
        for bad in [
            "billing",
            "=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "bad name=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "a=whsec_!!!",
            "a=whsec_c2hvcnQ=",
        ] {
            assert!(WebhookSecrets::parse(bad).is_err(), "{bad}");
        }
        assert!(WebhookSecrets::parse("").unwrap().is_empty());
    }

    #[test]
    fn used_ids_are_remembered_for_longer_than_their_timestamp_is_accepted() {
        let s = secrets();
        let sig = sign(OLD, "m1", NOW, b"{}").unwrap();
        let at = |now| s.verify(headers("m1", &NOW.to_string(), &sig), b"{}", now);
        let (first, last) = (NOW - TOLERANCE_SECS, NOW + TOLERANCE_SECS);
        assert!(at(first).is_ok() && at(last).is_ok());
        assert!(at(first - 1).is_err() && at(last + 1).is_err());
        // Accepted from the start of the second `first` to the end of the
        // second `last`; the id must be remembered beyond that.
        let accepted_for = last + 1 - first;
        assert!(REPLAY_TTL_SECS > accepted_for, "{REPLAY_TTL_SECS}");
    }
}
