//! The audit log through the edge of a whole system: an admin action (and
//! its answer) and a payment's authorization and capture are listed with
//! actor and request id; filters by actor, action and time; reads are not
//! recorded; PostgreSQL refuses to change or delete a record; an
//! authorization voided because the seats were gone is recorded (its
//! authorization and its void), once, for the card and the PayPal gateway.

use std::time::Duration;

use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::audit::v1 as pb;
use boxoffice_contracts::audit::v1::audit_service_client::AuditServiceClient;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use boxoffice_checkout::payment::{PaymentProvider as _, ProviderStatus};
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;

use crate::checkout_gateway::PaysimProcess;
use crate::checkout_paypal::{approval_url, at_paypal};
use crate::edge_world::with_token;
use crate::harness::eventually;
use crate::system_world::{SystemWorld, standing_event_on_sale};
use crate::webhooks::{admin_token, buy_one, customer};

fn with_request_id<T>(token: &str, request_id: &str, message: T) -> tonic::Request<T> {
    let mut request = with_token(token, message);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("a request id"));
    request
}

async fn list(
    edge: &Channel,
    token: &str,
    filter: pb::ListAuditRecordsRequest,
) -> Vec<pb::AuditRecord> {
    AuditServiceClient::new(edge.clone())
        .list_audit_records(with_token(token, filter))
        .await
        .expect("listing the audit log")
        .into_inner()
        .records
}

