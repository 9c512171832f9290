//! The `notify` consumer group: turns the catalog's, checkout's,
//! accounts', inventory's (waitlist offers) and webhooks' (a disabled
//! endpoint, to its admin) events into messages to send. A batch is applied in one
//! transaction that also records its event ids as processed
//! (`first_times`), so each domain event makes its messages once, however
//! often it is delivered; the sender only ever sends recorded messages
//! (record before send). A confirmation's ticket codes are read from
//! checkout (as the booking's owner) before the transaction: a checkout
//! that cannot be reached holds the stream back rather than losing a mail.

use std::collections::HashSet;
use std::sync::Arc;

use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::events::v1 as pb;
use boxoffice_events::{HandleError, Handler, Payload, Received};
use boxoffice_runtime::identity::Caller;
use boxoffice_runtime::transport::Transport;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::StreamExt as _;
use uuid::Uuid;

use crate::message::{Facts, MoneyFacts, TicketFacts};
use crate::store::{self, EventRow, SCHEMA};

pub(crate) const GROUP: &str = "notify";
pub(crate) const STREAMS: &[&str] = &["catalog", "checkout", "accounts", "inventory", "webhooks"];

/// Ticket codes read from checkout at once, per batch.
const FETCH_CONCURRENCY: usize = 32;

