//! The door's rules without I/O: gate, ticket, event and transfer names,
//! scan ids and codes as scanners send them, why a scan is refused, and
//! the offline scanner's own check (the public key plus the revoked list).

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::FieldError;
use super::ticket_code::{TicketClaims, TicketVerifier};

/// Longest code accepted (a `bt2` code is under 200 characters).
pub const MAX_CODE_LEN: usize = 512;
/// Longest scan id.
pub const MAX_SCAN_ID_LEN: usize = 64;
/// Most scans in one offline upload.
pub const MAX_OFFLINE_SCANS: usize = 500;
/// Longest email a transfer is addressed to (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// How far ahead of the server's clock an offline scan time may be.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// A gate of an event: `events/{event_id}/gates/{gate_id}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub event_id: Uuid,
    pub gate_id: String,
}

impl Gate {
    pub fn name(&self) -> String {
        gate_name(self.event_id, &self.gate_id)
    }
}

pub fn gate_name(event_id: Uuid, gate_id: &str) -> String {
    format!("events/{event_id}/gates/{gate_id}")
}

fn valid_gate_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && !id.starts_with('-')
}

pub fn parse_gate(field: &str, name: &str) -> Result<Gate, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            "must look like events/{event_id}/gates/{gate_id} (gate_id: a-z, 0-9, '-', at most 63)",
        )
    };
    let rest = name.strip_prefix("events/").ok_or_else(bad)?;
    let (event, gate) = rest.split_once("/gates/").ok_or_else(bad)?;
    let event_id = Uuid::parse_str(event).map_err(|_| bad())?;
    if !valid_gate_id(gate) {
        return Err(bad());
    }
    Ok(Gate {
        event_id,
        gate_id: gate.to_owned(),
    })
}

/// `events/{event_id}` → the id.
pub fn parse_event_name(field: &str, name: &str) -> Result<Uuid, FieldError> {
    let bad = || FieldError::new(field, "must look like events/{event_id}");
    Uuid::parse_str(name.strip_prefix("events/").ok_or_else(bad)?).map_err(|_| bad())
}

pub fn event_name(event_id: Uuid) -> String {
    format!("events/{event_id}")
}

/// One ticket of a booking, by its seat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TicketRef {
    pub booking_id: Uuid,
    pub seat_index: u32,
}

impl TicketRef {
    pub fn name(&self) -> String {
        format!("bookings/{}/tickets/{}", self.booking_id, self.seat_index)
    }
}

/// `bookings/{booking_id}/tickets/{seat_index}`.
pub fn parse_ticket_name(field: &str, name: &str) -> Result<TicketRef, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            "must look like bookings/{booking_id}/tickets/{seat_index}",
        )
    };
    let rest = name.strip_prefix("bookings/").ok_or_else(bad)?;
    let (booking, seat) = rest.split_once("/tickets/").ok_or_else(bad)?;
    let seat_index: u32 = seat.parse().map_err(|_| bad())?;
    if seat_index > i32::MAX as u32 {
        return Err(bad());
    }
    Ok(TicketRef {
        booking_id: Uuid::parse_str(booking).map_err(|_| bad())?,
        seat_index,
    })
}

/// `ticketTransfers/{transfer_id}`.
pub fn parse_transfer_name(field: &str, name: &str) -> Result<Uuid, FieldError> {
    let bad = || FieldError::new(field, "must look like ticketTransfers/{transfer_id}");
    Uuid::parse_str(name.strip_prefix("ticketTransfers/").ok_or_else(bad)?).map_err(|_| bad())
}

pub fn transfer_name(id: Uuid) -> String {
    format!("ticketTransfers/{id}")
}

/// A scanner's id for one scan: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn parse_scan_id(field: &str, id: &str) -> Result<String, FieldError> {
    let valid = (1..=MAX_SCAN_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if valid {
        Ok(id.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "must be 1 to 64 letters, digits, '-' or '_'",
        ))
    }
}

/// A code as read from a ticket: not empty, at most 512 characters. Whether
/// it is genuine is the door's answer, not an error.
pub fn parse_code(field: &str, code: &str) -> Result<String, FieldError> {
    if code.is_empty() {
        Err(FieldError::new(field, "is required"))
    } else if code.len() > MAX_CODE_LEN {
        Err(FieldError::new(field, "must be at most 512 characters"))
    } else {
        Ok(code.to_owned())
    }
}

/// An email a transfer is addressed to, compared case-insensitively: one
/// '@' with something on both sides, no spaces, at most 254 characters.
pub fn parse_email(field: &str, email: &str) -> Result<String, FieldError> {
    let email = email.trim();
    let bad = || FieldError::new(field, "must be an email address");
    if email.is_empty() || email.len() > MAX_EMAIL_LEN || email.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@') =>
        {
            Ok(email.to_lowercase())
        }
        _ => Err(bad()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Entry,
    Exit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Entry => "entry",
            Self::Exit => "exit",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "entry" => Some(Self::Entry),
            "exit" => Some(Self::Exit),
            _ => None,
        }
    }
}

