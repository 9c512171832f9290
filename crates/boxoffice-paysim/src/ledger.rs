//! The simulator's ledger: payment intents, refunds, saved idempotent
//! responses and webhook endpoints (Stripe's part), PayPal orders with
//! their authorization, capture and refunds and PayPal webhooks, kept in memory and made durable by an
//! append-only journal of JSON lines, each written and fsynced before the
//! request that caused it is answered. A restart replays the journal; a
//! line torn by a crash mid-write (the last one) is dropped, and its
//! request was never answered, so its client retries it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// A PaymentIntent's charge: what was authorized, captured, refunded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub captured: bool,
}

/// A PaymentIntent as the simulator keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub id: String,
    pub amount: i64,
    /// Lowercase ISO code, as Stripe writes it.
    pub currency: String,
    /// `requires_action`, `requires_capture`, `succeeded`, `canceled`,
    /// `requires_payment_method` (declined).
    pub status: String,
    /// `manual` or `automatic`.
    pub capture_method: String,
    pub payment_method: String,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub charge: Option<Charge>,
    /// The decline, when the payment method was refused.
    pub decline_code: Option<String>,
    pub error_code: Option<String>,
    pub return_url: Option<String>,
    pub cancellation_reason: Option<String>,
    /// Where the buyer authenticates while `requires_action`.
    pub action_url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub payment_intent: String,
    pub charge: String,
    pub amount: i64,
    pub created: i64,
}

/// A response kept for an idempotency key, with the request it answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub key: String,
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub enabled_events: Vec<String>,
}

/// A PayPal capture of an authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaypalCapture {
    pub id: String,
    /// `COMPLETED`, `PARTIALLY_REFUNDED`, `REFUNDED`.
    pub status: String,
    pub amount_minor: i64,
    pub created: i64,
}

/// A PayPal authorization: an order's one payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaypalAuthorization {
    pub id: String,
    /// `CREATED`, `CAPTURED`, `VOIDED`, `DENIED`.
    pub status: String,
    pub created: i64,
    pub capture: Option<PaypalCapture>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaypalRefund {
    pub id: String,
    pub amount_minor: i64,
    pub created: i64,
}

/// A PayPal order (Orders v2, intent AUTHORIZE, one purchase unit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaypalOrder {
    pub id: String,
    /// `CREATED` (or `PAYER_ACTION_REQUIRED`), `APPROVED`, `COMPLETED`.
    pub status: String,
    /// Uppercase ISO code, as PayPal writes it.
    pub currency: String,
    pub amount_minor: i64,
    pub reference_id: String,
    pub custom_id: Option<String>,
    pub invoice_id: Option<String>,
    pub description: Option<String>,
    pub return_url: Option<String>,
    pub cancel_url: Option<String>,
    /// Created with `payment_source.paypal`: the link is `payer-action`.
    pub payer_action: bool,
    pub payer_id: Option<String>,
    /// The buyer approved with a funding source that declines.
    pub funding_declined: bool,
    pub created: i64,
    pub authorization: Option<PaypalAuthorization>,
    pub refunds: Vec<PaypalRefund>,
}

/// A PayPal webhook (`/v1/notifications/webhooks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaypalWebhook {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
}

/// One journal line: everything one request changed, written at once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Refund>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<Saved>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<PaypalOrder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paypal_webhook: Option<PaypalWebhook>,
}

impl Entry {
    pub fn is_empty(&self) -> bool {
        self.intent.is_none()
            && self.refund.is_none()
            && self.saved.is_none()
            && self.endpoint.is_none()
            && self.order.is_none()
            && self.paypal_webhook.is_none()
    }
}

/// The state, rebuilt from the journal at start.
#[derive(Debug, Default)]
pub struct Ledger {
    pub intents: HashMap<String, Intent>,
    /// Intent ids, oldest first (lists and searches answer newest first).
    pub order: Vec<String>,
    /// `metadata key \0 value` → intent ids, oldest first. Metadata is set
    /// at creation and never changes here.
    pub by_metadata: HashMap<String, Vec<String>>,
    pub refunds: HashMap<String, Refund>,
    pub saved: HashMap<String, Saved>,
    pub endpoints: Vec<Endpoint>,
    pub orders: HashMap<String, PaypalOrder>,
    /// Order ids, oldest first (Transaction Search walks them).
    pub order_list: Vec<String>,
    /// Authorization, capture and refund ids → their order's id.
    pub order_of: HashMap<String, String>,
    pub paypal_webhooks: Vec<PaypalWebhook>,
}

pub fn metadata_index_key(key: &str, value: &str) -> String {
    format!("{key}\0{value}")
}

