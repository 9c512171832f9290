//! Checkout stopped at every step boundary, as if the process died there
//! (failure points switched on through its config), then the reconciler:
//! captured payments = confirmed bookings (plus refunds), no seat sold
//! twice, and no booking left pending past its hold. Also the database
//! losing the finish of a confirmation (it commits asynchronously).

use std::time::Duration;

use boxoffice_checkout::FailPoint;
use boxoffice_checkout::payment::ProviderStatus;
use boxoffice_contracts::checkout::v1 as pb;
use tonic::Code;

use crate::checkout::{
    CheckoutWorld, SEAT_PRICE, assert_reason, cancel, confirm, create, get, state,
};
use crate::harness::{customer, eventually};
use crate::inventory::hold_seats;

/// What a confirmation interrupted at `point` ends as once reconciled.
fn settles_to(point: FailPoint) -> pb::BookingState {
    match point {
        // Nothing was committed: the authorization (if any) is voided and
        // the booking is payable again while its hold lasts.
        FailPoint::AfterClaim | FailPoint::AfterAuthorize => pb::BookingState::Pending,
        // The seats are sold: the payment is captured and the booking marked.
        _ => pb::BookingState::Confirmed,
    }
}

#[tokio::test]
async fn a_confirmation_crashed_at_any_step_is_finished_or_reversed() {
    let world = CheckoutWorld::with(
        &[(boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10")],
        |_| {},
    )
    .await;
    let mut client = world.client.clone();
    let points = [
        FailPoint::AfterClaim,
        FailPoint::AfterAuthorize,
        FailPoint::AfterCommit,
        FailPoint::AfterCapture,
    ];
    for (index, point) in points.into_iter().enumerate() {
        let alice = customer();
        let seat = index as u32;
        let (_, booking) = world.booking_for(&alice, &[seat]).await;
        world.fail_points.arm(point);
        let crashed = confirm(&mut client, &alice, &booking.name, "tok_visa", "key").await;
        world.fail_points.disarm(point);
        assert_reason(crashed, Code::Unavailable, "SIMULATED_CRASH");
        // Half done: a retry meanwhile is told to wait, and charges nothing more.
        let meanwhile = confirm(&mut client, &alice, &booking.name, "tok_visa", "key").await;
        assert_reason(meanwhile, Code::Aborted, "CONFIRMATION_IN_PROGRESS");

        let report = world
            .component
            .reconcile_once(Duration::ZERO)
            .await
            .expect("reconciling");
        assert_eq!(report.failures, 0, "{point:?}: {report:?}");
        let after = get(&mut client, &alice, &booking.name).await.unwrap();
        assert_eq!(state(&after), settles_to(point), "{point:?}");
        world.assert_money_and_seats_agree().await;

        match settles_to(point) {
            pb::BookingState::Confirmed => {
                assert!(world.sold_seats().await.contains(&seat), "{point:?}");
                // The retry with the same key now answers the confirmed booking.
                let replay = confirm(&mut client, &alice, &booking.name, "tok_visa", "key")
                    .await
                    .unwrap();
                assert_eq!(state(&replay), pb::BookingState::Confirmed);
                assert!(!replay.tickets[0].code.is_empty());
            }
            _ => {
                assert!(!world.sold_seats().await.contains(&seat), "{point:?}");
                let replay = confirm(&mut client, &alice, &booking.name, "tok_visa", "key").await;
                assert_reason(replay, Code::Aborted, "CONFIRMATION_INTERRUPTED");
                // A new attempt goes through.
                let paid = confirm(&mut client, &alice, &booking.name, "tok_visa", "key-2")
                    .await
                    .unwrap();
                assert_eq!(state(&paid), pb::BookingState::Confirmed, "{point:?}");
            }
        }
        world.assert_money_and_seats_agree().await;
    }
    // Reconciling again changes nothing.
    let report = world
        .component
        .reconcile_once(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.payments_settled + report.cancellations_finished, 0);
    world.assert_money_and_seats_agree().await;
}

/// The finish of a confirmation commits asynchronously, so a database crash
/// can lose it after the buyer was told "confirmed". Losing it leaves what
/// `FailPoint::AfterCapture` leaves; this rolls a confirmed booking back to
/// exactly that and checks the reconciler restores it, with the very ticket
/// codes the buyer already holds.
#[tokio::test]
async fn a_confirmation_whose_finish_the_database_lost_is_restored() {
    let world = CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[7, 8]).await;
    let paid = confirm(&mut client, &alice, &booking.name, "tok_visa", "key")
        .await
        .unwrap();
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    let codes: Vec<String> = paid.tickets.iter().map(|t| t.code.clone()).collect();
    assert!(codes.iter().all(|code| !code.is_empty()));

    // What the rows were before the lost commit (the state triggers would
    // refuse these backward edges, so they are switched off for this one
    // connection, as crash recovery would bypass them too).
    let db = world.world.db.client().await;
    db.batch_execute("SET session_replication_role = replica")
        .await
        .unwrap();
    let booking_uuid = crate::checkout::booking_id(&paid);
    let lost = db
        .execute(
            "UPDATE checkout.payments SET state = 'authorizing', provider_ref = NULL
             WHERE booking_id = $1 AND state = 'captured'",
            &[&booking_uuid],
        )
        .await
        .unwrap();
    assert_eq!(lost, 1);
    db.execute(
        "UPDATE checkout.bookings SET state = 'confirming', payment_id = NULL, confirmed_at = NULL
         WHERE id = $1",
        &[&booking_uuid],
    )
    .await
    .unwrap();
    drop(db);
    let meanwhile = get(&mut client, &alice, &booking.name).await.unwrap();
    assert_eq!(state(&meanwhile), pb::BookingState::Confirming);
    let retry = confirm(&mut client, &alice, &booking.name, "tok_visa", "key").await;
    assert_reason(retry, Code::Aborted, "CONFIRMATION_IN_PROGRESS");

    let report = world
        .component
        .reconcile_once(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((report.payments_settled, report.failures), (1, 0));
    let restored = get(&mut client, &alice, &booking.name).await.unwrap();
    assert_eq!(state(&restored), pb::BookingState::Confirmed);
    let restored_codes: Vec<String> = restored.tickets.iter().map(|t| t.code.clone()).collect();
    assert_eq!(restored_codes, codes, "the buyer's tickets stay valid");
    assert_eq!(world.provider_count(ProviderStatus::Captured), 1);
    world.assert_money_and_seats_agree().await;
    // The retry with the same key answers the confirmed booking.
    let replay = confirm(&mut client, &alice, &booking.name, "tok_visa", "key")
        .await
        .unwrap();
    assert_eq!(state(&replay), pb::BookingState::Confirmed);
}

#[tokio::test]
async fn a_cancellation_crashed_at_any_step_is_finished() {
    let world = CheckoutWorld::with(
        &[(boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10")],
        |_| {},
    )
    .await;
    let mut client = world.client.clone();
    for (index, point) in [FailPoint::AfterCancelIntent, FailPoint::AfterRefund]
        .into_iter()
        .enumerate()
    {
        let alice = customer();
        let seat = 20 + index as u32;
        let (_, booking) = world.booking_for(&alice, &[seat]).await;
        confirm(&mut client, &alice, &booking.name, "tok_visa", "k")
            .await
            .unwrap();
        world.fail_points.arm(point);
        let crashed = cancel(&mut client, &alice, &booking.name).await;
        world.fail_points.disarm(point);
        assert_reason(crashed, Code::Unavailable, "SIMULATED_CRASH");
        assert_eq!(
            state(&get(&mut client, &alice, &booking.name).await.unwrap()),
            pb::BookingState::Cancelling
        );

        let report = world
            .component
            .reconcile_once(Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(report.cancellations_finished, 1, "{point:?}");
        let after = get(&mut client, &alice, &booking.name).await.unwrap();
        assert_eq!(state(&after), pb::BookingState::Cancelled);
        assert_eq!(after.refunded.map(|m| m.amount_minor), Some(SEAT_PRICE));
        assert!(
            !world.sold_seats().await.contains(&seat),
            "seat {seat} back on sale"
        );
        world.assert_money_and_seats_agree().await;
    }
    // Each refund happened exactly once.
    let refunds: Vec<i64> = world
        .component
        .provider
        .payments()
        .iter()
        .filter(|payment| payment.status == ProviderStatus::Refunded)
        .map(|payment| payment.refunded_minor)
        .collect();
    assert_eq!(refunds, vec![SEAT_PRICE, SEAT_PRICE]);
}

#[tokio::test]
async fn no_booking_stays_pending_past_its_hold() {
    // Short holds: the test waits for one to run out.
    let world = CheckoutWorld::with(
        &[
            (boxoffice_inventory::config::ENV_HOLD_TTL, "2"),
            (boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10"),
        ],
        |_| {},
    )
    .await;
    let mut client = world.client.clone();
    let alice = customer();
    // One booking abandoned, one crashed right after authorizing.
    let (_, abandoned) = world.booking_for(&alice, &[30]).await;
    let (_, crashed) = world.booking_for(&alice, &[31]).await;
    world.fail_points.arm(FailPoint::AfterAuthorize);
    assert_reason(
        confirm(&mut client, &alice, &crashed.name, "tok_visa", "k").await,
        Code::Unavailable,
        "SIMULATED_CRASH",
    );
    world.fail_points.disarm(FailPoint::AfterAuthorize);

    let component = &world.component;
    eventually(Duration::from_secs(15), "both bookings to expire", || {
        let mut client = client.clone();
        let alice = alice.clone();
        let names = [abandoned.name.clone(), crashed.name.clone()];
        async move {
            component.reconcile_once(Duration::ZERO).await.ok()?;
            for name in &names {
                let booking = get(&mut client, &alice, name).await.ok()?;
                if state(&booking) != pb::BookingState::Expired {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    // Paying for it now is refused and charges nothing.
    assert_reason(
        confirm(&mut client, &alice, &abandoned.name, "tok_visa", "late").await,
        Code::FailedPrecondition,
        "BOOKING_EXPIRED",
    );
    assert_eq!(world.provider_count(ProviderStatus::Captured), 0);
    assert_eq!(world.provider_count(ProviderStatus::Voided), 1);
    world.assert_money_and_seats_agree().await;
    // The seats are for sale again to someone else.
    let bob = customer();
    let hold = hold_seats(
        &mut world.inventory(),
        &bob,
        &world.event.event_id,
        &[30, 31],
    )
    .await
    .expect("the seats are free again");
    let booking = create(&mut client, &bob, &hold.name).await.unwrap();
    let paid = confirm(&mut client, &bob, &booking.name, "tok_visa", "bob")
        .await
        .unwrap();
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    world.assert_money_and_seats_agree().await;
}
