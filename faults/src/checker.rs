//! The checker: after the last fault is healed and the system has had its
//! time to reconcile, the history and PostgreSQL (inventory's tickets,
//! checkout's bookings and payments) are compared. Each check is exact and
//! lists what broke it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio_postgres::Client;

use crate::check::Check;
use crate::history::{Fault, Op, OpKind, Outcome};
use crate::provider::ProviderLedger;

pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting to the run's PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Waits until no booking is pending, confirming or cancelling any more
/// and none owes the release of its seats (an expired one's), or until
/// the last one's hold plus `reconcile_after` plus `grace` has passed.
/// Returns how long it waited.
pub async fn wait_settled(
    database_url: &str,
    reconcile_after: Duration,
    grace: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let attempt = async {
            let client = connect(database_url).await?;
            let row = client
                .query_one(
                    "SELECT count(*), coalesce(extract(epoch FROM max(expire_time) - now()), 0)::float8
                     FROM checkout.bookings
                     WHERE state IN ('pending', 'confirming', 'cancelling') OR seats_release_owed",
                    &[],
                )
                .await?;
            Ok::<(i64, f64), anyhow::Error>((row.get(0), row.get(1)))
        };
        match attempt.await {
            Ok((0, _)) => return Ok(started.elapsed()),
            Ok((_, seconds_to_last_expiry)) => {
                let latest = Duration::from_secs_f64(seconds_to_last_expiry.max(0.0));
                // Not settled by the last hold's end plus the reconciler's
                // delay plus grace: the check below reports them.
                if started.elapsed() > latest + reconcile_after + grace {
                    return Ok(started.elapsed());
                }
            }
            Err(error) if started.elapsed() > reconcile_after + grace * 3 => {
                return Err(error.context("PostgreSQL did not answer after the run"));
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the history says about bookings.
#[derive(Default)]
struct Seen {
    /// Bookings answered CONFIRMED (by ConfirmBooking), with the answer.
    confirmed: BTreeMap<String, Op>,
    /// Bookings a client asked to cancel (any outcome).
    cancel_invoked: BTreeSet<String>,
    /// Cancellations answered ok, with the answer.
    cancelled: BTreeMap<String, Op>,
    /// Hold name → expiry (Unix ms); booking name → hold name.
    hold_expiry: HashMap<String, i64>,
    booking_hold: HashMap<String, String>,
    booking_event: HashMap<String, String>,
}

fn seen(ops: &[Op]) -> Seen {
    let mut seen = Seen::default();
    let mut hold_event = HashMap::new();
    for op in ops {
        match (op.kind, op.outcome) {
            (OpKind::Hold, Outcome::Ok) => {
                if let (Some(hold), Some(expire)) = (&op.hold, op.expire_unix_ms) {
                    seen.hold_expiry.insert(hold.clone(), expire);
                }
                if let (Some(hold), Some(event)) = (&op.hold, &op.event) {
                    hold_event.insert(hold.clone(), event.clone());
                }
            }
            (OpKind::CreateBooking, Outcome::Ok) => {
                if let (Some(booking), Some(hold)) = (&op.booking, &op.hold) {
                    seen.booking_hold.insert(booking.clone(), hold.clone());
                    if let Some(event) = hold_event.get(hold) {
                        seen.booking_event.insert(booking.clone(), event.clone());
                    }
                }
            }
            (OpKind::ConfirmBooking, Outcome::Ok) if op.state.as_deref() == Some("CONFIRMED") => {
                if let Some(booking) = &op.booking {
                    seen.confirmed
                        .entry(booking.clone())
                        .or_insert_with(|| op.clone());
                }
            }
            (OpKind::CancelBooking, outcome) => {
                if let Some(booking) = &op.booking {
                    seen.cancel_invoked.insert(booking.clone());
                    if outcome == Outcome::Ok {
                        seen.cancelled.insert(booking.clone(), op.clone());
                    }
                }
            }
            _ => {}
        }
    }
    seen
}

fn booking_id(name: &str) -> Option<uuid::Uuid> {
    name.strip_prefix("bookings/")
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
}

/// A booking as PostgreSQL has it.
struct Row {
    state: String,
    total_minor: i64,
    refunded_minor: i64,
}

/// Every check; `faults` for recovery, `recovery_deadline` to judge it,
/// `provider` the payment provider's own records (read after recovery).
pub async fn check_all(
    database_url: &str,
    ops: &[Op],
    faults: &[Fault],
    recovery_deadline: Duration,
    provider: &ProviderLedger,
) -> anyhow::Result<Vec<Check>> {
    let client = connect(database_url).await?;
    let seen = seen(ops);
    let bookings: HashMap<uuid::Uuid, Row> = client
        .query(
            "SELECT id, state, total_minor, refunded_minor FROM checkout.bookings",
            &[],
        )
        .await
        .context("reading bookings")?
        .iter()
        .map(|row| {
            (
                row.get::<_, uuid::Uuid>(0),
                Row {
                    state: row.get(1),
                    total_minor: row.get(2),
                    refunded_minor: row.get(3),
                },
            )
        })
        .collect();
    let mut checks = Vec::new();

    // 1. No seat in two live bookings: in PostgreSQL (confirmed ones; a
    //    cancelling booking may already have given its seats back), and in
    //    what clients were told (two CONFIRMED answers for one seat, neither
    //    cancelled).
    let mut check = Check::new("no seat sold twice");
    for row in client
        .query(
            "SELECT b.event_id::text, t.seat_index, string_agg(b.id::text, ',')
             FROM checkout.booking_tickets t JOIN checkout.bookings b ON b.id = t.booking_id
             WHERE b.state IN ('confirmed', 'confirming')
             GROUP BY 1, 2 HAVING count(*) > 1",
            &[],
        )
        .await?
    {
        check.violation(format!(
            "event {} seat {} is in live bookings {}",
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2)
        ));
    }
    let mut told: HashMap<(String, u32), Vec<&str>> = HashMap::new();
    for (booking, op) in &seen.confirmed {
        let Some(event) = seen.booking_event.get(booking) else {
            continue;
        };
        for seat in &op.seats {
            told.entry((event.clone(), *seat))
                .or_default()
                .push(booking.as_str());
        }
    }
    check.checked = told.len() as u64;
    for ((event, seat), bookings) in &told {
        let live: Vec<&&str> = bookings
            .iter()
            .filter(|b| !seen.cancel_invoked.contains(**b))
            .collect();
        if live.len() > 1 {
            check.violation(format!(
                "event {event} seat {seat} was answered CONFIRMED to {live:?}, none cancelled"
            ));
        }
    }
    checks.push(check);

    // 2. Every CONFIRMED answer is a confirmed booking in PostgreSQL (or
    //    one its client cancelled), with the answered total and seats; and
    //    no read after it said otherwise.
    let mut check = Check::new("acknowledged bookings kept");
    check.checked = seen.confirmed.len() as u64;
    for (booking, op) in &seen.confirmed {
        let Some(id) = booking_id(booking) else {
            check.violation(format!("{booking} is not a booking name"));
            continue;
        };
        let Some(row) = bookings.get(&id) else {
            check.violation(format!(
                "{booking} was answered CONFIRMED and is not in PostgreSQL"
            ));
            continue;
        };
        let cancelled = seen.cancel_invoked.contains(booking);
        let fine = row.state == "confirmed"
            || (cancelled && matches!(row.state.as_str(), "cancelled" | "cancelling"));
        if !fine {
            check.violation(format!(
                "{booking} was answered CONFIRMED at {} ms and is {} in PostgreSQL",
                op.complete_ms, row.state
            ));
        }
        if op.total_minor.is_some_and(|total| total != row.total_minor) {
            check.violation(format!(
                "{booking} was answered with total {:?}, PostgreSQL has {}",
                op.total_minor, row.total_minor
            ));
        }
    }
    let seats_of: HashMap<uuid::Uuid, BTreeSet<i32>> = {
        let mut map: HashMap<uuid::Uuid, BTreeSet<i32>> = HashMap::new();
        for row in client
            .query(
                "SELECT booking_id, seat_index FROM checkout.booking_tickets",
                &[],
            )
            .await?
        {
            map.entry(row.get(0)).or_default().insert(row.get(1));
        }
        map
    };
    for (booking, op) in &seen.confirmed {
        let Some(id) = booking_id(booking) else {
            continue;
        };
        let answered: BTreeSet<i32> = op.seats.iter().map(|s| *s as i32).collect();
        let stored = seats_of.get(&id).cloned().unwrap_or_default();
        if answered != stored {
            check.violation(format!(
                "{booking} was answered with seats {answered:?}, PostgreSQL has {stored:?}"
            ));
        }
    }
    for op in ops {
        if op.kind != OpKind::GetBooking || op.outcome != Outcome::Ok {
            continue;
        }
        let Some(booking) = &op.booking else { continue };
        let Some(confirmed) = seen.confirmed.get(booking) else {
            continue;
        };
        if op.invoke_ms > confirmed.complete_ms
            && !matches!(
                op.state.as_deref(),
                Some("CONFIRMED" | "CANCELLING" | "CANCELLED")
            )
        {
            check.violation(format!(
                "{booking} was answered CONFIRMED at {} ms and read back as {:?} at {} ms",
                confirmed.complete_ms, op.state, op.invoke_ms
            ));
        }
    }
    checks.push(check);

    // 3. Inventory and bookings agree: no seat sold without a confirmed
    //    booking, no confirmed booking without its seats sold to it.
    let mut check = Check::new("inventory matches bookings");
    check.checked = client
        .query_one(
            "SELECT count(*) FROM inventory.tickets WHERE status = 'sold'",
            &[],
        )
        .await?
        .get::<_, i64>(0) as u64;
    for row in client
        .query(
            "SELECT t.event_id::text, t.seat_index, t.booking_id::text, coalesce(b.state, 'missing')
             FROM inventory.tickets t LEFT JOIN checkout.bookings b ON b.id = t.booking_id
             WHERE t.status = 'sold' AND b.state IS DISTINCT FROM 'confirmed'
             ORDER BY 3, 2",
            &[],
        )
        .await?
    {
        check.violation(format!(
            "stranded: event {} seat {} is sold to booking {} which is {}",
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
        ));
    }
    for row in client
        .query(
            "SELECT b.id::text, bt.seat_index, coalesce(t.status, 'missing'), t.booking_id::text
             FROM checkout.bookings b
             JOIN checkout.booking_tickets bt ON bt.booking_id = b.id
             LEFT JOIN inventory.tickets t ON t.event_id = b.event_id AND t.seat_index = bt.seat_index
             WHERE b.state = 'confirmed'
               AND (t.status IS DISTINCT FROM 'sold' OR t.booking_id IS DISTINCT FROM b.id)",
            &[],
        )
        .await?
    {
        check.violation(format!(
            "confirmed booking {} has seat {} {} (sold to {:?})",
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2),
            row.get::<_, Option<String>>(3)
        ));
    }
    checks.push(check);

    // 4. Nothing left half done: no booking pending (or confirming,
    //    cancelling) past its hold plus the reconciler's delay.
    let mut check = Check::new("no booking pending past its hold");
    check.checked = bookings.len() as u64;
    for row in client
        .query(
            "SELECT b.id::text, b.state, extract(epoch FROM now() - b.expire_time)::float8,
                    extract(epoch FROM now() - b.updated_at)::float8
             FROM checkout.bookings b WHERE b.state IN ('pending', 'confirming', 'cancelling')",
            &[],
        )
        .await?
    {
        check.violation(format!(
            "booking {} is still {} {:.0} s after its hold expired ({:.0} s after it last changed)",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, f64>(2),
            row.get::<_, f64>(3),
        ));
    }
    checks.push(check);

    // 5. Money, as checkout records it: each confirmed booking has one
    //    captured payment of its total, each refund matches, nothing is
    //    captured for a booking that sold nothing, and the sums agree.
    let mut check = Check::new("money balanced (checkout's records)");
    for row in client
        .query(
            "SELECT b.id::text, b.state, b.total_minor, b.refunded_minor,
                    (SELECT count(*) FROM checkout.payments p WHERE p.booking_id = b.id AND p.state = 'captured'),
                    (SELECT count(*) FROM checkout.payments p WHERE p.booking_id = b.id AND p.state = 'refunded'),
                    (SELECT coalesce(sum(p.amount_minor), 0)::bigint FROM checkout.payments p
                      WHERE p.booking_id = b.id AND p.state IN ('captured', 'refunded')),
                    (SELECT coalesce(sum(p.refunded_minor), 0)::bigint FROM checkout.payments p
                      WHERE p.booking_id = b.id AND p.state IN ('captured', 'refunded'))
             FROM checkout.bookings b",
            &[],
        )
        .await?
    {
        check.checked += 1;
        let id: String = row.get(0);
        let state: String = row.get(1);
        let (total, refunded): (i64, i64) = (row.get(2), row.get(3));
        let (captured, refunds): (i64, i64) = (row.get(4), row.get(5));
        let (paid, paid_back): (i64, i64) = (row.get(6), row.get(7));
        let fine = match state.as_str() {
            "confirmed" => captured == 1 && refunds == 0 && paid == total && paid_back == 0,
            "cancelled" if refunds > 0 => {
                captured == 0 && refunds == 1 && paid == total && paid_back == refunded
            }
            "cancelled" | "expired" => captured == 0 && refunds == 0 && refunded == 0,
            _ => true, // unsettled: reported by the check before
        };
        if !fine {
            check.violation(format!(
                "booking {id} is {state} (total {total}, refunded {refunded}) with {captured} captured and {refunds} refunded payments (paid {paid}, paid back {paid_back})"
            ));
        }
    }
    let sums = client
        .query_one(
            "SELECT
               (SELECT coalesce(sum(p.amount_minor - p.refunded_minor), 0)::bigint
                  FROM checkout.payments p JOIN checkout.bookings b ON b.id = p.booking_id
                 WHERE p.state IN ('captured', 'refunded')
                   AND b.state NOT IN ('pending', 'confirming', 'cancelling')),
               (SELECT coalesce(sum(total_minor - refunded_minor), 0)::bigint FROM checkout.bookings
                 WHERE state = 'confirmed' OR (state = 'cancelled' AND payment_id IS NOT NULL))",
            &[],
        )
        .await?;
    let (kept, owed): (i64, i64) = (sums.get(0), sums.get(1));
    if kept != owed {
        check.violation(format!(
            "payments kept {kept} in all, bookings account for {owed}"
        ));
    }
    for (booking, op) in &seen.cancelled {
        let Some(row) = booking_id(booking).and_then(|id| bookings.get(&id)) else {
            continue;
        };
        if op.refunded_minor.is_some_and(|r| r != row.refunded_minor) {
            check.violation(format!(
                "{booking}'s cancellation answered refunded {:?}, PostgreSQL has {}",
                op.refunded_minor, row.refunded_minor
            ));
        }
    }
    checks.push(check);

    // 5b. Money, as the provider records it: its durable ledger against
    //     checkout's bookings, payment by payment.
    checks.push(crate::provider::money_matches_provider(&client, provider).await?);

    // 6. A holder paused past its hold's expiry never confirms: no
    //    confirmation whose first try came after the hold had expired is
    //    answered CONFIRMED.
    let mut check = Check::new("no confirmation after the hold expired");
    let mut first_try: HashMap<&str, i64> = HashMap::new();
    for op in ops.iter().filter(|op| op.kind == OpKind::ConfirmBooking) {
        if let Some(key) = &op.key {
            let first = first_try.entry(key.as_str()).or_insert(op.invoke_unix_ms);
            *first = (*first).min(op.invoke_unix_ms);
        }
    }
    let mut keys_before_expiry: BTreeSet<&str> = BTreeSet::new();
    for op in ops.iter().filter(|op| op.kind == OpKind::ConfirmBooking) {
        let (Some(key), Some(booking)) = (&op.key, &op.booking) else {
            continue;
        };
        let Some(expire) = seen
            .booking_hold
            .get(booking)
            .and_then(|hold| seen.hold_expiry.get(hold))
        else {
            continue;
        };
        if first_try.get(key.as_str()).is_some_and(|t| t <= expire) {
            keys_before_expiry.insert(booking.as_str());
        }
    }
    for op in ops.iter().filter(|op| op.kind == OpKind::ConfirmBooking) {
        let (Some(key), Some(booking)) = (&op.key, &op.booking) else {
            continue;
        };
        let Some(expire) = seen
            .booking_hold
            .get(booking)
            .and_then(|hold| seen.hold_expiry.get(hold))
        else {
            continue;
        };
        let Some(first) = first_try.get(key.as_str()) else {
            continue;
        };
        if *first <= *expire || op.attempt != 1 {
            continue;
        }
        check.checked += 1;
        let confirmed = ops.iter().any(|other| {
            other.kind == OpKind::ConfirmBooking
                && other.key.as_ref() == Some(key)
                && other.state.as_deref() == Some("CONFIRMED")
        });
        // Another key of the same booking tried before the expiry may have
        // sold it; then this one's CONFIRMED is that sale's answer.
        if confirmed && !keys_before_expiry.contains(booking.as_str()) {
            check.violation(format!(
                "{booking} ({}) first tried {} ms after its hold expired and was answered CONFIRMED",
                op.process,
                first - expire
            ));
        }
    }
    checks.push(check);

    // 7. Recovery: after every fault something succeeded again.
    let mut check = Check::new("recovered after every fault");
    check.checked = faults.len() as u64;
    for fault in faults {
        if fault.first_ok_ms.is_none() {
            check.violation(format!(
                "nothing succeeded within {recovery_deadline:?} after healing {} at {} ms",
                fault.kind.label(),
                fault.heal_ms
            ));
        }
    }
    checks.push(check);

    // 8. Events: what checkout and inventory published, replayed, is what
    //    they store (an event is committed with its change, crash or not).
    checks.push(crate::events::checkout_events_match(&client).await?);
    checks.push(crate::events::inventory_events_match(&client).await?);
    // And a consumer of those events, killed with the rest, caught up.
    checks.push(crate::events::stats_match(&client, recovery_deadline).await?);

    Ok(checks)
}
