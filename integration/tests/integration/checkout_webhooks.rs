//! The payment webhook endpoint: the provider's own deliveries arrive (at
//! least once, some twice, in any order); forged, stale, replayed and
//! out-of-order deliveries are refused or change nothing.

use std::time::Duration;

use boxoffice_checkout::payment::webhook::{SIGNATURE_HEADER, WebhookEvent, WebhookPayment, sign};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use uuid::Uuid;

use crate::checkout::{CheckoutWorld, booking_id, cancel, confirm};
use crate::harness::{customer, eventually};

/// The development secret the test world runs with.
fn secret(world: &CheckoutWorld) -> Vec<u8> {
    world
        .component
        .checkout
        .config()
        .webhook_secret
        .expose()
        .as_bytes()
        .to_vec()
}

/// One HTTP/1.1 POST; answers the status and body.
async fn post(url: &str, signature: Option<&str>, body: &[u8]) -> (u16, String) {
    let uri: http::Uri = url.parse().expect("webhook url");
    let authority = uri.authority().expect("authority").to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connecting to the webhook listener");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let mut request = http::Request::post(uri.path()).header(http::header::HOST, authority);
    if let Some(signature) = signature {
        request = request.header(SIGNATURE_HEADER, signature);
    }
    let response = sender
        .send_request(
            request
                .body(Full::new(Bytes::copy_from_slice(body)))
                .expect("request"),
        )
        .await
        .expect("posting");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn event(payment_id: Uuid, status: &str) -> WebhookEvent {
    WebhookEvent {
        id: format!("evt_{}", Uuid::new_v4().simple()),
        kind: format!("payment.{status}"),
        created: chrono::Utc::now().timestamp(),
        data: WebhookPayment {
            provider_ref: "pi_test".into(),
            idempotency_key: payment_id.to_string(),
            status: status.into(),
            amount_minor: 4650,
            refunded_minor: 0,
        },
    }
}

async fn provider_state(world: &CheckoutWorld, payment_id: Uuid) -> Option<String> {
    world
        .world
        .db
        .client()
        .await
        .query_one(
            "SELECT (SELECT provider_state FROM checkout.payment_provider_states WHERE payment_id = $1)",
            &[&payment_id],
        )
        .await
        .expect("reading the payment")
        .get(0)
}

async fn webhook_rows(world: &CheckoutWorld) -> i64 {
    world
        .world
        .db
        .client()
        .await
        .query_one("SELECT count(*) FROM checkout.webhook_events", &[])
        .await
        .expect("counting webhooks")
        .get(0)
}

/// A confirmed booking's payment id.
async fn paid_booking(world: &CheckoutWorld) -> Uuid {
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[0]).await;
    let paid = confirm(
        &mut world.client.clone(),
        &alice,
        &booking.name,
        "tok_visa",
        "k",
    )
    .await
    .unwrap();
    payment_of(world, booking_id(&paid)).await
}