#[derive(Debug)]
enum Change {
    Recipient {
        user_id: Uuid,
        email: String,
        name: String,
    },
    Erased {
        user_id: Uuid,
    },
    Event {
        row: EventRow,
        what: EventChange,
        reason: String,
    },
    Confirmed {
        booking_id: Uuid,
        user_id: Uuid,
        event_id: Uuid,
    },
    Cancelled {
        booking_id: Uuid,
        user_id: Uuid,
        event_id: Uuid,
        reason: String,
    },
    Refunded {
        booking_id: Uuid,
        amount: MoneyFacts,
    },
    WaitlistOffer {
        user_id: Uuid,
        event_id: Uuid,
        hold: String,
        seats: u32,
        expires_at: Option<DateTime<Utc>>,
    },
    EndpointDisabled {
        admin_user_id: Uuid,
        endpoint_id: Uuid,
        url: String,
        reason: String,
        disabled_at: Option<DateTime<Utc>>,
    },
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventChange {
    Created,
    Changed,
    Published,
    Cancelled,
    /// Only its performers' rating changed: kept, nobody is told.
    Rated,
}

fn uuid(field: &str, text: &str) -> Result<Uuid, String> {
    Uuid::parse_str(text).map_err(|_| format!("{field} {text:?} is not a UUID"))
}

fn time(timestamp: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    timestamp.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
}

fn event_change(snapshot: Option<&pb::EventSnapshot>, what: EventChange) -> Result<Change, String> {
    let snapshot = snapshot.ok_or("an event event without its snapshot")?;
    let status = match pb::EventStatus::try_from(snapshot.status) {
        Ok(pb::EventStatus::Published) => "published",
        Ok(pb::EventStatus::Cancelled) => "cancelled",
        _ => "draft",
    };
    let performer_ids = snapshot
        .performers
        .iter()
        .map(|performer| uuid("performer id", &performer.id))
        .collect::<Result<Vec<_>, _>>()?;
    let performers = snapshot
        .performers
        .iter()
        .map(|performer| performer.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let venue = snapshot.venue.clone().unwrap_or_default();
    Ok(Change::Event {
        row: EventRow {
            id: uuid("event id", &snapshot.id)?,
            title: snapshot.title.clone(),
            start_time: time(snapshot.start_time.as_ref()),
            venue: venue.name,
            city: venue.city,
            performer_ids,
            performers,
            status: status.to_owned(),
            version: snapshot.version,
        },
        what,
        reason: snapshot.cancel_reason.clone(),
    })
}

fn money(money: Option<&pb::Money>) -> MoneyFacts {
    let money = money.cloned().unwrap_or_default();
    MoneyFacts {
        currency: money.currency_code,
        amount_minor: money.amount_minor,
    }
}

/// What `received` changes here; `Err` is a reason to dead-letter it.
fn change_of(received: &Received) -> Result<Change, String> {
    Ok(match received.payload() {
        Some(Payload::UserRegistered(e)) => Change::Recipient {
            user_id: uuid("user id", &e.user_id)?,
            email: e.email.clone(),
            name: e.display_name.clone(),
        },
        Some(Payload::UserErased(e)) => Change::Erased {
            user_id: uuid("user id", &e.user_id)?,
        },
        Some(Payload::EventCreated(e)) => event_change(e.event.as_ref(), EventChange::Created)?,
        Some(Payload::EventChanged(e)) => event_change(e.event.as_ref(), EventChange::Changed)?,
        Some(Payload::EventPublished(e)) => event_change(e.event.as_ref(), EventChange::Published)?,
        Some(Payload::EventCancelled(e)) => event_change(e.event.as_ref(), EventChange::Cancelled)?,
        Some(Payload::EventRated(e)) => event_change(e.event.as_ref(), EventChange::Rated)?,
        Some(Payload::BookingConfirmed(e)) => Change::Confirmed {
            booking_id: uuid("booking id", &e.booking_id)?,
            user_id: uuid("user id", &e.user_id)?,
            event_id: uuid("event id", &e.event_id)?,
        },
        Some(Payload::BookingCancelled(e)) => Change::Cancelled {
            booking_id: uuid("booking id", &e.booking_id)?,
            user_id: uuid("user id", &e.user_id)?,
            event_id: uuid("event id", &e.event_id)?,
            reason: e.reason.clone(),
        },
        Some(Payload::RefundIssued(e)) => Change::Refunded {
            booking_id: uuid("booking id", &e.booking_id)?,
            amount: money(e.amount.as_ref()),
        },
        Some(Payload::WaitlistOfferMade(e)) => Change::WaitlistOffer {
            user_id: uuid("user id", &e.user_id)?,
            event_id: uuid("event id", &e.event_id)?,
            hold: e.hold.clone(),
            seats: e.seat_indexes.len() as u32,
            expires_at: time(e.expire_time.as_ref()),
        },
        // An endpoint registered without a known admin mails nobody.
        Some(Payload::WebhookEndpointDisabled(e)) if !e.admin_user_id.is_empty() => {
            Change::EndpointDisabled {
                admin_user_id: uuid("admin user id", &e.admin_user_id)?,
                endpoint_id: uuid("endpoint id", &e.endpoint_id)?,
                url: e.url.clone(),
                reason: e.reason.clone(),
                disabled_at: time(e.disabled_time.as_ref()),
            }
        }
        _ => Change::Nothing,
    })
}

/// A confirmed booking's tickets, as the confirmation mail lists them.
#[derive(Debug)]
struct Tickets {
    tickets: Vec<TicketFacts>,
    total: MoneyFacts,
}

/// Why the tickets of a booking could not be read.
enum FetchError {
    /// Checkout is down or slow: wait and try again.
    Unavailable(anyhow::Error),
    /// Checkout answered with an error that will not go away.
    Failed(anyhow::Error),
}

pub(crate) struct NotifyHandler {
    pool: Pool,
    checkout: Transport,
    /// Wakes this process's sender once messages are recorded.
    wake: Arc<tokio::sync::Notify>,
}

impl NotifyHandler {
    pub(crate) fn new(pool: Pool, checkout: Transport, wake: Arc<tokio::sync::Notify>) -> Self {
        Self {
            pool,
            checkout,
            wake,
        }
    }

    /// Which of `ids` this group has already applied.
    async fn processed(&self, ids: &[Uuid]) -> anyhow::Result<HashSet<Uuid>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT event_id FROM notify.event_processed
                  WHERE consumer_group = $1 AND event_id = ANY($2)",
                &[&GROUP, &ids],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The booking's tickets with their codes, read as its owner sees
    /// them (a ticket given away since is not the buyer's to show).
    /// `None` when checkout no longer has the booking.
    async fn tickets(
        &self,
        booking_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Tickets>, FetchError> {
        let mut client = CheckoutServiceClient::new(self.checkout.clone());
        let mut request = tonic::Request::new(checkout_pb::GetBookingRequest {
            name: format!("bookings/{booking_id}"),
        });
        Caller::user(user_id, &[boxoffice_contracts::role::CUSTOMER])
            .write_to(request.metadata_mut());
        let booking = match client.get_booking(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => {
                let error = anyhow::anyhow!("reading a booking from checkout: {:?}", status.code());
                return Err(match status.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown => FetchError::Unavailable(error),
                    _ => FetchError::Failed(error),
                });
            }
        };
        let tickets = booking
            .tickets
            .iter()
            .filter(|ticket| !ticket.code.is_empty())
            .enumerate()
            .map(|(index, ticket)| TicketFacts {
                label: format!("Ticket {} (place {})", index + 1, ticket.seat_index + 1),
                code: ticket.code.clone(),
            })
            .collect();
        let total = booking.total.unwrap_or_default();
        Ok(Some(Tickets {
            tickets,
            total: MoneyFacts {
                currency: total.currency_code,
                amount_minor: total.amount_minor,
            },
        }))
    }
}

/// A booking confirmation as the store records it; `None` for any other
/// change.
fn confirmation<'a>(
    source: Uuid,
    change: &Change,
    tickets: Option<&'a Tickets>,
) -> Option<store::Confirmation<'a>> {
    let Change::Confirmed {
        booking_id,
        user_id,
        event_id,
    } = change
    else {
        return None;
    };
    Some(store::Confirmation {
        source_event_id: source,
        booking_id: *booking_id,
        user_id: *user_id,
        event_id: *event_id,
        mail: tickets.map(|tickets| (tickets.tickets.as_slice(), &tickets.total)),
    })
}

