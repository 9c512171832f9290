//! Checkout paying with PayPal: `boxoffice-paysim` speaks PayPal's REST API
//! (Orders v2, Payments v2, Transaction Search, webhooks) as its own
//! process. The buyer approves at PayPal's page between two
//! ConfirmBookings; cancelling there leaves the booking payable until its
//! hold runs out; cancelling a booking refunds at PayPal and PayPal's
//! verified webhook arrives, while a forged one is refused; another user
//! cannot pay (or look at) someone's booking; and a `serve checkout`
//! process killed with SIGKILL in the middle of PayPal payments is settled
//! by a new process from PayPal's own records.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use boxoffice_checkout::FailPoint;
use boxoffice_checkout::payment::gateways::Gateways;
use boxoffice_checkout::payment::paypal::PaypalProvider;
use boxoffice_checkout::payment::{PaymentProvider as _, ProviderPayment, ProviderStatus};
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_runtime::Caller;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::checkout::{
    Checkout, SEAT_PRICE, assert_reason, booking_id, cancel, confirm, create, get, state,
};
use crate::checkout_gateway::{GatewayWorld, PaysimProcess};
use crate::harness::{as_caller, customer, eventually};
use crate::inventory::hold_seats;

const WAIT: Duration = Duration::from_secs(30);