/// Why a gate must not let someone through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    AlreadyUsed,
    Cancelled,
    Replaced,
    WrongEvent,
    NotYetOpen,
    Forged,
    NotInside,
    ReentryNotAllowed,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyUsed => "ALREADY_USED",
            Self::Cancelled => "CANCELLED",
            Self::Replaced => "REPLACED",
            Self::WrongEvent => "WRONG_EVENT",
            Self::NotYetOpen => "NOT_YET_OPEN",
            Self::Forged => "FORGED",
            Self::NotInside => "NOT_INSIDE",
            Self::ReentryNotAllowed => "REENTRY_NOT_ALLOWED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::AlreadyUsed,
            Self::Cancelled,
            Self::Replaced,
            Self::WrongEvent,
            Self::NotYetOpen,
            Self::Forged,
            Self::NotInside,
            Self::ReentryNotAllowed,
        ]
        .into_iter()
        .find(|refusal| refusal.as_str() == value)
    }
}

/// A code that admits nobody any more, as a scanner kit lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RevokedCode {
    pub ticket: TicketRef,
    pub nonce: Uuid,
    /// `Cancelled` or `Replaced`.
    pub refusal: Refusal,
}

/// What an offline scanner decides from its kit alone: the signature, the
/// event, the revoked list, and the tickets it admitted itself. Its scans
/// are uploaded later; the server has the last word.
#[derive(Debug)]
pub struct OfflineScanner {
    event_id: Uuid,
    verifier: TicketVerifier,
    revoked: HashMap<(TicketRef, Uuid), Refusal>,
    admitted: HashSet<TicketRef>,
}

impl OfflineScanner {
    pub fn new(
        event_id: Uuid,
        verifier: TicketVerifier,
        revoked: impl IntoIterator<Item = RevokedCode>,
    ) -> Self {
        Self {
            event_id,
            verifier,
            revoked: revoked
                .into_iter()
                .map(|code| ((code.ticket, code.nonce), code.refusal))
                .collect(),
            admitted: HashSet::new(),
        }
    }

    /// Admits (`Ok`, with the claims) or refuses an entry.
    pub fn check(&mut self, code: &str) -> Result<TicketClaims, Refusal> {
        let claims = self.verifier.verify(code).ok_or(Refusal::Forged)?;
        if claims.event_id != self.event_id {
            return Err(Refusal::WrongEvent);
        }
        let ticket = TicketRef {
            booking_id: claims.booking_id,
            seat_index: claims.seat_index,
        };
        if let Some(refusal) = self.revoked.get(&(ticket, claims.nonce)) {
            return Err(*refusal);
        }
        if !self.admitted.insert(ticket) {
            return Err(Refusal::AlreadyUsed);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ticket_code::TicketSigner;
    use super::*;

    #[test]
    fn gates_are_names_with_a_short_lowercase_id() {
        let event = Uuid::new_v4();
        let gate = parse_gate("gate", &format!("events/{event}/gates/north-1")).unwrap();
        assert_eq!(gate.gate_id, "north-1");
        assert_eq!(gate.name(), format!("events/{event}/gates/north-1"));
        for bad in [
            String::new(),
            "north".to_owned(),
            format!("events/{event}/gates/"),
            format!("events/{event}/gates/North"),
            format!("events/{event}/gates/a b"),
            format!("events/{event}/gates/-a"),
            format!("events/{event}/gates/{}", "a".repeat(64)),
            "events/nope/gates/a".to_owned(),
        ] {
            assert!(parse_gate("gate", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tickets_scan_ids_codes_and_emails_parse_strictly() {
        let booking = Uuid::new_v4();
        let ticket = parse_ticket_name("t", &format!("bookings/{booking}/tickets/7")).unwrap();
        assert_eq!(ticket.seat_index, 7);
        assert_eq!(ticket.name(), format!("bookings/{booking}/tickets/7"));
        assert!(parse_ticket_name("t", &format!("bookings/{booking}/tickets/-1")).is_err());
        assert!(parse_scan_id("s", "").is_err());
        assert!(parse_scan_id("s", &"a".repeat(65)).is_err());
        assert!(parse_scan_id("s", "a/b").is_err());
        assert!(parse_code("c", "").is_err());
        assert!(parse_code("c", &"a".repeat(513)).is_err());
        assert_eq!(
            parse_email("e", " Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@localhost",
            "a b@example.com",
        ] {
            assert!(parse_email("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_offline_scanner_admits_once_and_refuses_revoked_foreign_and_forged_codes() {
        let signer = TicketSigner::new(b"door key");
        let event = Uuid::new_v4();
        let claims = |seat_index, nonce| TicketClaims {
            event_id: event,
            booking_id: Uuid::from_u128(1),
            seat_index,
            nonce,
        };
        let old_nonce = Uuid::new_v4();
        let verifier = TicketVerifier::from_public_key(&signer.verifier().public_key()).unwrap();
        let mut scanner = OfflineScanner::new(
            event,
            verifier,
            [RevokedCode {
                ticket: TicketRef {
                    booking_id: Uuid::from_u128(1),
                    seat_index: 2,
                },
                nonce: old_nonce,
                refusal: Refusal::Replaced,
            }],
        );
        let good = signer.sign(&claims(1, Uuid::new_v4()));
        assert!(scanner.check(&good).is_ok());
        assert_eq!(scanner.check(&good), Err(Refusal::AlreadyUsed));
        assert_eq!(
            scanner.check(&signer.sign(&claims(2, old_nonce))),
            Err(Refusal::Replaced)
        );
        let foreign = signer.sign(&TicketClaims {
            event_id: Uuid::new_v4(),
            ..claims(3, Uuid::new_v4())
        });
        assert_eq!(scanner.check(&foreign), Err(Refusal::WrongEvent));
        let forged = TicketSigner::new(b"not the key").sign(&claims(4, Uuid::new_v4()));
        assert_eq!(scanner.check(&forged), Err(Refusal::Forged));
    }
}
