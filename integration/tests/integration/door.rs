//! The door and ticket transfers (issue 20), through the edge of a whole
//! system: admission exactly once (ten gates at once), refusals with their
//! reasons, idempotent scan ids, re-entry, counts per gate, an offline
//! scanner working from its kit (public key and revoked codes) whose
//! double admissions are resolved earliest-first and reported, transfers
//! moving a ticket and its code, ownership (user B against user A's tickets
//! and transfers) and bad input.

use std::collections::BTreeMap;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_checkout::domain::door::{OfflineScanner, Refusal, RevokedCode, parse_ticket_name};
use boxoffice_checkout::domain::ticket_code::{TicketSigner, TicketVerifier};
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::checkout::v1::door_service_client::DoorServiceClient;
use boxoffice_runtime::status::{field_of, reason_of};
use chrono::{DateTime, Utc};
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

use crate::edge_world::{login, with_token};
use crate::sessions::{PASSWORD, World, buy, event_on_sale};

fn door(world: &World) -> DoorServiceClient<Channel> {
    DoorServiceClient::new(world.edges[0].clone())
}

fn checkout(world: &World) -> CheckoutServiceClient<Channel> {
    CheckoutServiceClient::new(world.edges[0].clone())
}

fn ts(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn time_of(timestamp: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(timestamp.seconds, timestamp.nanos as u32).expect("a time")
}

fn gate(event_id: &str, gate: &str) -> String {
    format!("events/{event_id}/gates/{gate}")
}

fn scan_id() -> String {
    Uuid::new_v4().simple().to_string()
}

async fn redeem(
    world: &World,
    token: &str,
    gate: &str,
    code: &str,
    scan_id: &str,
    direction: pb::ScanDirection,
) -> Result<pb::Scan, Status> {
    door(world)
        .redeem_ticket(with_token(
            token,
            pb::RedeemTicketRequest {
                gate: gate.to_owned(),
                code: code.to_owned(),
                scan_id: scan_id.to_owned(),
                direction: direction as i32,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn enter(world: &World, admin: &str, gate: &str, code: &str) -> pb::Scan {
    redeem(
        world,
        admin,
        gate,
        code,
        &scan_id(),
        pb::ScanDirection::Entry,
    )
    .await
    .expect("a scan's answer")
}

fn assert_admitted(scan: &pb::Scan) {
    assert_eq!(scan.result, pb::ScanResult::Admitted as i32, "{scan:?}");
    assert!(scan.refusal_reason.is_empty(), "{scan:?}");
}

fn assert_refused(scan: &pb::Scan, reason: &str) {
    assert_eq!(scan.result, pb::ScanResult::Refused as i32, "{scan:?}");
    assert_eq!(scan.refusal_reason, reason, "{scan:?}");
}

fn assert_status(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

async fn settings(
    world: &World,
    admin: &str,
    event_id: &str,
    reentry: bool,
    opens: Option<DateTime<Utc>>,
) {
    door(world)
        .update_door_settings(with_token(
            admin,
            pb::UpdateDoorSettingsRequest {
                settings: Some(pb::DoorSettings {
                    event: format!("events/{event_id}"),
                    reentry_allowed: reentry,
                    doors_open_time: opens.map(ts),
                }),
            },
        ))
        .await
        .expect("door settings");
}

async fn counts(world: &World, admin: &str, event_id: &str) -> pb::CheckInCounts {
    door(world)
        .get_check_in_counts(with_token(
            admin,
            pb::GetCheckInCountsRequest {
                event: format!("events/{event_id}"),
            },
        ))
        .await
        .expect("counts")
        .into_inner()
}

async fn kit(world: &World, admin: &str, event_id: &str) -> pb::ScannerKit {
    door(world)
        .get_scanner_kit(with_token(
            admin,
            pb::GetScannerKitRequest {
                event: format!("events/{event_id}"),
            },
        ))
        .await
        .expect("a scanner kit")
        .into_inner()
}

/// The offline scanner a kit makes: the public key and the revoked codes.
fn offline_scanner(kit: &pb::ScannerKit) -> OfflineScanner {
    assert_eq!(kit.key_algorithm, "ed25519");
    let event_id = kit
        .event
        .strip_prefix("events/")
        .and_then(|id| id.parse().ok())
        .expect("an event name");
    let verifier = TicketVerifier::from_public_key(&kit.verification_key).expect("a public key");
    let revoked = kit.revoked.iter().map(|code| RevokedCode {
        ticket: parse_ticket_name("ticket", &code.ticket).expect("a ticket name"),
        nonce: code.nonce.parse().expect("a nonce"),
        refusal: Refusal::parse(&code.reason).expect("a reason"),
    });
    OfflineScanner::new(event_id, verifier, revoked)
}

#[tokio::test]
async fn a_ticket_gets_in_once_however_many_gates_scan_it_and_refusals_say_why() {
    let world = World::start().await;
    let admin = login(&mut world.accounts(0), DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = event_on_sale(&world, "Door Night", 20).await;
    let (email, _, _) = world.register("ann").await;
    let ann = world.login(&email, PASSWORD).await.access_token;
    let booking = buy(&world, &ann, &event.id, 3, "ann-1").await;
    let codes: Vec<String> = booking.tickets.iter().map(|t| t.code.clone()).collect();
    assert!(
        codes.iter().all(|code| code.starts_with("bt2.")),
        "{codes:?}"
    );
    let north = gate(&event.id, "north");
    let south = gate(&event.id, "south");

    // Admitted, then refused as used, saying where and when.
    let first_id = scan_id();
    let first = redeem(
        &world,
        &admin,
        &north,
        &codes[0],
        &first_id,
        pb::ScanDirection::Entry,
    )
    .await
    .expect("a scan");
    assert_admitted(&first);
    assert_eq!(first.ticket, booking.tickets[0].name);
    let again_id = scan_id();
    let again = redeem(
        &world,
        &admin,
        &south,
        &codes[0],
        &again_id,
        pb::ScanDirection::Entry,
    )
    .await
    .expect("a scan");
    assert_refused(&again, "ALREADY_USED");
    assert_eq!(again.used_gate, north);
    assert_eq!(again.used_time, first.scan_time);

    // The same scan id answers the same, whatever happened since; with
    // another code it is a mistake.
    let retried = redeem(
        &world,
        &admin,
        &north,
        &codes[0],
        &first_id,
        pb::ScanDirection::Entry,
    )
    .await
    .expect("a retry");
    assert_eq!(retried, first);
    let retried = redeem(
        &world,
        &admin,
        &south,
        &codes[0],
        &again_id,
        pb::ScanDirection::Entry,
    )
    .await
    .expect("a retry");
    assert_eq!(retried, again);
    let reused = redeem(
        &world,
        &admin,
        &north,
        &codes[1],
        &first_id,
        pb::ScanDirection::Entry,
    )
    .await
    .expect_err("a scan id is for one scan");
    assert_status(&reused, Code::InvalidArgument, "SCAN_ID_REUSED");

    // Ten gates scan one ticket at the same moment: exactly one admits.
    let scans = futures::future::join_all((0..10).map(|index| {
        let gate = gate(&event.id, &format!("gate-{index}"));
        let (world, admin, code) = (&world, &admin, &codes[1]);
        async move { enter(world, admin, &gate, code).await }
    }))
    .await;
    let admitted: Vec<&pb::Scan> = scans
        .iter()
        .filter(|scan| scan.result == pb::ScanResult::Admitted as i32)
        .collect();
    assert_eq!(admitted.len(), 1, "{scans:?}");
    for scan in &scans {
        if scan.result != pb::ScanResult::Admitted as i32 {
            assert_refused(scan, "ALREADY_USED");
            assert_eq!(scan.used_gate, admitted[0].gate);
        }
    }

    // Another event's gate, a forged code, a tampered one.
    let elsewhere = gate(&Uuid::new_v4().to_string(), "north");
    assert_refused(
        &enter(&world, &admin, &elsewhere, &codes[2]).await,
        "WRONG_EVENT",
    );
    let verifier =
        TicketVerifier::from_public_key(&kit(&world, &admin, &event.id).await.verification_key)
            .expect("a public key");
    let claims = verifier.verify(&codes[2]).expect("a genuine code");
    let forged = TicketSigner::new(b"not the key").sign(&claims);
    assert_refused(&enter(&world, &admin, &north, &forged).await, "FORGED");
    let tampered = codes[2].replacen(".", ".0", 2);
    assert_refused(&enter(&world, &admin, &north, &tampered).await, "FORGED");
    assert_refused(&enter(&world, &admin, &north, "hello").await, "FORGED");

    // Before the doors open.
    settings(
        &world,
        &admin,
        &event.id,
        false,
        Some(Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    assert_refused(
        &enter(&world, &admin, &north, &codes[2]).await,
        "NOT_YET_OPEN",
    );
    settings(&world, &admin, &event.id, false, None).await;

    // A cancelled booking's tickets admit nobody, online or offline.
    let cancelled = buy(&world, &ann, &event.id, 1, "ann-2").await;
    checkout(&world)
        .cancel_booking(with_token(
            &ann,
            pb::CancelBookingRequest {
                name: cancelled.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect("cancelling");
    let cancelled_code = &cancelled.tickets[0].code;
    assert_refused(
        &enter(&world, &admin, &north, cancelled_code).await,
        "CANCELLED",
    );
    let mut offline = offline_scanner(&kit(&world, &admin, &event.id).await);
    assert_eq!(offline.check(cancelled_code), Err(Refusal::Cancelled));

    // Re-entry: out and in again where the event allows it, never twice in.
    let out = redeem(
        &world,
        &admin,
        &south,
        &codes[0],
        &scan_id(),
        pb::ScanDirection::Exit,
    )
    .await
    .expect("a scan");
    assert_refused(&out, "REENTRY_NOT_ALLOWED");
    settings(&world, &admin, &event.id, true, None).await;
    let out = redeem(
        &world,
        &admin,
        &south,
        &codes[0],
        &scan_id(),
        pb::ScanDirection::Exit,
    )
    .await
    .expect("a scan");
    assert_eq!(out.result, pb::ScanResult::Exited as i32, "{out:?}");
    let out_again = redeem(
        &world,
        &admin,
        &south,
        &codes[0],
        &scan_id(),
        pb::ScanDirection::Exit,
    )
    .await
    .expect("a scan");
    assert_refused(&out_again, "NOT_INSIDE");
    let back = enter(&world, &admin, &south, &codes[0]).await;
    assert_admitted(&back);
    let twice = enter(&world, &admin, &north, &codes[0]).await;
    assert_refused(&twice, "ALREADY_USED");
    assert_eq!(twice.used_gate, south, "the latest entry, with re-entry");

    // Counts per gate: what each gate did.
    let counts = counts(&world, &admin, &event.id).await;
    let by_gate: BTreeMap<String, (i64, i64, i64)> = counts
        .gates
        .iter()
        .map(|gate| {
            (
                gate.gate.clone(),
                (gate.admitted, gate.exited, gate.refused),
            )
        })
        .collect();
    // north: codes[0] in; forged, tampered, garbage, not yet open,
    // cancelled and used refused (the wrong event's scan counts at that
    // event's gate). south: used, exit refused, out, not inside, back in.
    assert_eq!(by_gate[&north], (1, 0, 6), "{counts:?}");
    assert_eq!(by_gate[&south], (1, 1, 3), "{counts:?}");
    let ten: i64 = (0..10)
        .map(|index| by_gate[&gate(&event.id, &format!("gate-{index}"))].0)
        .sum();
    assert_eq!(ten, 1);
    assert_eq!(counts.tickets_admitted, 2);
    assert_eq!(counts.tickets_inside, 2);

    // Bad input changes nothing and says which field.
    for (gate_name, code, id, field) in [
        (north.as_str(), "", "x1", "code"),
        (north.as_str(), &*"a".repeat(513), "x2", "code"),
        ("north", codes[2].as_str(), "x3", "gate"),
        (
            &*gate(&event.id, "North Gate"),
            codes[2].as_str(),
            "x4",
            "gate",
        ),
        (north.as_str(), codes[2].as_str(), "", "scan_id"),
        (
            north.as_str(),
            codes[2].as_str(),
            &*"x".repeat(65),
            "scan_id",
        ),
    ] {
        let status = redeem(
            &world,
            &admin,
            gate_name,
            code,
            id,
            pb::ScanDirection::Entry,
        )
        .await
        .expect_err("bad input");
        assert_status(&status, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(field_of(&status).as_deref(), Some(field), "{status:?}");
    }
    assert_admitted(&enter(&world, &admin, &north, &codes[2]).await);

    // The door is for admins.
    let customer = redeem(
        &world,
        &ann,
        &north,
        &codes[2],
        &scan_id(),
        pb::ScanDirection::Entry,
    )
    .await
    .expect_err("customers do not scan");
    assert_eq!(customer.code(), Code::PermissionDenied, "{customer:?}");
    let anonymous = door(&world)
        .get_check_in_counts(pb::GetCheckInCountsRequest {
            event: format!("events/{}", event.id),
        })
        .await
        .expect_err("anonymous callers do not count");
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    world.stop().await;
}

#[tokio::test]
async fn an_offline_scanner_and_an_online_gate_admit_a_ticket_once_and_the_conflict_is_reported() {
    let world = World::start().await;
    let admin = login(&mut world.accounts(0), DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = event_on_sale(&world, "Offline Night", 20).await;
    let (email, _, _) = world.register("otto").await;
    let otto = world.login(&email, PASSWORD).await.access_token;
    let booking = buy(&world, &otto, &event.id, 4, "otto-1").await;
    let codes: Vec<String> = booking.tickets.iter().map(|t| t.code.clone()).collect();
    let online = gate(&event.id, "main");
    let field = gate(&event.id, "field-1");

    // The scanner goes offline with its kit and lets two people in.
    let mut scanner = offline_scanner(&kit(&world, &admin, &event.id).await);
    let early = Utc::now() - chrono::Duration::seconds(60);
    assert!(scanner.check(&codes[0]).is_ok());
    assert_eq!(
        scanner.check(&codes[0]),
        Err(Refusal::AlreadyUsed),
        "it remembers"
    );
    let early_scan = scan_id();
    // Meanwhile the online gate admits the same ticket (it cannot know),
    // and admits another before the offline scanner sees that one too.
    let online_first = enter(&world, &admin, &online, &codes[0]).await;
    assert_admitted(&online_first);
    let online_second = enter(&world, &admin, &online, &codes[1]).await;
    assert_admitted(&online_second);
    assert!(scanner.check(&codes[1]).is_ok());
    let late = Utc::now();
    let late_scan = scan_id();
    let plain_scan = scan_id();
    assert!(scanner.check(&codes[2]).is_ok());

    let upload = pb::UploadOfflineScansRequest {
        gate: field.clone(),
        scans: vec![
            pb::OfflineScan {
                scan_id: early_scan.clone(),
                code: codes[0].clone(),
                scan_time: Some(ts(early)),
                direction: pb::ScanDirection::Entry as i32,
            },
            pb::OfflineScan {
                scan_id: late_scan.clone(),
                code: codes[1].clone(),
                scan_time: Some(ts(late)),
                direction: pb::ScanDirection::Entry as i32,
            },
            pb::OfflineScan {
                scan_id: plain_scan.clone(),
                code: codes[2].clone(),
                scan_time: Some(ts(late)),
                direction: pb::ScanDirection::Entry as i32,
            },
        ],
    };
    let answer = door(&world)
        .upload_offline_scans(with_token(&admin, upload.clone()))
        .await
        .expect("uploading")
        .into_inner();
    // The earlier offline scan wins the first ticket, the earlier online
    // scan the second; the third was never contested.
    assert_admitted(&answer.scans[0]);
    assert!(answer.scans[0].offline);
    assert_eq!(
        answer.scans[1].result,
        pb::ScanResult::Conflict as i32,
        "{answer:?}"
    );
    assert_eq!(answer.scans[1].used_gate, online);
    assert_admitted(&answer.scans[2]);
    assert_eq!(answer.conflicts.len(), 2, "{answer:?}");
    let winner_and_loser = |conflict: &pb::ScanConflict| {
        (
            conflict.winner.as_ref().expect("a winner").scan_id.clone(),
            conflict.loser.as_ref().expect("a loser").scan_id.clone(),
        )
    };
    assert_eq!(
        winner_and_loser(&answer.conflicts[0]),
        (early_scan.clone(), online_first.scan_id.clone())
    );
    assert_eq!(
        winner_and_loser(&answer.conflicts[1]),
        (online_second.scan_id.clone(), late_scan.clone())
    );
    assert_eq!(answer.conflicts[0].ticket, booking.tickets[0].name);
    assert_eq!(
        time_of(
            answer.conflicts[0]
                .winner
                .as_ref()
                .and_then(|w| w.scan_time.as_ref())
                .expect("a time")
        )
        .timestamp_micros(),
        early.timestamp_micros()
    );

    // Uploading again (the scanner did not hear back) changes nothing.
    let again = door(&world)
        .upload_offline_scans(with_token(&admin, upload))
        .await
        .expect("uploading again")
        .into_inner();
    assert_eq!(again, answer);

    // The organiser lists them, page by page.
    let page = door(&world)
        .list_scan_conflicts(with_token(
            &admin,
            pb::ListScanConflictsRequest {
                event: format!("events/{}", event.id),
                page_size: 1,
                page_token: String::new(),
            },
        ))
        .await
        .expect("listing conflicts")
        .into_inner();
    assert_eq!(page.conflicts, answer.conflicts[..1]);
    let rest = door(&world)
        .list_scan_conflicts(with_token(
            &admin,
            pb::ListScanConflictsRequest {
                event: format!("events/{}", event.id),
                page_size: 10,
                page_token: page.next_page_token,
            },
        ))
        .await
        .expect("listing conflicts")
        .into_inner();
    assert_eq!(rest.conflicts, answer.conflicts[1..]);
    assert!(rest.next_page_token.is_empty());

    // Online and offline at the same moment: one admission either way, and
    // a double admission is always on the list.
    let mut uploader = door(&world);
    let (online_scan, offline_upload) = tokio::join!(
        enter(&world, &admin, &online, &codes[3]),
        uploader.upload_offline_scans(with_token(
            &admin,
            pb::UploadOfflineScansRequest {
                gate: field.clone(),
                scans: vec![pb::OfflineScan {
                    scan_id: scan_id(),
                    code: codes[3].clone(),
                    scan_time: Some(ts(Utc::now() - chrono::Duration::seconds(5))),
                    direction: pb::ScanDirection::Entry as i32,
                }],
            },
        ))
    );
    let offline_upload = offline_upload.expect("uploading").into_inner();
    let both_in = online_scan.result == pb::ScanResult::Admitted as i32;
    assert_admitted(&offline_upload.scans[0]);
    assert_eq!(
        offline_upload.conflicts.len(),
        usize::from(both_in),
        "{offline_upload:?}"
    );
    if !both_in {
        assert_refused(&online_scan, "ALREADY_USED");
    }

    let counts = counts(&world, &admin, &event.id).await;
    assert_eq!(counts.tickets_admitted, 4, "{counts:?}");
    assert_eq!(counts.conflicts, 2 + i64::from(both_in), "{counts:?}");
    let field_counts = counts
        .gates
        .iter()
        .find(|gate| gate.gate == field)
        .expect("the offline gate's counts");
    assert_eq!(
        (field_counts.admitted, field_counts.conflicts),
        (3, 1),
        "{counts:?}"
    );

    // Bad uploads.
    for (scans, field_name) in [
        (vec![], "scans"),
        (
            vec![pb::OfflineScan {
                scan_id: scan_id(),
                code: codes[0].clone(),
                scan_time: Some(ts(Utc::now() + chrono::Duration::hours(1))),
                direction: 0,
            }],
            "scans[0].scan_time",
        ),
        (
            vec![pb::OfflineScan {
                scan_id: scan_id(),
                code: codes[0].clone(),
                scan_time: None,
                direction: 0,
            }],
            "scans[0].scan_time",
        ),
    ] {
        let status = door(&world)
            .upload_offline_scans(with_token(
                &admin,
                pb::UploadOfflineScansRequest {
                    gate: field.clone(),
                    scans,
                },
            ))
            .await
            .expect_err("bad upload");
        assert_status(&status, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(field_of(&status).as_deref(), Some(field_name));
    }
    world.stop().await;
}

async fn tickets(world: &World, token: &str) -> Vec<pb::Ticket> {
    checkout(world)
        .list_tickets(with_token(token, pb::ListTicketsRequest {}))
        .await
        .expect("listing tickets")
        .into_inner()
        .tickets
}

async fn transfers(world: &World, token: &str) -> Vec<pb::TicketTransfer> {
    checkout(world)
        .list_ticket_transfers(with_token(token, pb::ListTicketTransfersRequest {}))
        .await
        .expect("listing transfers")
        .into_inner()
        .transfers
}

async fn send(
    world: &World,
    token: &str,
    ticket: &str,
    email: &str,
) -> Result<pb::TicketTransfer, Status> {
    checkout(world)
        .create_ticket_transfer(with_token(
            token,
            pb::CreateTicketTransferRequest {
                ticket: ticket.to_owned(),
                recipient_email: email.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn accept(world: &World, token: &str, name: &str) -> Result<pb::TicketTransfer, Status> {
    checkout(world)
        .accept_ticket_transfer(with_token(
            token,
            pb::AcceptTicketTransferRequest {
                name: name.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn withdraw(world: &World, token: &str, name: &str) -> Result<pb::TicketTransfer, Status> {
    checkout(world)
        .cancel_ticket_transfer(with_token(
            token,
            pb::CancelTicketTransferRequest {
                name: name.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_transfer_moves_a_ticket_and_its_code_and_only_its_parties_can_touch_it() {
    let world = World::start().await;
    let admin = login(&mut world.accounts(0), DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = event_on_sale(&world, "Gift Night", 20).await;
    let (email_a, _, _) = world.register("alma").await;
    let (email_b, _, _) = world.register("bo").await;
    let (email_c, _, _) = world.register("cy").await;
    let alma = world.login(&email_a, PASSWORD).await.access_token;
    let bo = world.login(&email_b, PASSWORD).await.access_token;
    let cy = world.login(&email_c, PASSWORD).await.access_token;
    let booking = buy(&world, &alma, &event.id, 2, "alma-1").await;
    let (gift, kept) = (&booking.tickets[0], &booking.tickets[1]);
    let door_gate = gate(&event.id, "main");

    // Bad input, and sending to oneself.
    for (ticket, email, field) in [
        ("tickets/1", email_b.as_str(), "ticket"),
        (gift.name.as_str(), "", "recipient_email"),
        (gift.name.as_str(), "not an email", "recipient_email"),
        (
            gift.name.as_str(),
            &*format!("{}@example.com", "a".repeat(250)),
            "recipient_email",
        ),
    ] {
        let status = send(&world, &alma, ticket, email)
            .await
            .expect_err("bad input");
        assert_status(&status, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(field_of(&status).as_deref(), Some(field), "{status:?}");
    }
    let to_self = send(&world, &alma, &gift.name, &email_a.to_uppercase())
        .await
        .expect_err("not to oneself");
    assert_status(&to_self, Code::FailedPrecondition, "TRANSFER_TO_SELF");

    // Someone else's ticket is not there for Cy.
    let stolen = send(&world, &cy, &gift.name, &email_b)
        .await
        .expect_err("not Cy's ticket");
    assert_status(&stolen, Code::NotFound, "NOT_FOUND");

    // Alma sends it to Bo (however Bo's email is spelled).
    let offer = send(&world, &alma, &gift.name, &email_b.to_uppercase())
        .await
        .expect("sending");
    assert_eq!(offer.state, pb::TransferState::Pending as i32);
    assert_eq!(offer.recipient_email, email_b.to_lowercase());
    let twice = send(&world, &alma, &gift.name, &email_c)
        .await
        .expect_err("one offer at a time");
    assert_status(&twice, Code::FailedPrecondition, "TRANSFER_PENDING");

    // Cy can neither see, take nor withdraw it; Bo cannot withdraw it.
    assert!(transfers(&world, &cy).await.is_empty());
    assert_status(
        &accept(&world, &cy, &offer.name)
            .await
            .expect_err("not Cy's"),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_status(
        &withdraw(&world, &cy, &offer.name)
            .await
            .expect_err("not Cy's"),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_status(
        &withdraw(&world, &bo, &offer.name)
            .await
            .expect_err("only the sender"),
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_eq!(transfers(&world, &alma).await, vec![offer.clone()]);
    assert_eq!(transfers(&world, &bo).await, vec![offer.clone()]);
    let bad_name = accept(&world, &bo, "transfers/1")
        .await
        .expect_err("a bad name");
    assert_status(&bad_name, Code::InvalidArgument, "INVALID_FIELD");

    // An offer to an address nobody holds waits; its sender withdraws it.
    let stray = send(&world, &alma, &kept.name, "nobody-here@example.com")
        .await
        .expect("an offer to anyone");
    let withdrawn = withdraw(&world, &alma, &stray.name)
        .await
        .expect("withdrawing");
    assert_eq!(withdrawn.state, pb::TransferState::Cancelled as i32);
    assert_status(
        &withdraw(&world, &alma, &stray.name)
            .await
            .expect_err("once"),
        Code::FailedPrecondition,
        "TRANSFER_NOT_PENDING",
    );

    // Bo accepts: the ticket is Bo's with a new code; Alma's listing and
    // booking no longer have it.
    let taken = accept(&world, &bo, &offer.name).await.expect("accepting");
    assert_eq!(taken.state, pb::TransferState::Accepted as i32);
    assert_status(
        &accept(&world, &bo, &offer.name).await.expect_err("once"),
        Code::FailedPrecondition,
        "TRANSFER_NOT_PENDING",
    );
    let bos = tickets(&world, &bo).await;
    assert_eq!(bos.len(), 1, "{bos:?}");
    assert_eq!(bos[0].name, gift.name);
    assert!(bos[0].received);
    assert_ne!(bos[0].code, gift.code, "a new code");
    let almas = tickets(&world, &alma).await;
    assert_eq!(
        almas.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        vec![kept.name.clone()]
    );
    assert_eq!(almas[0].code, kept.code, "the kept ticket keeps its code");
    let almas_booking = checkout(&world)
        .get_booking(with_token(
            &alma,
            pb::GetBookingRequest {
                name: booking.name.clone(),
            },
        ))
        .await
        .expect("reading the booking")
        .into_inner();
    assert_eq!(almas_booking.tickets.len(), 1);
    assert_eq!(almas_booking.tickets[0].name, kept.name);
    assert!(tickets(&world, &cy).await.is_empty());

    // A booking with a ticket given away cannot be refunded.
    let refused = checkout(&world)
        .cancel_booking(with_token(
            &alma,
            pb::CancelBookingRequest {
                name: booking.name.clone(),
                idempotency_key: String::new(),
            },
        ))
        .await
        .expect_err("not cancellable");
    assert_status(&refused, Code::FailedPrecondition, "TICKETS_TRANSFERRED");

    // At the door the old code is refused (online and in the offline
    // scanner's list), the new one admits, once.
    let mut scanner = offline_scanner(&kit(&world, &admin, &event.id).await);
    assert_eq!(scanner.check(&gift.code), Err(Refusal::Replaced));
    assert!(scanner.check(&bos[0].code).is_ok());
    assert_refused(
        &enter(&world, &admin, &door_gate, &gift.code).await,
        "REPLACED",
    );
    assert_admitted(&enter(&world, &admin, &door_gate, &bos[0].code).await);

    // A used ticket goes nowhere; Alma cannot send Bo's ticket back.
    let used = send(&world, &bo, &gift.name, &email_c)
        .await
        .expect_err("already used");
    assert_status(&used, Code::FailedPrecondition, "TICKET_ALREADY_USED");
    let not_hers = send(&world, &alma, &gift.name, &email_c)
        .await
        .expect_err("Bo's now");
    assert_status(&not_hers, Code::NotFound, "NOT_FOUND");
    world.stop().await;
}
