//! The producers' outboxes against their tables: replaying what checkout
//! and inventory published must give exactly what they store. An event is
//! written in the transaction of its change, so after any crash every
//! committed change has its event and no event describes a change that
//! rolled back; per aggregate, sequence numbers run 1, 2, 3, … in outbox
//! order. The integration tests run the same checks after their scenarios.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use boxoffice_contracts::events::v1::Envelope;
use boxoffice_contracts::events::v1::envelope::Payload;
use prost::Message as _;
use tokio_postgres::Client;
use uuid::Uuid;

use crate::check::Check;

/// Every envelope of `schema`'s outbox, in outbox order.
async fn outbox(client: &Client, schema: &str) -> anyhow::Result<Vec<Envelope>> {
    let rows = client
        .query(
            &format!("SELECT envelope FROM {schema}.event_outbox ORDER BY id"),
            &[],
        )
        .await
        .with_context(|| format!("reading {schema}'s outbox"))?;
    rows.iter()
        .map(|row| {
            Envelope::decode(row.get::<_, &[u8]>(0))
                .with_context(|| format!("decoding an envelope of {schema}'s outbox"))
        })
        .collect()
}

/// Per aggregate, sequences 1, 2, 3, … in outbox order.
fn check_sequences(check: &mut Check, schema: &str, envelopes: &[Envelope]) {
    let mut last: HashMap<(&str, &str), u64> = HashMap::new();
    for envelope in envelopes {
        let previous = last
            .entry((&envelope.aggregate_type, &envelope.aggregate_id))
            .or_insert(0);
        if envelope.sequence != *previous + 1 {
            check.violation(format!(
                "{schema}: {} {} has sequence {} after {}",
                envelope.aggregate_type, envelope.aggregate_id, envelope.sequence, previous
            ));
        }
        *previous = envelope.sequence;
    }
}

fn id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text).ok()
}

/// What checkout published about one booking.
#[derive(Default)]
struct Published {
    confirmed: Vec<(Vec<u32>, i64)>,
    cancelled: Vec<String>,
    refunds: Vec<i64>,
}

/// Checkout: a booking that was ever confirmed has exactly one
/// `BookingConfirmed` (its seats, its total), one that ended cancelled or
/// expired exactly one `BookingCancelled`, a refunded payment one
/// `RefundIssued` of its amount; and nothing is published about a booking
/// that does not exist or a change it never made.
pub async fn checkout_events_match(client: &Client) -> anyhow::Result<Check> {
    let mut check = Check::new("checkout's events match its bookings");
    let envelopes = outbox(client, "checkout").await?;
    check_sequences(&mut check, "checkout", &envelopes);
    let mut published: HashMap<Uuid, Published> = HashMap::new();
    for envelope in &envelopes {
        let booking = id(&envelope.aggregate_id);
        let Some(booking) = booking else {
            check.violation(format!(
                "checkout: aggregate id {:?}",
                envelope.aggregate_id
            ));
            continue;
        };
        let entry = published.entry(booking).or_default();
        match &envelope.payload {
            Some(Payload::BookingConfirmed(event)) => entry.confirmed.push((
                event.seat_indexes.clone(),
                event.total.as_ref().map_or(-1, |money| money.amount_minor),
            )),
            Some(Payload::BookingCancelled(event)) => entry.cancelled.push(event.reason.clone()),
            Some(Payload::RefundIssued(event)) => entry
                .refunds
                .push(event.amount.as_ref().map_or(-1, |money| money.amount_minor)),
            Some(Payload::PaymentFailed(_)) => {}
            other => check.violation(format!(
                "checkout published {} about booking {booking}",
                other
                    .as_ref()
                    .map_or("nothing", |_| envelope.event_type.as_str())
            )),
        }
    }
    let rows = client
        .query(
            "SELECT b.id, b.state, b.confirmed_at IS NOT NULL, b.total_minor,
                    coalesce((SELECT p.refunded_minor FROM checkout.payments p
                              WHERE p.id = b.payment_id AND p.state = 'refunded'), 0),
                    ARRAY(SELECT t.seat_index FROM checkout.booking_tickets t WHERE t.booking_id = b.id
                          ORDER BY t.seat_index)
             FROM checkout.bookings b",
            &[],
        )
        .await
        .context("reading bookings")?;
    for row in &rows {
        check.checked += 1;
        let booking: Uuid = row.get(0);
        let state: String = row.get(1);
        let was_confirmed: bool = row.get(2);
        let total: i64 = row.get(3);
        let refunded: i64 = row.get(4);
        let seats: Vec<u32> = row
            .get::<_, Vec<i32>>(5)
            .into_iter()
            .map(|seat| seat as u32)
            .collect();
        let events = published.remove(&booking).unwrap_or_default();
        let expected_confirmed = if was_confirmed {
            vec![(seats, total)]
        } else {
            Vec::new()
        };
        if events.confirmed != expected_confirmed {
            check.violation(format!(
                "booking {booking} ({state}): BookingConfirmed {:?}, expected {:?}",
                events.confirmed, expected_confirmed
            ));
        }
        let ended = matches!(state.as_str(), "cancelled" | "expired");
        if events.cancelled.len() != usize::from(ended) {
            check.violation(format!(
                "booking {booking} ({state}): BookingCancelled {:?}",
                events.cancelled
            ));
        }
        let expected_refunds = if refunded > 0 {
            vec![refunded]
        } else {
            Vec::new()
        };
        if events.refunds != expected_refunds {
            check.violation(format!(
                "booking {booking} ({state}): RefundIssued {:?}, expected {expected_refunds:?}",
                events.refunds
            ));
        }
    }
    for booking in published.keys() {
        check.violation(format!("events published about unknown booking {booking}"));
    }
    Ok(check)
}