/// ConfirmBooking paying with PayPal.
async fn pay_with_paypal(
    client: &mut Checkout,
    user: &Caller,
    booking: &str,
    key: &str,
) -> Result<pb::Booking, Status> {
    client
        .confirm_booking(as_caller(
            user,
            pb::ConfirmBookingRequest {
                name: booking.to_owned(),
                payment_method: Some(pb::PaymentMethod {
                    token: String::new(),
                    r#type: pb::PaymentMethodType::Paypal as i32,
                }),
                idempotency_key: key.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The buyer's browser at PayPal's approval page: it loads, then the buyer
/// chooses (`approve`, `decline` or `cancel`).
pub async fn at_paypal(url: &str, outcome: &str) -> reqwest::StatusCode {
    let http = reqwest::Client::new();
    let page = http.get(url).send().await.expect("loading PayPal's page");
    assert!(page.status().is_success(), "{:?}", page.status());
    boxoffice_paysim::answer_buyer_page(&http, url, outcome)
        .await
        .expect("answering PayPal's page")
        .status()
}

/// The approval URL of a ConfirmBooking answer that waits for the buyer.
pub fn approval_url(answer: &pb::Booking) -> String {
    assert_eq!(state(answer), pb::BookingState::Pending);
    let action = answer.payment_action.clone().expect("a payment action");
    assert_eq!(action.r#type, "redirect_to_url");
    action.url
}

/// PayPal's payments of a booking, asked of PayPal.
async fn paypal_payments(paypal: &PaypalProvider, booking: &pb::Booking) -> Vec<ProviderPayment> {
    paypal
        .search(&booking_id(booking).to_string())
        .await
        .expect("searching PayPal")
}

#[tokio::test]
async fn paying_with_paypal_waits_for_the_buyers_approval_then_captures_once() {
    let gateway = GatewayWorld::with(&[]).await;
    let world = &gateway.world;
    let paypal = gateway.paysim.paypal();
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[1]).await;

    let waiting = pay_with_paypal(&mut client, &alice, &booking.name, "pp-1")
        .await
        .expect("an answer that sends the buyer to PayPal");
    let url = approval_url(&waiting);
    assert!(
        url.starts_with(&format!("{}/checkoutnow?token=", gateway.paysim.url)),
        "{url}"
    );
    assert!(waiting.expire_time.is_some());
    // Asking again before approving answers the same page; nothing is
    // sold or paid meanwhile.
    let again = pay_with_paypal(&mut client, &alice, &booking.name, "pp-1")
        .await
        .unwrap();
    assert_eq!(approval_url(&again), url);
    assert!(world.sold_seats().await.is_empty());
    assert!(paypal_payments(&paypal, &booking).await.is_empty());

    assert!(at_paypal(&url, "approve").await.is_success());
    let paid = pay_with_paypal(&mut client, &alice, &booking.name, "pp-1")
        .await
        .expect("confirming after the approval");
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    assert!(paid.payment_action.is_none());
    assert!(!paid.tickets[0].code.is_empty());
    assert!(world.sold_seats().await.contains(&1));
    let payments = paypal_payments(&paypal, &booking).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, ProviderStatus::Captured);
    assert_eq!(
        payments[0].amount_minor,
        paid.total.as_ref().expect("a total").amount_minor,
        "PayPal charged exactly the booking's total"
    );
    // A retry answers the same booking; PayPal charges nothing more.
    let replay = pay_with_paypal(&mut client, &alice, &booking.name, "pp-1")
        .await
        .unwrap();
    assert_eq!(replay.tickets, paid.tickets);
    assert_eq!(paypal_payments(&paypal, &booking).await.len(), 1);
    // The same key with a card is another request: refused.
    assert_reason(
        confirm(&mut client, &alice, &booking.name, "tok_visa", "pp-1").await,
        Code::InvalidArgument,
        "IDEMPOTENCY_KEY_REUSED",
    );

    // A funding source that declines at authorization: declined, and the
    // decline is the answer for that key from then on.
    let bob = customer();
    let (_, declined) = world.booking_for(&bob, &[2]).await;
    let waiting = pay_with_paypal(&mut client, &bob, &declined.name, "pp-2")
        .await
        .unwrap();
    assert!(
        at_paypal(&approval_url(&waiting), "decline")
            .await
            .is_success()
    );
    for _ in 0..2 {
        assert_reason(
            pay_with_paypal(&mut client, &bob, &declined.name, "pp-2").await,
            Code::FailedPrecondition,
            "PAYMENT_DECLINED",
        );
    }
    assert!(paypal_payments(&paypal, &declined).await.is_empty());
}

#[tokio::test]
async fn a_buyer_who_cancels_at_paypal_keeps_a_payable_booking_that_expires_cleanly() {
    let gateway = GatewayWorld::with(&[
        (boxoffice_inventory::config::ENV_HOLD_TTL, "4"),
        (boxoffice_inventory::config::ENV_HOLD_COMMIT_MARGIN, "500"),
        (boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10"),
    ])
    .await;
    let world = &gateway.world;
    let paypal = gateway.paysim.paypal();
    let mut client = world.client.clone();

    // Cancelled at PayPal, then paid by card: the booking was still payable.
    let alice = customer();
    let (_, switched) = world.booking_for(&alice, &[1]).await;
    let waiting = pay_with_paypal(&mut client, &alice, &switched.name, "pp")
        .await
        .unwrap();
    assert!(
        at_paypal(&approval_url(&waiting), "cancel")
            .await
            .is_success()
    );
    let still = pay_with_paypal(&mut client, &alice, &switched.name, "pp")
        .await
        .unwrap();
    assert_eq!(
        state(&still),
        pb::BookingState::Pending,
        "still waiting for the buyer"
    );
    let paid = confirm(&mut client, &alice, &switched.name, "tok_visa", "card")
        .await
        .expect("paying by card instead");
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    assert!(paypal_payments(&paypal, &switched).await.is_empty());

    // Cancelled at PayPal and abandoned: the booking expires with its hold
    // and its seat goes back on sale; an approval afterwards moves no money.
    let bob = customer();
    let (_, abandoned) = world.booking_for(&bob, &[2]).await;
    let waiting = pay_with_paypal(&mut client, &bob, &abandoned.name, "pp")
        .await
        .unwrap();
    let url = approval_url(&waiting);
    assert!(at_paypal(&url, "cancel").await.is_success());
    eventually(WAIT, "the abandoned booking expired", || {
        let mut client = client.clone();
        let (bob, abandoned) = (&bob, &abandoned);
        async move {
            world.component.reconcile_once(Duration::ZERO).await.ok()?;
            let now = get(&mut client, bob, &abandoned.name).await.ok()?;
            (state(&now) == pb::BookingState::Expired).then_some(())
        }
    })
    .await;
    assert!(!world.sold_seats().await.contains(&2));
    // Its hold ran out: the sweeper frees the seat within a second.
    eventually(WAIT, "the seat back on sale", || async {
        (!world.held_seats().await.contains(&2)).then_some(())
    })
    .await;
    assert!(at_paypal(&url, "approve").await.is_success());
    assert_reason(
        pay_with_paypal(&mut client, &bob, &abandoned.name, "pp").await,
        Code::FailedPrecondition,
        "BOOKING_EXPIRED",
    );
    assert!(
        paypal_payments(&paypal, &abandoned).await.is_empty(),
        "a late approval is never authorized"
    );
}

#[tokio::test]
async fn a_cancelled_paypal_booking_is_refunded_at_paypal_and_its_verified_webhook_arrives() {
    let gateway = GatewayWorld::with(&[]).await;
    let world = &gateway.world;
    let paypal = gateway.paysim.paypal();
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[5]).await;
    let waiting = pay_with_paypal(&mut client, &alice, &booking.name, "k")
        .await
        .unwrap();
    at_paypal(&approval_url(&waiting), "approve").await;
    pay_with_paypal(&mut client, &alice, &booking.name, "k")
        .await
        .expect("paying");

    let cancelled = cancel(&mut client, &alice, &booking.name)
        .await
        .expect("cancelling");
    assert_eq!(state(&cancelled), pb::BookingState::Cancelled);
    let payments = paypal_payments(&paypal, &booking).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, ProviderStatus::Refunded);
    assert_eq!(payments[0].refunded_minor, SEAT_PRICE, "fees are kept");
    assert!(!world.sold_seats().await.contains(&5));
    let payment_id = payments[0].idempotency_key.parse::<uuid::Uuid>().unwrap();
    let db = &world.world.db;
    eventually(WAIT, "PayPal's refund webhook verified and recorded", || async {
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
    })
    .await;
}

async fn webhook_rows(world: &GatewayWorld) -> i64 {
    world
        .world
        .world
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM checkout.webhook_events", &[])
        .await
        .expect("counting webhook events")
        .get(0)
}

#[tokio::test]
async fn a_forged_paypal_webhook_is_refused_and_changes_nothing() {
    let gateway = GatewayWorld::with(&[]).await;
    let world = &gateway.world;
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[7]).await;
    let waiting = pay_with_paypal(&mut client, &alice, &booking.name, "k")
        .await
        .unwrap();
    at_paypal(&approval_url(&waiting), "approve").await;
    let paid = pay_with_paypal(&mut client, &alice, &booking.name, "k")
        .await
        .unwrap();
    let payment = paypal_payments(&gateway.paysim.paypal(), &booking)
        .await
        .remove(0);
    let before = webhook_rows(&gateway).await;

    // A refund "from PayPal" for the real payment, signed by nobody.
    let forged = serde_json::json!({
        "id": "WH-FORGED-0000001",
        "event_version": "1.0",
        "create_time": chrono::Utc::now().to_rfc3339(),
        "resource_type": "refund",
        "event_type": "PAYMENT.CAPTURE.REFUNDED",
        "resource": {
            "id": "FORGEDREFUND00001",
            "status": "COMPLETED",
            "invoice_id": payment.idempotency_key,
            "amount": {"currency_code": payment.currency_code, "value": "45.00"},
            "supplementary_data": {"related_ids": {"order_id": payment.provider_ref}},
        },
    })
    .to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let http = reqwest::Client::new();
    let url = world.component.paypal_webhook_url();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(forged.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let signed = |time: &str| {
        vec![
            ("paypal-transmission-id", uuid::Uuid::new_v4().to_string()),
            ("paypal-transmission-time", time.to_owned()),
            (
                "paypal-transmission-sig",
                "Zm9yZ2VkIHNpZ25hdHVyZQ==".to_owned(),
            ),
            ("paypal-auth-algo", "HMACSHA256".to_owned()),
            (
                "paypal-cert-url",
                format!(
                    "{}/v1/notifications/certs/CERT-boxoffice-paysim",
                    gateway.paysim.url
                ),
            ),
        ]
    };
    for (what, headers) in [
        ("a made-up signature", signed(&now)),
        ("no transmission headers", Vec::new()),
        ("a stale transmission", signed("2020-01-01T00:00:00Z")),
    ] {
        let answer = send(headers).await.expect("posting the forgery");
        assert_eq!(answer.status(), reqwest::StatusCode::BAD_REQUEST, "{what}");
    }
    assert_eq!(webhook_rows(&gateway).await, before, "nothing recorded");
    let now = get(&mut client, &alice, &booking.name).await.unwrap();
    assert_eq!(state(&now), pb::BookingState::Confirmed);
    assert_eq!(now.refunded, paid.refunded);
    let at_paypal_now = paypal_payments(&gateway.paysim.paypal(), &booking).await;
    assert_eq!(at_paypal_now[0].status, ProviderStatus::Captured);
}

#[tokio::test]
async fn another_users_booking_cannot_be_paid_or_approved_and_bad_methods_are_refused() {
    let gateway = GatewayWorld::with(&[]).await;
    let world = &gateway.world;
    let paypal = gateway.paysim.paypal();
    let mut client = world.client.clone();
    let (alice, mallory) = (customer(), customer());
    let (_, booking) = world.booking_for(&alice, &[3]).await;
    let waiting = pay_with_paypal(&mut client, &alice, &booking.name, "alice-key")
        .await
        .unwrap();
    let url = approval_url(&waiting);

    // Mallory names Alice's booking: not found, before and after Alice
    // approved, whatever key; nothing is paid or sold for it.
    for key in ["alice-key", "mallory-key"] {
        assert_reason(
            pay_with_paypal(&mut client, &mallory, &booking.name, key).await,
            Code::NotFound,
            "NOT_FOUND",
        );
    }
    at_paypal(&url, "approve").await;
    assert_reason(
        pay_with_paypal(&mut client, &mallory, &booking.name, "alice-key").await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert!(paypal_payments(&paypal, &booking).await.is_empty());
    assert!(world.sold_seats().await.is_empty());
    // Alice's own confirmation still goes through.
    let paid = pay_with_paypal(&mut client, &alice, &booking.name, "alice-key")
        .await
        .unwrap();
    assert_eq!(state(&paid), pb::BookingState::Confirmed);

    // Unknown booking, unknown order, bad payment methods.
    let unknown = format!("bookings/{}", uuid::Uuid::new_v4());
    assert_reason(
        pay_with_paypal(&mut client, &alice, &unknown, "x").await,
        Code::NotFound,
        "NOT_FOUND",
    );
    let missing = reqwest::get(format!(
        "{}/checkoutnow?token=NOSUCHORDER000000",
        gateway.paysim.url
    ))
    .await
    .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let (_, other) = world.booking_for(&alice, &[4]).await;
    for method in [
        pb::PaymentMethod {
            token: String::new(),
            r#type: 99,
        },
        pb::PaymentMethod {
            token: "paypal".to_owned(),
            r#type: pb::PaymentMethodType::Card as i32,
        },
    ] {
        let refused = client
            .confirm_booking(as_caller(
                &alice,
                pb::ConfirmBookingRequest {
                    name: other.name.clone(),
                    payment_method: Some(method),
                    idempotency_key: "bad".to_owned(),
                },
            ))
            .await
            .expect_err("a bad payment method");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    }
    assert_eq!(
        state(&get(&mut client, &alice, &other.name).await.unwrap()),
        pb::BookingState::Pending
    );
}

#[tokio::test]
async fn paypal_without_its_gateway_is_a_clear_refusal() {
    let world = crate::checkout::CheckoutWorld::new().await;
    let mut client = world.client.clone();
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[1]).await;
    assert_reason(
        pay_with_paypal(&mut client, &alice, &booking.name, "k").await,
        Code::FailedPrecondition,
        "PAYMENT_METHOD_UNAVAILABLE",
    );
    assert_eq!(
        state(&get(&mut client, &alice, &booking.name).await.unwrap()),
        pb::BookingState::Pending
    );
}

/// Checkout stops after each step of a PayPal payment (as if it died
/// there); a process started afterwards, with nothing in memory and its
/// own gateway clients, settles every booking from PayPal's records
/// (Transaction Search, then the orders) and inventory's once the holds
/// run out: the authorization without a sale is voided and its booking
/// expired; sold ones are captured if need be and confirmed.
#[tokio::test]
async fn a_paypal_payment_stopped_at_any_step_is_settled_from_paypals_records() {
    let gateway = GatewayWorld::with(&[
        (boxoffice_inventory::config::ENV_HOLD_TTL, "4"),
        (boxoffice_inventory::config::ENV_HOLD_COMMIT_MARGIN, "500"),
        (boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10"),
    ])
    .await;
    let world = &gateway.world;
    let mut client = world.client.clone();
    let mut stopped = Vec::new();
    for (index, point) in [
        FailPoint::AfterAuthorize,
        FailPoint::AfterCommit,
        FailPoint::AfterCapture,
    ]
    .into_iter()
    .enumerate()
    {
        let buyer = customer();
        let seat = 20 + index as u32;
        let (_, booking) = world.booking_for(&buyer, &[seat]).await;
        let waiting = pay_with_paypal(&mut client, &buyer, &booking.name, "pay")
            .await
            .unwrap();
        at_paypal(&approval_url(&waiting), "approve").await;
        world.fail_points.arm(point);
        let answer = pay_with_paypal(&mut client, &buyer, &booking.name, "pay").await;
        world.fail_points.disarm(point);
        assert_reason(answer, Code::Unavailable, "SIMULATED_CRASH");
        stopped.push((point, seat, buyer, booking));
    }
    let card = std::sync::Arc::new(gateway.paysim.client());
    let paypal = std::sync::Arc::new(gateway.paysim.paypal());
    let restarted = world.restarted(std::sync::Arc::new(Gateways::new(card, Some(paypal))));
    let restarted = &restarted;
    eventually(WAIT, "every stopped booking settled", || {
        let mut client = client.clone();
        let stopped = &stopped;
        async move {
            boxoffice_checkout::reconciler::reconcile_once(restarted, Duration::ZERO)
                .await
                .ok()?;
            for (_, _, buyer, booking) in stopped {
                let now = get(&mut client, buyer, &booking.name).await.ok()?;
                if state(&now) == pb::BookingState::Pending {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let sold = world.sold_seats().await;
    let paypal = gateway.paysim.paypal();
    for (point, seat, buyer, booking) in &stopped {
        let settled = get(&mut client, buyer, &booking.name).await.unwrap();
        let found = paypal_payments(&paypal, booking).await;
        assert_eq!(found.len(), 1, "{point:?}");
        if *point == FailPoint::AfterAuthorize {
            assert_eq!(state(&settled), pb::BookingState::Expired, "{point:?}");
            assert_eq!(found[0].status, ProviderStatus::Voided, "{point:?}");
            assert!(!sold.contains(seat), "{point:?}");
        } else {
            assert_eq!(state(&settled), pb::BookingState::Confirmed, "{point:?}");
            assert_eq!(found[0].status, ProviderStatus::Captured, "{point:?}");
            assert!(sold.contains(seat), "{point:?}");
            // The buyer's retry answers the booking the reconciler confirmed.
            let retry = pay_with_paypal(&mut client, buyer, &booking.name, "pay")
                .await
                .expect("the confirmed booking");
            assert_eq!(retry.tickets, settled.tickets, "{point:?}");
        }
    }
}

// ---- a real checkout process, killed in the middle of PayPal payments ----

/// `boxoffice serve checkout` as its own process, over the world's
/// database, inventory and catalog, paying through the simulator.
struct CheckoutProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
}

impl CheckoutProcess {
    async fn start(world: &GatewayWorld, settings: &[(&str, &str)]) -> Self {
        let addr = crate::harness::spare_addr();
        let admin = crate::harness::spare_addr();
        let inner = &world.world.world;
        let mut command =
            tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice-integration-system"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("BOXOFFICE_") {
                command.env_remove(&name);
            }
        }
        let upstream = format!("http://{}", inner.server.addr);
        command
            .args(["serve", "checkout"])
            .env("BOXOFFICE_DATABASE_URL", inner.db.url.expose())
            .env("BOXOFFICE_REDIS_URL", &inner.redis_url)
            .env("BOXOFFICE_LISTEN", addr.to_string())
            .env("BOXOFFICE_ADMIN_LISTEN", admin.to_string())
            .env("BOXOFFICE_LOG", "error")
            .env("BOXOFFICE_INVENTORY_URL", &upstream)
            .env("BOXOFFICE_CATALOG_URL", &upstream)
            .env("BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN", "127.0.0.1:0")
            .env("BOXOFFICE_PAYMENTS_URL", &world.paysim.url)
            .env("BOXOFFICE_PAYPAL_URL", &world.paysim.url)
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("starting boxoffice serve checkout");
        let start = Instant::now();
        loop {
            if let Ok(mut stream) = tokio::net::TcpStream::connect(admin).await {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let _ = stream
                    .write_all(b"GET /ready HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                    .await;
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer).await;
                if answer.starts_with("HTTP/1.1 200") {
                    break;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve checkout exited ({status}) before it was ready");
            }
            assert!(start.elapsed() < WAIT, "serve checkout not ready in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, addr }
    }

    async fn client(&self) -> Checkout {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("url")
            .connect()
            .await
            .expect("connecting to serve checkout");
        CheckoutServiceClient::new(channel)
    }

    /// SIGKILL: no drain, no flush, nothing recorded that was not already.
    async fn kill9(&mut self) {
        self.child.start_kill().expect("SIGKILL to serve checkout");
        self.child.wait().await.expect("waiting for it to die");
    }
}

/// Buyers approve their PayPal orders, then confirm all at once against a
/// `serve checkout` process, each PayPal call slowed down like a real
/// round trip; the process is killed with SIGKILL as soon as PayPal holds
/// an authorization, so payments stop at every step. A new process (its
/// reconciler on) settles everything from PayPal's records and inventory's
/// once the holds run out: the money PayPal captured less what it refunded
/// is what the confirmed bookings cost, no authorization is left held, no
/// seat is sold to anything but a confirmed booking, and nothing stays
/// pending.
#[tokio::test]
async fn a_checkout_process_killed_mid_paypal_payment_is_settled_from_paypals_records() {
    const BUYERS: u32 = 8;
    let paysim = PaysimProcess::start_with(&[(boxoffice_paysim::config::ENV_LATENCY, "300")]).await;
    let gateway = GatewayWorld::over(
        paysim,
        &[
            (boxoffice_inventory::config::ENV_HOLD_TTL, "8"),
            (boxoffice_inventory::config::ENV_HOLD_COMMIT_MARGIN, "500"),
            (boxoffice_inventory::config::ENV_MAX_HOLDS_PER_USER, "10"),
        ],
    )
    .await;
    let world = &gateway.world;
    let paypal = gateway.paysim.paypal();
    let mut first = CheckoutProcess::start(
        &gateway,
        &[("BOXOFFICE_CHECKOUT_RECONCILE_INTERVAL_MS", "600000")],
    )
    .await;
    let client = first.client().await;

    // Every buyer holds, books and approves at PayPal at once.
    let buyers: Vec<(u32, Caller, pb::Booking)> =
        futures::future::join_all((0..BUYERS).map(|seat| {
            let mut client = client.clone();
            let mut inventory = world.inventory();
            let event_id = world.event.event_id.clone();
            async move {
                let buyer = customer();
                let hold = hold_seats(&mut inventory, &buyer, &event_id, &[seat])
                    .await
                    .expect("holding");
                let booking = create(&mut client, &buyer, &hold.name)
                    .await
                    .expect("booking");
                let waiting = pay_with_paypal(&mut client, &buyer, &booking.name, "pay")
                    .await
                    .expect("sent to PayPal");
                assert!(
                    at_paypal(&approval_url(&waiting), "approve")
                        .await
                        .is_success()
                );
                (seat, buyer, booking)
            }
        }))
        .await;
    let ledger = gateway.paysim.ledger().to_owned();
    // PayPal's ledger, written before PayPal answers: how many orders it
    // has recorded with an authorization, and with a capture.
    let recorded = move |what: &str| {
        std::fs::read_to_string(&ledger)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(what))
            .count()
    };
    assert_eq!(recorded("\"authorization\":{"), 0);
    let confirm_all = |wave: &[(u32, Caller, pb::Booking)]| {
        wave.iter()
            .map(|(_, buyer, booking)| {
                let (mut client, buyer, name) =
                    (client.clone(), buyer.clone(), booking.name.clone());
                tokio::spawn(
                    async move { pay_with_paypal(&mut client, &buyer, &name, "pay").await },
                )
            })
            .collect::<Vec<_>>()
    };
    // Two waves, the second a step behind the first: it starts when the
    // first authorization is on PayPal's ledger.
    let (first_wave, second_wave) = buyers.split_at(buyers.len() / 2);
    let mut confirmations = confirm_all(first_wave);
    eventually(WAIT, "PayPal authorized a payment", || {
        let recorded = recorded.clone();
        async move { (recorded("\"authorization\":{") > 0).then_some(()) }
    })
    .await;
    confirmations.extend(confirm_all(second_wave));
    // Killed at PayPal's first capture: the first wave is being sold and
    // captured, the second is on its way to an authorization.
    eventually(WAIT, "PayPal captured a payment", || {
        let recorded = recorded.clone();
        async move { (recorded("\"capture\":{") > 0).then_some(()) }
    })
    .await;
    first.kill9().await;
    let mut answered = 0;
    for confirmation in confirmations {
        if let Ok(Ok(booking)) = confirmation.await {
            assert_eq!(state(&booking), pb::BookingState::Confirmed);
            answered += 1;
        }
    }
    assert!(
        answered < BUYERS,
        "the kill came in the middle of the payments"
    );

    let second = CheckoutProcess::start(
        &gateway,
        &[
            ("BOXOFFICE_CHECKOUT_RECONCILE_INTERVAL_MS", "200"),
            ("BOXOFFICE_CHECKOUT_RECONCILE_AFTER_SECS", "0"),
        ],
    )
    .await;
    let mut client = second.client().await;
    let states = eventually(2 * WAIT, "every booking settled by the new process", || {
        let mut client = client.clone();
        let buyers = &buyers;
        async move {
            let mut states = Vec::new();
            for (seat, buyer, booking) in buyers {
                let now = get(&mut client, buyer, &booking.name).await.ok()?;
                if state(&now) == pb::BookingState::Pending {
                    return None;
                }
                states.push((*seat, now));
            }
            Some(states)
        }
    })
    .await;

    let payments = paypal.payments().await.expect("PayPal's payments");
    assert!(
        payments
            .iter()
            .all(|payment| payment.status != ProviderStatus::Authorized),
        "no authorization left held: {payments:?}"
    );
    let captured: i64 = payments
        .iter()
        .filter(|p| {
            matches!(
                p.status,
                ProviderStatus::Captured | ProviderStatus::Refunded
            )
        })
        .map(|p| p.amount_minor)
        .sum();
    let refunded: i64 = payments.iter().map(|p| p.refunded_minor).sum();
    let confirmed: Vec<&pb::Booking> = states
        .iter()
        .filter(|(_, booking)| state(booking) == pb::BookingState::Confirmed)
        .map(|(_, booking)| booking)
        .collect();
    let confirmed_total: i64 = confirmed
        .iter()
        .map(|booking| booking.total.as_ref().map_or(0, |t| t.amount_minor))
        .sum();
    assert_eq!(
        captured - refunded,
        confirmed_total,
        "captured money = confirmed bookings - refunds"
    );
    assert!(
        !confirmed.is_empty(),
        "the payment captured before the kill ends confirmed"
    );
    for (_, booking) in &states {
        let at_paypal = paypal_payments(&paypal, booking).await;
        let kept = at_paypal
            .iter()
            .filter(|p| p.status == ProviderStatus::Captured)
            .count();
        let expected = usize::from(state(booking) == pb::BookingState::Confirmed);
        assert_eq!(kept, expected, "{}: {at_paypal:?}", booking.name);
    }
    let sold: BTreeSet<u32> = world.sold_seats().await.into_iter().collect();
    let confirmed_seats: BTreeSet<u32> = states
        .iter()
        .filter(|(_, booking)| state(booking) == pb::BookingState::Confirmed)
        .map(|(seat, _)| *seat)
        .collect();
    assert_eq!(
        sold, confirmed_seats,
        "seats sold only to confirmed bookings"
    );
    // A buyer's retry after the restart answers what was settled.
    for (_, buyer, booking) in &buyers {
        let settled = states
            .iter()
            .find(|(_, b)| b.name == booking.name)
            .map(|(_, b)| state(b));
        let retry = pay_with_paypal(&mut client, buyer, &booking.name, "pay").await;
        match settled {
            Some(pb::BookingState::Confirmed) => {
                assert_eq!(
                    state(&retry.expect("the confirmed booking")),
                    pb::BookingState::Confirmed
                )
            }
            _ => assert!(retry.is_err(), "an expired booking is not paid again"),
        }
    }
}

/// A registered buyer of the whole system, through the edge.
async fn edge_buyer(
    accounts: &mut boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient<Channel>,
) -> String {
    let email = format!("paypal-{}@example.com", uuid::Uuid::new_v4().simple());
    accounts
        .register(boxoffice_contracts::accounts::v1::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: "Buyer".into(),
        })
        .await
        .expect("registering through the edge");
    crate::edge_world::login(accounts, &email, "correct horse battery").await
}

/// The whole system as `boxoffice up` runs it, PayPal through the
/// simulator process: hold → book → ConfirmBooking with PayPal through the
/// edge → approve at PayPal → ConfirmBooking again → confirmed; another
/// user naming the booking is refused; cancelling refunds at PayPal.
#[tokio::test]
async fn paying_with_paypal_through_the_edge_of_the_whole_system() {
    use crate::edge_world::with_token;
    use boxoffice_contracts::inventory::v1 as inventory_pb;

    let paysim = PaysimProcess::start().await;
    let world = crate::system_world::SystemWorld::start(
        "paypal",
        &[
            ("BOXOFFICE_PAYMENTS_URL", paysim.url.as_str()),
            ("BOXOFFICE_PAYPAL_URL", paysim.url.as_str()),
        ],
    )
    .await;
    let edge = world.edge().await;
    let mut accounts =
        boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient::new(
            edge.clone(),
        );
    let admin = crate::edge_world::login(
        &mut accounts,
        boxoffice_accounts::server::DEMO_ADMIN_EMAIL,
        boxoffice_accounts::server::DEMO_PASSWORD,
    )
    .await;
    let event =
        crate::system_world::standing_event_on_sale(&edge, &admin, "Brudenell", "PayPal Night", 10)
            .await;
    let (alice, mallory) = (
        edge_buyer(&mut accounts).await,
        edge_buyer(&mut accounts).await,
    );
    let hold =
        boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient::new(
            edge.clone(),
        )
        .hold_seats(with_token(
            &alice,
            inventory_pb::HoldSeatsRequest {
                event_id: event.id.clone(),
                selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity: 2,
                        ..Default::default()
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .expect("holding two places")
        .into_inner();
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let booking = checkout
        .create_booking(with_token(
            &alice,
            pb::CreateBookingRequest {
                hold: hold.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("booking")
        .into_inner();
    let paypal_request = |name: &str| pb::ConfirmBookingRequest {
        name: name.to_owned(),
        payment_method: Some(pb::PaymentMethod {
            token: String::new(),
            r#type: pb::PaymentMethodType::Paypal as i32,
        }),
        idempotency_key: "edge-pay".into(),
    };
    let waiting = checkout
        .confirm_booking(with_token(&alice, paypal_request(&booking.name)))
        .await
        .expect("sent to PayPal")
        .into_inner();
    let url = approval_url(&waiting);
    assert!(url.starts_with(&paysim.url), "{url}");
    // Mallory names Alice's booking through the edge: not found.
    let refused = checkout
        .confirm_booking(with_token(&mallory, paypal_request(&booking.name)))
        .await
        .expect_err("someone else's booking");
    assert_eq!(refused.code(), Code::NotFound);
    assert!(at_paypal(&url, "approve").await.is_success());
    let paid = checkout
        .confirm_booking(with_token(&alice, paypal_request(&booking.name)))
        .await
        .expect("confirming after the approval")
        .into_inner();
    assert_eq!(state(&paid), pb::BookingState::Confirmed);
    assert_eq!(paid.tickets.len(), 2);
    let paypal = paysim.paypal();
    let payments = paypal_payments(&paypal, &booking).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].status, ProviderStatus::Captured);
    let cancelled = checkout
        .cancel_booking(with_token(
            &alice,
            pb::CancelBookingRequest {
                name: booking.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling")
        .into_inner();
    assert_eq!(state(&cancelled), pb::BookingState::Cancelled);
    let payments = paypal_payments(&paypal, &booking).await;
    assert_eq!(payments[0].status, ProviderStatus::Refunded);
    assert_eq!(
        payments[0].refunded_minor,
        cancelled.refunded.as_ref().map_or(0, |m| m.amount_minor),
        "PayPal refunded what the booking says"
    );
}
