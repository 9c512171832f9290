//! Ticket codes: what a QR image on a ticket encodes. A code is the ticket's
//! claims (event, booking, seat, and the sale's nonce) plus an HMAC-SHA256
//! over them, so a scanner holding the key verifies it without asking
//! anyone. A seat sold again belongs to another booking with another nonce,
//! so its code changes; the old code still verifies but names a booking the
//! scanner's list of cancelled bookings rejects.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Format version, first in every code.
const VERSION: &str = "bt1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketClaims {
    pub event_id: Uuid,
    pub booking_id: Uuid,
    pub seat_index: u32,
    /// Unique per sale (the id of the payment that paid for it).
    pub nonce: Uuid,
}

impl TicketClaims {
    fn payload(&self) -> String {
        format!(
            "{VERSION}.{}.{}.{}.{}",
            self.event_id.simple(),
            self.booking_id.simple(),
            self.seat_index,
            self.nonce.simple()
        )
    }
}

/// Signs and verifies ticket codes with one key.
#[derive(Clone)]
pub struct TicketSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSigner(***)")
    }
}

impl TicketSigner {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of every length, so this cannot fail.
        match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("hmac takes keys of any length"),
        }
    }

    /// `bt1.{event}.{booking}.{seat}.{nonce}.{signature}`: short enough for
    /// a QR code, readable by eye when support needs to.
    pub fn sign(&self, claims: &TicketClaims) -> String {
        let payload = claims.payload();
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The claims of a genuine code; `None` for anything forged or garbled.
    pub fn verify(&self, code: &str) -> Option<TicketClaims> {
        let (payload, signature) = code.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).ok()?;
        let mut parts = payload.split('.');
        if parts.next()? != VERSION {
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
    fn codes_verify_offline() {
        let signer = TicketSigner::new(b"a key of some length");
        let claims = claims();
        let code = signer.sign(&claims);
        assert_eq!(signer.verify(&code), Some(claims));
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
    }

    #[test]
    fn a_resale_changes_the_code() {
        let signer = TicketSigner::new(b"k");
        let first = claims();
        let resold = TicketClaims {
            booking_id: Uuid::new_v4(),
            nonce: Uuid::new_v4(),
            ..first.clone()
        };
        assert_ne!(signer.sign(&first), signer.sign(&resold));
    }
}