/// Inventory: replaying `SeatsSold` and `SeatsReleased` gives exactly the
/// sold tickets (seat by seat, to the same booking), no seat is sold twice
/// in the replay, and an event's last `SoldOut`/`BackOnSale` says whether it
/// has a ticket left to sell.
pub async fn inventory_events_match(client: &Client) -> anyhow::Result<Check> {
    let mut check = Check::new("inventory's events match its tickets");
    let envelopes = outbox(client, "inventory").await?;
    check_sequences(&mut check, "inventory", &envelopes);
    let mut owners: BTreeMap<(Uuid, u32), Uuid> = BTreeMap::new();
    let mut sold_out: HashMap<Uuid, bool> = HashMap::new();
    for envelope in &envelopes {
        match &envelope.payload {
            Some(Payload::SeatsSold(event)) => {
                let (Some(event_id), Some(booking)) = (id(&event.event_id), id(&event.booking_id))
                else {
                    check.violation(format!("SeatsSold with bad ids: {event:?}"));
                    continue;
                };
                for seat in &event.seat_indexes {
                    if let Some(owner) = owners.insert((event_id, *seat), booking) {
                        check.violation(format!(
                            "event {event_id} seat {seat} sold to {booking} while sold to {owner}"
                        ));
                    }
                }
            }
            Some(Payload::SeatsReleased(event)) => {
                let (Some(event_id), Some(booking)) = (id(&event.event_id), id(&event.booking_id))
                else {
                    check.violation(format!("SeatsReleased with bad ids: {event:?}"));
                    continue;
                };
                for seat in &event.seat_indexes {
                    if owners.remove(&(event_id, *seat)) != Some(booking) {
                        check.violation(format!(
                            "event {event_id} seat {seat} released from {booking}, which did not own it"
                        ));
                    }
                }
            }
            Some(Payload::SoldOut(event)) => {
                if let Some(event_id) = id(&event.event_id)
                    && sold_out.insert(event_id, true) == Some(true)
                {
                    check.violation(format!("event {event_id} sold out twice in a row"));
                }
            }
            Some(Payload::BackOnSale(event)) => {
                if let Some(event_id) = id(&event.event_id)
                    && sold_out.insert(event_id, false) != Some(true)
                {
                    check.violation(format!(
                        "event {event_id} back on sale without having sold out"
                    ));
                }
            }
            _ => check.violation(format!("inventory published {}", envelope.event_type)),
        }
    }
    let mut stored: BTreeMap<(Uuid, u32), Uuid> = BTreeMap::new();
    for row in client
        .query(
            "SELECT event_id, seat_index, booking_id FROM inventory.tickets
             WHERE status = 'sold' AND booking_id IS NOT NULL",
            &[],
        )
        .await
        .context("reading sold tickets")?
    {
        stored.insert((row.get(0), row.get::<_, i32>(1) as u32), row.get(2));
    }
    check.checked = stored.len() as u64;
    for (seat, booking) in &stored {
        match owners.remove(seat) {
            Some(owner) if owner == *booking => {}
            other => check.violation(format!(
                "event {} seat {} is sold to {booking}; the events say {other:?}",
                seat.0, seat.1
            )),
        }
    }
    for (seat, booking) in owners {
        check.violation(format!(
            "the events sold event {} seat {} to {booking}; the ticket is not sold to it",
            seat.0, seat.1
        ));
    }
    for row in client
        .query(
            "SELECT e.event_id, NOT EXISTS (SELECT 1 FROM inventory.tickets t
                 WHERE t.event_id = e.event_id AND t.status = 'available')
             FROM inventory.events e
             WHERE EXISTS (SELECT 1 FROM inventory.tickets t WHERE t.event_id = e.event_id)",
            &[],
        )
        .await
        .context("reading events")?
    {
        let event_id: Uuid = row.get(0);
        let is_sold_out: bool = row.get(1);
        let says = sold_out.get(&event_id).copied().unwrap_or(false);
        if says != is_sold_out {
            check.violation(format!(
                "event {event_id}: sold out is {is_sold_out}, the events say {says}"
            ));
        }
    }
    Ok(check)
}

