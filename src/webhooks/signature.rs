//! Standard Webhooks signatures (standardwebhooks.com, "Signature scheme"): pure.
//!
//! `webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, where the key
//! is the base64-decoded part of the receiver's `whsec_...` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of every receiver secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The decoded key's length must lie in this range (the specification: 24 to 64 bytes).
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Why a configured secret cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("must start with `whsec_`")]
    NoPrefix,
    #[error("the part after `whsec_` is not base64")]
    NotBase64,
    #[error(
        "the part after `whsec_` decodes to {0} bytes; it must be 24 to 64 (generate one with `openssl rand -base64 32`)"
    )]
    WrongLength(usize),
}

/// A receiver's signing key (the decoded secret). `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// The key of a `whsec_` secret.
    pub fn from_secret(secret: &str) -> Result<SigningKey, SecretError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(SecretError::NoPrefix)?;
        let key = STANDARD.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !KEY_BYTES.contains(&key.len()) {
            return Err(SecretError::WrongLength(key.len()));
        }
        Ok(SigningKey(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// True when any `v1,` signature of a (space-separated) `webhook-signature` header matches,
    /// compared in constant time. The timestamp's age is the caller's to judge.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b| STANDARD.decode(b).ok())
            .any(|tag| self.mac(id, timestamp, body).verify_slice(&tag).is_ok())
    }
}

/// The `webhook-id` of the event numbered `seq`: the same for every attempt and every replay.
pub fn webhook_id(seq: u64) -> String {
    format!("evt_{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's published example (its libraries' "sign function works" test).
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &str = r#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_specifications_test_vector() {
        let key = SigningKey::from_secret(VECTOR_SECRET).unwrap();
        assert_eq!(key.sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes()), VECTOR_SIGNATURE);
        assert!(key.verify(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes(), VECTOR_SIGNATURE));
        let several = format!("v1,bm9wZQ== {VECTOR_SIGNATURE}");
        assert!(key.verify(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes(), &several));
    }

    #[test]
    fn any_change_to_id_timestamp_or_body_breaks_the_signature() {
        let key = SigningKey::from_secret(VECTOR_SECRET).unwrap();
        let body = VECTOR_BODY.as_bytes();
        assert!(!key.verify("msg_other", VECTOR_TIMESTAMP, body, VECTOR_SIGNATURE));
        assert!(!key.verify(VECTOR_ID, VECTOR_TIMESTAMP + 1, body, VECTOR_SIGNATURE));
        assert!(!key.verify(VECTOR_ID, VECTOR_TIMESTAMP, br#"{"test": 2432232315}"#, VECTOR_SIGNATURE));
        assert!(!key.verify(VECTOR_ID, VECTOR_TIMESTAMP, body, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
        assert!(!key.verify(VECTOR_ID, VECTOR_TIMESTAMP, body, ""));
    }

    #[test]
    fn secrets_must_be_whsec_base64_of_24_to_64_bytes() {
        assert_eq!(SigningKey::from_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_err(), SecretError::NoPrefix);
        assert_eq!(SigningKey::from_secret("whsec_not base64!").unwrap_err(), SecretError::NotBase64);
        let of = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        assert_eq!(SigningKey::from_secret(&of(23)).unwrap_err(), SecretError::WrongLength(23));
        assert!(SigningKey::from_secret(&of(24)).is_ok());
        assert!(SigningKey::from_secret(&of(64)).is_ok());
        assert_eq!(SigningKey::from_secret(&of(65)).unwrap_err(), SecretError::WrongLength(65));
        assert_eq!(format!("{:?}", SigningKey::from_secret(&of(32)).unwrap()), "SigningKey([redacted])");
    }

    #[test]
    fn webhook_ids_name_the_event() {
        assert_eq!(webhook_id(42), "evt_42");
    }
}
