//! Checkout's rules without I/O: booking and payment states and the edges
//! between them, pricing with fees, the refund policy, resource names.

pub mod door;
pub mod loyalty;
pub mod promo;
pub mod ticket_code;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use boxoffice_runtime::field::FieldError;

/// Longest idempotency key accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// States of a booking. Moves only along [`BookingState::may_become`]; the
/// database enforces the same edges with a trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BookingState {
    Pending,
    Confirming,
    Confirmed,
    Cancelling,
    Cancelled,
    Expired,
}

impl BookingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirming => "confirming",
            Self::Confirmed => "confirmed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "pending" => Self::Pending,
            "confirming" => Self::Confirming,
            "confirmed" => Self::Confirmed,
            "cancelling" => Self::Cancelling,
            "cancelled" => Self::Cancelled,
            "expired" => Self::Expired,
            _ => return None,
        })
    }

    /// The allowed edges. `Confirming -> Pending` is the one step back: a
    /// declined or voided payment leaves the booking payable again.
    pub fn may_become(self, next: Self) -> bool {
        use BookingState::*;
        matches!(
            (self, next),
            (Pending, Confirming)
                | (Pending, Expired)
                | (Pending, Cancelled)
                | (Confirming, Confirmed)
                | (Confirming, Pending)
                | (Confirming, Expired)
                | (Confirmed, Cancelling)
                | (Cancelling, Cancelled)
        )
    }
}

/// States of one payment attempt at the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// Recorded before the provider is asked: a crash after this point
    /// leaves a row for the reconciler to find.
    Authorizing,
    Authorized,
    Captured,
    Refunded,
    Declined,
    Voided,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorizing => "authorizing",
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Refunded => "refunded",
            Self::Declined => "declined",
            Self::Voided => "voided",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "authorizing" => Self::Authorizing,
            "authorized" => Self::Authorized,
            "captured" => Self::Captured,
            "refunded" => Self::Refunded,
            "declined" => Self::Declined,
            "voided" => Self::Voided,
            _ => return None,
        })
    }

    pub fn may_become(self, next: Self) -> bool {
        use PaymentState::*;
        matches!(
            (self, next),
            (Authorizing, Authorized)
                | (Authorizing, Captured)
                | (Authorizing, Declined)
                | (Authorizing, Voided)
                | (Authorized, Captured)
                | (Authorized, Voided)
                | (Captured, Refunded)
        )
    }

    /// No further step happens to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Captured | Self::Refunded | Self::Declined | Self::Voided
        )
    }
}

/// A seat hold's state as checkout acts on it (inventory's hold, read
/// through `upstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldState {
    Active,
    Expired,
    Released,
    /// Committed: its seats are sold to a booking.
    Sold,
    /// A state this version of checkout does not know.
    Unknown,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Released => "released",
            Self::Sold => "sold",
            Self::Unknown => "unknown",
        }
    }
}

/// One seat of a hold as inventory priced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedSeat {
    pub seat_index: u32,
    pub section_id: Option<Uuid>,
    pub price_tier_id: Option<Uuid>,
    pub price_minor: i64,
}

/// A seat as a person reads it on the ticket, from the venue's layout
/// (row and number are empty in a general-admission section).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeatLabel {
    pub section_name: String,
    pub row_label: String,
    pub seat_number: String,
    pub price_tier_name: String,
}

impl SeatLabel {
    /// "Stalls, row B, seat 12" or "Floor" (general admission).
    pub fn describe(&self) -> String {
        let mut text = self.section_name.clone();
        if !self.row_label.is_empty() {
            text.push_str(&format!(", row {}", self.row_label));
        }
        if !self.seat_number.is_empty() {
            text.push_str(&format!(", seat {}", self.seat_number));
        }
        if !self.price_tier_name.is_empty() {
            text.push_str(&format!(" ({})", self.price_tier_name));
        }
        text
    }
}

/// What a booking is made of: an active hold's seats, priced by inventory
/// (never by the client) in one currency, none negative, at least one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricedHold {
    pub expire_time: DateTime<Utc>,
    pub currency_code: String,
    pub seats: Vec<PricedSeat>,
}

/// A booking's money: ticket prices plus a fee per ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Price {
    pub subtotal_minor: i64,
    pub fees_minor: i64,
    pub total_minor: i64,
}

pub fn price(seats: &[PricedSeat], fee_per_ticket_minor: i64) -> Price {
    let subtotal_minor = seats.iter().map(|seat| seat.price_minor).sum();
    let fees_minor = fee_per_ticket_minor * seats.len() as i64;
    Price {
        subtotal_minor,
        fees_minor,
        total_minor: subtotal_minor + fees_minor,
    }
}

