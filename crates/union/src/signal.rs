//! Signals: a decision raised by one member, signed so every other member can
//! check it end to end, whoever relays it.
//!
//! Owns the signed payload (a version byte followed by the postcard encoding of
//! [`SignalBody`]), the JSON envelope that carries payload and signature in
//! base64, signing and verification. Signatures cover the exact payload bytes
//! that travel; nothing is ever re-serialized before verifying. Trust policy
//! (who may send what) lives in `trust`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use shield_core::Net;
use shield_core::{DecisionType, Scope, UnixTime};

use crate::identity::Identity;

/// The payload format version (first byte of the signed bytes).
pub const PAYLOAD_VERSION: u8 = 1;
/// Largest payload accepted from a peer, in bytes.
pub const MAX_PAYLOAD: usize = 4096;
/// Evidence lines kept in a signal, and characters per line.
pub const MAX_EVIDENCE_LINES: usize = 5;
pub const MAX_EVIDENCE_CHARS: usize = 200;

/// What a signal says. Field order is part of the wire format: append only,
/// and bump [`PAYLOAD_VERSION`] for anything else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalBody {
    /// The member that raised the decision (and signed it).
    pub origin: String,
    /// Per-origin sequence number, from 1, without gaps.
    pub seq: u64,
    /// When the origin raised it (Unix seconds, origin's clock).
    pub time: UnixTime,
    pub scope: Scope,
    pub target: Net,
    pub kind: DecisionType,
    pub duration_s: u64,
    pub scenario: String,
    /// A few log lines, truncated.
    pub evidence: Vec<String>,
    /// Digest of the treaty the origin runs.
    pub treaty: [u8; 32],
}

/// Why bytes from a peer are not a signal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("envelope field `{0}` is not valid base64")]
    Base64(&'static str),
    #[error("payload is {0} bytes; the limit is {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error(
        "payload version {0} is not supported (this build speaks {PAYLOAD_VERSION}); upgrade the older member"
    )]
    Version(u8),
    #[error("payload does not decode: {0}")]
    Decode(String),
    #[error("signature is not 64 bytes")]
    SignatureLength,
}

/// What travels: the exact signed bytes and the signature, base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    pub sig: String,
}

/// An envelope whose payload decoded (signature not yet checked).
#[derive(Debug, Clone)]
pub struct Decoded {
    pub body: SignalBody,
    pub payload: Vec<u8>,
    pub sig: Signature,
}

/// Truncate evidence lines to the signal's limits (on char boundaries).
pub fn summarize_evidence(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .take(MAX_EVIDENCE_LINES)
        .map(|l| {
            if l.chars().count() > MAX_EVIDENCE_CHARS {
                let mut s: String = l.chars().take(MAX_EVIDENCE_CHARS - 1).collect();
                s.push('…');
                s
            } else {
                l.clone()
            }
        })
        .collect()
}

impl SignalBody {
    /// The canonical bytes: version byte + postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![PAYLOAD_VERSION];
        // postcard serialization of this struct cannot fail (no maps, no unsized types).
        v.extend(postcard::to_stdvec(self).unwrap_or_default());
        v
    }

    /// Sign these exact bytes.
    pub fn sign(&self, id: &Identity) -> Envelope {
        let payload = self.encode();
        let sig = id.signing_key().sign(&payload);
        Envelope {
            payload: B64.encode(&payload),
            sig: B64.encode(sig.to_bytes()),
        }
    }
}

impl Envelope {
    /// Decode base64 and the payload; does not verify.
    pub fn decode(&self) -> Result<Decoded, SignalError> {
        if self.payload.len() > MAX_PAYLOAD * 4 / 3 + 8 {
            return Err(SignalError::TooLarge(self.payload.len() * 3 / 4));
        }
        let payload = B64
            .decode(&self.payload)
            .map_err(|_| SignalError::Base64("payload"))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(SignalError::TooLarge(payload.len()));
        }
        let sig = B64
            .decode(&self.sig)
            .map_err(|_| SignalError::Base64("sig"))?;
        let sig: [u8; 64] = sig.try_into().map_err(|_| SignalError::SignatureLength)?;
        let (&ver, rest) = payload
            .split_first()
            .ok_or(SignalError::Decode("empty".into()))?;
        if ver != PAYLOAD_VERSION {
            return Err(SignalError::Version(ver));
        }
        let body: SignalBody =
            postcard::from_bytes(rest).map_err(|e| SignalError::Decode(e.to_string()))?;
        Ok(Decoded {
            body,
            payload,
            sig: Signature::from_bytes(&sig),
        })
    }
}

impl Decoded {
    /// Strict ed25519 verification of the exact payload bytes.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        key.verify_strict(&self.payload, &self.sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> SignalBody {
        SignalBody {
            origin: "a".into(),
            seq: 1,
            time: 1_700_000_000,
            scope: Scope::Ip,
            target: "203.0.113.7/32".parse().unwrap(),
            kind: DecisionType::Ban,
            duration_s: 3600,
            scenario: "sshd-bruteforce".into(),
            evidence: summarize_evidence(&["x".repeat(500), "y".into()]),
            treaty: [9; 32],
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let id = Identity::from_seed([1; 32]);
        let other = Identity::from_seed([2; 32]);
        let env = body().sign(&id);
        let d = env.decode().unwrap();
        assert_eq!(d.body, body());
        assert_eq!(d.body.evidence[0].chars().count(), MAX_EVIDENCE_CHARS);
        assert!(d.verify(&id.public()));
        assert!(!d.verify(&other.public()));
        // Flip one payload byte: the signature must fail (or the payload not decode).
        let mut raw = B64.decode(&env.payload).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let t = Envelope {
            payload: B64.encode(&raw),
            sig: env.sig.clone(),
        };
        assert!(t.decode().map(|d| !d.verify(&id.public())).unwrap_or(true));
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let id = Identity::from_seed([1; 32]);
        let good = body().sign(&id);
        for p in [
            "",
            "!!!",
            "AA==",
            "AgAA",
            &B64.encode(vec![1u8; 10]),
            &B64.encode(vec![1u8; 5000]),
        ] {
            let e = Envelope {
                payload: p.into(),
                sig: good.sig.clone(),
            };
            assert!(e.decode().is_err(), "{p:?}");
        }
        let e = Envelope {
            payload: good.payload.clone(),
            sig: "AAAA".into(),
        };
        assert_eq!(e.decode().unwrap_err(), SignalError::SignatureLength);
    }
}
