//! Notifications end to end, against a real SMTP server (npm `smtp-server`,
//! `integration/smtp/server.js`, a Node.js process per test that stores
//! every message it accepts): a purchase through the edge mails one
//! confirmation whose ticket codes pass the door; a cancellation mails the
//! cancellation and the refund; mail waits while the SMTP server is down
//! and goes once it is back; a sender killed (SIGKILL, a real process)
//! after the server accepted a mail and before it recorded that sends it
//! once more, never twice more; preferences are the caller's own and an
//! unsubscribe token is checked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::checkout::v1::door_service_client::DoorServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_contracts::notify::v1 as notify_pb;
use boxoffice_contracts::notify::v1::notification_service_client::NotificationServiceClient;
use boxoffice_notify::NotifyConfig;
use boxoffice_runtime::status::reason_of;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{login, with_token};
use crate::harness::eventually;
use crate::inventory::timestamp;
use crate::system_world::{SystemWorld, standing_event_on_sale, vars};

/// A running SMTP server storing what it receives in its own folder;
/// killed when dropped.
pub struct SmtpServer {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _process: tokio::process::Child,
}

impl SmtpServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    async fn start_on(listen: &str) -> Self {
        let dir = tempfile::tempdir().expect("a mail folder");
        Self::start_in(listen, dir).await
    }

    async fn start_in(listen: &str, dir: tempfile::TempDir) -> Self {
        let code = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp");
        assert!(
            code.join("node_modules/smtp-server").exists(),
            "the test SMTP server is not installed: run scripts/test, or `npm ci` in {}",
            code.display()
        );
        let mut process = tokio::process::Command::new("node")
            .arg("server.js")
            .current_dir(&code)
            .env("SMTP_LISTEN", listen)
            .env("MAIL_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node (scripts/test installs Node.js)");
        let stdout = process.stdout.take().expect("the server's stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP server listens within 30 s")
            .expect("reading the server's stdout")
            .expect("the server printed where it listens");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        // It logs every message: keep reading so it never blocks.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            addr,
            dir,
            _process: process,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message received so far, oldest first.
    fn mails(&self) -> Vec<Value> {
        mails_in(self.dir.path())
    }

    pub fn mails_to(&self, address: &str) -> Vec<Value> {
        self.mails()
            .into_iter()
            .filter(|mail| {
                mail["to"].as_array().is_some_and(|to| {
                    to.iter()
                        .any(|a| a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(address)))
                })
            })
            .collect()
    }

    /// While held, the server stores a message but withholds its "250 OK".
    fn hold(&self) {
        std::fs::write(self.dir.path().join(".hold"), b"").expect("holding replies");
    }

    fn release(&self) {
        std::fs::remove_file(self.dir.path().join(".hold")).expect("releasing replies");
    }
}

fn mails_in(dir: &Path) -> Vec<Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("reading the mail folder")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json")
                && !path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    names.sort();
    names
        .iter()
        .map(|path| {
            serde_json::from_slice(&std::fs::read(path).expect("reading a mail"))
                .expect("a stored mail is JSON")
        })
        .collect()
}

/// `count` mails to `address` (within 30 s), and no more.
pub async fn wait_for_mails(smtp: &SmtpServer, address: &str, count: usize) -> Vec<Value> {
    eventually(Duration::from_secs(30), "mail at the SMTP server", || {
        let mails = smtp.mails_to(address);
        async move { (mails.len() >= count).then_some(mails) }
    })
    .await
}

pub async fn register(
    accounts: &mut AccountsServiceClient<Channel>,
    name: &str,
) -> (String, String) {
    let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
    accounts
        .register(accounts_pb::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: name.into(),
        })
        .await
        .expect("registering through the edge");
    let token = login(accounts, &email, "correct horse battery").await;
    (email, token)
}

