//! The payment provider's own records against checkout's: the simulator's
//! ledger (its fsynced journal, replayed the way the simulator replays it)
//! is read once the run has settled, and every booking's money must agree
//! with it. The provider is durable, so nothing is excused: each confirmed
//! booking has exactly one captured payment of its total, a cancelled one
//! its capture refunded as checkout recorded, nothing is captured (and
//! kept) for a booking that did not sell, and no authorization is left
//! neither captured nor voided.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead as _;
use std::path::Path;

use anyhow::Context as _;
use boxoffice_paysim::ledger::{Entry, Ledger};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::check::Check;

/// One PaymentIntent as the provider ended it.
#[derive(Clone, Debug)]
pub struct ProviderIntent {
    pub id: String,
    /// `metadata[booking]` and `metadata[payment_id]` (checkout's ids).
    pub booking: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    /// Stripe's status: `requires_capture`, `succeeded`, `canceled`, …
    pub status: String,
    pub amount: i64,
    /// Captured by its charge (0 unless captured).
    pub captured: i64,
    /// The sum of its refunds.
    pub refunded: i64,
    /// What its charge says was refunded (must equal `refunded`).
    pub charge_refunded: i64,
}

/// Everything the provider knows of, from its ledger.
#[derive(Clone, Debug, Default)]
pub struct ProviderLedger {
    pub intents: Vec<ProviderIntent>,
    pub refunds: usize,
    /// Journal lines replayed.
    pub entries: usize,
}

impl ProviderLedger {
    /// Captured minus refunded, over every intent.
    pub fn net(&self) -> i64 {
        self.intents.iter().map(|i| i.captured - i.refunded).sum()
    }
}

/// Replays the simulator's journal at `path` without taking its lock (the
/// simulator may still be running; it writes each line at once, and a last
/// line caught half written is left out, as the simulator's own replay
/// leaves it out).
pub fn read_ledger(path: &Path) -> anyhow::Result<ProviderLedger> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut ledger = Ledger::default();
    let mut entries = 0;
    let mut lines = std::io::BufReader::new(file).split(b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        match serde_json::from_slice::<Entry>(&line) {
            Ok(entry) => {
                ledger.apply(entry);
                entries += 1;
            }
            Err(_) if lines.peek().is_none() => break,
            Err(error) => {
                anyhow::bail!(
                    "{} is corrupt after {entries} lines: {error}",
                    path.display()
                )
            }
        }
    }
    let mut refunded: HashMap<&str, i64> = HashMap::new();
    for refund in ledger.refunds.values() {
        *refunded.entry(refund.payment_intent.as_str()).or_default() += refund.amount;
    }
    let uuid = |intent: &boxoffice_paysim::ledger::Intent, key: &str| {
        intent
            .metadata
            .get(key)
            .and_then(|value| Uuid::parse_str(value).ok())
    };
    let intents = ledger
        .order
        .iter()
        .filter_map(|id| ledger.intents.get(id))
        .map(|intent| {
            let charge = intent.charge.as_ref();
            ProviderIntent {
                id: intent.id.clone(),
                booking: uuid(intent, "booking"),
                payment_id: uuid(intent, "payment_id"),
                status: intent.status.clone(),
                amount: intent.amount,
                captured: charge
                    .filter(|charge| charge.captured)
                    .map_or(0, |charge| charge.amount_captured),
                refunded: refunded.get(intent.id.as_str()).copied().unwrap_or(0),
                charge_refunded: charge.map_or(0, |charge| charge.amount_refunded),
            }
        })
        .collect();
    Ok(ProviderLedger {
        intents,
        refunds: ledger.refunds.len(),
        entries,
    })
}

/// A booking as checkout ended it.
struct Booking {
    state: String,
    total: i64,
    refunded: i64,
    payment_id: Option<Uuid>,
}

impl Booking {
    /// What the provider must have kept for it: its total when confirmed,
    /// what was not refunded when cancelled after paying, else nothing.
    fn owed(&self) -> i64 {
        match self.state.as_str() {
            "confirmed" => self.total,
            "cancelled" if self.payment_id.is_some() => self.total - self.refunded,
            _ => 0,
        }
    }
}