/// The payment that paid for a booking.
async fn payment_of(world: &CheckoutWorld, booking: Uuid) -> Uuid {
    world
        .world
        .db
        .client()
        .await
        .query_one(
            "SELECT payment_id FROM checkout.bookings WHERE id = $1",
            &[&booking],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_providers_deliveries_arrive() {
    let world = CheckoutWorld::new().await;
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[0]).await;
    let mut client = world.client.clone();
    let paid = confirm(&mut client, &alice, &booking.name, "tok_visa", "k")
        .await
        .unwrap();
    let payment_id = payment_of(&world, booking_id(&paid)).await;
    // Cancelled well before the event: refunded, which checkout subscribes
    // to (the authorization and the capture it made itself it does not).
    cancel(&mut client, &alice, &paid.name).await.unwrap();
    eventually(Duration::from_secs(10), "the refund webhook", || async {
        (provider_state(&world, payment_id).await.as_deref() == Some("refunded")).then_some(())
    })
    .await;
    let kinds: Vec<String> = world
        .world
        .db
        .client()
        .await
        .query(
            "SELECT DISTINCT kind FROM checkout.webhook_events WHERE payment_id = $1",
            &[&payment_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        kinds,
        ["payment.refunded"],
        "only the refund's event is delivered (once or twice, recorded once)"
    );
}

#[tokio::test]
async fn forged_stale_replayed_and_late_webhooks_change_nothing() {
    // No provider deliveries here: the test sends every webhook itself.
    let world = CheckoutWorld::with(&[], |config| {
        config.provider.webhook_url = Some("http://127.0.0.1:9/none".into())
    })
    .await;
    let url = world.component.webhook_url();
    let secret = secret(&world);
    let payment_id = paid_booking(&world).await;
    let now = chrono::Utc::now().timestamp();

    // Forged: wrong secret, tampered body, no signature.
    let captured = serde_json::to_vec(&event(payment_id, "captured")).unwrap();
    let forged = sign(b"whsec_not_the_secret", now, &captured);
    assert_eq!(post(&url, Some(&forged), &captured).await.0, 400);
    let good = sign(&secret, now, &captured);
    let mut tampered = captured.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(post(&url, Some(&good), &tampered).await.0, 400);
    assert_eq!(post(&url, None, &captured).await.0, 400);
    // Stale: genuinely signed, ten minutes ago.
    let stale = sign(&secret, now - 600, &captured);
    let (status, body) = post(&url, Some(&stale), &captured).await;
    assert_eq!(status, 400);
    assert!(body.contains("stale"), "{body}");
    assert_eq!(
        webhook_rows(&world).await,
        0,
        "nothing refused was recorded"
    );
    assert_eq!(provider_state(&world, payment_id).await, None);

    // Genuine: recorded once; replaying it is acknowledged and changes nothing.
    assert_eq!(post(&url, Some(&good), &captured).await.0, 200);
    assert_eq!(
        provider_state(&world, payment_id).await.as_deref(),
        Some("captured")
    );
    let (status, body) = post(&url, Some(&sign(&secret, now, &captured)), &captured).await;
    assert_eq!(status, 200);
    assert!(body.contains("duplicate"), "{body}");
    assert_eq!(webhook_rows(&world).await, 1);

    // Out of order: the authorization arrives after the capture.
    let authorized = serde_json::to_vec(&event(payment_id, "authorized")).unwrap();
    assert_eq!(
        post(&url, Some(&sign(&secret, now, &authorized)), &authorized)
            .await
            .0,
        200
    );
    assert_eq!(
        provider_state(&world, payment_id).await.as_deref(),
        Some("captured"),
        "a late event changes nothing"
    );
    // A later state still moves it forward.
    let refunded = serde_json::to_vec(&event(payment_id, "refunded")).unwrap();
    assert_eq!(
        post(&url, Some(&sign(&secret, now, &refunded)), &refunded)
            .await
            .0,
        200
    );
    assert_eq!(
        provider_state(&world, payment_id).await.as_deref(),
        Some("refunded")
    );
    // The booking itself is untouched by webhooks.
    let state: String = world
        .world
        .db
        .client()
        .await
        .query_one(
            "SELECT state FROM checkout.payments WHERE id = $1",
            &[&payment_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(state, "captured");
    // Wrong path and method.
    assert_eq!(
        post(
            &url.replace("/webhooks/payments", "/other"),
            Some(&good),
            &captured
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_burst_of_deliveries_records_each_event_once() {
    // Deliveries arriving together are written in batches: copies of one
    // event in the same batch, and events out of order, must still count
    // once and leave the newest state.
    let world = CheckoutWorld::with(&[], |config| {
        config.provider.webhook_url = Some("http://127.0.0.1:9/none".into())
    })
    .await;
    let url = world.component.webhook_url();
    let secret = secret(&world);
    let payment_id = paid_booking(&world).await;
    let now = chrono::Utc::now().timestamp();
    let events: Vec<Vec<u8>> = ["authorized", "captured", "refunded"]
        .iter()
        .map(|status| serde_json::to_vec(&event(payment_id, status)).unwrap())
        .collect();
    let mut deliveries = tokio::task::JoinSet::new();
    for copy in 0..4 {
        // Newest first on even rounds, oldest first on odd ones.
        for index in 0..events.len() {
            let index = if copy % 2 == 0 {
                events.len() - 1 - index
            } else {
                index
            };
            let (url, body) = (url.clone(), events[index].clone());
            let signature = sign(&secret, now, &body);
            deliveries.spawn(async move { post(&url, Some(&signature), &body).await });
        }
    }
    let mut new = 0;
    while let Some(answer) = deliveries.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 200, "{body}");
        if !body.contains("duplicate") {
            new += 1;
        }
    }
    assert_eq!(new, events.len(), "each event is new exactly once");
    assert_eq!(webhook_rows(&world).await, events.len() as i64);
    assert_eq!(
        provider_state(&world, payment_id).await.as_deref(),
        Some("refunded")
    );
}
