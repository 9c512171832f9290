//! Pending bookings this process created and has not changed since, so a
//! confirmation arriving here can start paying without reading the booking
//! back from PostgreSQL first.
//!
//! What a booking is (owner, event, hold, expiry, tickets) never changes;
//! only its state and, while pending, its discount (a promo code) do. A
//! promo code applied through this process forgets the booking here; one
//! applied through another instance is caught by the record's check that
//! the amount paid is still the booking's total. A remembered booking is forgotten before
//! any write of this process changes its state, so "pending" here can be
//! stale only through another instance (or an operator) changing it. That
//! is why a confirmation trusts it optimistically and never more: every
//! step after it is guarded by the real state (the provider's idempotency
//! key, inventory's sale of the hold under one attempt, the record's
//! `WHERE state = 'pending'`), and whatever does not go the happy way is
//! decided again from the database (see `Checkout::confirm_booking`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::records::BookingRecord;
use crate::domain::BookingState;

/// Bookings remembered at most; the oldest are forgotten first. A booking
/// is usually confirmed within minutes of being made, and its hold lasts
/// ten, so this covers several minutes of a busy on-sale in tens of MiB.
pub(crate) const CAPACITY: usize = 65_536;

#[derive(Default)]
pub(crate) struct RecentBookings {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    bookings: HashMap<Uuid, BookingRecord>,
    /// Ids in the order they were remembered (some already forgotten).
    order: VecDeque<Uuid>,
}

impl RecentBookings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every change is a single insert or removal: a panic elsewhere
        // cannot leave the map half written.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers a booking just created (only pending ones are of use).
    pub(crate) fn remember(&self, booking: &BookingRecord) {
        if booking.state != BookingState::Pending {
            return;
        }
        let mut inner = self.lock();
        inner.bookings.insert(booking.id, booking.clone());
        inner.order.push_back(booking.id);
        while inner.bookings.len() > CAPACITY || inner.order.len() > 2 * CAPACITY {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.bookings.remove(&oldest);
        }
    }

    /// The booking, if this process made it, it is `user`'s, and as far as
    /// this process knows it is still pending with its hold running at
    /// `now`.
    pub(crate) fn pending(
        &self,
        id: Uuid,
        user: Uuid,
        now: DateTime<Utc>,
    ) -> Option<BookingRecord> {
        self.lock()
            .bookings
            .get(&id)
            .filter(|booking| {
                booking.user_id == user
                    && booking.state == BookingState::Pending
                    && booking.expire_time > now
            })
            .cloned()
    }

    /// Called before any write that may change the booking's state.
    pub(crate) fn forget(&self, id: Uuid) {
        self.lock().bookings.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(user: Uuid, expires_in: chrono::Duration) -> BookingRecord {
        let now = Utc::now();
        BookingRecord {
            id: Uuid::now_v7(),
            user_id: user,
            event_id: Uuid::now_v7(),
            hold_id: Uuid::now_v7(),
            state: BookingState::Pending,
            currency_code: "GBP".into(),
            subtotal_minor: 100,
            fees_minor: 10,
            discount_minor: 0,
            total_minor: 110,
            refunded_minor: 0,
            promo_code: None,
            points_spent: 0,
            loyalty_discount_minor: 0,
            loyalty_tier: None,
            tier_discount_minor: 0,
            event_start_time: None,
            expire_time: now + expires_in,
            payment_id: None,
            failure_reason: None,
            created_at: now,
            confirmed_at: None,
            cancelled_at: None,
            tickets: Vec::new(),
        }
    }

    #[test]
    fn a_remembered_booking_is_offered_only_to_its_owner_while_its_hold_runs() {
        let recent = RecentBookings::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let booking = pending(alice, chrono::Duration::minutes(10));
        recent.remember(&booking);
        let now = Utc::now();
        assert_eq!(
            recent.pending(booking.id, alice, now),
            Some(booking.clone())
        );
        assert_eq!(recent.pending(booking.id, bob, now), None);
        assert_eq!(
            recent.pending(booking.id, alice, now + chrono::Duration::minutes(11)),
            None
        );
    }

    #[test]
    fn a_forgotten_booking_is_read_again() {
        let recent = RecentBookings::default();
        let user = Uuid::now_v7();
        let booking = pending(user, chrono::Duration::minutes(10));
        recent.remember(&booking);
        recent.forget(booking.id);
        assert_eq!(recent.pending(booking.id, user, Utc::now()), None);
    }

    #[test]
    fn only_pending_bookings_are_remembered_and_the_oldest_go_first() {
        let recent = RecentBookings::default();
        let user = Uuid::now_v7();
        let mut confirmed = pending(user, chrono::Duration::minutes(10));
        confirmed.state = BookingState::Confirmed;
        recent.remember(&confirmed);
        assert_eq!(recent.pending(confirmed.id, user, Utc::now()), None);

        let first = pending(user, chrono::Duration::minutes(10));
        recent.remember(&first);
        let mut last = first.clone();
        for _ in 0..CAPACITY {
            last = pending(user, chrono::Duration::minutes(10));
            recent.remember(&last);
        }
        let now = Utc::now();
        assert_eq!(recent.pending(first.id, user, now), None);
        assert!(recent.pending(last.id, user, now).is_some());
        assert!(recent.lock().bookings.len() <= CAPACITY);
    }
}
