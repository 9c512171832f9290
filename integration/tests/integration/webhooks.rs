//! Webhooks for integrators through the edge of a whole system, against a
//! real HTTP receiver in the test that counts what it gets and checks the
//! signature with the endpoint's secret: a receiver that fails three times
//! then succeeds gets the event exactly once accepted, signed; a forged
//! signature fails its check; the filter is respected; a delivery is sent
//! again by hand; unknown event types and bad URLs are refused; an endpoint
//! that keeps failing is disabled and its admin notified (listed, and
//! mailed through notify to the SMTP server); customers are
//! refused at the edge; a `serve checkout` process killed (SIGKILL) in the
//! middle of deliveries loses none: a new one sends every recorded
//! delivery, signed, at least once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::audit::v1 as audit_pb;
use boxoffice_contracts::audit::v1::audit_service_client::AuditServiceClient;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_contracts::signature::{SignatureError, sign, verify};
use boxoffice_contracts::webhooks::v1 as pb;
use boxoffice_contracts::webhooks::v1::webhook_service_client::WebhookServiceClient;
use boxoffice_runtime::status::{field_of, reason_of};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{login, run_grpcurl, with_token};
use crate::harness::eventually;
use crate::notify::{SmtpServer, wait_for_mails};
use crate::system_world::{SystemWorld, standing_event_on_sale, vars};
use boxoffice_notify::NotifyConfig;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub webhook_id: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// The status the receiver answered (or would have: a held answer
    /// never reaches a sender killed meanwhile).
    pub answered: u16,
}

/// A webhook receiver on a port of its own: answers each request with the
/// next status of its script (the last one once the script runs out) and
/// keeps every request.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<VecDeque<u16>>>,
    last: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Answers wait while someone holds this for writing ([`Self::hold`]):
    /// a request is kept on arrival, its answer held back.
    gate: Arc<tokio::sync::RwLock<()>>,
}

