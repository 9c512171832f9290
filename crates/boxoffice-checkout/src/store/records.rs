//! What checkout stores about a booking, its tickets and its payment
//! attempts, as read back from the store. Plain data shared by the
//! PostgreSQL store, the in-process cache of recent bookings and the use
//! cases; no I/O here.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{BookingState, PaymentState};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TicketRecord {
    pub seat_index: u32,
    pub section_id: Option<Uuid>,
    pub price_tier_id: Option<Uuid>,
    pub price_minor: i64,
    /// Set once the ticket was transferred: who holds it now.
    #[serde(default)]
    pub holder_id: Option<Uuid>,
    /// Set once the ticket was transferred: its code's nonce.
    #[serde(default)]
    pub code_nonce: Option<Uuid>,
    /// The seat as printed on the ticket (from the venue's layout when the
    /// booking was made; absent on bookings made before).
    #[serde(default)]
    pub section_name: Option<String>,
    #[serde(default)]
    pub row_label: Option<String>,
    #[serde(default)]
    pub seat_number: Option<String>,
    #[serde(default)]
    pub price_tier_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BookingRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub event_id: Uuid,
    pub hold_id: Uuid,
    pub state: BookingState,
    pub currency_code: String,
    pub subtotal_minor: i64,
    pub fees_minor: i64,
    /// Promo code discount (0 without one).
    pub discount_minor: i64,
    /// What is charged: subtotal + fees - every discount.
    pub total_minor: i64,
    pub refunded_minor: i64,
    /// The promo code applied (upper-case), if any.
    pub promo_code: Option<String>,
    /// Loyalty points spent on it and what they took off.
    pub points_spent: i64,
    pub loyalty_discount_minor: i64,
    /// The buyer's loyalty tier when it was made and its discount.
    pub loyalty_tier: Option<String>,
    pub tier_discount_minor: i64,
    pub event_start_time: Option<DateTime<Utc>>,
    pub expire_time: DateTime<Utc>,
    pub payment_id: Option<Uuid>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub tickets: Vec<TicketRecord>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PaymentRecord {
    pub id: Uuid,
    pub booking_id: Uuid,
    pub user_id: Uuid,
    pub idempotency_key: String,
    pub payment_method: String,
    pub amount_minor: i64,
    pub currency_code: String,
    pub state: PaymentState,
    pub provider_ref: Option<String>,
    pub outcome_code: Option<i32>,
    pub outcome_reason: Option<String>,
    pub outcome_message: Option<String>,
}
