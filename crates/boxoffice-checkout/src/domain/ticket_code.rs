//! Ticket codes: what a QR image on a ticket encodes. A code is the ticket's
//! claims (event, booking, seat, and the code's nonce) plus an Ed25519
//! signature over them, so a scanner holding only the public key verifies
//! it without asking anyone and cannot make codes itself. The nonce is the
//! sale's (the payment's id) until a transfer gives the ticket a new one,
//! so a resold or transferred ticket has a new code; the old code still
//! verifies but names a nonce the door (and the scanner's list of revoked
//! codes) refuses.
//!
//! Codes of the first format (`bt1`, HMAC-SHA256 with the secret key) are
//! still accepted online; only the server can check them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC format, verified for codes issued before Ed25519.
const LEGACY_VERSION: &str = "bt1";
/// Format version, first in every code signed now.
pub const VERSION: &str = "bt2";
/// What a scanner kit names the signature scheme.
pub const KEY_ALGORITHM: &str = "ed25519";
/// Domain separation of the signing key from any other use of the secret.
const SIGNING_KEY_CONTEXT: &[u8] = b"boxoffice.checkout.ticket-code.ed25519.v1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketClaims {
    pub event_id: Uuid,
    pub booking_id: Uuid,
    pub seat_index: u32,
    /// Unique per code: the sale's payment id, or a transfer's new nonce.
    pub nonce: Uuid,
}

impl TicketClaims {
    fn payload(&self, version: &str) -> String {
        format!(
            "{version}.{}.{}.{}.{}",
            self.event_id.simple(),
            self.booking_id.simple(),
            self.seat_index,
            self.nonce.simple()
        )
    }

    fn parse(payload: &str, version: &str) -> Option<Self> {
        let mut parts = payload.split('.');
        if parts.next()? != version {
            return None;
        }
        let claims = TicketClaims {
            event_id: Uuid::parse_str(parts.next()?).ok()?,
            booking_id: Uuid::parse_str(parts.next()?).ok()?,
            seat_index: parts.next()?.parse().ok()?,
            nonce: Uuid::parse_str(parts.next()?).ok()?,
        };
        parts.next().is_none().then_some(claims)
    }
}

/// Verifies codes with the public key only: what an offline scanner holds.
#[derive(Clone, Debug)]
pub struct TicketVerifier {
    key: VerifyingKey,
}

impl TicketVerifier {
    /// `None` for bytes that are not an Ed25519 public key.
    pub fn from_public_key(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(Self {
            key: VerifyingKey::from_bytes(&bytes).ok()?,
        })
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The claims of a genuine code; `None` for anything forged or garbled.
    pub fn verify(&self, code: &str) -> Option<TicketClaims> {
        let (payload, signature) = code.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let signature = ed25519_dalek::Signature::from_slice(&signature).ok()?;
        self.key
            .verify_strict(payload.as_bytes(), &signature)
            .ok()?;
        TicketClaims::parse(payload, VERSION)
    }
}

/// Signs and verifies ticket codes with one secret.
#[derive(Clone)]
pub struct TicketSigner {
    legacy_key: Vec<u8>,
    signing: SigningKey,
    verifier: TicketVerifier,
    /// Codes signed before, by payload. An Ed25519 signature is
    /// deterministic, so a ticket's code is the same every time it is
    /// shown; every answer that shows a confirmed booking (and the mail
    /// of its confirmation) would otherwise sign all its tickets again.
    signed: Arc<Mutex<HashMap<String, String>>>,
}

/// Codes kept by one signer; the cache starts over when it is full (a
/// code is recomputed, identically, on its next use).
const SIGNED_CODES_KEPT: usize = 100_000;

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSigner(***)")
    }
}

impl TicketSigner {
    /// The Ed25519 key is derived from the configured secret, so every
    /// instance signs with the same key and no new setting is needed.
    pub fn new(key: &[u8]) -> Self {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(SIGNING_KEY_CONTEXT)
            .chain_update(key)
            .finalize()
            .into();
        let signing = SigningKey::from_bytes(&seed);
        let verifier = TicketVerifier {
            key: signing.verifying_key(),
        };
        Self {
            legacy_key: key.to_vec(),
            signing,
            verifier,
            signed: Arc::default(),
        }
    }