impl Receiver {
    pub async fn start(script: &[u16]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the receiver");
        let receiver = Self {
            addr: listener.local_addr().expect("address"),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            last: *script.last().expect("a script"),
            received: Arc::default(),
            gate: Arc::default(),
        };
        let serving = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let receiver = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let receiver = receiver.clone();
                        async move { Ok::<_, std::convert::Infallible>(receiver.answer(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    async fn answer(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (webhook_id, signature) = (
            header("boxoffice-webhook-id"),
            header("boxoffice-signature"),
        );
        let body = request
            .into_body()
            .collect()
            .await
            .map(|body| body.to_bytes().to_vec())
            .unwrap_or_default();
        let answered = self.script.lock().unwrap().pop_front().unwrap_or(self.last);
        self.received.lock().unwrap().push(Received {
            webhook_id,
            signature,
            body,
            answered,
        });
        // Held: the sender waits for an answer that comes only on release.
        let _open = self.gate.read().await;
        http::Response::builder()
            .status(answered)
            .body(Full::new(Bytes::from_static(b"thanks")))
            .unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/boxoffice", self.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Holds every answer back until the guard is dropped.
    pub async fn hold(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.gate.clone().write_owned().await
    }
}

/// What a receiver does with a request: check the signature with the
/// endpoint's secret (5 minutes' tolerance), as integrators are told to.
pub fn receiver_check(secret: &str, received: &Received) -> Result<(), SignatureError> {
    let now = chrono::Utc::now().timestamp();
    verify(
        secret.as_bytes(),
        &received.signature,
        &received.body,
        now,
        300,
    )
}

pub fn fast_webhooks(extra: &[(&str, &str)]) -> boxoffice::WebhooksConfig {
    let mut pairs = vec![
        ("BOXOFFICE_WEBHOOKS_ALLOW_PRIVATE", "true"),
        ("BOXOFFICE_WEBHOOKS_FIRST_BACKOFF_MS", "50"),
        ("BOXOFFICE_WEBHOOKS_MAX_BACKOFF_MS", "400"),
        ("BOXOFFICE_WEBHOOKS_TIMEOUT_MS", "5000"),
    ];
    pairs.extend_from_slice(extra);
    boxoffice::WebhooksConfig::from_vars(&vars(&pairs)).expect("webhook settings")
}

pub async fn admin_token(edge: &Channel) -> String {
    login(
        &mut AccountsServiceClient::new(edge.clone()),
        DEMO_ADMIN_EMAIL,
        DEMO_PASSWORD,
    )
    .await
}

/// Registers a fresh customer; answers their token and user id.
pub async fn customer(edge: &Channel, name: &str) -> (String, String) {
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
    accounts
        .register(accounts_pb::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: name.into(),
        })
        .await
        .expect("registering");
    let token = login(&mut accounts, &email, "correct horse battery").await;
    let me = accounts
        .get_me(with_token(&token, accounts_pb::GetMeRequest::default()))
        .await
        .expect("who am I")
        .into_inner();
    (token, me.id)
}

/// Holds one place and pays for it; `request_id` is sent with the
/// confirmation. Answers the booking's id.
pub async fn buy_one(edge: &Channel, token: &str, event_id: &str, request_id: &str) -> String {
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
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let booking = checkout
        .create_booking(with_token(
            token,
            checkout_pb::CreateBookingRequest {
                hold: hold.name,
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("booking")
        .into_inner();
    let mut confirm = with_token(
        token,
        checkout_pb::ConfirmBookingRequest {
            name: booking.name.clone(),
            payment_method: Some(checkout_pb::PaymentMethod {
                token: "tok_visa".into(),
                ..Default::default()
            }),
            idempotency_key: Uuid::new_v4().to_string(),
        },
    );
    confirm
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("a request id"));
    let confirmed = checkout
        .confirm_booking(confirm)
        .await
        .expect("paying")
        .into_inner();
    confirmed
        .name
        .rsplit('/')
        .next()
        .expect("a booking name")
        .to_owned()
}

async fn create_endpoint(
    webhooks: &mut WebhookServiceClient<Channel>,
    token: &str,
    url: &str,
    types: &[&str],
) -> pb::CreateWebhookEndpointResponse {
    webhooks
        .create_webhook_endpoint(with_token(
            token,
            pb::CreateWebhookEndpointRequest {
                url: url.to_owned(),
                event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                description: "integration test".into(),
            },
        ))
        .await
        .expect("registering an endpoint")
        .into_inner()
}

async fn deliveries(
    webhooks: &WebhookServiceClient<Channel>,
    token: &str,
    endpoint_id: &str,
) -> Vec<pb::WebhookDelivery> {
    webhooks
        .clone()
        .list_webhook_deliveries(with_token(
            token,
            pb::ListWebhookDeliveriesRequest {
                endpoint_id: endpoint_id.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .expect("listing deliveries")
        .into_inner()
        .deliveries
}

#[tokio::test]
async fn a_receiver_failing_three_times_then_succeeding_accepts_the_event_once_signed() {
    let world = SystemWorld::start_with_webhooks("hooks", fast_webhooks(&[])).await;
    let edge = world.edge().await;
    let admin = admin_token(&edge).await;
    let receiver = Receiver::start(&[500, 500, 500, 200]).await;
    let mut webhooks = WebhookServiceClient::new(edge.clone());
    let created = create_endpoint(
        &mut webhooks,
        &admin,
        &receiver.url(),
        &["booking.confirmed"],
    )
    .await;
    let endpoint = created.endpoint.expect("the endpoint");
    assert!(
        created.secret.starts_with("whsec_"),
        "the secret is shown once"
    );
    assert_eq!(endpoint.event_types, ["booking.confirmed"]);
    // The secret is never shown again.
    let read = webhooks
        .get_webhook_endpoint(with_token(
            &admin,
            pb::GetWebhookEndpointRequest {
                id: endpoint.id.clone(),
            },
        ))
        .await
        .expect("reading the endpoint")
        .into_inner();
    assert_eq!(read.url, receiver.url());

    // Venue, event, publication, seats sold: many events; one booking.
    let event = standing_event_on_sale(&edge, &admin, "Webhook Hall", "Webhook Night", 10).await;
    let (customer_token, _) = customer(&edge, "hooked").await;
    let booking_id = buy_one(&edge, &customer_token, &event.id, "hook-buy-1").await;

    let received = eventually(
        Duration::from_secs(30),
        "the fourth attempt is accepted",
        || {
            let receiver = receiver.clone();
            async move { Some(receiver.requests()).filter(|requests| requests.len() >= 4) }
        },
    )
    .await;
    let statuses: Vec<u16> = received.iter().map(|r| r.answered).collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    // One delivery, the same id and the same body on every attempt, each
    // signed with the endpoint's secret.
    for request in &received {
        assert_eq!(request.webhook_id, received[0].webhook_id);
        assert_eq!(request.body, received[0].body);
        receiver_check(&created.secret, request).expect("a valid signature");
    }
    let body: serde_json::Value = serde_json::from_slice(&received[3].body).expect("JSON");
    assert_eq!(body["type"], "booking.confirmed");
    assert_eq!(body["data"]["booking_id"], booking_id.as_str());
    assert_eq!(
        body["data"]["total"]["amount_minor"], "2650",
        "25.00 and a 1.50 fee"
    );
    assert_eq!(body["producer"], "checkout");
    assert!(
        body["occurred_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    // A forged request fails the receiver's check: signed with another
    // secret, a tampered body, or a replayed header from long ago.
    let mut forged = received[3].clone();
    forged.signature = sign(
        b"whsec_not-the-secret",
        chrono::Utc::now().timestamp(),
        &forged.body,
    );
    assert_eq!(
        receiver_check(&created.secret, &forged),
        Err(SignatureError::Mismatch)
    );
    let mut tampered = received[3].clone();
    tampered.body.extend_from_slice(b" ");
    assert_eq!(
        receiver_check(&created.secret, &tampered),
        Err(SignatureError::Mismatch)
    );
    let mut stale = received[3].clone();
    stale.signature = sign(
        created.secret.as_bytes(),
        chrono::Utc::now().timestamp() - 3600,
        &stale.body,
    );
    assert_eq!(
        receiver_check(&created.secret, &stale),
        Err(SignatureError::Stale)
    );

    // The attempts are logged; the delivery is done and never sent again.
    let logged = eventually(
        Duration::from_secs(10),
        "the delivery is recorded as delivered",
        || {
            let (webhooks, admin, id) = (webhooks.clone(), admin.clone(), endpoint.id.clone());
            async move {
                let found = deliveries(&webhooks, &admin, &id).await;
                found
                    .first()
                    .filter(|d| d.status == "delivered" && d.attempts.len() == 4)
                    .cloned()
                    .map(|d| (found.len(), d))
            }
        },
    )
    .await;
    let (count, delivery) = logged;
    assert_eq!(
        count, 1,
        "only booking.confirmed is delivered: the filter holds"
    );
    assert_eq!(delivery.id, received[0].webhook_id);
    assert_eq!(delivery.event_type, "booking.confirmed");
    let codes: Vec<u32> = delivery.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    assert_eq!(delivery.attempts[0].error, "status 500");
    assert!(delivery.attempts[3].error.is_empty());
    assert_eq!(delivery.attempts[3].response_excerpt, "thanks");
    let accepted = receiver
        .requests()
        .iter()
        .filter(|r| r.answered == 200)
        .count();
    assert_eq!(accepted, 1, "accepted exactly once");

    // Sent again by hand: a fifth, manual attempt with the same id and body.
    let queued = webhooks
        .redeliver_webhook(with_token(
            &admin,
            pb::RedeliverWebhookRequest {
                id: delivery.id.clone(),
            },
        ))
        .await
        .expect("redelivering")
        .into_inner();
    assert_eq!(queued.status, "pending");
    let again = eventually(Duration::from_secs(10), "the redelivery arrives", || {
        let receiver = receiver.clone();
        async move { receiver.requests().get(4).cloned() }
    })
    .await;
    assert_eq!(again.webhook_id, delivery.id);
    assert_eq!(again.body, received[0].body);
    receiver_check(&created.secret, &again).expect("signed");
    let manual = eventually(
        Duration::from_secs(10),
        "the manual attempt is logged",
        || {
            let (webhooks, admin, id) = (webhooks.clone(), admin.clone(), endpoint.id.clone());
            async move {
                deliveries(&webhooks, &admin, &id)
                    .await
                    .into_iter()
                    .next()
                    .filter(|d| d.status == "delivered" && d.attempts.len() == 5)
            }
        },
    )
    .await;
    assert!(manual.attempts[4].manual);
    assert!(!manual.attempts[3].manual);

    // A rotated secret signs from then on; the old one no longer checks.
    let rotated = webhooks
        .rotate_webhook_secret(with_token(
            &admin,
            pb::RotateWebhookSecretRequest {
                id: endpoint.id.clone(),
            },
        ))
        .await
        .expect("rotating")
        .into_inner()
        .secret;
    assert_ne!(rotated, created.secret);
    webhooks
        .redeliver_webhook(with_token(
            &admin,
            pb::RedeliverWebhookRequest {
                id: delivery.id.clone(),
            },
        ))
        .await
        .expect("redelivering");
    let sixth = eventually(Duration::from_secs(10), "the redelivery arrives", || {
        let receiver = receiver.clone();
        async move { receiver.requests().get(5).cloned() }
    })
    .await;
    receiver_check(&rotated, &sixth).expect("signed with the new secret");
    assert_eq!(
        receiver_check(&created.secret, &sixth),
        Err(SignatureError::Mismatch)
    );
    world.stop().await;
}

#[tokio::test]
async fn bad_filters_and_urls_are_refused_and_customers_are_denied_at_the_edge() {
    let world = SystemWorld::start_with_webhooks("hookbad", fast_webhooks(&[])).await;
    let edge = world.edge().await;
    let admin = admin_token(&edge).await;
    let mut webhooks = WebhookServiceClient::new(edge.clone());
    let refused = webhooks
        .create_webhook_endpoint(with_token(
            &admin,
            pb::CreateWebhookEndpointRequest {
                url: "https://hooks.example.com/x".into(),
                event_types: vec!["booking.confirmed".into(), "booking.exploded".into()],
                description: String::new(),
            },
        ))
        .await
        .expect_err("an unknown event type");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(reason_of(&refused).as_deref(), Some("UNKNOWN_EVENT_TYPE"));
    assert_eq!(field_of(&refused).as_deref(), Some("event_types[1]"));
    for (url, types) in [
        ("ftp://hooks.example.com/x", vec!["*"]),
        ("https://user:secret@hooks.example.com/x", vec!["*"]),
    ] {
        let refused = webhooks
            .create_webhook_endpoint(with_token(
                &admin,
                pb::CreateWebhookEndpointRequest {
                    url: url.into(),
                    event_types: types.into_iter().map(str::to_owned).collect(),
                    description: String::new(),
                },
            ))
            .await
            .expect_err("a URL webhooks may not use");
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}");
        assert_eq!(
            reason_of(&refused).as_deref(),
            Some("URL_NOT_ALLOWED"),
            "{url}"
        );
    }
    let empty = webhooks
        .create_webhook_endpoint(with_token(
            &admin,
            pb::CreateWebhookEndpointRequest {
                url: "https://hooks.example.com/x".into(),
                event_types: vec![],
                description: String::new(),
            },
        ))
        .await
        .expect_err("no event types");
    assert_eq!(field_of(&empty).as_deref(), Some("event_types"));
    // The same through grpcurl and the edge's reflection.
    let addr = world.system.edge_addr;
    let (ok, listed, stderr) = run_grpcurl(addr, &[], &["list"]).await;
    assert!(ok, "grpcurl list failed: {stderr}");
    for service in [
        "boxoffice.webhooks.v1.WebhookService",
        "boxoffice.audit.v1.AuditService",
    ] {
        assert!(
            listed.lines().any(|line| line.trim() == service),
            "{service} missing from:\n{listed}"
        );
    }
    let bearer = format!("authorization: Bearer {admin}");
    let (ok, _, stderr) = run_grpcurl(
        addr,
        &[
            "-H",
            &bearer,
            "-d",
            r#"{"url":"https://hooks.example.com/x","event_types":["nope"]}"#,
        ],
        &["boxoffice.webhooks.v1.WebhookService/CreateWebhookEndpoint"],
    )
    .await;
    assert!(!ok && stderr.contains("InvalidArgument"), "{stderr}");
    // Nothing was registered.
    let listed = webhooks
        .list_webhook_endpoints(with_token(
            &admin,
            pb::ListWebhookEndpointsRequest::default(),
        ))
        .await
        .expect("listing")
        .into_inner();
    assert!(listed.endpoints.is_empty());

    // A customer reaches neither webhooks nor the audit log; nobody outside
    // reaches the edge's own audit writes.
    let (customer_token, _) = customer(&edge, "nosy").await;
    let denied = webhooks
        .create_webhook_endpoint(with_token(
            &customer_token,
            pb::CreateWebhookEndpointRequest {
                url: "https://hooks.example.com/x".into(),
                event_types: vec!["*".into()],
                description: String::new(),
            },
        ))
        .await
        .expect_err("customers do not manage webhooks");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&denied).as_deref(), Some("ADMIN_REQUIRED"));
    let denied = webhooks
        .list_webhook_endpoints(with_token(
            &customer_token,
            pb::ListWebhookEndpointsRequest::default(),
        ))
        .await
        .expect_err("customers do not see webhooks");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let mut audit = AuditServiceClient::new(edge.clone());
    let denied = audit
        .list_audit_records(with_token(
            &customer_token,
            audit_pb::ListAuditRecordsRequest::default(),
        ))
        .await
        .expect_err("customers do not read the audit log");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason_of(&denied).as_deref(), Some("ADMIN_REQUIRED"));
    for token in [&customer_token, &admin] {
        let hidden = audit
            .record_admin_actions(with_token(
                token,
                audit_pb::RecordAdminActionsRequest {
                    actions: vec![audit_pb::AdminAction {
                        actor: Uuid::new_v4().to_string(),
                        action: "/forged".into(),
                        request_id: "forged".into(),
                    }],
                    outcomes: vec![],
                },
            ))
            .await
            .expect_err("the edge's own writes are not reachable");
        assert_eq!(hidden.code(), Code::Unimplemented);
    }
    world.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_disabled_and_its_admin_notified() {
    let smtp = SmtpServer::start().await;
    let world = SystemWorld::start_with_all(
        "hookdead",
        &[],
        Some(NotifyConfig::development(&smtp.url()).expect("notify configuration")),
        fast_webhooks(&[
            ("BOXOFFICE_WEBHOOKS_DISABLE_AFTER_FAILURES", "3"),
            ("BOXOFFICE_WEBHOOKS_DISABLE_AFTER_S", "0"),
        ]),
        &[],
    )
    .await;
    let edge = world.edge().await;
    let admin = admin_token(&edge).await;
    let admin_id = AccountsServiceClient::new(edge.clone())
        .get_me(with_token(&admin, accounts_pb::GetMeRequest::default()))
        .await
        .expect("who am I")
        .into_inner()
        .id;
    let receiver = Receiver::start(&[503]).await;
    let mut webhooks = WebhookServiceClient::new(edge.clone());
    let endpoint = create_endpoint(&mut webhooks, &admin, &receiver.url(), &["venue.created"])
        .await
        .endpoint
        .expect("the endpoint");
    standing_event_on_sale(&edge, &admin, "Dead Letter Hall", "Silence", 5).await;

    let disabled = eventually(Duration::from_secs(30), "the endpoint is disabled", || {
        let (mut webhooks, admin, id) = (webhooks.clone(), admin.clone(), endpoint.id.clone());
        async move {
            webhooks
                .get_webhook_endpoint(with_token(&admin, pb::GetWebhookEndpointRequest { id }))
                .await
                .ok()
                .map(tonic::Response::into_inner)
                .filter(|endpoint| !endpoint.enabled)
        }
    })
    .await;
    assert!(
        disabled.disabled_reason.contains("3 attempts"),
        "{}",
        disabled.disabled_reason
    );
    assert!(disabled.disable_time.is_some());
    let notifications = webhooks
        .list_webhook_notifications(with_token(
            &admin,
            pb::ListWebhookNotificationsRequest::default(),
        ))
        .await
        .expect("listing notifications")
        .into_inner()
        .notifications;
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].endpoint_id, endpoint.id);
    assert_eq!(notifications[0].kind, "endpoint_disabled");
    assert_eq!(notifications[0].admin_user_id, admin_id);
    // The admin who registered it is mailed, once, through the notify
    // consumer and the SMTP server.
    let mails = wait_for_mails(&smtp, DEMO_ADMIN_EMAIL, 1).await;
    let disabled_mails: Vec<_> = mails
        .iter()
        .filter(|mail| mail["subject"] == "A webhook endpoint was disabled")
        .collect();
    assert_eq!(disabled_mails.len(), 1, "{mails:?}");
    let mail = disabled_mails[0];
    let text = mail["text"].as_str().expect("a text body");
    assert!(text.contains(&receiver.url()), "{text}");
    assert!(text.contains(&endpoint.id), "{text}");
    assert!(text.contains("3 attempts"), "{text}");
    // Exactly the three failed attempts reached it; a disabled endpoint
    // takes no redelivery either.
    assert_eq!(receiver.requests().len(), 3);
    let delivery = deliveries(&webhooks, &admin, &endpoint.id).await.remove(0);
    assert_eq!(delivery.attempts.len(), 3);
    assert_eq!(delivery.status, "pending");
    let refused = webhooks
        .redeliver_webhook(with_token(
            &admin,
            pb::RedeliverWebhookRequest { id: delivery.id },
        ))
        .await
        .expect_err("disabled");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&refused).as_deref(), Some("ENDPOINT_DISABLED"));
    world.stop().await;
}

/// `boxoffice serve checkout` (which runs the webhooks' consumer and
/// sender) as a process of its own over the world's database, reaching
/// inventory and the catalog in the world; ready once its admin listener
/// says so.
async fn serve_checkout(world: &SystemWorld) -> tokio::process::Child {
    let (listen, admin) = (crate::harness::spare_addr(), crate::harness::spare_addr());
    let upstream = format!("http://{}", world.system.internal_addr);
    let mut command =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice-integration-system"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BOXOFFICE_") {
            command.env_remove(&name);
        }
    }
    command
        .args(["serve", "checkout"])
        .env("BOXOFFICE_DATABASE_URL", world.db.url.expose())
        .env("BOXOFFICE_REDIS_URL", crate::harness::redis_url())
        .env("BOXOFFICE_LISTEN", listen.to_string())
        .env("BOXOFFICE_ADMIN_LISTEN", admin.to_string())
        .env(
            "BOXOFFICE_JWT_SECRET",
            "a-test-secret-of-at-least-32-bytes!!",
        )
        .env("BOXOFFICE_LOG", "error")
        .env("BOXOFFICE_INVENTORY_URL", &upstream)
        .env("BOXOFFICE_CATALOG_URL", &upstream)
        .env("BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN", "127.0.0.1:0")
        .env("BOXOFFICE_WEBHOOKS_ALLOW_PRIVATE", "true")
        .env("BOXOFFICE_WEBHOOKS_FIRST_BACKOFF_MS", "50")
        .env("BOXOFFICE_WEBHOOKS_MAX_BACKOFF_MS", "400")
        // A post waits up to 5 s for its answer (the held receiver's posts
        // are still waiting when the process is killed); a claim lasts
        // three timeouts, so a dead sender's deliveries are taken up again
        // 15 s after it claimed them.
        .env("BOXOFFICE_WEBHOOKS_TIMEOUT_MS", "5000")
        .env("BOXOFFICE_WEBHOOKS_CONCURRENCY", "2")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("starting boxoffice serve checkout");
    eventually(Duration::from_secs(60), "serve checkout is ready", || {
        let exited = child.try_wait().ok().flatten();
        async move {
            assert!(exited.is_none(), "serve checkout exited: {exited:?}");
            let answer = reqwest::get(format!("http://{admin}/ready")).await.ok()?;
            answer.status().is_success().then_some(())
        }
    })
    .await;
    child
}

/// The endpoint's deliveries as PostgreSQL has them: (id, status, attempts).
async fn delivery_rows(world: &SystemWorld, endpoint_id: &str) -> Vec<(Uuid, String, i32)> {
    let endpoint_id = Uuid::parse_str(endpoint_id).expect("an endpoint id");
    world
        .system
        .pool
        .get()
        .await
        .expect("a connection")
        .query(
            "SELECT id, status, attempts FROM webhooks.deliveries WHERE endpoint_id = $1 ORDER BY id",
            &[&endpoint_id],
        )
        .await
        .expect("reading deliveries")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

#[tokio::test]
async fn a_sender_killed_mid_delivery_loses_nothing_and_resends_signed() {
    // The guarantee: at least once. A sender killed (SIGKILL) while a
    // receiver holds its answers leaves those deliveries claimed, not
    // delivered; once the claims run out a new sender posts them again
    // (same Boxoffice-Webhook-Id, signed anew) and every recorded delivery
    // ends delivered. Only deliveries that were in flight at the kill may
    // arrive twice.
    const VENUES: usize = 6;
    let world = SystemWorld::start_with_webhooks("hookkill", fast_webhooks(&[])).await;
    // The world's own sender stops: the process under test alone sends.
    world.system.webhooks.sender.abort();
    let edge = world.edge().await;
    let admin = admin_token(&edge).await;
    let receiver = Receiver::start(&[200]).await;
    let held = receiver.hold().await;
    let created = create_endpoint(
        &mut WebhookServiceClient::new(edge.clone()),
        &admin,
        &receiver.url(),
        &["venue.created"],
    )
    .await;
    let (endpoint, secret) = (created.endpoint.expect("the endpoint"), created.secret);
    let mut sender = serve_checkout(&world).await;
    let mut catalog = CatalogServiceClient::new(edge.clone());
    for index in 0..VENUES {
        catalog
            .create_venue(with_token(
                &admin,
                catalog_pb::CreateVenueRequest {
                    name: format!("Kill Hall {index}"),
                    address: Some(catalog_pb::PostalAddress {
                        street: "1 Briggate".into(),
                        city: "Leeds".into(),
                        region: String::new(),
                        postal_code: "LS1 6HD".into(),
                        country_code: "GB".into(),
                    }),
                    location: None,
                    time_zone: "Europe/London".into(),
                    sections: vec![catalog_pb::SectionSpec {
                        name: "Floor".into(),
                        kind: catalog_pb::SectionKind::GeneralAdmission as i32,
                        capacity: 10,
                        rows: vec![],
                    }],
                },
            ))
            .await
            .expect("creating a venue");
    }

    // Mid-delivery: posts have reached the receiver, whose answers are
    // held; then the sender process dies without a word.
    eventually(Duration::from_secs(30), "posts in flight", || {
        let count = receiver.requests().len();
        async move { (count >= 2).then_some(()) }
    })
    .await;
    sender.start_kill().expect("SIGKILL to serve checkout");
    sender.wait().await.expect("waiting for it to die");
    let in_flight: std::collections::HashSet<String> = receiver
        .requests()
        .iter()
        .map(|request| request.webhook_id.clone())
        .collect();
    drop(held);
    let rows = eventually(Duration::from_secs(30), "every delivery recorded", || {
        let world = &world;
        let id = endpoint.id.clone();
        async move {
            let rows = delivery_rows(world, &id).await;
            (rows.len() == VENUES).then_some(rows)
        }
    })
    .await;
    assert!(
        rows.iter().all(|(_, status, _)| status == "pending"),
        "nothing counts as delivered without an answer: {rows:?}"
    );
    for (id, _, attempts) in &rows {
        if in_flight.contains(&id.to_string()) {
            assert!(*attempts >= 1, "claimed and posted before the kill");
        }
    }

    // A new sender takes up what the dead one had claimed, once its claims
    // run out, and the rest.
    let mut replacement = serve_checkout(&world).await;
    let rows = eventually(Duration::from_secs(90), "every delivery delivered", || {
        let world = &world;
        let id = endpoint.id.clone();
        async move {
            let rows = delivery_rows(world, &id).await;
            rows.iter()
                .all(|(_, status, _)| status == "delivered")
                .then_some(rows)
        }
    })
    .await;
    assert_eq!(rows.len(), VENUES, "nothing lost");
    let requests = receiver.requests();
    for (id, _, _) in &rows {
        let posts: Vec<&Received> = requests
            .iter()
            .filter(|request| request.webhook_id == id.to_string())
            .collect();
        assert!(!posts.is_empty(), "delivery {id} reached the receiver");
        for post in &posts {
            receiver_check(&secret, post).expect("every post is signed with the endpoint's secret");
        }
        if posts.len() > 1 {
            assert!(
                in_flight.contains(&id.to_string()),
                "only a delivery in flight at the kill is sent twice: {id}"
            );
            assert_eq!(
                posts[0].body, posts[1].body,
                "the copy carries the same event"
            );
        }
    }
    assert!(
        in_flight.len() >= 2 && requests.len() > rows.len(),
        "the deliveries in flight at the kill were sent again ({} posts for {} deliveries)",
        requests.len(),
        rows.len()
    );
    replacement.start_kill().expect("stopping serve checkout");
    replacement.wait().await.expect("waiting for it to stop");
    world.stop().await;
}