/// What cancelling a confirmed booking refunds: the ticket prices (fees are
/// kept) while the event is further away than `cutoff`; `None` inside the
/// window. Events without a known start are refundable.
pub fn refund_due(
    subtotal_minor: i64,
    event_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    cutoff: std::time::Duration,
) -> Option<i64> {
    let Some(start) = event_start else {
        return Some(subtotal_minor);
    };
    let cutoff = chrono::Duration::from_std(cutoff).unwrap_or(chrono::Duration::MAX);
    (now < start - cutoff).then_some(subtotal_minor)
}

/// `bookings/{uuid}` → the booking id.
pub fn parse_booking_name(field: &str, name: &str) -> Result<Uuid, FieldError> {
    let id = name
        .strip_prefix("bookings/")
        .ok_or_else(|| FieldError::new(field, "must look like bookings/{booking_id}"))?;
    Uuid::parse_str(id).map_err(|_| FieldError::new(field, "must look like bookings/{booking_id}"))
}

pub fn booking_name(id: Uuid) -> String {
    format!("bookings/{id}")
}

/// `events/{event_id}/holds/{hold_id}` → both ids.
pub fn parse_hold_name(field: &str, name: &str) -> Result<(Uuid, Uuid), FieldError> {
    let bad = || FieldError::new(field, "must look like events/{event_id}/holds/{hold_id}");
    let rest = name.strip_prefix("events/").ok_or_else(bad)?;
    let (event, hold) = rest.split_once("/holds/").ok_or_else(bad)?;
    Ok((
        Uuid::parse_str(event).map_err(|_| bad())?,
        Uuid::parse_str(hold).map_err(|_| bad())?,
    ))
}

pub fn hold_name(event_id: Uuid, hold_id: Uuid) -> String {
    format!("events/{event_id}/holds/{hold_id}")
}

/// An optional idempotency key: printable, at most 255 bytes.
pub fn parse_idempotency_key(
    field: &str,
    key: &str,
    required: bool,
) -> Result<Option<String>, FieldError> {
    if key.is_empty() {
        return if required {
            Err(FieldError::new(field, "is required"))
        } else {
            Ok(None)
        };
    }
    if key.len() > MAX_IDEMPOTENCY_KEY || key.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must be 1..255 printable characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booking_states_only_move_forward() {
        use BookingState::*;
        assert!(Pending.may_become(Confirming));
        assert!(Confirming.may_become(Confirmed));
        assert!(!Confirmed.may_become(Pending));
        assert!(!Cancelled.may_become(Confirmed));
        assert!(!Expired.may_become(Pending));
        for state in [
            "pending",
            "confirming",
            "confirmed",
            "cancelling",
            "cancelled",
            "expired",
        ] {
            assert_eq!(
                BookingState::parse(state).map(BookingState::as_str),
                Some(state)
            );
        }
    }

    #[test]
    fn payment_states_only_move_forward() {
        use PaymentState::*;
        assert!(Authorizing.may_become(Captured));
        assert!(!Captured.may_become(Voided));
        assert!(!Voided.may_become(Captured));
        assert!(!Refunded.may_become(Captured));
        assert!(Declined.is_final());
    }

    #[test]
    fn prices_add_a_fee_per_ticket() {
        let seat = |price_minor| PricedSeat {
            seat_index: 0,
            section_id: None,
            price_tier_id: None,
            price_minor,
        };
        let price = price(&[seat(5_000), seat(7_500)], 150);
        assert_eq!(
            price,
            Price {
                subtotal_minor: 12_500,
                fees_minor: 300,
                total_minor: 12_800
            }
        );
    }

    #[test]
    fn refunds_close_before_the_event() {
        let now = Utc::now();
        let cutoff = std::time::Duration::from_secs(48 * 3600);
        assert_eq!(
            refund_due(100, Some(now + chrono::Duration::days(3)), now, cutoff),
            Some(100)
        );
        assert_eq!(
            refund_due(100, Some(now + chrono::Duration::hours(47)), now, cutoff),
            None
        );
        assert_eq!(refund_due(100, None, now, cutoff), Some(100));
    }

    #[test]
    fn names_parse_strictly() {
        let id = Uuid::new_v4();
        assert_eq!(parse_booking_name("name", &booking_name(id)), Ok(id));
        assert!(parse_booking_name("name", &id.to_string()).is_err());
        let event = Uuid::new_v4();
        assert_eq!(
            parse_hold_name("hold", &hold_name(event, id)),
            Ok((event, id))
        );
        assert!(parse_hold_name("hold", "events/x/holds/y").is_err());
        assert!(parse_idempotency_key("k", "", true).is_err());
        assert_eq!(parse_idempotency_key("k", "", false), Ok(None));
        assert!(parse_idempotency_key("k", &"x".repeat(256), false).is_err());
    }
}
