//! The door and ticket transfers in PostgreSQL. Every decision that must
//! happen once is one conditional statement: a scan id is claimed by its
//! primary key before anything is decided (a retry waits for the first and
//! reads its answer), a ticket is admitted by one `INSERT … ON CONFLICT DO
//! UPDATE … WHERE NOT inside` (never a read followed by a write), and the
//! ticket and booking rows a scan judges are share-locked until it commits,
//! so a cancellation or transfer cannot slip in between.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use super::postgres::{CheckoutStore, prepared};
use crate::domain::door::{Direction, Gate, Refusal, RevokedCode, TicketRef};
use crate::domain::ticket_code::TicketClaims;
use boxoffice_runtime::postgres::{DbContext as _, DbError, DbResult};

/// One scan as the service hands it to the store.
#[derive(Clone, Debug)]
pub struct ScanInput {
    pub scan_id: String,
    pub gate: Gate,
    pub code_sha256: Vec<u8>,
    pub direction: Direction,
    /// The scanner's clock for offline scans; online scans take the
    /// database's.
    pub offline_time: Option<DateTime<Utc>>,
    /// The code's claims, when its signature verified.
    pub claims: Option<TicketClaims>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanOutcome {
    Admitted,
    Exited,
    Refused(Refusal),
    /// An offline entry that lost to an earlier admission.
    Conflict,
}

/// A scan and the answer it got (the same for every retry).
#[derive(Clone, Debug, PartialEq)]
pub struct ScanRecord {
    pub scan_id: String,
    pub gate: Gate,
    pub outcome: ScanOutcome,
    pub ticket: Option<TicketRef>,
    pub used_gate: Option<String>,
    pub used_time: Option<DateTime<Utc>>,
    pub scan_time: DateTime<Utc>,
    pub offline: bool,
}

/// One side of a conflict.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanSide {
    pub scan_id: String,
    pub gate: Gate,
    pub scan_time: DateTime<Utc>,
    pub offline: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConflictRecord {
    pub id: i64,
    pub ticket: TicketRef,
    pub winner: ScanSide,
    pub loser: ScanSide,
    pub detected_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub enum Scanned {
    Answer(ScanRecord),
    /// The scan id was used before with another code, gate or direction.
    ScanIdReused,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DoorSettings {
    pub reentry_allowed: bool,
    pub doors_open_time: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateCounts {
    pub gate_id: String,
    pub admitted: i64,
    pub exited: i64,
    pub refused: i64,
    pub conflicts: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckInCounts {
    pub gates: Vec<GateCounts>,
    pub tickets_admitted: i64,
    pub tickets_inside: i64,
    pub conflicts: i64,
}

/// A ticket someone holds, with what its code is signed over.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldTicket {
    pub ticket: TicketRef,
    pub event_id: Uuid,
    pub section_id: Option<Uuid>,
    pub price_tier_id: Option<Uuid>,
    pub price_minor: i64,
    pub currency_code: String,
    pub nonce: Uuid,
    pub received: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferState {
    Pending,
    Accepted,
    Cancelled,
}

impl TransferState {
    fn parse(value: &str) -> DbResult<Self> {
        match value {
            "pending" => Ok(Self::Pending),
            "accepted" => Ok(Self::Accepted),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(DbError::Internal(anyhow::anyhow!(
                "unknown transfer state {other}"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TransferRecord {
    pub id: Uuid,
    pub ticket: TicketRef,
    pub event_id: Uuid,
    pub sender_id: Uuid,
    pub recipient_email: String,
    pub state: TransferState,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// Why a transfer could not be made or taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferRefusal {
    /// Not the caller's (or no such ticket / transfer).
    NotFound,
    /// The booking is not confirmed, or the ticket changed hands meanwhile.
    NotTransferable,
    AlreadyUsed,
    /// Another transfer of the ticket is open.
    Pending,
    NotPending(TransferState),
}

const TRANSFER_COLUMNS: &str = "id, booking_id, seat_index, event_id, sender_id, recipient_email, state, created_at, decided_at";

fn transfer_from_row(row: &Row) -> DbResult<TransferRecord> {
    let state: String = row.try_get("state")?;
    let seat_index: i32 = row.try_get("seat_index")?;
    Ok(TransferRecord {
        id: row.try_get("id")?,
        ticket: TicketRef {
            booking_id: row.try_get("booking_id")?,
            seat_index: seat_index as u32,
        },
        event_id: row.try_get("event_id")?,
        sender_id: row.try_get("sender_id")?,
        recipient_email: row.try_get("recipient_email")?,
        state: TransferState::parse(&state)?,
        created_at: row.try_get("created_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

const SCAN_COLUMNS: &str = "scan_id, event_id, gate, code_sha256, direction, offline, scan_time, booking_id, seat_index, outcome, refusal, used_gate, used_time";

fn scan_from_row(row: &Row) -> DbResult<ScanRecord> {
    let outcome: String = row.try_get("outcome")?;
    let refusal: Option<String> = row.try_get("refusal")?;
    let outcome = match (outcome.as_str(), refusal.as_deref()) {
        ("admitted", _) => ScanOutcome::Admitted,
        ("exited", _) => ScanOutcome::Exited,
        ("conflict", _) => ScanOutcome::Conflict,
        ("refused", Some(refusal)) => ScanOutcome::Refused(
            Refusal::parse(refusal)
                .ok_or_else(|| DbError::Internal(anyhow::anyhow!("unknown refusal {refusal}")))?,
        ),
        (other, _) => {
            return Err(DbError::Internal(anyhow::anyhow!(
                "unexpected scan outcome {other}"
            )));
        }
    };
    let booking_id: Option<Uuid> = row.try_get("booking_id")?;
    let seat_index: Option<i32> = row.try_get("seat_index")?;
    Ok(ScanRecord {
        scan_id: row.try_get("scan_id")?,
        gate: Gate {
            event_id: row.try_get("event_id")?,
            gate_id: row.try_get("gate")?,
        },
        outcome,
        ticket: booking_id
            .zip(seat_index)
            .map(|(booking_id, seat_index)| TicketRef {
                booking_id,
                seat_index: seat_index as u32,
            }),
        used_gate: row.try_get("used_gate")?,
        used_time: row.try_get("used_time")?,
        scan_time: row.try_get("scan_time")?,
        offline: row.try_get("offline")?,
    })
}

const CONFLICT_SELECT: &str = "SELECT c.id, c.event_id, c.booking_id, c.seat_index, c.detected_at,
        w.scan_id AS w_id, w.gate AS w_gate, w.scan_time AS w_time, w.offline AS w_offline,
        l.scan_id AS l_id, l.gate AS l_gate, l.scan_time AS l_time, l.offline AS l_offline
    FROM checkout.door_conflicts c
    JOIN checkout.door_scans w ON w.scan_id = c.winner_scan_id
    JOIN checkout.door_scans l ON l.scan_id = c.loser_scan_id";

fn conflict_from_row(row: &Row) -> DbResult<ConflictRecord> {
    let event_id: Uuid = row.try_get("event_id")?;
    let seat_index: i32 = row.try_get("seat_index")?;
    let side = |prefix: &str| -> DbResult<ScanSide> {
        Ok(ScanSide {
            scan_id: row.try_get(format!("{prefix}_id").as_str())?,
            gate: Gate {
                event_id,
                gate_id: row.try_get(format!("{prefix}_gate").as_str())?,
            },
            scan_time: row.try_get(format!("{prefix}_time").as_str())?,
            offline: row.try_get(format!("{prefix}_offline").as_str())?,
        })
    };
    Ok(ConflictRecord {
        id: row.try_get("id")?,
        ticket: TicketRef {
            booking_id: row.try_get("booking_id")?,
            seat_index: seat_index as u32,
        },
        winner: side("w")?,
        loser: side("l")?,
        detected_at: row.try_get("detected_at")?,
    })
}

/// What a decided scan writes.
struct Decision {
    outcome: ScanOutcome,
    ticket: Option<TicketRef>,
    used: Option<(String, DateTime<Utc>)>,
    /// (winner, loser) scan ids of a double admission found now.
    conflict: Option<(String, String)>,
}

impl Decision {
    fn refused(refusal: Refusal, ticket: Option<TicketRef>) -> Self {
        Self {
            outcome: ScanOutcome::Refused(refusal),
            ticket,
            used: None,
            conflict: None,
        }
    }
}

impl CheckoutStore {
    /// Decides one scan and stores its answer, in one transaction; a scan
    /// id seen before answers what it answered then.
    pub async fn scan(&self, input: &ScanInput) -> DbResult<Scanned> {
        let mut client = self.client().await?;
        let transaction = client.transaction().await.db_context("starting a scan")?;
        let claimed = transaction
            .query_opt(
                "INSERT INTO checkout.door_scans
                     (scan_id, event_id, gate, code_sha256, direction, offline, scan_time, outcome)
                 VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()), 'pending')
                 ON CONFLICT (scan_id) DO NOTHING
                 RETURNING scan_time",
                &[
                    &input.scan_id,
                    &input.gate.event_id,
                    &input.gate.gate_id,
                    &input.code_sha256,
                    &input.direction.as_str(),
                    &input.offline_time.is_some(),
                    &input.offline_time,
                ],
            )
            .await
            .db_context("claiming a scan id")?;
        let Some(claimed) = claimed else {
            // Seen before (a concurrent first attempt has committed by now:
            // the insert waited for it).
            let row = transaction
                .query_one(
                    &format!("SELECT {SCAN_COLUMNS} FROM checkout.door_scans WHERE scan_id = $1"),
                    &[&input.scan_id],
                )
                .await
                .db_context("reading a scan's answer")?;
            let code: Vec<u8> = row.try_get("code_sha256")?;
            let direction: String = row.try_get("direction")?;
            let offline: bool = row.try_get("offline")?;
            let record = scan_from_row(&row)?;
            if code != input.code_sha256
                || record.gate != input.gate
                || direction != input.direction.as_str()
                || offline != input.offline_time.is_some()
            {
                return Ok(Scanned::ScanIdReused);
            }
            return Ok(Scanned::Answer(record));
        };
        let scan_time: DateTime<Utc> = claimed.try_get("scan_time")?;
        let decision = decide(&transaction, input, scan_time).await?;
        let (outcome, refusal) = match decision.outcome {
            ScanOutcome::Admitted => ("admitted", None),
            ScanOutcome::Exited => ("exited", None),
            ScanOutcome::Conflict => ("conflict", None),
            ScanOutcome::Refused(refusal) => ("refused", Some(refusal.as_str())),
        };
        let (used_gate, used_time) = match &decision.used {
            Some((gate, time)) => (Some(gate.clone()), Some(*time)),
            None => (None, None),
        };
        let booking_id = decision.ticket.map(|ticket| ticket.booking_id);
        let seat_index = decision.ticket.map(|ticket| ticket.seat_index as i32);
        let row = transaction
            .query_one(
                &format!(
                    "UPDATE checkout.door_scans SET outcome = $2, refusal = $3, booking_id = $4,
                         seat_index = $5, used_gate = $6, used_time = $7
                     WHERE scan_id = $1 RETURNING {SCAN_COLUMNS}"
                ),
                &[
                    &input.scan_id,
                    &outcome,
                    &refusal,
                    &booking_id,
                    &seat_index,
                    &used_gate,
                    &used_time,
                ],
            )
            .await
            .db_context("recording a scan's answer")?;
        if let (Some((winner, loser)), Some(ticket)) = (&decision.conflict, decision.ticket) {
            transaction
                .execute(
                    "INSERT INTO checkout.door_conflicts (event_id, booking_id, seat_index, winner_scan_id, loser_scan_id)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (loser_scan_id) DO NOTHING",
                    &[
                        &input.gate.event_id,
                        &ticket.booking_id,
                        &(ticket.seat_index as i32),
                        winner,
                        loser,
                    ],
                )
                .await
                .db_context("recording a conflict")?;
        }
        let record = scan_from_row(&row)?;
        transaction.commit().await.db_context("committing a scan")?;
        Ok(Scanned::Answer(record))
    }

    pub async fn door_settings(&self, event_id: Uuid) -> DbResult<DoorSettings> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &prepared(
                    &client,
                    "SELECT reentry_allowed, doors_open_time FROM checkout.door_settings WHERE event_id = $1",
                )
                .await?,
                &[&event_id],
            )
            .await
            .db_context("reading door settings")?;
        Ok(match row {
            Some(row) => DoorSettings {
                reentry_allowed: row.try_get("reentry_allowed")?,
                doors_open_time: row.try_get("doors_open_time")?,
            },
            None => DoorSettings::default(),
        })
    }

    pub async fn set_door_settings(&self, event_id: Uuid, settings: &DoorSettings) -> DbResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO checkout.door_settings (event_id, reentry_allowed, doors_open_time)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (event_id) DO UPDATE SET reentry_allowed = EXCLUDED.reentry_allowed,
                     doors_open_time = EXCLUDED.doors_open_time, updated_at = now()",
                &[
                    &event_id,
                    &settings.reentry_allowed,
                    &settings.doors_open_time,
                ],
            )
            .await
            .db_context("writing door settings")?;
        Ok(())
    }

    /// Genuine codes of an event that admit nobody: cancelled bookings'
    /// and codes replaced by an accepted transfer. With the time the list
    /// is complete as of.
    pub async fn revoked_codes(
        &self,
        event_id: Uuid,
    ) -> DbResult<(Vec<RevokedCode>, DateTime<Utc>)> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.booking_id, t.seat_index, coalesce(t.code_nonce, b.payment_id) AS nonce,
                        'CANCELLED' AS reason, now() AS as_of
                 FROM checkout.bookings b JOIN checkout.booking_tickets t ON t.booking_id = b.id
                 WHERE b.event_id = $1 AND b.state IN ('cancelling', 'cancelled')
                   AND coalesce(t.code_nonce, b.payment_id) IS NOT NULL
                 UNION ALL
                 SELECT booking_id, seat_index, old_nonce, 'REPLACED', now()
                 FROM checkout.ticket_transfers WHERE event_id = $1 AND state = 'accepted'",
                &[&event_id],
            )
            .await
            .db_context("reading revoked codes")?;
        let mut as_of = Utc::now();
        let mut revoked = Vec::with_capacity(rows.len());
        for row in &rows {
            let seat_index: i32 = row.try_get("seat_index")?;
            let reason: &str = row.try_get("reason")?;
            as_of = row.try_get("as_of")?;
            revoked.push(RevokedCode {
                ticket: TicketRef {
                    booking_id: row.try_get("booking_id")?,
                    seat_index: seat_index as u32,
                },
                nonce: row.try_get("nonce")?,
                refusal: match reason {
                    "CANCELLED" => Refusal::Cancelled,
                    _ => Refusal::Replaced,
                },
            });
        }
        Ok((revoked, as_of))
    }

    /// Conflicts the given scans took part in.
    pub async fn conflicts_of(&self, scan_ids: &[String]) -> DbResult<Vec<ConflictRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{CONFLICT_SELECT} WHERE c.winner_scan_id = ANY($1) OR c.loser_scan_id = ANY($1) ORDER BY c.id"
                ),
                &[&scan_ids],
            )
            .await
            .db_context("reading conflicts of scans")?;
        rows.iter().map(conflict_from_row).collect()
    }

    /// An event's conflicts in the order they were found, after `after`.
    pub async fn conflicts(
        &self,
        event_id: Uuid,
        after: i64,
        limit: i64,
    ) -> DbResult<Vec<ConflictRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "{CONFLICT_SELECT} WHERE c.event_id = $1 AND c.id > $2 ORDER BY c.id LIMIT $3"
                ),
                &[&event_id, &after, &limit],
            )
            .await
            .db_context("listing conflicts")?;
        rows.iter().map(conflict_from_row).collect()
    }

    pub async fn check_in_counts(&self, event_id: Uuid) -> DbResult<CheckInCounts> {
        let client = self.client().await?;
        let gates = client
            .query(
                "SELECT gate,
                        count(*) FILTER (WHERE outcome = 'admitted') AS admitted,
                        count(*) FILTER (WHERE outcome = 'exited') AS exited,
                        count(*) FILTER (WHERE outcome = 'refused') AS refused,
                        count(*) FILTER (WHERE outcome = 'conflict') AS conflicts
                 FROM checkout.door_scans WHERE event_id = $1 GROUP BY gate ORDER BY gate",
                &[&event_id],
            )
            .await
            .db_context("counting scans per gate")?;
        let tickets = client
            .query_one(
                "SELECT count(*) AS admitted, count(*) FILTER (WHERE inside) AS inside,
                        (SELECT count(*) FROM checkout.door_conflicts WHERE event_id = $1) AS conflicts
                 FROM checkout.door_admissions WHERE event_id = $1",
                &[&event_id],
            )
            .await
            .db_context("counting admissions")?;
        Ok(CheckInCounts {
            gates: gates
                .iter()
                .map(|row| {
                    Ok(GateCounts {
                        gate_id: row.try_get("gate")?,
                        admitted: row.try_get("admitted")?,
                        exited: row.try_get("exited")?,
                        refused: row.try_get("refused")?,
                        conflicts: row.try_get("conflicts")?,
                    })
                })
                .collect::<DbResult<_>>()?,
            tickets_admitted: tickets.try_get("admitted")?,
            tickets_inside: tickets.try_get("inside")?,
            conflicts: tickets.try_get("conflicts")?,
        })
    }

    /// The tickets `user` holds: of their confirmed bookings, those not
    /// given away, and those transferred to them.
    pub async fn held_tickets(&self, user: Uuid, limit: i64) -> DbResult<Vec<HeldTicket>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.booking_id, t.seat_index, b.event_id, t.section_id, t.price_tier_id,
                        t.price_minor, b.currency_code,
                        coalesce(t.code_nonce, b.payment_id) AS nonce, t.holder_id IS NOT NULL AS received
                 FROM checkout.booking_tickets t JOIN checkout.bookings b ON b.id = t.booking_id
                 WHERE b.state = 'confirmed' AND b.payment_id IS NOT NULL
                   AND ((b.user_id = $1 AND t.holder_id IS NULL) OR t.holder_id = $1)
                 ORDER BY b.created_at DESC, t.booking_id, t.seat_index
                 LIMIT $2",
                &[&user, &limit],
            )
            .await
            .db_context("listing held tickets")?;
        rows.iter()
            .map(|row| {
                let seat_index: i32 = row.try_get("seat_index")?;
                let received: bool = row.try_get("received")?;
                Ok(HeldTicket {
                    ticket: TicketRef {
                        booking_id: row.try_get("booking_id")?,
                        seat_index: seat_index as u32,
                    },
                    event_id: row.try_get("event_id")?,
                    section_id: row.try_get("section_id")?,
                    price_tier_id: row.try_get("price_tier_id")?,
                    price_minor: row.try_get("price_minor")?,
                    currency_code: row.try_get("currency_code")?,
                    nonce: row.try_get("nonce")?,
                    received,
                })
            })
            .collect()
    }

    /// Offers `ticket` (held by `sender`) to `email`.
    pub async fn create_transfer(
        &self,
        id: Uuid,
        ticket: TicketRef,
        sender: Uuid,
        email: &str,
    ) -> DbResult<Result<TransferRecord, TransferRefusal>> {
        let mut client = self.client().await?;
        let transaction = client
            .transaction()
            .await
            .db_context("starting a transfer")?;
        let row = transaction
            .query_opt(
                "SELECT b.event_id, b.state, coalesce(t.holder_id, b.user_id) AS holder,
                        coalesce(t.code_nonce, b.payment_id) AS nonce,
                        EXISTS (SELECT 1 FROM checkout.door_admissions a
                                WHERE a.booking_id = t.booking_id AND a.seat_index = t.seat_index) AS used
                 FROM checkout.booking_tickets t JOIN checkout.bookings b ON b.id = t.booking_id
                 WHERE t.booking_id = $1 AND t.seat_index = $2
                 FOR UPDATE OF t",
                &[&ticket.booking_id, &(ticket.seat_index as i32)],
            )
            .await
            .db_context("reading a ticket to transfer")?;
        let Some(row) = row else {
            return Ok(Err(TransferRefusal::NotFound));
        };
        let holder: Uuid = row.try_get("holder")?;
        if holder != sender {
            return Ok(Err(TransferRefusal::NotFound));
        }
        let state: String = row.try_get("state")?;
        let nonce: Option<Uuid> = row.try_get("nonce")?;
        let Some(nonce) = nonce.filter(|_| state == "confirmed") else {
            return Ok(Err(TransferRefusal::NotTransferable));
        };
        if row.try_get::<_, bool>("used")? {
            return Ok(Err(TransferRefusal::AlreadyUsed));
        }
        let event_id: Uuid = row.try_get("event_id")?;
        let inserted = transaction
            .query_opt(
                &format!(
                    "INSERT INTO checkout.ticket_transfers
                         (id, booking_id, seat_index, event_id, sender_id, recipient_email, state, old_nonce)
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
                     ON CONFLICT DO NOTHING
                     RETURNING {TRANSFER_COLUMNS}"
                ),
                &[
                    &id,
                    &ticket.booking_id,
                    &(ticket.seat_index as i32),
                    &event_id,
                    &sender,
                    &email,
                    &nonce,
                ],
            )
            .await
            .db_context("inserting a transfer")?;
        let Some(inserted) = inserted else {
            return Ok(Err(TransferRefusal::Pending));
        };
        let record = transfer_from_row(&inserted)?;
        transaction
            .commit()
            .await
            .db_context("committing a transfer")?;
        Ok(Ok(record))
    }

    /// `recipient` (signed in with `email`) takes a pending transfer: the
    /// ticket becomes theirs with `new_nonce` as its code's nonce.
    pub async fn accept_transfer(
        &self,
        id: Uuid,
        recipient: Uuid,
        email: Option<&str>,
        new_nonce: Uuid,
    ) -> DbResult<Result<TransferRecord, TransferRefusal>> {
        let mut client = self.client().await?;
        let transaction = client
            .transaction()
            .await
            .db_context("starting an acceptance")?;
        let row = transaction
            .query_opt(
                &format!(
                    "SELECT {TRANSFER_COLUMNS}, old_nonce FROM checkout.ticket_transfers WHERE id = $1 FOR UPDATE"
                ),
                &[&id],
            )
            .await
            .db_context("reading a transfer")?;
        let Some(row) = row else {
            return Ok(Err(TransferRefusal::NotFound));
        };
        let transfer = transfer_from_row(&row)?;
        if email != Some(transfer.recipient_email.as_str()) {
            return Ok(Err(TransferRefusal::NotFound));
        }
        if transfer.state != TransferState::Pending {
            return Ok(Err(TransferRefusal::NotPending(transfer.state)));
        }
        let old_nonce: Uuid = row.try_get("old_nonce")?;
        // The booking row first: a cancellation checks the same column, so
        // either it sees this transfer or this sees it cancelled.
        let booking = transaction
            .execute(
                "UPDATE checkout.bookings SET transferred_tickets = transferred_tickets + 1, updated_at = now()
                 WHERE id = $1 AND state = 'confirmed'",
                &[&transfer.ticket.booking_id],
            )
            .await
            .db_context("marking a booking transferred")?;
        let moved = transaction
            .execute(
                "UPDATE checkout.booking_tickets t SET holder_id = $3, code_nonce = $4
                 FROM checkout.bookings b
                 WHERE b.id = t.booking_id AND t.booking_id = $1 AND t.seat_index = $2
                   AND coalesce(t.code_nonce, b.payment_id) = $5",
                &[
                    &transfer.ticket.booking_id,
                    &(transfer.ticket.seat_index as i32),
                    &recipient,
                    &new_nonce,
                    &old_nonce,
                ],
            )
            .await
            .db_context("handing a ticket over")?;
        if booking != 1 || moved != 1 {
            return Ok(Err(TransferRefusal::NotTransferable));
        }
        let row = transaction
            .query_one(
                &format!(
                    "UPDATE checkout.ticket_transfers
                     SET state = 'accepted', recipient_id = $2, new_nonce = $3, decided_at = now()
                     WHERE id = $1 RETURNING {TRANSFER_COLUMNS}"
                ),
                &[&id, &recipient, &new_nonce],
            )
            .await
            .db_context("accepting a transfer")?;
        let record = transfer_from_row(&row)?;
        transaction
            .commit()
            .await
            .db_context("committing an acceptance")?;
        Ok(Ok(record))
    }

    /// The sender withdraws a pending transfer.
    pub async fn cancel_transfer(
        &self,
        id: Uuid,
        sender: Uuid,
    ) -> DbResult<Result<TransferRecord, TransferRefusal>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "WITH cancelled AS (
                         UPDATE checkout.ticket_transfers SET state = 'cancelled', decided_at = now()
                         WHERE id = $1 AND sender_id = $2 AND state = 'pending'
                         RETURNING {TRANSFER_COLUMNS}, true AS changed
                     )
                     SELECT * FROM cancelled
                     UNION ALL
                     SELECT {TRANSFER_COLUMNS}, false FROM checkout.ticket_transfers
                     WHERE id = $1 AND sender_id = $2 AND NOT EXISTS (SELECT 1 FROM cancelled)"
                ),
                &[&id, &sender],
            )
            .await
            .db_context("cancelling a transfer")?;
        let Some(row) = row else {
            return Ok(Err(TransferRefusal::NotFound));
        };
        let record = transfer_from_row(&row)?;
        if row.try_get::<_, bool>("changed")? {
            Ok(Ok(record))
        } else {
            Ok(Err(TransferRefusal::NotPending(record.state)))
        }
    }

    /// Transfers `user` sent or that are addressed to `email`, newest first.
    pub async fn transfers_of(
        &self,
        user: Uuid,
        email: Option<&str>,
        limit: i64,
    ) -> DbResult<Vec<TransferRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {TRANSFER_COLUMNS} FROM checkout.ticket_transfers
                     WHERE sender_id = $1 OR recipient_email = $2
                     ORDER BY created_at DESC, id DESC LIMIT $3"
                ),
                &[&user, &email, &limit],
            )
            .await
            .db_context("listing transfers")?;
        rows.iter().map(transfer_from_row).collect()
    }
}