async fn apply(
    transaction: &deadpool_postgres::Transaction<'_>,
    source: Uuid,
    change: &Change,
    tickets: Option<&Tickets>,
) -> anyhow::Result<()> {
    match change {
        Change::Recipient {
            user_id,
            email,
            name,
        } => store::upsert_recipient(transaction, *user_id, email, name).await?,
        Change::Erased { user_id } => store::erase_recipient(transaction, *user_id).await?,
        Change::Event { row, what, reason } => {
            let before = store::event(transaction, row.id).await?;
            let newer = before.as_ref().is_none_or(|old| old.version < row.version);
            store::upsert_event(transaction, row).await?;
            if !newer {
                return Ok(());
            }
            match what {
                EventChange::Created | EventChange::Rated => {}
                EventChange::Changed => {
                    let moved = before.as_ref().is_some_and(|old| {
                        old.start_time != row.start_time
                            || old.venue != row.venue
                            || old.city != row.city
                    });
                    if moved && row.status == "published" {
                        let facts = Facts::EventChanged { event: row.facts() };
                        for user in store::attendees_of(transaction, row.id).await? {
                            store::insert_message(transaction, source, user, &facts).await?;
                        }
                    }
                }
                EventChange::Published => {
                    if !row.performer_ids.is_empty() {
                        let facts = Facts::EventAnnounced {
                            event: row.facts(),
                            performers: row.performers.clone(),
                        };
                        for user in store::fans_of(transaction, row.id, &row.performer_ids).await? {
                            store::insert_message(transaction, source, user, &facts).await?;
                        }
                    }
                }
                EventChange::Cancelled => {
                    let facts = Facts::EventCancelled {
                        event: row.facts(),
                        reason: reason.clone(),
                    };
                    for user in store::attendees_of(transaction, row.id).await? {
                        store::insert_message(transaction, source, user, &facts).await?;
                    }
                }
            }
        }
        Change::Confirmed { .. } => {
            let confirmed: Vec<_> = confirmation(source, change, tickets).into_iter().collect();
            store::record_confirmations(transaction, &confirmed).await?;
        }
        Change::Cancelled {
            booking_id,
            user_id,
            event_id,
            reason,
        } => {
            // Only a booking that was confirmed is worth a mail (a pending
            // one that expired never was the user's).
            let was_confirmed = store::attendee(transaction, *booking_id).await?.is_some();
            store::upsert_attendee(transaction, *booking_id, *user_id, *event_id, false).await?;
            if was_confirmed {
                let event = match store::event(transaction, *event_id).await? {
                    Some(row) => row.facts(),
                    None => crate::message::EventFacts {
                        event_id: *event_id,
                        ..Default::default()
                    },
                };
                let facts = Facts::BookingCancelled {
                    booking_id: *booking_id,
                    event,
                    reason: reason.clone(),
                };
                store::insert_message(transaction, source, *user_id, &facts).await?;
            }
        }
        Change::Refunded { booking_id, amount } => {
            if let Some((user_id, _)) = store::attendee(transaction, *booking_id).await? {
                let facts = Facts::RefundIssued {
                    booking_id: *booking_id,
                    amount: amount.clone(),
                };
                store::insert_message(transaction, source, user_id, &facts).await?;
            }
        }
        Change::WaitlistOffer {
            user_id,
            event_id,
            hold,
            seats,
            expires_at,
        } => {
            let event = match store::event(transaction, *event_id).await? {
                Some(row) => row.facts(),
                None => crate::message::EventFacts {
                    event_id: *event_id,
                    ..Default::default()
                },
            };
            let facts = Facts::WaitlistOffer {
                event,
                hold: hold.clone(),
                seats: *seats,
                expires_at: *expires_at,
                link: String::new(),
            };
            store::insert_message(transaction, source, *user_id, &facts).await?;
        }
        Change::EndpointDisabled {
            admin_user_id,
            endpoint_id,
            url,
            reason,
            disabled_at,
        } => {
            let facts = Facts::WebhookEndpointDisabled {
                endpoint_id: *endpoint_id,
                url: url.clone(),
                reason: reason.clone(),
                disabled_at: *disabled_at,
            };
            store::insert_message(transaction, source, *admin_user_id, &facts).await?;
        }
        Change::Nothing => {}
    }
    Ok(())
}