impl Ledger {
    /// Applies one journal entry (at run time after it is durable, and at
    /// start when replaying).
    pub fn apply(&mut self, entry: Entry) {
        if let Some(intent) = entry.intent {
            if !self.intents.contains_key(&intent.id) {
                self.order.push(intent.id.clone());
                for (key, value) in &intent.metadata {
                    self.by_metadata
                        .entry(metadata_index_key(key, value))
                        .or_default()
                        .push(intent.id.clone());
                }
            }
            self.intents.insert(intent.id.clone(), intent);
        }
        if let Some(refund) = entry.refund {
            self.refunds.insert(refund.id.clone(), refund);
        }
        if let Some(saved) = entry.saved {
            self.saved.insert(saved.key.clone(), saved);
        }
        if let Some(order) = entry.order {
            self.apply_order(order);
        }
        if let Some(webhook) = entry.paypal_webhook {
            match self
                .paypal_webhooks
                .iter_mut()
                .find(|known| known.id == webhook.id)
            {
                Some(known) => *known = webhook,
                None => self.paypal_webhooks.push(webhook),
            }
        }
        if let Some(endpoint) = entry.endpoint {
            match self
                .endpoints
                .iter_mut()
                .find(|known| known.id == endpoint.id)
            {
                Some(known) => *known = endpoint,
                None => self.endpoints.push(endpoint),
            }
        }
    }
}

impl Ledger {
    fn apply_order(&mut self, order: PaypalOrder) {
        if !self.orders.contains_key(&order.id) {
            self.order_list.push(order.id.clone());
        }
        if let Some(authorization) = &order.authorization {
            self.order_of
                .insert(authorization.id.clone(), order.id.clone());
            if let Some(capture) = &authorization.capture {
                self.order_of.insert(capture.id.clone(), order.id.clone());
            }
        }
        for refund in &order.refunds {
            self.order_of.insert(refund.id.clone(), order.id.clone());
        }
        self.orders.insert(order.id.clone(), order);
    }

    /// The order an authorization, capture or refund id belongs to.
    pub fn order_holding(&self, payment_id: &str) -> Option<&PaypalOrder> {
        self.orders.get(self.order_of.get(payment_id)?)
    }
}

/// How long opening waits for another simulator to let go of the ledger.
#[cfg(not(test))]
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
#[cfg(test)]
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The append-only journal file, group-committed: lines are handed over in
/// the order the changes were made ([`Journal::enqueue`]), and one writer
/// thread writes whatever has gathered and makes it durable with one
/// `fdatasync`, so concurrent requests share a flush instead of queueing
/// behind one each (what a lone writer holding the ledger's lock through
/// every fsync did: the card gateway's confirmations waited ~30 ms each on
/// it at 32 in flight). A line is durable once every line before it is.
pub struct Journal {
    path: PathBuf,
    /// Kept open (with its lock) while the journal lives; the writer
    /// holds it weakly.
    _file: Arc<std::fs::File>,
    queue: Arc<Queue>,
    durable: tokio::sync::watch::Receiver<Durable>,
}

/// How far the journal is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durable {
    /// Every line up to this number (the first is 1) is on disk.
    Upto(u64),
    /// A write or flush failed: nothing more becomes durable, and what was
    /// not yet is never answered (a restart replays what is on disk).
    Failed,
}