/// The stats consumer's view against the producers' tables, once it has
/// caught up (waited for up to `deadline`): the same confirmed bookings
/// with the same tickets, money and cancellations, and the same sold seats.
pub async fn stats_match(client: &Client, deadline: std::time::Duration) -> anyhow::Result<Check> {
    let started = std::time::Instant::now();
    loop {
        let check = stats_match_now(client).await?;
        if check.passed() || started.elapsed() >= deadline {
            return Ok(check);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn stats_match_now(client: &Client) -> anyhow::Result<Check> {
    let mut check = Check::new("the stats consumer matches the producers");
    let truth = client
        .query(
            "SELECT b.id::text || ' ' || (SELECT count(*) FROM checkout.booking_tickets t WHERE t.booking_id = b.id)
                    || ' ' || b.total_minor || ' ' || coalesce((SELECT p.refunded_minor FROM checkout.payments p
                        WHERE p.id = b.payment_id AND p.state = 'refunded'), 0)
                    || ' ' || (b.state = 'cancelled')
             FROM checkout.bookings b WHERE b.confirmed_at IS NOT NULL
             UNION ALL
             SELECT 'seat ' || event_id || ' ' || seat_index || ' ' || booking_id
             FROM inventory.tickets WHERE status = 'sold' AND booking_id IS NOT NULL",
            &[],
        )
        .await
        .context("reading the producers' tables")?;
    let kept = client
        .query(
            "SELECT booking_id::text || ' ' || tickets || ' ' || gross_minor || ' ' || refunded_minor
                    || ' ' || (cancelled_at IS NOT NULL)
             FROM stats.bookings
             UNION ALL
             SELECT 'seat ' || event_id || ' ' || seat_index || ' ' || booking_id FROM stats.sold_seats",
            &[],
        )
        .await
        .context("reading the statistics")?;
    let truth: std::collections::BTreeSet<String> = truth.iter().map(|row| row.get(0)).collect();
    let kept: std::collections::BTreeSet<String> = kept.iter().map(|row| row.get(0)).collect();
    check.checked = truth.len() as u64;
    for missing in truth.difference(&kept) {
        check.violation(format!("the statistics lack: {missing}"));
    }
    for extra in kept.difference(&truth) {
        check.violation(format!("the statistics hold what is not so: {extra}"));
    }
    Ok(check)
}
