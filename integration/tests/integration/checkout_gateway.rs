//! Checkout paying through the card gateway over HTTP: `boxoffice-paysim`
//! (Stripe's PaymentIntents API) runs as its own process with its own
//! ledger file. Payments, declines and refunds go through it; its webhooks
//! arrive signed with `Stripe-Signature`; killed with SIGKILL and
//! restarted, it still has every payment; and a checkout that died in the
//! middle of a payment is settled by a new process from the gateway's own
//! records, where the in-process provider would have forgotten them.

use std::sync::Arc;
use std::time::Duration;

use boxoffice_checkout::FailPoint;
use boxoffice_checkout::payment::paypal::{PaypalConfig, PaypalProvider};
use boxoffice_checkout::payment::stripe::{HttpProviderConfig, StripeProvider};
use boxoffice_checkout::payment::{PaymentProvider, ProviderPayment, ProviderStatus};
use boxoffice_contracts::checkout::v1 as pb;
use tonic::Code;

use crate::checkout::{
    CheckoutWorld, SEAT_PRICE, assert_reason, booking_id, cancel, confirm, get, state,
};
use crate::harness::{customer, eventually};

/// The simulator as a child process, on one address across restarts.
pub struct PaysimProcess {
    child: tokio::process::Child,
    pub url: String,
    ledger: std::path::PathBuf,
    _dir: tempfile::TempDir,
    /// Settings of every start (latency, say).
    settings: Vec<(String, String)>,
}

impl PaysimProcess {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Started with these `BOXOFFICE_*` settings (kept across restarts).
    pub async fn start_with(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a directory for the ledger");
        let ledger = dir.path().join("ledger.jsonl");
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let (child, url) = Self::spawn(&ledger, "127.0.0.1:0", &settings).await;
        Self {
            child,
            url,
            ledger,
            _dir: dir,
            settings,
        }
    }

    async fn spawn(
        ledger: &std::path::Path,
        listen: &str,
        settings: &[(String, String)],
    ) -> (tokio::process::Child, String) {
        let mut command =
            tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice-integration-paysim"));
        command
            .envs(settings.iter().map(|(name, value)| (name, value)))
            .env(boxoffice_paysim::config::ENV_LISTEN, listen)
            .env(boxoffice_paysim::config::ENV_LEDGER, ledger)
            .env("BOXOFFICE_LOG", "warn");
        boxoffice_paysim::start_process(command)
            .await
            .expect("boxoffice-paysim listening")
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub async fn kill9(&mut self) {
        self.child
            .start_kill()
            .expect("SIGKILL to boxoffice-paysim");
        self.child.wait().await.expect("waiting for it to die");
    }

    /// A new process on the same ledger and address.
    pub async fn restart(&mut self) {
        let listen = self.url.trim_start_matches("http://").to_owned();
        let (child, url) = Self::spawn(&self.ledger, &listen, &self.settings).await;
        assert_eq!(url, self.url);
        self.child = child;
    }

    pub fn client(&self) -> StripeProvider {
        StripeProvider::new(HttpProviderConfig::development(self.url.clone()))
            .expect("a gateway client")
    }

    /// The simulator's ledger file.
    pub fn ledger(&self) -> &std::path::Path {
        &self.ledger
    }

    /// A PayPal client of the same simulator.
    pub fn paypal(&self) -> PaypalProvider {
        PaypalProvider::new(PaypalConfig::development(self.url.clone())).expect("a PayPal client")
    }
}

/// A checkout world paying through a gateway process (cards, and PayPal
/// through the same simulator).
pub struct GatewayWorld {
    pub world: CheckoutWorld,
    pub paysim: PaysimProcess,
}

impl GatewayWorld {
    pub async fn with(inventory_settings: &[(&str, &str)]) -> Self {
        let paysim = PaysimProcess::start().await;
        Self::over(paysim, inventory_settings).await
    }

    /// A world paying through `paysim`.
    pub async fn over(paysim: PaysimProcess, inventory_settings: &[(&str, &str)]) -> Self {
        let url = paysim.url.clone();
        let world = CheckoutWorld::with(inventory_settings, move |config| {
            config.payments = Some(HttpProviderConfig::development(url.clone()));
            config.paypal = Some(PaypalConfig::development(url));
        })
        .await;
        assert!(world.component.simulated.is_none());
        Self { world, paysim }
    }

    /// Every payment the gateway has, asked over HTTP.
    pub async fn payments(&self) -> Vec<ProviderPayment> {
        self.paysim
            .client()
            .payments()
            .await
            .expect("listing payments")
    }