impl Handler for NotifyHandler {
    async fn handle(&self, events: &[Received]) -> Result<(), HandleError> {
        let mut changes = Vec::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        for (index, received) in events.iter().enumerate() {
            let Some(event_id) = received.event_id() else {
                return Err(HandleError::Poison {
                    index,
                    reason: "an event id that is not a UUID".into(),
                });
            };
            match change_of(received) {
                // Only events that change something here are recorded as
                // processed: inventory's stream is mostly sales, which mail
                // nobody. `positions` keeps each change's place in the batch.
                Ok(Change::Nothing) => {}
                Ok(change) => {
                    changes.push((event_id, change));
                    positions.push(index);
                }
                Err(reason) => return Err(HandleError::Poison { index, reason }),
            }
        }
        // Ticket codes come from checkout, before the transaction (a slow
        // checkout must not hold a database connection in a transaction),
        // and only for events not handled before: a replayed batch asks
        // checkout nothing (the transaction below decides for good).
        let ids: Vec<Uuid> = changes.iter().map(|(id, _)| *id).collect();
        let seen = self
            .processed(&ids)
            .await
            .map_err(HandleError::Unavailable)?;
        let wanted: Vec<(usize, Uuid, Uuid)> = changes
            .iter()
            .enumerate()
            .filter(|(_, (event_id, _))| !seen.contains(event_id))
            .filter_map(|(index, (_, change))| match change {
                Change::Confirmed {
                    booking_id,
                    user_id,
                    ..
                } => Some((index, *booking_id, *user_id)),
                _ => None,
            })
            .collect();
        let fetched: Vec<(usize, Result<Option<Tickets>, FetchError>)> =
            futures::stream::iter(wanted)
                .map(|(index, booking_id, user_id)| async move {
                    (index, self.tickets(booking_id, user_id).await)
                })
                .buffered(FETCH_CONCURRENCY)
                .collect()
                .await;
        let mut tickets: Vec<Option<Tickets>> = changes.iter().map(|_| None).collect();
        for (index, result) in fetched {
            match result {
                Ok(found) => tickets[index] = found,
                Err(FetchError::Unavailable(error)) => return Err(HandleError::Unavailable(error)),
                Err(FetchError::Failed(error)) => {
                    return Err(HandleError::Failed {
                        index: positions[index],
                        error,
                    });
                }
            }
        }
        let recorded = async {
            let mut client = self.pool.get().await?;
            let transaction = client.transaction().await?;
            let new =
                boxoffice_events::postgres::first_times(&transaction, SCHEMA, GROUP, &ids).await?;
            // Runs of confirmations (most of the stream) are recorded a run
            // at a time; anything else in between, in order, one by one.
            let mut run = Vec::new();
            for ((event_id, change), tickets) in changes.iter().zip(&tickets) {
                if !new.contains(event_id) {
                    continue;
                }
                if let Some(confirmed) = confirmation(*event_id, change, tickets.as_ref()) {
                    run.push(confirmed);
                    continue;
                }
                store::record_confirmations(&transaction, &run).await?;
                run.clear();
                apply(&transaction, *event_id, change, tickets.as_ref()).await?;
            }
            store::record_confirmations(&transaction, &run).await?;
            transaction.commit().await?;
            anyhow::Ok(())
        }
        .await;
        match recorded {
            Ok(()) => {
                self.wake.notify_one();
                Ok(())
            }
            Err(error) => Err(HandleError::Unavailable(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(payload: Payload) -> Received {
        Received {
            stream: Arc::from("checkout"),
            position: 1,
            envelope: boxoffice_events::Envelope {
                event_id: Uuid::now_v7().to_string(),
                payload: Some(payload),
                ..Default::default()
            },
        }
    }

    #[test]
    fn events_read_into_changes() {
        let booking = Uuid::now_v7();
        let change = change_of(&received(Payload::BookingConfirmed(pb::BookingConfirmed {
            booking_id: booking.to_string(),
            user_id: Uuid::now_v7().to_string(),
            event_id: Uuid::now_v7().to_string(),
            ..Default::default()
        })))
        .expect("readable");
        assert!(matches!(change, Change::Confirmed { booking_id, .. } if booking_id == booking));
        let bad = change_of(&received(Payload::RefundIssued(pb::RefundIssued {
            booking_id: "nope".into(),
            ..Default::default()
        })));
        assert!(bad.is_err(), "a booking id that is not a UUID is poison");
        assert!(matches!(
            change_of(&received(Payload::SoldOut(pb::SoldOut::default()))),
            Ok(Change::Nothing)
        ));
    }
}
