//! What checkout and inventory publish: a buyer's decline, purchase and
//! cancellation, and an event selling out and coming back, each appear as
//! their `boxoffice.events.v1` events, in order per aggregate, in the
//! producers' outboxes; and replaying the outboxes gives exactly the
//! bookings and tickets stored (the same check the fault harness makes after
//! real kills).

use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::events::v1::Envelope;
use boxoffice_contracts::events::v1::envelope::Payload;
use prost::Message as _;

use crate::checkout::{CheckoutWorld, booking_id, cancel, confirm, state};
use crate::harness::{TestDb, customer};
use crate::inventory::PLACES;

/// The envelopes of `schema`'s outbox, in order.
async fn published(db: &TestDb, schema: &str) -> Vec<Envelope> {
    db.client()
        .await
        .query(
            &format!("SELECT envelope FROM {schema}.event_outbox ORDER BY id"),
            &[],
        )
        .await
        .expect("reading the outbox")
        .iter()
        .map(|row| Envelope::decode(row.get::<_, &[u8]>(0)).expect("an envelope"))
        .collect()
}

/// Replaying checkout's and inventory's outboxes gives their tables.
pub async fn assert_events_match_tables(db: &TestDb) {
    let client = db.client().await;
    for check in [
        boxoffice_faults::events::checkout_events_match(&client)
            .await
            .expect("checking checkout's events"),
        boxoffice_faults::events::inventory_events_match(&client)
            .await
            .expect("checking inventory's events"),
    ] {
        assert!(check.passed(), "{}: {:?}", check.name, check.violations);
    }
}

#[tokio::test]
async fn purchases_cancellations_and_a_sell_out_publish_their_events() {
    let world = CheckoutWorld::with(
        &[(boxoffice_inventory::config::ENV_MAX_SEATS_PER_HOLD, "100")],
        |_| {},
    )
    .await;
    let mut client = world.client.clone();
    let (alice, bob) = (customer(), customer());
    let most: Vec<u32> = (0..100).collect();
    let rest: Vec<u32> = (100..PLACES).collect();

    let (_, first) = world.booking_for(&alice, &most).await;
    confirm(&mut client, &alice, &first.name, "tok_chargeDeclined", "a1")
        .await
        .expect_err("declined");
    let first = confirm(&mut client, &alice, &first.name, "tok_visa", "a2")
        .await
        .expect("paid");
    let (_, second) = world.booking_for(&bob, &rest).await;
    let second = confirm(&mut client, &bob, &second.name, "tok_visa", "b1")
        .await
        .expect("paid");
    let cancelled = cancel(&mut client, &bob, &second.name).await.unwrap();
    assert_eq!(state(&cancelled), pb::BookingState::Cancelled);

    let (first_id, second_id) = (
        booking_id(&first).to_string(),
        booking_id(&second).to_string(),
    );
    let checkout: Vec<(String, String, u64)> = published(&world.world.db, "checkout")
        .await
        .into_iter()
        .map(|e| (e.event_type, e.aggregate_id, e.sequence))
        .collect();
    let kind = |name: &str| format!("boxoffice.events.v1.{name}");
    assert_eq!(
        checkout,
        vec![
            (kind("PaymentFailed"), first_id.clone(), 1),
            (kind("BookingConfirmed"), first_id.clone(), 2),
            (kind("BookingConfirmed"), second_id.clone(), 1),
            (kind("BookingCancelled"), second_id.clone(), 2),
            (kind("RefundIssued"), second_id.clone(), 3),
        ]
    );

    let inventory = published(&world.world.db, "inventory").await;
    let summary: Vec<String> = inventory
        .iter()
        .map(|envelope| match &envelope.payload {
            Some(Payload::SeatsSold(e)) => {
                format!("sold {} to {}", e.seat_indexes.len(), e.booking_id)
            }
            Some(Payload::SeatsReleased(e)) => {
                format!("released {} from {}", e.seat_indexes.len(), e.booking_id)
            }
            Some(Payload::SoldOut(_)) => "sold out".to_owned(),
            Some(Payload::BackOnSale(e)) => format!("back on sale with {}", e.available_seats),
            _ => envelope.event_type.clone(),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            format!("sold 100 to {first_id}"),
            format!("sold {} to {second_id}", rest.len()),
            "sold out".to_owned(),
            format!("released {} from {second_id}", rest.len()),
            format!("back on sale with {}", rest.len()),
        ]
    );
    assert!(
        inventory
            .iter()
            .all(|e| e.aggregate_type == "event" && e.aggregate_id == world.event.event_id),
        "inventory's events are about the event"
    );
    // The confirmation carries what a consumer needs: buyer, seats, money.
    let confirmed = published(&world.world.db, "checkout")
        .await
        .into_iter()
        .find_map(|e| match e.payload {
            Some(Payload::BookingConfirmed(c)) if c.booking_id == first_id => Some(c),
            _ => None,
        })
        .expect("BookingConfirmed");
    assert_eq!(confirmed.seat_indexes, most);
    assert_eq!(confirmed.event_id, world.event.event_id);
    assert_eq!(
        confirmed.total.map(|money| money.amount_minor),
        first.total.as_ref().map(|money| money.amount_minor)
    );
    assert_eq!(
        confirmed.fees.map(|money| money.amount_minor),
        Some(100 * crate::checkout::FEE)
    );
    world.assert_money_and_seats_agree().await;
}