    pub async fn count(&self, status: ProviderStatus) -> usize {
        self.payments()
            .await
            .iter()
            .filter(|payment| payment.status == status)
            .count()
    }
}

#[tokio::test]
async fn bookings_are_paid_declined_and_refunded_through_the_gateway_process() {
    let gateway = GatewayWorld::with(&[]).await;
    let world = &gateway.world;
    let mut client = world.client.clone();

    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[1]).await;
    let paid = confirm(&mut client, &alice, &booking.name, "tok_visa", "k1")
        .await
        .expect("paying");
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    let payments = gateway.payments().await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, ProviderStatus::Captured);
    assert_eq!(payments[0].reference, booking_id(&booking).to_string());
    // A retry answers the same booking and charges nothing more.
    let again = confirm(&mut client, &alice, &booking.name, "tok_visa", "k1")
        .await
        .unwrap();
    assert_eq!(again.tickets, paid.tickets);
    assert_eq!(gateway.payments().await.len(), 1);

    let bob = customer();
    let (_, declined) = world.booking_for(&bob, &[2]).await;
    assert_reason(
        confirm(
            &mut client,
            &bob,
            &declined.name,
            "tok_chargeDeclinedInsufficientFunds",
            "k2",
        )
        .await,
        Code::FailedPrecondition,
        "PAYMENT_DECLINED",
    );
    assert_eq!(gateway.payments().await.len(), 1, "a decline is no payment");

    // Cancelled: refunded at the gateway, and its signed refund webhook
    // reaches checkout's endpoint.
    let cancelled = cancel(&mut client, &alice, &booking.name)
        .await
        .expect("cancelling");
    assert_eq!(state(&cancelled), pb::BookingState::Cancelled);
    let payments = gateway.payments().await;
    assert_eq!(payments[0].status, ProviderStatus::Refunded);
    assert_eq!(payments[0].refunded_minor, SEAT_PRICE, "fees are kept");
    let payment_id = payments[0].idempotency_key.parse::<uuid::Uuid>().unwrap();
    let db = &world.world.db;
    eventually(
        Duration::from_secs(20),
        "the gateway's refund webhook recorded",
        || async {
            let state: Option<String> = db
                .client()
                .await
                .query_one(
                    "SELECT (SELECT provider_state FROM checkout.payment_provider_states WHERE payment_id = $1)",
                    &[&payment_id],
                )
                .await
                .ok()?
                .get(0);
            (state.as_deref() == Some("refunded")).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_gateway_killed_with_sigkill_keeps_its_ledger() {
    let mut gateway =
        GatewayWorld::with(&[(boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10")]).await;
    let mut client = gateway.world.client.clone();
    let mut paid = Vec::new();
    for seat in 0..3u32 {
        let alice = customer();
        let (_, booking) = gateway.world.booking_for(&alice, &[seat]).await;
        confirm(&mut client, &alice, &booking.name, "tok_visa", "key")
            .await
            .expect("paying");
        paid.push(booking_id(&booking));
    }

    gateway.paysim.kill9().await;
    // While it is down, paying fails as retryable and nothing is recorded.
    let late = customer();
    let (_, booking) = gateway.world.booking_for(&late, &[9]).await;
    let down = confirm(&mut client, &late, &booking.name, "tok_visa", "late").await;
    assert_eq!(
        down.expect_err("the gateway is down").code(),
        Code::Unavailable
    );
    assert_eq!(
        state(&get(&mut client, &late, &booking.name).await.unwrap()),
        pb::BookingState::Pending
    );

    gateway.paysim.restart().await;
    // Every payment made before the kill is still there, found by the
    // booking it paid for.
    let provider = gateway.paysim.client();
    for booking in &paid {
        let found = provider.search(&booking.to_string()).await.unwrap();
        assert_eq!(found.len(), 1, "{booking}");
        assert_eq!(found[0].status, ProviderStatus::Captured);
        assert!(
            provider
                .lookup(&found[0].idempotency_key)
                .await
                .unwrap()
                .is_some()
        );
    }
    // The buyer's retry goes through, once.
    let confirmed = confirm(&mut client, &late, &booking.name, "tok_visa", "late")
        .await
        .expect("paying after the restart");
    assert_eq!(state(&confirmed), pb::BookingState::Confirmed);
    assert_eq!(gateway.count(ProviderStatus::Captured).await, 4);
    assert_eq!(gateway.payments().await.len(), 4);
}

/// The gateway group-commits its journal: concurrent requests share one
/// flush and are answered once it is on disk. Killed with SIGKILL while
/// 64 authorizations and captures are in flight, a restarted gateway has
/// every one that was answered, in the state it was answered with.
#[tokio::test]
async fn answers_given_while_requests_share_a_flush_survive_sigkill() {
    let mut paysim = PaysimProcess::start().await;
    let provider = Arc::new(paysim.client());
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (first_answers, mut enough) = tokio::sync::mpsc::channel::<()>(64);
    let mut payers = tokio::task::JoinSet::new();
    for payer in 0..64 {
        let (provider, answered, first_answers) =
            (provider.clone(), answered.clone(), first_answers.clone());
        payers.spawn(async move {
            for n in 0.. {
                let key = format!("group-{payer}-{n}");
                let Ok(boxoffice_checkout::payment::AuthorizeOutcome::Authorized { provider_ref }) =
                    provider
                        .authorize(boxoffice_checkout::payment::AuthorizeRequest {
                            idempotency_key: key.clone(),
                            reference: uuid::Uuid::new_v4().to_string(),
                            client_key: key.clone(),
                            amount_minor: 1_000,
                            currency_code: "EUR".into(),
                            payment_method: "tok_visa".into(),
                        })
                        .await
                else {
                    return;
                };
                answered
                    .lock()
                    .unwrap()
                    .push((key.clone(), ProviderStatus::Authorized));
                if provider
                    .capture(&provider_ref, &format!("{key}-capture"))
                    .await
                    .is_err()
                {
                    return;
                }
                answered
                    .lock()
                    .unwrap()
                    .push((key, ProviderStatus::Captured));
                let _ = first_answers.try_send(());
            }
        });
    }
    drop(first_answers);
    // Kill it with requests in flight, once a few hundred were answered.
    for _ in 0..200 {
        enough
            .recv()
            .await
            .expect("payments go through before the kill");
    }
    paysim.kill9().await;
    while payers.join_next().await.is_some() {}
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 400, "{} answers", answered.len());

    paysim.restart().await;
    let provider = paysim.client();
    let mut latest = std::collections::HashMap::new();
    for (key, status) in answered {
        // Captured is answered after authorized, so it is the later state.
        let kept = latest.entry(key).or_insert(status);
        if status == ProviderStatus::Captured {
            *kept = status;
        }
    }
    for (key, status) in latest {
        let found = provider
            .lookup(&key)
            .await
            .expect("asking the restarted gateway")
            .unwrap_or_else(|| panic!("{key} was answered but is gone after SIGKILL"));
        assert!(
            found.status == status
                || (status == ProviderStatus::Authorized
                    && found.status == ProviderStatus::Captured),
            "{key}: answered {status:?}, kept {:?}",
            found.status
        );
    }
}

/// Checkout dies after each step of a payment; a new process (its own
/// gateway client, nothing in memory) settles every booking from what the
/// gateway and inventory say, once the holds have run out: sold and paid
/// bookings are confirmed (captured if need be), an authorization without
/// a sale is voided and its booking expired. The gateway is also killed
/// and restarted in between, so what it answers comes from its ledger.
#[tokio::test]
async fn a_payment_checkout_died_in_is_settled_from_the_gateways_records() {
    let mut gateway = GatewayWorld::with(&[
        (boxoffice_inventory::config::ENV_HOLD_TTL, "3"),
        (boxoffice_inventory::config::ENV_HOLD_COMMIT_MARGIN, "500"),
        (boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10"),
    ])
    .await;
    let world = &gateway.world;
    let mut client = world.client.clone();
    let mut crashed = Vec::new();
    for (index, point) in [
        FailPoint::AfterAuthorize,
        FailPoint::AfterCommit,
        FailPoint::AfterCapture,
    ]
    .into_iter()
    .enumerate()
    {
        let alice = customer();
        let seat = 30 + index as u32;
        let (_, booking) = world.booking_for(&alice, &[seat]).await;
        world.fail_points.arm(point);
        let answer = confirm(&mut client, &alice, &booking.name, "tok_visa", "key").await;
        world.fail_points.disarm(point);
        assert_reason(answer, Code::Unavailable, "SIMULATED_CRASH");
        crashed.push((point, seat, alice, booking));
    }
    gateway.paysim.kill9().await;
    gateway.paysim.restart().await;
    let world = &gateway.world;

    // The process after a restart: the same database, a new gateway client.
    let restarted = world.restarted(Arc::new(gateway.paysim.client()));
    let restarted = &restarted;
    eventually(
        Duration::from_secs(30),
        "every crashed booking settled by the restarted process",
        || {
            let mut client = client.clone();
            let crashed = &crashed;
            async move {
                boxoffice_checkout::reconciler::reconcile_once(restarted, Duration::ZERO)
                    .await
                    .ok()?;
                for (_, _, alice, booking) in crashed {
                    let now = get(&mut client, alice, &booking.name).await.ok()?;
                    if state(&now) == pb::BookingState::Pending {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;

    let sold = world.sold_seats().await;
    for (point, seat, alice, booking) in &crashed {
        let settled = get(&mut client, alice, &booking.name).await.unwrap();
        let found = gateway
            .paysim
            .client()
            .search(&booking_id(booking).to_string())
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{point:?}");
        match point {
            FailPoint::AfterAuthorize => {
                assert_eq!(state(&settled), pb::BookingState::Expired, "{point:?}");
                assert_eq!(found[0].status, ProviderStatus::Voided, "{point:?}");
                assert!(!sold.contains(seat), "{point:?}");
            }
            _ => {
                assert_eq!(state(&settled), pb::BookingState::Confirmed, "{point:?}");
                assert_eq!(found[0].status, ProviderStatus::Captured, "{point:?}");
                assert!(sold.contains(seat), "{point:?}");
            }
        }
    }
    assert_eq!(gateway.count(ProviderStatus::Captured).await, 2);
    assert_eq!(gateway.count(ProviderStatus::Authorized).await, 0);
}

/// The buyer's browser at the gateway's 3-D Secure page: it loads, then
/// the buyer completes or fails the authentication.
async fn authenticate(url: &str, outcome: &str) {
    let http = reqwest::Client::new();
    let page = http
        .get(url)
        .send()
        .await
        .expect("loading the 3-D Secure page");
    assert!(page.status().is_success());
    let answered = boxoffice_paysim::answer_buyer_page(&http, url, outcome)
        .await
        .expect("answering the 3-D Secure page");
    assert!(answered.status().is_success(), "{:?}", answered.status());
}

#[tokio::test]
async fn three_d_secure_keeps_the_booking_pending_until_the_buyer_has_authenticated() {
    let gateway = GatewayWorld::with(&[
        (boxoffice_inventory::config::ENV_HOLD_TTL, "4"),
        (boxoffice_inventory::config::ENV_HOLD_COMMIT_MARGIN, "500"),
        (boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10"),
    ])
    .await;
    let world = &gateway.world;
    let mut client = world.client.clone();
    let card = "tok_threeDSecure2Required";

    // Approved: the first answer is the pending booking and where the
    // buyer goes; confirming again with the same key finishes it.
    let alice = customer();
    let (_, approved) = world.booking_for(&alice, &[1]).await;
    let waiting = confirm(&mut client, &alice, &approved.name, card, "3ds")
        .await
        .expect("an answer that asks for authentication");
    assert_eq!(state(&waiting), pb::BookingState::Pending);
    let action = waiting.payment_action.clone().expect("a payment action");
    assert_eq!(action.r#type, "redirect_to_url");
    assert!(
        action.url.starts_with(&gateway.paysim.url),
        "{}",
        action.url
    );
    // Asking again before authenticating answers the same.
    let again = confirm(&mut client, &alice, &approved.name, card, "3ds")
        .await
        .unwrap();
    assert_eq!(again.payment_action, Some(action.clone()));
    assert!(world.sold_seats().await.is_empty());
    authenticate(&action.url, "approve").await;
    let paid = confirm(&mut client, &alice, &approved.name, card, "3ds")
        .await
        .expect("confirming after authentication");
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    assert!(paid.payment_action.is_none());
    assert!(world.sold_seats().await.contains(&1));

    // Failed: confirming again answers the decline.
    let bob = customer();
    let (_, failed) = world.booking_for(&bob, &[2]).await;
    let waiting = confirm(&mut client, &bob, &failed.name, card, "3ds")
        .await
        .unwrap();
    authenticate(&waiting.payment_action.expect("an action").url, "fail").await;
    assert_reason(
        confirm(&mut client, &bob, &failed.name, card, "3ds").await,
        Code::FailedPrecondition,
        "PAYMENT_DECLINED",
    );

    // Abandoned: once its hold has run out the reconciler expires the
    // booking and cancels the intent, so a late approval charges nothing.
    let carol = customer();
    let (_, abandoned) = world.booking_for(&carol, &[3]).await;
    let waiting = confirm(&mut client, &carol, &abandoned.name, card, "3ds")
        .await
        .unwrap();
    let late_url = waiting.payment_action.expect("an action").url;
    eventually(
        Duration::from_secs(30),
        "the abandoned booking expired",
        || {
            let mut client = client.clone();
            let carol = &carol;
            let abandoned = &abandoned;
            async move {
                world.component.reconcile_once(Duration::ZERO).await.ok()?;
                let now = get(&mut client, carol, &abandoned.name).await.ok()?;
                (state(&now) == pb::BookingState::Expired).then_some(())
            }
        },
    )
    .await;
    let found = gateway
        .paysim
        .client()
        .search(&booking_id(&abandoned).to_string())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].status, ProviderStatus::Voided);
    let late = boxoffice_paysim::answer_buyer_page(&reqwest::Client::new(), &late_url, "approve")
        .await
        .unwrap();
    assert!(
        !late.status().is_success(),
        "a cancelled intent cannot be approved"
    );
    assert_eq!(gateway.count(ProviderStatus::Captured).await, 1);
}