/// What the journal hands its writer thread.
struct Queue {
    pending: std::sync::Mutex<Pending>,
    ready: std::sync::Condvar,
    durable: tokio::sync::watch::Sender<Durable>,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// Number of the last line handed over.
    appended: u64,
    /// The journal was dropped: the writer finishes what is pending and ends.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer thread: writes and flushes whatever has gathered, until the
/// journal is dropped (it holds the file only while writing, so a dropped
/// journal lets go of the file, and its lock, at once).
fn write_behind(queue: Arc<Queue>, file: std::sync::Weak<std::fs::File>) {
    loop {
        let (lines, upto) = {
            let mut pending = queue.lock();
            while pending.lines.is_empty() && !pending.closed {
                pending = queue
                    .ready
                    .wait(pending)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if pending.lines.is_empty() {
                return;
            }
            (std::mem::take(&mut pending.lines), pending.appended)
        };
        let Some(file) = file.upgrade() else {
            return;
        };
        let written = (&*file).write_all(&lines).and_then(|()| file.sync_data());
        drop(file);
        match written {
            Ok(()) => {
                queue.durable.send_replace(Durable::Upto(upto));
            }
            Err(error) => {
                tracing::error!(%error, "journal write failed; this simulator answers errors until it is restarted");
                queue.durable.send_replace(Durable::Failed);
                return;
            }
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_one();
    }
}

impl Journal {
    /// Opens (creating) the journal and replays it into a ledger (blocking:
    /// call it off the async threads). A last
    /// line that does not parse was torn by a crash while being written:
    /// it is cut off so the next append starts on a clean line.
    pub fn open(path: &Path) -> anyhow::Result<(Self, Ledger)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut ledger = Ledger::default();
        let mut good_bytes: u64 = 0;
        let mut entries = 0usize;
        if path.exists() {
            let reader = std::io::BufReader::new(
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?,
            );
            let mut lines = reader.split(b'\n').peekable();
            while let Some(line) = lines.next() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                let is_last = lines.peek().is_none();
                match serde_json::from_slice::<Entry>(&line) {
                    Ok(entry) => {
                        ledger.apply(entry);
                        entries += 1;
                        good_bytes += line.len() as u64 + 1;
                    }
                    Err(_) if is_last => {
                        tracing::warn!(path = %path.display(), "dropping a torn last journal line");
                        break;
                    }
                    Err(error) => {
                        anyhow::bail!(
                            "{} is corrupt at byte {good_bytes}: {error}",
                            path.display()
                        )
                    }
                }
            }
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // One simulator per ledger: two appending to it would interleave.
        // The lock goes with the process, however it ends; a predecessor
        // still stopping (its parent was just killed) gets a moment.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        while let Err(error) =
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        {
            if std::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{} is in use by another payment simulator ({error})",
                    path.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if file.metadata()?.len() > good_bytes {
            file.set_len(good_bytes)
                .with_context(|| format!("truncating {}", path.display()))?;
        }
        tracing::info!(path = %path.display(), entries, intents = ledger.intents.len(), "ledger replayed");
        let (durable, durable_rx) = tokio::sync::watch::channel(Durable::Upto(0));
        let queue = Arc::new(Queue {
            pending: std::sync::Mutex::new(Pending::default()),
            ready: std::sync::Condvar::new(),
            durable,
        });
        let file = Arc::new(file);
        let (writer_queue, writer_file) = (queue.clone(), Arc::downgrade(&file));
        std::thread::Builder::new()
            .name("paysim-journal".into())
            .spawn(move || write_behind(writer_queue, writer_file))
            .context("starting the journal writer")?;
        Ok((
            Self {
                path: path.to_owned(),
                _file: file,
                queue,
                durable: durable_rx,
            },
            ledger,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one entry as one line and waits until it is on disk.
    pub async fn append(&self, entry: &Entry) -> anyhow::Result<()> {
        let line = self.enqueue(entry)?;
        self.wait_durable(line).await
    }

    /// Hands one entry to the writer, after every entry handed over before
    /// it, and answers its line number; it is on disk once
    /// [`wait_durable`](Self::wait_durable) says so. Call it in the order
    /// the changes are made (under the ledger's lock).
    pub fn enqueue(&self, entry: &Entry) -> anyhow::Result<u64> {
        let mut line = serde_json::to_vec(entry).context("encoding a journal entry")?;
        line.push(b'\n');
        let mut pending = self.queue.lock();
        pending.lines.extend_from_slice(&line);
        pending.appended += 1;
        let number = pending.appended;
        drop(pending);
        self.queue.ready.notify_one();
        Ok(number)
    }

    /// The number of the last line handed over (0 before the first).
    pub fn appended(&self) -> u64 {
        self.queue.lock().appended
    }

    /// Waits until line `number` (and so every line before it) is on disk.
    pub async fn wait_durable(&self, number: u64) -> anyhow::Result<()> {
        let mut durable = self.durable.clone();
        let reached = durable
            .wait_for(|durable| match durable {
                Durable::Upto(upto) => *upto >= number,
                Durable::Failed => true,
            })
            .await
            .map(|durable| *durable)
            .context("the journal writer stopped")?;
        match reached {
            Durable::Upto(_) => Ok(()),
            Durable::Failed => anyhow::bail!("the journal could not be written"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str, status: &str) -> Intent {
        Intent {
            id: id.to_owned(),
            amount: 1_000,
            currency: "eur".into(),
            status: status.into(),
            capture_method: "manual".into(),
            payment_method: "tok_visa".into(),
            metadata: BTreeMap::from([("booking".to_owned(), "b1".to_owned())]),
            created: 1,
            charge: None,
            decline_code: None,
            error_code: None,
            return_url: None,
            cancellation_reason: None,
            action_url: None,
        }
    }

    #[tokio::test]
    async fn a_reopened_journal_has_every_entry_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        {
            let (journal, _) = Journal::open(&path).unwrap();
            for (id, status) in [("pi_1", "requires_capture"), ("pi_1", "succeeded")] {
                journal
                    .append(&Entry {
                        intent: Some(intent(id, status)),
                        ..Entry::default()
                    })
                    .await
                    .unwrap();
            }
        }
        // A crash in the middle of the next line.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(br#"{"intent":{"id":"pi_2","amo"#).unwrap();
        drop(file);

        let (journal, ledger) = Journal::open(&path).unwrap();
        assert_eq!(ledger.intents.len(), 1);
        assert_eq!(ledger.intents["pi_1"].status, "succeeded");
        assert_eq!(ledger.order, ["pi_1"]);
        assert_eq!(
            ledger.by_metadata[&metadata_index_key("booking", "b1")],
            ["pi_1"]
        );
        // Appends after the cut start on a clean line.
        journal
            .append(&Entry {
                intent: Some(intent("pi_3", "canceled")),
                ..Entry::default()
            })
            .await
            .unwrap();
        drop(journal);
        let (_, ledger) = Journal::open(&path).unwrap();
        assert_eq!(ledger.order, ["pi_1", "pi_3"]);
    }

    #[test]
    fn one_simulator_per_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let (first, _) = Journal::open(&path).unwrap();
        assert!(Journal::open(&path).is_err());
        drop(first);
        assert!(Journal::open(&path).is_ok());
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        std::fs::write(&path, b"{}\nnot json\n{}\n").unwrap();
        assert!(Journal::open(&path).is_err());
    }
}