fn by_request(request_id: &str) -> pb::ListAuditRecordsRequest {
    pb::ListAuditRecordsRequest {
        request_id: request_id.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn admin_actions_and_payments_are_listed_with_actor_and_request_id() {
    let world = SystemWorld::start("audit", &[]).await;
    let edge = world.edge().await;
    let admin = admin_token(&edge).await;
    let admin_id = AccountsServiceClient::new(edge.clone())
        .get_me(with_token(&admin, accounts_pb::GetMeRequest::default()))
        .await
        .expect("who am I")
        .into_inner()
        .id;
    let mut catalog = CatalogServiceClient::new(edge.clone());
    // An admin action that changes something, and one the service refuses.
    catalog
        .create_performer(with_request_id(
            &admin,
            "audit-performer-1",
            catalog_pb::CreatePerformerRequest {
                performer: Some(catalog_pb::Performer {
                    name: "The Auditors".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating a performer");
    let refused = catalog
        .create_performer(with_request_id(
            &admin,
            "audit-performer-2",
            catalog_pb::CreatePerformerRequest::default(),
        ))
        .await
        .expect_err("a performer without a name");
    assert_eq!(refused.code(), Code::InvalidArgument);

    let recorded = eventually(
        Duration::from_secs(10),
        "the action's outcome is recorded",
        || {
            let (edge, admin) = (edge.clone(), admin.clone());
            async move {
                list(&edge, &admin, by_request("audit-performer-1"))
                    .await
                    .into_iter()
                    .next()
                    .filter(|record| record.outcome == "OK")
            }
        },
    )
    .await;
    assert_eq!(recorded.kind, "admin");
    assert_eq!(recorded.actor, admin_id);
    assert_eq!(
        recorded.action,
        "/boxoffice.catalog.v1.CatalogService/CreatePerformer"
    );
    assert_eq!(recorded.request_id, "audit-performer-1");
    let refused = eventually(Duration::from_secs(10), "the refusal is recorded", || {
        let (edge, admin) = (edge.clone(), admin.clone());
        async move {
            list(&edge, &admin, by_request("audit-performer-2"))
                .await
                .into_iter()
                .next()
                .filter(|record| record.outcome != "UNKNOWN_OUTCOME")
        }
    })
    .await;
    assert_eq!(refused.outcome, "INVALID_ARGUMENT");

    // A payment: its authorization and capture, by the buyer, under the
    // request id of the confirmation.
    let event = standing_event_on_sale(&edge, &admin, "Audit Hall", "Audit Night", 10).await;
    let (buyer, buyer_id) = customer(&edge, "payer").await;
    let booking_id = buy_one(&edge, &buyer, &event.id, "audit-pay-1").await;
    let payments = list(&edge, &admin, by_request("audit-pay-1")).await;
    let actions: Vec<&str> = payments
        .iter()
        .map(|record| record.action.as_str())
        .collect();
    assert_eq!(
        actions,
        ["payment.capture", "payment.authorize"],
        "newest first"
    );
    for record in &payments {
        assert_eq!(record.kind, "payment");
        assert_eq!(record.actor, buyer_id);
        assert_eq!(record.target, format!("booking/{booking_id}"));
        assert_eq!(record.outcome, "succeeded");
        assert_eq!(
            (record.amount_minor, record.currency_code.as_str()),
            (2_650, "GBP")
        );
    }

    // Filters: an actor, an action prefix, a time range.
    let of_buyer = list(
        &edge,
        &admin,
        pb::ListAuditRecordsRequest {
            actor: buyer_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        of_buyer.len(),
        2,
        "the buyer did nothing else worth recording"
    );
    let catalog_writes = list(
        &edge,
        &admin,
        pb::ListAuditRecordsRequest {
            action: "/boxoffice.catalog.v1.CatalogService/*".into(),
            actor: admin_id.clone(),
            ..Default::default()
        },
    )
    .await;
    // Two performers, a venue, an event, its publication.
    assert_eq!(catalog_writes.len(), 5, "{catalog_writes:?}");
    let future = list(
        &edge,
        &admin,
        pb::ListAuditRecordsRequest {
            start_time: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() + 3600,
                nanos: 0,
            }),
            ..Default::default()
        },
    )
    .await;
    assert!(future.is_empty());
    // Pages, newest first, without overlap.
    let first = AuditServiceClient::new(edge.clone())
        .list_audit_records(with_token(
            &admin,
            pb::ListAuditRecordsRequest {
                page_size: 3,
                ..Default::default()
            },
        ))
        .await
        .expect("a page")
        .into_inner();
    assert_eq!(first.records.len(), 3);
    let second = AuditServiceClient::new(edge.clone())
        .list_audit_records(with_token(
            &admin,
            pb::ListAuditRecordsRequest {
                page_size: 3,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("the next page")
        .into_inner();
    let last_of_first: i64 = first.records[2].id.parse().unwrap();
    assert!(
        second
            .records
            .iter()
            .all(|r| r.id.parse::<i64>().unwrap() < last_of_first)
    );
    // Reads are not recorded (the lists above, the performer reads).
    let everything = list(
        &edge,
        &admin,
        pb::ListAuditRecordsRequest {
            page_size: 200,
            ..Default::default()
        },
    )
    .await;
    assert!(
        everything
            .iter()
            .all(|record| !record.action.contains("ListAuditRecords"))
    );
    assert!(
        everything
            .iter()
            .all(|record| !record.action.contains("/Get"))
    );

    // Append only, whoever asks: PostgreSQL refuses changes and deletions.
    let client = world.system.pool.get().await.expect("a connection");
    for sql in [
        "UPDATE audit.records SET actor = 'someone else'",
        "DELETE FROM audit.records",
        "TRUNCATE audit.records CASCADE",
        "UPDATE audit.outcomes SET outcome = 'OK'",
        "DELETE FROM audit.outcomes",
    ] {
        let error = client.batch_execute(sql).await.expect_err(sql);
        let message = error
            .as_db_error()
            .map(|db| db.message().to_owned())
            .unwrap_or_default();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    let after = list(
        &edge,
        &admin,
        pb::ListAuditRecordsRequest {
            page_size: 200,
            ..Default::default()
        },
    )
    .await;
    assert!(after.len() >= everything.len());
    assert!(after.iter().all(|record| record.actor != "someone else"));
    drop(client);
    world.stop().await;
}

/// Holds one place as `token` and books it; answers the hold's and the
/// booking's names.
async fn hold_and_book(edge: &Channel, token: &str, event_id: &str) -> (String, String) {
    let hold = InventoryServiceClient::new(edge.clone())
        .hold_seats(with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity: 1,
                        ..Default::default()
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .expect("holding")
        .into_inner();
    let booking = CheckoutServiceClient::new(edge.clone())
        .create_booking(with_token(
            token,
            checkout_pb::CreateBookingRequest {
                hold: hold.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("booking")
        .into_inner();
    (hold.name, booking.name)
}

async fn release(edge: &Channel, token: &str, hold: &str) {
    InventoryServiceClient::new(edge.clone())
        .release_hold(with_token(
            token,
            inventory_pb::ReleaseHoldRequest {
                name: hold.to_owned(),
            },
        ))
        .await
        .expect("releasing the hold");
}

/// ConfirmBooking with `method` under `request_id` and the key `key`.
async fn confirm(
    edge: &Channel,
    token: &str,
    booking: &str,
    method: checkout_pb::PaymentMethod,
    key: &str,
    request_id: &str,
) -> Result<checkout_pb::Booking, tonic::Status> {
    CheckoutServiceClient::new(edge.clone())
        .confirm_booking(with_request_id(
            token,
            request_id,
            checkout_pb::ConfirmBookingRequest {
                name: booking.to_owned(),
                payment_method: Some(method),
                idempotency_key: key.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// The booking's payment operations in the log, oldest first.
async fn operations(edge: &Channel, admin: &str, buyer_id: &str, booking: &str) -> Vec<String> {
    let mut records = list(
        edge,
        admin,
        pb::ListAuditRecordsRequest {
            actor: buyer_id.to_owned(),
            action: "payment.*".into(),
            ..Default::default()
        },
    )
    .await;
    records.reverse();
    let booking_id = booking.rsplit('/').next().expect("a booking id");
    records
        .into_iter()
        .filter(|record| record.target == format!("booking/{booking_id}"))
        .map(|record| {
            assert_eq!(record.kind, "payment");
            assert_eq!(record.outcome, "succeeded");
            assert_eq!(
                (record.amount_minor, record.currency_code.as_str()),
                (2_650, "GBP"),
                "the amount authorized and given back"
            );
            format!("{} {}", record.action, record.request_id)
        })
        .collect()
}

#[tokio::test]
async fn voided_authorizations_are_recorded_once_for_both_gateways() {
    let paysim = PaysimProcess::start().await;
    let world = SystemWorld::start(
        "audit-void",
        &[
            ("BOXOFFICE_PAYMENTS_URL", paysim.url.as_str()),
            ("BOXOFFICE_PAYPAL_URL", paysim.url.as_str()),
        ],
    )
    .await;
    let edge = world.edge().await;
    let admin = admin_token(&edge).await;
    let event = standing_event_on_sale(&edge, &admin, "Void Hall", "Void Night", 10).await;
    let (buyer, buyer_id) = customer(&edge, "voider").await;
    let card = || checkout_pb::PaymentMethod {
        token: "tok_visa".into(),
        ..Default::default()
    };
    let paypal = || checkout_pb::PaymentMethod {
        token: String::new(),
        r#type: checkout_pb::PaymentMethodType::Paypal as i32,
    };

    // Card: the hold is gone before payment; the authorization is voided.
    let (hold, booking) = hold_and_book(&edge, &buyer, &event.id).await;
    release(&edge, &buyer, &hold).await;
    let gone = confirm(&edge, &buyer, &booking, card(), "card", "void-card")
        .await
        .expect_err("the seats are gone");
    assert_eq!(gone.code(), Code::Aborted, "{gone:?}");
    let card_payments = paysim
        .client()
        .search(booking.rsplit('/').next().expect("an id"))
        .await
        .expect("asking the card gateway");
    assert_eq!(card_payments.len(), 1);
    assert_eq!(card_payments[0].status, ProviderStatus::Voided);
    assert_eq!(
        operations(&edge, &admin, &buyer_id, &booking).await,
        ["payment.authorize void-card", "payment.void void-card"]
    );
    // A retry with the same key answers the same and records nothing more.
    let again = confirm(&edge, &buyer, &booking, card(), "card", "void-card-again")
        .await
        .expect_err("the same answer");
    assert_eq!(again.code(), Code::Aborted, "{again:?}");
    assert_eq!(
        operations(&edge, &admin, &buyer_id, &booking).await.len(),
        2
    );

    // PayPal: approved at PayPal, then the hold is gone before the
    // confirmation that would capture; the authorization is voided.
    let (hold, booking) = hold_and_book(&edge, &buyer, &event.id).await;
    let waiting = confirm(&edge, &buyer, &booking, paypal(), "pp", "void-pp-1")
        .await
        .expect("sent to PayPal");
    assert!(
        at_paypal(&approval_url(&waiting), "approve")
            .await
            .is_success()
    );
    release(&edge, &buyer, &hold).await;
    let gone = confirm(&edge, &buyer, &booking, paypal(), "pp", "void-pp-2")
        .await
        .expect_err("the seats are gone");
    assert_eq!(gone.code(), Code::Aborted, "{gone:?}");
    let paypal_payments = paysim
        .paypal()
        .search(booking.rsplit('/').next().expect("an id"))
        .await
        .expect("asking PayPal");
    assert_eq!(paypal_payments.len(), 1);
    assert_eq!(paypal_payments[0].status, ProviderStatus::Voided);
    assert_eq!(
        operations(&edge, &admin, &buyer_id, &booking).await,
        ["payment.authorize void-pp-2", "payment.void void-pp-2"],
        "nothing for the approval round trip; the authorization and its void"
    );
    // Nothing else of the buyer's was recorded (no capture, no refund).
    let everything = list(
        &edge,
        &admin,
        pb::ListAuditRecordsRequest {
            actor: buyer_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(everything.len(), 4, "{everything:?}");
    world.stop().await;
}