/// Checkout's bookings against the provider's ledger, per booking and in
/// sum.
pub async fn money_matches_provider(
    client: &Client,
    provider: &ProviderLedger,
) -> anyhow::Result<Check> {
    let mut check = Check::new("money balanced (the provider's ledger)");
    let bookings: HashMap<Uuid, Booking> = client
        .query(
            "SELECT id, state, total_minor, refunded_minor, payment_id FROM checkout.bookings",
            &[],
        )
        .await
        .context("reading bookings")?
        .iter()
        .map(|row| {
            (
                row.get(0),
                Booking {
                    state: row.get(1),
                    total: row.get(2),
                    refunded: row.get(3),
                    payment_id: row.get(4),
                },
            )
        })
        .collect();
    check.checked = provider.intents.len() as u64;
    let mut by_booking: BTreeMap<Uuid, Vec<&ProviderIntent>> = BTreeMap::new();
    for intent in &provider.intents {
        // Money the provider holds for nobody: an authorization neither
        // captured nor voided, a refund its charge disagrees with.
        match intent.status.as_str() {
            "requires_capture" => check.violation(format!(
                "{} ({} for booking {:?}) is authorized, neither captured nor voided",
                intent.id, intent.amount, intent.booking
            )),
            "requires_action" | "requires_confirmation" | "processing" => check.violation(format!(
                "{} (booking {:?}) was left {}",
                intent.id, intent.booking, intent.status
            )),
            _ => {}
        }
        if intent.refunded != intent.charge_refunded {
            check.violation(format!(
                "{}: refunds add up to {}, its charge says {}",
                intent.id, intent.refunded, intent.charge_refunded
            ));
        }
        match intent.booking {
            Some(booking) => by_booking.entry(booking).or_default().push(intent),
            None => check.violation(format!("{} names no booking", intent.id)),
        }
    }
    for (id, intents) in &by_booking {
        let kept: i64 = intents.iter().map(|i| i.captured - i.refunded).sum();
        let Some(booking) = bookings.get(id) else {
            if kept != 0 || intents.iter().any(|i| i.captured > 0) {
                check.violation(format!(
                    "the provider captured {kept} for booking {id}, which checkout does not have"
                ));
            }
            continue;
        };
        if kept != booking.owed() {
            check.violation(format!(
                "booking {id} is {} (total {}, refunded {}); the provider kept {kept} ({})",
                booking.state,
                booking.total,
                booking.refunded,
                describe(intents)
            ));
        }
        let captured: Vec<&&ProviderIntent> = intents.iter().filter(|i| i.captured > 0).collect();
        match booking.state.as_str() {
            "confirmed" | "cancelled" if booking.payment_id.is_some() => {
                // Exactly one capture, of the total, by the payment
                // checkout recorded as the one that paid.
                let fine = captured.len() == 1
                    && captured[0].captured == booking.total
                    && captured[0].payment_id == booking.payment_id
                    && captured[0].refunded == booking.refunded;
                if !fine {
                    check.violation(format!(
                        "booking {id} is {} paid by {:?} (total {}, refunded {}); the provider has {}",
                        booking.state,
                        booking.payment_id,
                        booking.total,
                        booking.refunded,
                        describe(intents)
                    ));
                }
            }
            _ => {
                // Nothing sold: whatever was captured went back in full.
                for intent in captured {
                    if intent.refunded != intent.captured {
                        check.violation(format!(
                            "booking {id} is {}; the provider captured {} by {} and refunded {}",
                            booking.state, intent.captured, intent.id, intent.refunded
                        ));
                    }
                }
            }
        }
    }
    for (id, booking) in &bookings {
        if booking.owed() != 0 && !by_booking.contains_key(id) {
            check.violation(format!(
                "booking {id} is {} (owes {}), and the provider has no payment for it",
                booking.state,
                booking.owed()
            ));
        }
    }
    let owed: i64 = bookings.values().map(Booking::owed).sum();
    if provider.net() != owed {
        check.violation(format!(
            "the provider kept {} in all (captured minus refunded), checkout's bookings account for {owed}",
            provider.net()
        ));
    }
    Ok(check)
}

fn describe(intents: &[&ProviderIntent]) -> String {
    intents
        .iter()
        .map(|i| {
            format!(
                "{} {} amount {} captured {} refunded {}",
                i.id, i.status, i.amount, i.captured, i.refunded
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_is_replayed_with_refunds_and_without_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let booking = Uuid::new_v4();
        let intent = |status: &str, captured: bool, refunded: i64| {
            serde_json::json!({"intent": {
                "id": "pi_1", "amount": 1500, "currency": "eur", "status": status,
                "capture_method": "manual", "payment_method": "tok_visa",
                "metadata": {"booking": booking.to_string(), "payment_id": "not-a-uuid"},
                "created": 1,
                "charge": {"id": "ch_1", "amount": 1500, "amount_captured": if captured { 1500 } else { 0 },
                           "amount_refunded": refunded, "captured": captured},
                "decline_code": null, "error_code": null, "return_url": null,
                "cancellation_reason": null, "action_url": null
            }})
            .to_string()
        };
        let refund = serde_json::json!({"refund": {
            "id": "re_1", "payment_intent": "pi_1", "charge": "ch_1", "amount": 1500, "created": 2
        }})
        .to_string();
        let text = format!(
            "{}\n{}\n{}\n{}\n{{\"intent\":{{\"id\":\"pi_2\",\"amo",
            intent("requires_capture", false, 0),
            intent("succeeded", true, 0),
            refund,
            intent("succeeded", true, 1500)
        );
        std::fs::write(&path, text).unwrap();
        let ledger = read_ledger(&path).unwrap();
        assert_eq!(ledger.entries, 4);
        assert_eq!(ledger.intents.len(), 1);
        let only = &ledger.intents[0];
        assert_eq!(only.booking, Some(booking));
        assert_eq!(only.payment_id, None);
        assert_eq!(
            (only.captured, only.refunded, only.charge_refunded),
            (1500, 1500, 1500)
        );
        assert_eq!(ledger.net(), 0);

        // A bad line before the end is corruption, not a torn write.
        std::fs::write(&path, "not json\n{}\n").unwrap();
        assert!(read_ledger(&path).is_err());
    }
}
