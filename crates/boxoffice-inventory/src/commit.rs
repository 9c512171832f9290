//! CommitHold's group commit, in three stages that each batch on their own:
//! the holds' records are read from Redis (one call per event), the sales go
//! to PostgreSQL (one statement for as many as can share it, see
//! [`TicketStore::commit`]), and the sold holds are mirrored back into Redis
//! (one call per event). While one sale statement runs, the next batch's
//! records are being read and the last batch's marks written, so the sale,
//! the slowest stage, never waits for Redis and gathers whatever arrived
//! meanwhile. Each commit still gets its own answer, decided exactly as it
//! would be alone: by its hold's record, then by PostgreSQL, which alone
//! decides what is sold. (A retried commit may read its hold before the
//! earlier attempt's mark lands; PostgreSQL then answers "already sold to
//! this booking", as it does after a crash.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use boxoffice_runtime::batch::Batcher;
use futures::future::join_all;
use uuid::Uuid;

use crate::domain::{Hold, HoldRef, HoldState, millis_to_time};
use crate::error::InventoryError;
use crate::store::postgres::{CommitOutcome, TicketStore};
use crate::store::redis::{HoldStore, SoldHold};

type Result<T> = std::result::Result<T, InventoryError>;

/// One CommitHold.
#[derive(Clone, Debug)]
pub(crate) struct CommitRequest {
    pub hold: HoldRef,
    pub booking_id: Uuid,
    pub sale_id: Option<Uuid>,
    pub owner: Uuid,
}

/// What the stages found for one commit; the service turns it into the
/// RPC's answer (the rare follow-ups, like reading which seats were sold
/// to someone else, happen there).
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

/// The Redis stages' batch writers (the sale stage is the ticket store's).
pub(crate) struct CommitStages {
    reads: Batcher<HoldRef, Option<Hold>>,
    marks: Batcher<SoldHold, ()>,
}

impl CommitStages {
    /// Starts the stages' tasks; they end with the last handle.
    pub(crate) fn start(holds: Arc<HoldStore>) -> Self {
        let reader = holds.clone();
        Self {
            reads: Batcher::spawn(move |refs| {
                let holds = reader.clone();
                async move { read_holds(&holds, refs).await }
            }),
            marks: Batcher::spawn(move |sold| {
                let holds = holds.clone();
                async move { mark_sold(&holds, sold).await }
            }),
        }
    }

    /// Decides one commit: its hold's record, then the sale, then the mark.
    pub(crate) async fn commit(
        &self,
        tickets: &TicketStore,
        margin: Duration,
        request: CommitRequest,
    ) -> CommitAnswer {
        let record = match self.reads.submit(request.hold).await {
            Ok(record) => record,
            Err(error) => {
                return CommitAnswer::Decided(Err(InventoryError::Unavailable(
                    error.context("reading the hold from redis"),
                )));
            }
        };
        let record = match decide_from_record(&request, record) {
            Step::Sell(record) => record,
            Step::Answer(answer) => return answer,
        };
        let outcome = match tickets
            .commit(
                request.hold,
                &record.seats,
                request.booking_id,
                request.sale_id,
                millis_to_time(record.expires_ms),
                margin,
            )
            .await
        {
            Ok(outcome) => outcome,
            Err(error) => return CommitAnswer::Decided(Err(error)),
        };
        if matches!(
            outcome,
            CommitOutcome::Committed | CommitOutcome::AlreadyCommitted
        ) {
            let sold = SoldHold {
                event_id: request.hold.event_id,
                hold_id: request.hold.hold_id,
                booking_id: request.booking_id,
                sale_id: request.sale_id,
                seats: record.seats.clone(),
            };
            if let Err(error) = self.marks.submit(sold).await {
                // PostgreSQL has sold them; Redis catches up on the next
                // refused hold of these seats or the next rebuild.
                tracing::warn!(error = format!("{error:#}"), event_id = %request.hold.event_id, "could not mark seats sold in redis");
            }
        }
        CommitAnswer::Sold { record, outcome }
    }
}

/// Positions of `items` grouped by event (each event's keys are one slot,
/// so one script call serves all of an event's items).
fn by_event<T>(items: &[T], event_of: impl Fn(&T) -> Uuid) -> BTreeMap<Uuid, Vec<usize>> {
    let mut by_event: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (place, item) in items.iter().enumerate() {
        by_event.entry(event_of(item)).or_default().push(place);
    }
    by_event
}

/// The read stage: the records of a batch's holds, one call per event.
async fn read_holds(holds: &HoldStore, refs: Vec<HoldRef>) -> Vec<anyhow::Result<Option<Hold>>> {
    let groups = by_event(&refs, |hold| hold.event_id);
    let reads = join_all(groups.iter().map(|(event_id, places)| {
        let ids: Vec<Uuid> = places.iter().map(|&p| refs[p].hold_id).collect();
        async move { holds.get_holds(*event_id, &ids).await }
    }))
    .await;
    let mut answers: Vec<Option<anyhow::Result<Option<Hold>>>> =
        refs.iter().map(|_| None).collect();
    for ((_, places), read) in groups.iter().zip(reads) {
        match read {
            Ok((found, _now)) => {
                for (&place, record) in places.iter().zip(found) {
                    answers[place] = Some(Ok(record));
                }
            }
            Err(error) => {
                let message = format!("{error:#}");
                for &place in places {
                    answers[place] = Some(Err(anyhow::anyhow!("{message}")));
                }
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.unwrap_or_else(|| Err(anyhow::anyhow!("a hold read got no answer"))))
        .collect()
}

/// The mark stage: what PostgreSQL sold, mirrored into Redis, one call per
/// event.
async fn mark_sold(holds: &HoldStore, sold: Vec<SoldHold>) -> Vec<anyhow::Result<()>> {
    let groups = by_event(&sold, |hold| hold.event_id);
    let marks = join_all(groups.iter().map(|(event_id, places)| {
        let event_sold: Vec<&SoldHold> = places.iter().map(|&p| &sold[p]).collect();
        async move { holds.mark_holds_sold(*event_id, &event_sold).await }
    }))
    .await;
    let mut answers: Vec<anyhow::Result<()>> = sold.iter().map(|_| Ok(())).collect();
    for ((_, places), marked) in groups.iter().zip(marks) {
        if let Err(error) = marked {
            let message = format!("{error:#}");
            for &place in places {
                answers[place] = Err(anyhow::anyhow!("{message}"));
            }
        }
    }
    answers
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
