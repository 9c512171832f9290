//! CommitHold's group commit. Commits arriving together are decided as one
//! batch: the holds' records are read from Redis in one call per event,
//! the sales go to PostgreSQL in one statement (as many as can share it),
//! and the sold holds are mirrored back into Redis in one call per event.
//! So a batch costs three round trips whatever its size, where one commit
//! alone used to cost three of its own. Each commit still gets its own
//! answer, decided exactly as it would be alone: by its hold's record, then
//! by PostgreSQL, which alone decides what is sold.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use uuid::Uuid;

use crate::domain::{Hold, HoldRef, HoldState};
use crate::error::InventoryError;
use crate::store::postgres::{CommitOutcome, Sale, TicketStore};
use crate::store::redis::{HoldStore, SoldHold};

type Result<T> = std::result::Result<T, InventoryError>;

/// One CommitHold as queued for a batch.
#[derive(Clone, Debug)]
pub(crate) struct CommitRequest {
    pub hold: HoldRef,
    pub booking_id: Uuid,
    pub sale_id: Option<Uuid>,
    pub owner: Uuid,
}

/// What a batch found for one commit; the service turns it into the RPC's
/// answer (the rare follow-ups, like reading which seats were sold to
/// someone else, happen there, outside the batch).
#[derive(Debug)]
pub(crate) enum CommitAnswer {
    /// Redis has no record of the hold (its tombstone is gone or Redis
    /// lost it): PostgreSQL may still know it sold.
    NoRecord,
    /// Decided by the hold's record alone: someone else's hold, one that
    /// ended, or one already committed to this booking (a retry).
    Decided(Result<Hold>),
    /// The sale statement's outcome for the hold's seats; a committed hold
    /// has been marked sold in Redis (best effort).
    Sold {
        record: Hold,
        outcome: CommitOutcome,
    },
}

/// Decides a batch of commits; one answer per request, in order.
pub(crate) async fn commit_batch(
    holds: &HoldStore,
    tickets: &TicketStore,
    margin: Duration,
    requests: Vec<CommitRequest>,
) -> Vec<anyhow::Result<CommitAnswer>> {
    let mut answers: Vec<Option<CommitAnswer>> = requests.iter().map(|_| None).collect();

    // One Redis read per event (each event's keys are one slot).
    let mut by_event: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (place, request) in requests.iter().enumerate() {
        by_event
            .entry(request.hold.event_id)
            .or_default()
            .push(place);
    }
    let reads = join_all(by_event.iter().map(|(event_id, places)| {
        let ids: Vec<Uuid> = places.iter().map(|&p| requests[p].hold.hold_id).collect();
        async move { holds.get_holds(*event_id, &ids).await }
    }))
    .await;

    let mut selling: Vec<(usize, Hold)> = Vec::new();
    let mut sales: Vec<Sale> = Vec::new();
    for ((_, places), read) in by_event.iter().zip(reads) {
        let found = match read {
            Ok((found, _now)) => found,
            Err(error) => {
                let message = format!("{error:#}");
                for &place in places {
                    answers[place] = Some(CommitAnswer::Decided(Err(InventoryError::Unavailable(
                        anyhow::anyhow!("reading holds from redis: {message}"),
                    ))));
                }
                continue;
            }
        };
        for (&place, record) in places.iter().zip(found) {
            let request = &requests[place];
            match decide_from_record(request, record) {
                Step::Sell(record) => match Sale::new(
                    request.hold,
                    &record.seats,
                    request.booking_id,
                    request.sale_id,
                    crate::service::millis_to_time(record.expires_ms),
                    margin,
                ) {
                    Ok(sale) => {
                        sales.push(sale);
                        selling.push((place, record));
                    }
                    Err(error) => answers[place] = Some(CommitAnswer::Decided(Err(error))),
                },
                Step::Answer(answer) => answers[place] = Some(answer),
            }
        }
    }

    let outcomes = if sales.is_empty() {
        Vec::new()
    } else {
        tickets.sell(sales).await
    };

    // Mirror what PostgreSQL sold into Redis, one call per event.
    let mut sold_by_event: BTreeMap<Uuid, Vec<SoldHold<'_>>> = BTreeMap::new();
    for ((place, record), outcome) in selling.iter().zip(&outcomes) {
        if matches!(
            outcome,
            Ok(CommitOutcome::Committed | CommitOutcome::AlreadyCommitted)
        ) {
            let request = &requests[*place];
            sold_by_event
                .entry(request.hold.event_id)
                .or_default()
                .push(SoldHold {
                    hold_id: request.hold.hold_id,
                    booking_id: request.booking_id,
                    sale_id: request.sale_id,
                    seats: &record.seats,
                });
        }
    }
    let marks = join_all(
        sold_by_event
            .iter()
            .map(|(event_id, sold)| holds.mark_holds_sold(*event_id, sold)),
    )
    .await;
    for ((event_id, sold), marked) in sold_by_event.iter().zip(marks) {
        if let Err(error) = marked {
            // PostgreSQL has sold them; Redis catches up on the next
            // refused hold of these seats or the next rebuild.
            tracing::warn!(error = format!("{error:#}"), %event_id, holds = sold.len(), "could not mark seats sold in redis");
        }
    }
    drop(sold_by_event);

    for ((place, record), outcome) in selling.into_iter().zip(outcomes) {
        answers[place] = Some(match outcome {
            Ok(outcome) => CommitAnswer::Sold { record, outcome },
            Err(error) => CommitAnswer::Decided(Err(error)),
        });
    }
    answers
        .into_iter()
        .map(|answer| answer.ok_or_else(|| anyhow::anyhow!("a commit got no answer")))
        .collect()
}

/// What a hold's record decides before PostgreSQL is asked.
enum Step {
    /// The hold is active and the caller's: sell its seats.
    Sell(Hold),
    /// The record alone answers.
    Answer(CommitAnswer),
}

fn decide_from_record(request: &CommitRequest, record: Option<Hold>) -> Step {
    let record = match record {
        None => return Step::Answer(CommitAnswer::NoRecord),
        Some(record) if record.owner != request.owner => {
            return Step::Answer(CommitAnswer::Decided(Err(InventoryError::HoldNotFound)));
        }
        Some(record) => record,
    };
    // A commit without a sale id (or one recorded without) matches any.
    let same_sale =
        request.sale_id.is_none() || record.sale_id.is_none() || record.sale_id == request.sale_id;
    let decided = match record.state {
        HoldState::Active => return Step::Sell(record),
        HoldState::Committed if record.booking_id == Some(request.booking_id) && same_sale => {
            Ok(record)
        }
        HoldState::Committed => Err(InventoryError::HoldAlreadyCommitted),
        HoldState::Expired => Err(InventoryError::HoldExpired),
        HoldState::Released => Err(InventoryError::HoldReleased),
    };
    Step::Answer(CommitAnswer::Decided(decided))
}