/// Holds `quantity` places and pays for them, through the edge.
pub async fn buy(
    edge: &Channel,
    token: &str,
    event_id: &str,
    quantity: u32,
) -> checkout_pb::Booking {
    let hold = InventoryServiceClient::new(edge.clone())
        .hold_seats(with_token(
            token,
            inventory_pb::HoldSeatsRequest {
                event_id: event_id.to_owned(),
                selection: Some(inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity,
                        ..Default::default()
                    },
                )),
                admission_token: String::new(),
            },
        ))
        .await
        .expect("holding places")
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
        .expect("creating a booking")
        .into_inner();
    let confirmed = checkout
        .confirm_booking(with_token(
            token,
            checkout_pb::ConfirmBookingRequest {
                name: booking.name,
                payment_method: Some(checkout_pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: Uuid::new_v4().to_string(),
            },
        ))
        .await
        .expect("paying")
        .into_inner();
    assert_eq!(confirmed.state, checkout_pb::BookingState::Confirmed as i32);
    confirmed
}

/// A header's value as sent (the first line of it).
fn header(mail: &Value, name: &str) -> Option<String> {
    mail["header_lines"].as_array()?.iter().find_map(|line| {
        let (key, value) = line.as_str()?.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// The ticket codes a confirmation's text lists ("- label: code").
fn codes_in(mail: &Value) -> Vec<String> {
    mail["text"]
        .as_str()
        .expect("a text body")
        .lines()
        .filter(|line| line.starts_with("- "))
        .filter_map(|line| {
            line.rsplit_once(": ")
                .map(|(_, code)| code.trim().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_purchase_mails_one_confirmation_whose_codes_pass_the_door() {
    let smtp = SmtpServer::start().await;
    let notify = NotifyConfig::development(&smtp.url()).expect("notify configuration");
    let world = SystemWorld::start_with_notify("notify", &[], Some(notify)).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Mail <Night>", 10).await;
    let (email, buyer) = register(&mut accounts, "Mailed").await;

    let booking = buy(&edge, &buyer, &event.id, 2).await;

    let mails = wait_for_mails(&smtp, &email, 1).await;
    let mail = &mails[0];
    assert_eq!(mail["subject"], "Your tickets for Mail <Night>");
    let mut codes = codes_in(mail);
    let mut bought: Vec<String> = booking.tickets.iter().map(|t| t.code.clone()).collect();
    codes.sort();
    bought.sort();
    assert_eq!(codes, bought, "the mail lists exactly the booking's codes");
    let html = mail["html"].as_str().expect("an HTML body");
    assert!(
        html.contains("Mail &lt;Night&gt;"),
        "the title is escaped in HTML"
    );
    for code in &bought {
        assert!(html.contains(code.as_str()));
    }
    let images: Vec<&Value> = mail["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .filter(|attachment| attachment["content_type"] == "image/png")
        .collect();
    assert_eq!(images.len(), 2, "a QR image per ticket");
    for image in images {
        let png = base64::engine::general_purpose::STANDARD
            .decode(image["content_base64"].as_str().expect("base64"))
            .expect("decodes");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    assert!(
        header(mail, "List-Unsubscribe").is_none(),
        "ticket mail has no unsubscribe"
    );

    // The codes from the mail let their holder in, once.
    let mut door = DoorServiceClient::new(edge.clone());
    for code in &codes {
        let scan = door
            .redeem_ticket(with_token(
                &admin,
                checkout_pb::RedeemTicketRequest {
                    gate: format!("events/{}/gates/north", event.id),
                    code: code.clone(),
                    scan_id: Uuid::new_v4().simple().to_string(),
                    direction: checkout_pb::ScanDirection::Entry as i32,
                },
            ))
            .await
            .expect("a scan's answer")
            .into_inner();
        assert_eq!(
            scan.result,
            checkout_pb::ScanResult::Admitted as i32,
            "{scan:?}"
        );
    }

    // Exactly one: the message is recorded as sent after one attempt, and
    // a sent message is never claimed again.
    let notify = world.system.notify.as_ref().expect("notifications run");
    let buyer_id = Uuid::parse_str(&booking.user_id).expect("a user id");
    let states = eventually(Duration::from_secs(10), "the mail recorded as sent", || {
        let store = notify.store().clone();
        async move {
            let states = store.messages_of(buyer_id).await.ok()?;
            states
                .iter()
                .all(|state| state.status == "sent")
                .then_some(states)
        }
    })
    .await;
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(
        (states[0].kind.as_str(), states[0].attempts),
        ("booking_confirmed", 1)
    );
    assert_eq!(smtp.mails_to(&email).len(), 1);

    world.stop().await;
}

#[tokio::test]
async fn a_cancellation_mails_the_cancellation_and_the_refund() {
    let smtp = SmtpServer::start().await;
    let notify = NotifyConfig::development(&smtp.url()).expect("notify configuration");
    let world = SystemWorld::start_with_notify("notifycancel", &[], Some(notify)).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Changed Plans", 10).await;
    let (email, buyer) = register(&mut accounts, "Changer").await;
    let booking = buy(&edge, &buyer, &event.id, 1).await;
    wait_for_mails(&smtp, &email, 1).await;

    CheckoutServiceClient::new(edge.clone())
        .cancel_booking(with_token(
            &buyer,
            checkout_pb::CancelBookingRequest {
                name: booking.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling a month ahead");

    let mails = wait_for_mails(&smtp, &email, 3).await;
    let subjects: Vec<&str> = mails.iter().filter_map(|m| m["subject"].as_str()).collect();
    assert!(
        subjects.contains(&"Booking cancelled: Changed Plans"),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&"Your refund is on its way"),
        "{subjects:?}"
    );
    let refund = mails
        .iter()
        .find(|m| m["subject"] == "Your refund is on its way")
        .expect("the refund mail");
    assert!(
        refund["text"]
            .as_str()
            .is_some_and(|text| text.contains("GBP 25.00")),
        "{refund}"
    );
    world.stop().await;
}

#[tokio::test]
async fn mail_waits_while_the_smtp_server_is_down_and_goes_once_it_is_back() {
    // A port nobody listens on, yet.
    let port = crate::harness::spare_addr().port();
    let notify = NotifyConfig::from_vars(&vars(&[
        ("BOXOFFICE_SMTP_URL", &format!("smtp://127.0.0.1:{port}")),
        ("BOXOFFICE_NOTIFY_MAX_BACKOFF_MS", "300"),
    ]))
    .expect("notify configuration");
    let world = SystemWorld::start_with_notify("notifydown", &[], Some(notify)).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Down Time", 10).await;
    let (email, buyer) = register(&mut accounts, "Patient").await;
    let booking = buy(&edge, &buyer, &event.id, 1).await;
    let buyer_id = Uuid::parse_str(&booking.user_id).expect("a user id");

    // The message is recorded and waits; the sender says so.
    let notify = world.system.notify.as_ref().expect("notifications run");
    eventually(
        Duration::from_secs(20),
        "failed attempts and a waiting message",
        || {
            let stats = notify.sender_stats.snapshot();
            async move { (stats.failed_attempts >= 2 && stats.waiting >= 1).then_some(()) }
        },
    )
    .await;
    let page = boxoffice::process_metrics();
    assert!(
        page.contains("boxoffice_notify_waiting_messages "),
        "{page}"
    );
    assert!(
        page.contains("boxoffice_notify_send_failures_total "),
        "{page}"
    );
    let states = notify
        .store()
        .messages_of(buyer_id)
        .await
        .expect("messages");
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].status, "pending");
    assert!(states[0].attempts >= 2, "{states:?}");

    // The server comes up on that port: the mail goes, once.
    let smtp = SmtpServer::start_on(&format!("127.0.0.1:{port}")).await;
    let mails = wait_for_mails(&smtp, &email, 1).await;
    assert_eq!(mails[0]["subject"], "Your tickets for Down Time");
    eventually(Duration::from_secs(10), "nothing waiting", || {
        let store = notify.store().clone();
        let stats = notify.sender_stats.clone();
        async move {
            let states = store.messages_of(buyer_id).await.ok()?;
            (states.iter().all(|s| s.status == "sent") && stats.snapshot().waiting == 0)
                .then_some(())
        }
    })
    .await;
    assert_eq!(smtp.mails_to(&email).len(), 1);
    world.stop().await;
}

/// `boxoffice serve accounts` (which runs notifications) as a process of
/// its own, over the world's database, reading checkout at `checkout`.
fn serve_accounts(
    world: &SystemWorld,
    smtp: &SmtpServer,
    checkout: SocketAddr,
) -> tokio::process::Child {
    let mut command =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice-integration-system"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BOXOFFICE_") {
            command.env_remove(&name);
        }
    }
    command
        .args(["serve", "accounts"])
        .env("BOXOFFICE_DATABASE_URL", world.db.url.expose())
        .env("BOXOFFICE_REDIS_URL", crate::harness::redis_url())
        .env("BOXOFFICE_LISTEN", "127.0.0.1:0")
        .env(
            "BOXOFFICE_JWT_SECRET",
            "a-test-secret-of-at-least-32-bytes!!",
        )
        .env("BOXOFFICE_LOG", "warn")
        .env("BOXOFFICE_CHECKOUT_URL", format!("http://{checkout}"))
        .env("BOXOFFICE_SMTP_URL", smtp.url())
        // A send that never finished may be taken up again after 1 s.
        .env("BOXOFFICE_NOTIFY_CLAIM_MS", "1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting boxoffice serve accounts")
}

#[tokio::test]
async fn a_sender_killed_between_sending_and_recording_sends_at_most_one_duplicate() {
    // The guarantee: every recorded message is sent at least once; a crash
    // after the SMTP server accepted a message and before the sender
    // recorded it sends that message once more, with the same Message-ID
    // (so a mail client can tell the copy). Never more than once per crash.
    let smtp = SmtpServer::start().await;
    let world = SystemWorld::start_with_notify("notifykill", &[], None).await;
    let mut sender = serve_accounts(&world, &smtp, world.system.internal_addr);
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Kill Switch", 10).await;
    let (email, buyer) = register(&mut accounts, "Twice").await;

    // The server will store the mail and never say so.
    smtp.hold();
    let booking = buy(&edge, &buyer, &event.id, 1).await;
    let buyer_id = Uuid::parse_str(&booking.user_id).expect("a user id");
    let first = wait_for_mails(&smtp, &email, 1).await;
    // Delivered, not recorded: kill the sender there.
    sender.kill().await.expect("SIGKILL to the sender");
    smtp.release();
    let store = boxoffice_notify::store::NotifyStore::new(world.system.pool.clone());
    let states = store.messages_of(buyer_id).await.expect("messages");
    assert_eq!(states.len(), 1);
    assert_eq!(
        (states[0].status.as_str(), states[0].attempts),
        ("pending", 1),
        "{states:?}"
    );

    // A new sender takes the message up once its claim has run out.
    let mut replacement = serve_accounts(&world, &smtp, world.system.internal_addr);
    let states = eventually(Duration::from_secs(30), "the copy recorded as sent", || {
        let store = store.clone();
        async move {
            let states = store.messages_of(buyer_id).await.ok()?;
            states.iter().all(|s| s.status == "sent").then_some(states)
        }
    })
    .await;
    assert_eq!(states[0].attempts, 2, "{states:?}");
    let mails = smtp.mails_to(&email);
    assert_eq!(mails.len(), 2, "one duplicate, no more");
    assert_eq!(mails[0]["message_id"], first[0]["message_id"]);
    assert_eq!(
        mails[1]["message_id"], first[0]["message_id"],
        "the copy is the same mail"
    );
    assert_eq!(codes_in(&mails[0]), codes_in(&mails[1]));
    replacement.kill().await.expect("stopping the sender");
    world.stop().await;
}

#[tokio::test]
async fn preferences_are_the_callers_own_and_unsubscribe_checks_its_token() {
    let smtp = SmtpServer::start().await;
    let notify = NotifyConfig::development(&smtp.url()).expect("notify configuration");
    let world = SystemWorld::start_with_notify("notifyprefs", &[], Some(notify)).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let (_, ann) = register(&mut accounts, "Ann").await;
    let (_, bob) = register(&mut accounts, "Bob").await;
    let mut service = NotificationServiceClient::new(edge.clone());

    let refused = service
        .get_notification_preferences(notify_pb::GetNotificationPreferencesRequest {})
        .await
        .expect_err("no token, no preferences");
    assert_eq!(refused.code(), Code::Unauthenticated);

    let get = |token: &str| with_token(token, notify_pb::GetNotificationPreferencesRequest {});
    assert!(
        service
            .get_notification_preferences(get(&ann))
            .await
            .expect("ann's")
            .into_inner()
            .marketing
    );
    let updated = service
        .update_notification_preferences(with_token(
            &ann,
            notify_pb::UpdateNotificationPreferencesRequest {
                preferences: Some(notify_pb::NotificationPreferences { marketing: false }),
            },
        ))
        .await
        .expect("ann opts out")
        .into_inner();
    assert!(!updated.marketing);
    assert!(
        !service
            .get_notification_preferences(get(&ann))
            .await
            .expect("ann's")
            .into_inner()
            .marketing
    );
    // Ann's choice is not Bob's.
    assert!(
        service
            .get_notification_preferences(get(&bob))
            .await
            .expect("bob's")
            .into_inner()
            .marketing
    );

    // Unsubscribing: a made-up or oversized token is refused; Bob's own
    // link (as a mail carries it) opts Bob out, without a login.
    let bad = service
        .unsubscribe(notify_pb::UnsubscribeRequest {
            token: "AAAAAAAAAAAAAAAAAAAAAA.c2lnbmF0dXJl".into(),
        })
        .await
        .expect_err("a forged token");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        reason_of(&bad).as_deref(),
        Some(boxoffice_notify::reason::INVALID_UNSUBSCRIBE_TOKEN)
    );
    let long = service
        .unsubscribe(notify_pb::UnsubscribeRequest {
            token: "a".repeat(513),
        })
        .await
        .expect_err("an oversized token");
    assert_eq!(long.code(), Code::InvalidArgument);
    let notify = world.system.notify.as_ref().expect("notifications run");
    let me = accounts
        .get_me(with_token(&bob, accounts_pb::GetMeRequest {}))
        .await
        .expect("bob's profile")
        .into_inner();
    let bob_id = Uuid::parse_str(&me.id).expect("a user id");
    let answer = service
        .unsubscribe(notify_pb::UnsubscribeRequest {
            token: notify.unsubscribe_token(bob_id),
        })
        .await
        .expect("bob's own link")
        .into_inner();
    assert!(!answer.marketing);
    assert!(
        !service
            .get_notification_preferences(get(&bob))
            .await
            .expect("bob's")
            .into_inner()
            .marketing
    );
    world.stop().await;
}

/// The unsubscribe token in a marketing mail's text link.
fn unsubscribe_token(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("a text body");
    let (_, rest) = text.split_once("token=").expect("an unsubscribe link");
    rest.split_whitespace().next().expect("a token").to_owned()
}

#[tokio::test]
async fn holders_hear_of_changes_and_fans_of_new_events_unless_they_opted_out() {
    let smtp = SmtpServer::start().await;
    let notify = NotifyConfig::development(&smtp.url()).expect("notify configuration");
    let world = SystemWorld::start_with_notify("notifyfans", &[], Some(notify)).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let performer = catalog
        .create_performer(with_token(
            &admin,
            catalog_pb::CreatePerformerRequest {
                performer: Some(catalog_pb::Performer {
                    name: "The Regulars".into(),
                    genre: "rock".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating a performer")
        .into_inner();
    let first = standing_event_on_sale(&edge, &admin, "Brudenell", "First Night", 10).await;
    let mask = |paths: &[&str]| prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    };
    catalog
        .update_event(with_token(
            &admin,
            catalog_pb::UpdateEventRequest {
                event: Some(catalog_pb::Event {
                    id: first.id.clone(),
                    performer_ids: vec![performer.id.clone()],
                    ..Default::default()
                }),
                update_mask: Some(mask(&["performer_ids"])),
            },
        ))
        .await
        .expect("naming the performer");
    let (ann_email, ann) = register(&mut accounts, "Ann").await;
    let (bob_email, bob) = register(&mut accounts, "Bob").await;
    buy(&edge, &ann, &first.id, 1).await;
    buy(&edge, &bob, &first.id, 1).await;
    wait_for_mails(&smtp, &ann_email, 1).await;
    wait_for_mails(&smtp, &bob_email, 1).await;
    NotificationServiceClient::new(edge.clone())
        .update_notification_preferences(with_token(
            &bob,
            notify_pb::UpdateNotificationPreferencesRequest {
                preferences: Some(notify_pb::NotificationPreferences { marketing: false }),
            },
        ))
        .await
        .expect("bob opts out of marketing");

    // The event moves a day: both holders hear of it.
    catalog
        .update_event(with_token(
            &admin,
            catalog_pb::UpdateEventRequest {
                event: Some(catalog_pb::Event {
                    id: first.id.clone(),
                    start_time: Some(timestamp(31)),
                    end_time: Some(timestamp(32)),
                    ..Default::default()
                }),
                update_mask: Some(mask(&["start_time", "end_time"])),
            },
        ))
        .await
        .expect("moving the event");
    for email in [&ann_email, &bob_email] {
        let mails = wait_for_mails(&smtp, email, 2).await;
        assert_eq!(mails[1]["subject"], "First Night has changed");
    }

    // A new event by the same performer: Ann, a fan, hears of it with an
    // unsubscribe link; Bob, who opted out, does not.
    let venue = catalog
        .get_venue(catalog_pb::GetVenueRequest {
            id: first.venue_id.clone(),
        })
        .await
        .expect("the venue")
        .into_inner();
    let second = catalog
        .create_event(with_token(
            &admin,
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: "Second Night".into(),
                    category: catalog_pb::Category::Concert as i32,
                    venue_id: venue.id.clone(),
                    performer_ids: vec![performer.id.clone()],
                    start_time: Some(timestamp(60)),
                    end_time: Some(timestamp(61)),
                    price_tiers: vec![catalog_pb::PriceTier {
                        name: "Floor".into(),
                        price: Some(catalog_pb::Money {
                            currency_code: "GBP".into(),
                            amount_minor: 3_000,
                        }),
                        section_ids: vec![venue.sections[0].id.clone()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("creating the second event")
        .into_inner();
    catalog
        .publish_event(with_token(
            &admin,
            catalog_pb::PublishEventRequest {
                id: second.id.clone(),
            },
        ))
        .await
        .expect("publishing it");
    let mails = wait_for_mails(&smtp, &ann_email, 3).await;
    let news = &mails[2];
    assert_eq!(news["subject"], "New: Second Night");
    let link = header(news, "List-Unsubscribe").expect("List-Unsubscribe on marketing mail");
    assert!(link.contains("/unsubscribe?token="), "{link}");
    // Recorded in one transaction with Ann's: Bob's would be there by now.
    let store = world
        .system
        .notify
        .as_ref()
        .expect("notifications run")
        .store()
        .clone();
    let bob_id = Uuid::parse_str(
        &accounts
            .get_me(with_token(&bob, accounts_pb::GetMeRequest {}))
            .await
            .expect("bob's profile")
            .into_inner()
            .id,
    )
    .expect("a user id");
    let kinds: Vec<String> = store
        .messages_of(bob_id)
        .await
        .expect("bob's messages")
        .into_iter()
        .map(|message| message.kind)
        .collect();
    assert_eq!(kinds, ["booking_confirmed", "event_changed"]);

    // Ann's link unsubscribes Ann, without a login.
    let answer = NotificationServiceClient::new(edge.clone())
        .unsubscribe(notify_pb::UnsubscribeRequest {
            token: unsubscribe_token(news),
        })
        .await
        .expect("the mail's link works")
        .into_inner();
    assert!(!answer.marketing);

    // A cancellation is ticket mail: both hear of it, opted out or not.
    catalog
        .cancel_event(with_token(
            &admin,
            catalog_pb::CancelEventRequest {
                id: first.id.clone(),
                reason: "the band is ill".into(),
            },
        ))
        .await
        .expect("cancelling the first event");
    for email in [&ann_email, &bob_email] {
        eventually(Duration::from_secs(30), "the cancellation mail", || {
            let mails = smtp.mails_to(email);
            async move {
                mails
                    .iter()
                    .any(|mail| {
                        mail["subject"] == "First Night is cancelled"
                            && mail["text"]
                                .as_str()
                                .is_some_and(|text| text.contains("the band is ill"))
                    })
                    .then_some(())
            }
        })
        .await;
    }
    world.stop().await;
}

#[tokio::test]
async fn a_replayed_stream_mails_nothing_again() {
    // Idempotent by event id: the group read from the very start again
    // (its checkpoints forgotten, as after losing them) records no message
    // twice and asks checkout nothing (it is not even reachable now).
    let smtp = SmtpServer::start().await;
    let notify = NotifyConfig::development(&smtp.url()).expect("notify configuration");
    let world = SystemWorld::start_with_notify("notifyreplay", &[], Some(notify)).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Encore", 10).await;
    let (email, buyer) = register(&mut accounts, "Replayed").await;
    let booking = buy(&edge, &buyer, &event.id, 1).await;
    let buyer_id = Uuid::parse_str(&booking.user_id).expect("a user id");
    wait_for_mails(&smtp, &email, 1).await;
    let store = world
        .system
        .notify
        .as_ref()
        .expect("notifications run")
        .store()
        .clone();
    eventually(Duration::from_secs(10), "the mail recorded as sent", || {
        let store = store.clone();
        async move {
            let states = store.messages_of(buyer_id).await.ok()?;
            (states.len() == 1 && states[0].status == "sent").then_some(())
        }
    })
    .await;

    // Everything stops; the database stays.
    let SystemWorld {
        db,
        system,
        shutdown,
        prefix,
        ..
    } = world;
    let pool = system.pool.clone();
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(30), system.wait())
        .await
        .expect("the system stops within its grace period")
        .expect("the system stops cleanly");
    let client = pool.get().await.expect("a connection");
    let positions = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i64)> {
        rows.iter().map(|row| (row.get(0), row.get(1))).collect()
    };
    let before = positions(
        client
            .query(
                "SELECT stream, position FROM notify.event_checkpoints ORDER BY stream",
                &[],
            )
            .await
            .expect("checkpoints"),
    );
    assert!(
        before
            .iter()
            .any(|(stream, position)| stream == "checkout" && *position > 0)
    );
    client
        .execute("DELETE FROM notify.event_checkpoints", &[])
        .await
        .expect("forgetting the checkpoints");

    // Notifications alone, checkout nowhere to be reached.
    let shutdown = boxoffice_runtime::Shutdown::new();
    let nowhere = boxoffice_runtime::transport::over_channel(
        Channel::from_static("http://127.0.0.1:9").connect_lazy(),
    );
    let config = crate::harness::test_config(&db, &[]);
    let notify = boxoffice_notify::NotifyComponent::start(
        &config,
        NotifyConfig::development(&smtp.url()).expect("notify configuration"),
        pool.clone(),
        nowhere,
        shutdown.clone(),
    )
    .await
    .expect("starting notifications again");
    eventually(
        Duration::from_secs(30),
        "the streams read again to their end",
        || {
            let client = &client;
            let before = before.clone();
            async move {
                let rows = client
                    .query(
                        "SELECT stream, position FROM notify.event_checkpoints ORDER BY stream",
                        &[],
                    )
                    .await
                    .ok()?;
                (positions(rows) == before).then_some(())
            }
        },
    )
    .await;
    let states = notify
        .store()
        .messages_of(buyer_id)
        .await
        .expect("messages");
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!((states[0].status.as_str(), states[0].attempts), ("sent", 1));
    assert_eq!(notify.sender_stats.snapshot().sent, 0);
    assert_eq!(smtp.mails_to(&email).len(), 1, "no second mail");
    shutdown.trigger();
    drop(notify);
    crate::harness::delete_redis_keys(&crate::harness::redis_url(), &prefix).await;
}

#[tokio::test]
async fn questions_are_their_askers_and_answers_are_mailed() {
    use boxoffice_contracts::notify::v1::support_service_client::SupportServiceClient;

    let smtp = SmtpServer::start().await;
    let notify = NotifyConfig::development(&smtp.url()).expect("notify configuration");
    let world = SystemWorld::start_with_notify("notifyquestions", &[], Some(notify)).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Asked About", 10).await;
    let (ann_email, ann) = register(&mut accounts, "Ann").await;
    let (_, bob) = register(&mut accounts, "Bob").await;
    let booking = buy(&edge, &ann, &event.id, 1).await;
    wait_for_mails(&smtp, &ann_email, 1).await;
    let mut support = SupportServiceClient::new(edge.clone());
    let ask = |booking: &str, text: &str| notify_pb::OpenQuestionRequest {
        event_id: event.id.clone(),
        booking: booking.to_owned(),
        subject: "Step-free access?".into(),
        text: text.to_owned(),
    };

    let anonymous = support
        .open_question(ask("", "hello"))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let long = support
        .open_question(with_token(&ann, ask(&booking.name, &"x".repeat(5_001))))
        .await
        .expect_err("5,001 characters");
    assert_eq!(long.code(), Code::InvalidArgument);
    // Bob names Ann's booking: as if it did not exist.
    let foreign = support
        .open_question(with_token(&bob, ask(&booking.name, "whose is this?")))
        .await
        .expect_err("someone else's booking");
    assert_eq!(foreign.code(), Code::NotFound, "{foreign:?}");
    let question = support
        .open_question(with_token(
            &ann,
            ask(&booking.name, "Is there a lift to the floor?"),
        ))
        .await
        .expect("ann asks")
        .into_inner();
    assert_eq!(question.state, notify_pb::QuestionState::Open as i32);

    // Only Ann (and admins) see, list and close it.
    let get = |name: &str| notify_pb::GetQuestionRequest {
        name: name.to_owned(),
    };
    let hidden = support
        .get_question(with_token(&bob, get(&question.name)))
        .await
        .expect_err("bob reads ann's question");
    assert_eq!(hidden.code(), Code::NotFound);
    let closing = support
        .close_question(with_token(
            &bob,
            notify_pb::CloseQuestionRequest {
                name: question.name.clone(),
            },
        ))
        .await
        .expect_err("bob closes ann's question");
    assert_eq!(closing.code(), Code::NotFound);
    let list = |state: notify_pb::QuestionState| notify_pb::ListQuestionsRequest {
        state: state as i32,
        page_size: 0,
        page_token: String::new(),
    };
    let bobs = support
        .list_questions(with_token(
            &bob,
            list(notify_pb::QuestionState::Unspecified),
        ))
        .await
        .expect("bob's list")
        .into_inner();
    assert!(bobs.questions.is_empty());
    let answer = |text: &str| notify_pb::AnswerQuestionRequest {
        name: question.name.clone(),
        text: text.to_owned(),
    };
    let denied = support
        .answer_question(with_token(&bob, answer("yes")))
        .await
        .expect_err("bob is no admin");
    assert_eq!(denied.code(), Code::PermissionDenied);

    // The admin finds it among the open ones and answers; Ann is mailed.
    let open = support
        .list_questions(with_token(&admin, list(notify_pb::QuestionState::Open)))
        .await
        .expect("the admin's list")
        .into_inner();
    assert!(open.questions.iter().any(|q| q.name == question.name));
    let answered = support
        .answer_question(with_token(&admin, answer("Yes: the lift is by door C.")))
        .await
        .expect("answering")
        .into_inner();
    assert_eq!(answered.state, notify_pb::QuestionState::Answered as i32);
    assert_eq!(answered.answers.len(), 1);
    let mails = wait_for_mails(&smtp, &ann_email, 2).await;
    let mail = mails
        .iter()
        .find(|mail| mail["subject"] == "Re: Step-free access?")
        .expect("the answer's mail");
    assert!(
        mail["text"]
            .as_str()
            .is_some_and(|text| text.contains("the lift is by door C")),
        "{mail}"
    );

    // Ann closes it; a closed question takes no answer.
    let closed = support
        .close_question(with_token(
            &ann,
            notify_pb::CloseQuestionRequest {
                name: question.name.clone(),
            },
        ))
        .await
        .expect("ann closes it")
        .into_inner();
    assert_eq!(closed.state, notify_pb::QuestionState::Closed as i32);
    let late = support
        .answer_question(with_token(&admin, answer("one more thing")))
        .await
        .expect_err("closed");
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(
        reason_of(&late).as_deref(),
        Some(boxoffice_notify::reason::QUESTION_CLOSED)
    );
    world.stop().await;
}