/// Judges a claimed scan inside its transaction.
async fn decide(
    transaction: &deadpool_postgres::Transaction<'_>,
    input: &ScanInput,
    scan_time: DateTime<Utc>,
) -> DbResult<Decision> {
    let Some(claims) = &input.claims else {
        return Ok(Decision::refused(Refusal::Forged, None));
    };
    let ticket = TicketRef {
        booking_id: claims.booking_id,
        seat_index: claims.seat_index,
    };
    if claims.event_id != input.gate.event_id {
        return Ok(Decision::refused(Refusal::WrongEvent, Some(ticket)));
    }
    let seat_index = claims.seat_index as i32;
    // Share locks: a cancellation or a transfer of this ticket waits until
    // this scan has committed (and a scan waits for them).
    let row = transaction
        .query_opt(
            "SELECT b.state, coalesce(t.code_nonce, b.payment_id) AS nonce,
                    s.reentry_allowed, s.doors_open_time
             FROM checkout.booking_tickets t
             JOIN checkout.bookings b ON b.id = t.booking_id
             LEFT JOIN checkout.door_settings s ON s.event_id = b.event_id
             WHERE t.booking_id = $1 AND t.seat_index = $2 AND b.event_id = $3
             FOR SHARE OF t, b",
            &[&claims.booking_id, &seat_index, &claims.event_id],
        )
        .await
        .db_context("reading a scanned ticket")?;
    // A well-signed code for a ticket that never existed: only a leaked
    // key makes one.
    let Some(row) = row else {
        return Ok(Decision::refused(Refusal::Forged, None));
    };
    let state: String = row.try_get("state")?;
    let nonce: Option<Uuid> = row.try_get("nonce")?;
    if state != "confirmed" {
        return Ok(Decision::refused(Refusal::Cancelled, Some(ticket)));
    }
    if nonce != Some(claims.nonce) {
        return Ok(Decision::refused(Refusal::Replaced, Some(ticket)));
    }
    let reentry: bool = row
        .try_get::<_, Option<bool>>("reentry_allowed")?
        .unwrap_or(false);
    let opens: Option<DateTime<Utc>> = row.try_get("doors_open_time")?;
    if opens.is_some_and(|opens| scan_time < opens) {
        return Ok(Decision::refused(Refusal::NotYetOpen, Some(ticket)));
    }
    let ticket_params = [
        &claims.booking_id as &(dyn tokio_postgres::types::ToSql + Sync),
        &seat_index,
    ];
    match input.direction {
        Direction::Exit if !reentry => {
            Ok(Decision::refused(Refusal::ReentryNotAllowed, Some(ticket)))
        }
        Direction::Exit => {
            let left = transaction
                .execute(
                    "UPDATE checkout.door_admissions SET inside = false
                     WHERE booking_id = $1 AND seat_index = $2 AND inside",
                    &ticket_params,
                )
                .await
                .db_context("letting a ticket out")?;
            Ok(match left {
                1 => Decision {
                    outcome: ScanOutcome::Exited,
                    ticket: Some(ticket),
                    used: None,
                    conflict: None,
                },
                _ => Decision::refused(Refusal::NotInside, Some(ticket)),
            })
        }
        Direction::Entry => {
            // The one statement that admits: a new row, or (with re-entry)
            // a row that is outside. Concurrent scans of the ticket queue
            // on its key; exactly one of them finds it admissible.
            let admitted = transaction
                .query_opt(
                    "INSERT INTO checkout.door_admissions (booking_id, seat_index, event_id, inside,
                         first_gate, first_time, last_scan_id, last_gate, last_time)
                     VALUES ($1, $2, $3, true, $4, $5, $6, $4, $5)
                     ON CONFLICT (booking_id, seat_index) DO UPDATE SET inside = true,
                         entries = door_admissions.entries + 1, last_scan_id = EXCLUDED.last_scan_id,
                         last_gate = EXCLUDED.last_gate, last_time = EXCLUDED.last_time
                     WHERE NOT door_admissions.inside AND $7
                     RETURNING entries",
                    &[
                        &claims.booking_id,
                        &seat_index,
                        &claims.event_id,
                        &input.gate.gate_id,
                        &scan_time,
                        &input.scan_id,
                        &reentry,
                    ],
                )
                .await
                .db_context("admitting a ticket")?;
            if admitted.is_some() {
                return Ok(Decision {
                    outcome: ScanOutcome::Admitted,
                    ticket: Some(ticket),
                    used: None,
                    conflict: None,
                });
            }
            // Locked by the statement above until this commits.
            let current = transaction
                .query_one(
                    "SELECT first_gate, first_time, last_scan_id, last_gate, last_time
                     FROM checkout.door_admissions WHERE booking_id = $1 AND seat_index = $2",
                    &ticket_params,
                )
                .await
                .db_context("reading an admission")?;
            let last_scan: String = current.try_get("last_scan_id")?;
            let last_gate: String = current.try_get("last_gate")?;
            let last_time: DateTime<Utc> = current.try_get("last_time")?;
            if input.offline_time.is_none() {
                let used = if reentry {
                    (last_gate, last_time)
                } else {
                    (
                        current.try_get("first_gate")?,
                        current.try_get("first_time")?,
                    )
                };
                return Ok(Decision {
                    outcome: ScanOutcome::Refused(Refusal::AlreadyUsed),
                    ticket: Some(ticket),
                    used: Some(used),
                    conflict: None,
                });
            }
            // An offline scanner let someone in on a ticket another scan
            // admitted too: the earlier scan wins.
            if scan_time < last_time {
                transaction
                    .execute(
                        "UPDATE checkout.door_admissions SET last_scan_id = $3, last_gate = $4, last_time = $5,
                             first_gate = CASE WHEN $5 < first_time THEN $4 ELSE first_gate END,
                             first_time = least(first_time, $5)
                         WHERE booking_id = $1 AND seat_index = $2",
                        &[
                            &claims.booking_id,
                            &seat_index,
                            &input.scan_id,
                            &input.gate.gate_id,
                            &scan_time,
                        ],
                    )
                    .await
                    .db_context("moving an admission to an earlier scan")?;
                Ok(Decision {
                    outcome: ScanOutcome::Admitted,
                    ticket: Some(ticket),
                    used: None,
                    conflict: Some((input.scan_id.clone(), last_scan)),
                })
            } else {
                Ok(Decision {
                    outcome: ScanOutcome::Conflict,
                    ticket: Some(ticket),
                    used: Some((last_gate, last_time)),
                    conflict: Some((last_scan, input.scan_id.clone())),
                })
            }
        }
    }
}