    /// What scanners verify with.
    pub fn verifier(&self) -> &TicketVerifier {
        &self.verifier
    }

    /// `bt2.{event}.{booking}.{seat}.{nonce}.{signature}`: short enough for
    /// a QR code, readable by eye when support needs to.
    pub fn sign(&self, claims: &TicketClaims) -> String {
        let payload = claims.payload(VERSION);
        let signed = |cache: &Mutex<HashMap<String, String>>| {
            cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&payload)
                .cloned()
        };
        if let Some(code) = signed(&self.signed) {
            return code;
        }
        let signature = self.signing.sign(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(signature.to_bytes());
        let code = format!("{payload}.{signature}");
        let mut cache = self.signed.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= SIGNED_CODES_KEPT {
            cache.clear();
        }
        cache.insert(payload, code.clone());
        code
    }

    /// The claims of a genuine code of either format; `None` for anything
    /// forged or garbled.
    pub fn verify(&self, code: &str) -> Option<TicketClaims> {
        if code.starts_with(LEGACY_VERSION) {
            self.verify_legacy(code)
        } else {
            self.verifier.verify(code)
        }
    }

    fn verify_legacy(&self, code: &str) -> Option<TicketClaims> {
        let (payload, signature) = code.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.legacy_key).ok()?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).ok()?;
        TicketClaims::parse(payload, LEGACY_VERSION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TicketClaims {
        TicketClaims {
            event_id: Uuid::new_v4(),
            booking_id: Uuid::new_v4(),
            seat_index: 17,
            nonce: Uuid::new_v4(),
        }
    }

    #[test]
    fn codes_verify_offline_with_the_public_key_alone() {
        let signer = TicketSigner::new(b"a key of some length");
        let claims = claims();
        let code = signer.sign(&claims);
        assert!(code.starts_with("bt2."));
        assert_eq!(signer.verify(&code), Some(claims.clone()));
        let scanner =
            TicketVerifier::from_public_key(&signer.verifier().public_key()).expect("a public key");
        assert_eq!(scanner.verify(&code), Some(claims));
    }

    #[test]
    fn a_kept_code_is_the_one_signing_again_gives() {
        let signer = TicketSigner::new(b"a key of some length");
        let claims = claims();
        let first = signer.sign(&claims);
        // Kept: the same code again, and what a signer that never saw it
        // (another instance, or after the cache started over) makes.
        assert_eq!(signer.sign(&claims), first);
        assert_eq!(
            TicketSigner::new(b"a key of some length").sign(&claims),
            first
        );
        let other = TicketClaims {
            seat_index: 18,
            ..claims
        };
        assert_ne!(signer.sign(&other), first);
        assert_eq!(signer.verify(&signer.sign(&other)), Some(other));
    }

    #[test]
    fn tampered_or_foreign_codes_fail() {
        let signer = TicketSigner::new(b"a key of some length");
        let claims = claims();
        let code = signer.sign(&claims);
        let tampered = code.replacen(".17.", ".18.", 1);
        assert_eq!(signer.verify(&tampered), None);
        assert_eq!(TicketSigner::new(b"another key").verify(&code), None);
        assert_eq!(signer.verify("garbage"), None);
        assert_eq!(signer.verify(""), None);
    }

    #[test]
    fn legacy_hmac_codes_still_verify_on_the_server() {
        let key = b"a key of some length";
        let signer = TicketSigner::new(key);
        let claims = claims();
        let payload = claims.payload(LEGACY_VERSION);
        let mut mac = HmacSha256::new_from_slice(key).expect("any length");
        mac.update(payload.as_bytes());
        let code = format!(
            "{payload}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(signer.verify(&code), Some(claims));
        assert_eq!(signer.verifier().verify(&code), None, "not offline");
    }

    #[test]
    fn a_new_nonce_changes_the_code() {
        let signer = TicketSigner::new(b"k");
        let first = claims();
        let resold = TicketClaims {
            nonce: Uuid::new_v4(),
            ..first.clone()
        };
        assert_ne!(signer.sign(&first), signer.sign(&resold));
    }
}
