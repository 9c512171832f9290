//! Sessions, credentials and privacy (issue 20), through the edge of a
//! whole system: rotating refresh tokens and reuse detection, logout and
//! device revocation refused within a second on two edges, profile and
//! password flows, `ExportMyData`, and `DeleteAccount`'s erasure checked
//! against every text column of every schema, with ownership (user B
//! against user A) on every new RPC.

use std::time::{Duration, Instant};

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_accounts::store::TokenPurpose;
use boxoffice_contracts::accounts::v1 as pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_contracts::stats::v1 as stats_pb;
use boxoffice_contracts::stats::v1::stats_service_client::StatsServiceClient;
use boxoffice_edge::server::Edge;
use boxoffice_runtime::status::reason_of;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{connect, login, with_token};
use crate::harness::eventually;
use crate::system_world::{SystemWorld, standing_event_on_sale};

/// How soon every edge must refuse a revoked session's tokens.
const REVOCATION_DEADLINE: Duration = Duration::from_secs(1);
pub const PASSWORD: &str = "correct horse battery";

/// A whole system with its edge (and a second edge) over a fresh database;
/// the door's tests (`door.rs`) run in it too.
pub struct World {
    pub world: SystemWorld,
    /// The system's own edge, and a second edge instance over the network.
    pub edges: [Channel; 2],
}

impl World {
    pub async fn start() -> Self {
        let world = SystemWorld::start("sessions", &[]).await;
        // A second edge, as another replica would run: over the network to
        // the services, following the revocation feed on its own.
        let second = Edge::bind(
            world
                .edge_config
                .clone()
                .with_upstream_everywhere(world.system.internal_addr),
            &world.tokens,
        )
        .await
        .expect("binding a second edge");
        let second_addr = second.local_addr();
        tokio::spawn(second.run_until_stopped(world.shutdown.clone()));
        let edges = [world.edge().await, connect(second_addr).await];
        Self { world, edges }
    }

    pub fn accounts(&self, edge: usize) -> AccountsServiceClient<Channel> {
        AccountsServiceClient::new(self.edges[edge].clone())
    }

    /// Registers a user with a unique email and name; returns (email, name, id).
    pub async fn register(&self, who: &str) -> (String, String, Uuid) {
        let email = format!("{who}-{}@example.com", Uuid::new_v4().simple());
        let name = format!("{who} Zq{}", Uuid::new_v4().simple());
        let user = self
            .accounts(0)
            .register(pb::RegisterRequest {
                email: email.clone(),
                password: PASSWORD.into(),
                display_name: name.clone(),
            })
            .await
            .expect("registering")
            .into_inner();
        (email, name, user.id.parse().expect("a user id"))
    }

    pub async fn login(&self, email: &str, password: &str) -> pb::LoginResponse {
        self.accounts(0)
            .login(pb::LoginRequest {
                email: email.into(),
                password: password.into(),
            })
            .await
            .expect("logging in")
            .into_inner()
    }

    pub async fn stop(self) {
        self.world.stop().await;
    }
}

impl std::ops::Deref for World {
    type Target = SystemWorld;

    fn deref(&self) -> &SystemWorld {
        &self.world
    }
}

async fn get_me(edge: &Channel, token: &str) -> Result<pb::User, tonic::Status> {
    AccountsServiceClient::new(edge.clone())
        .get_me(with_token(token, pb::GetMeRequest {}))
        .await
        .map(tonic::Response::into_inner)
}

/// Waits until every edge refuses `token` as revoked; asserts it took at
/// most [`REVOCATION_DEADLINE`] from `since`.
async fn refused_everywhere_within_a_second(world: &World, token: &str, since: Instant) {
    for (index, edge) in world.edges.iter().enumerate() {
        eventually(
            REVOCATION_DEADLINE.saturating_sub(since.elapsed()) + Duration::from_millis(1),
            &format!("edge {index} refusing the revoked session"),
            || async {
                match get_me(edge, token).await {
                    Err(status) if status.code() == Code::Unauthenticated => {
                        assert_eq!(reason_of(&status).as_deref(), Some("SESSION_REVOKED"));
                        Some(())
                    }
                    _ => None,
                }
            },
        )
        .await;
    }
    assert!(
        since.elapsed() <= REVOCATION_DEADLINE,
        "refused after {:?}",
        since.elapsed()
    );
}

fn assert_reason(status: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_whole_family() {
    let world = World::start().await;
    let (email, _, _) = world.register("rotor").await;
    let first = world.login(&email, PASSWORD).await;
    assert!(!first.refresh_token.is_empty() && !first.session_id.is_empty());
    assert!(!first.access_token.is_empty() && first.user.is_some());

    let mut accounts = world.accounts(0);
    let second = accounts
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .expect("refreshing")
        .into_inner();
    assert_eq!(
        second.session_id, first.session_id,
        "same session, new pair"
    );
    assert_ne!(second.refresh_token, first.refresh_token);
    get_me(&world.edges[0], &second.access_token)
        .await
        .expect("the new access token works");

    // The first refresh token again: somebody copied it. The family dies.
    let reused = accounts
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .expect_err("a spent refresh token");
    let revoked_at = Instant::now();
    assert_reason(&reused, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");
    let after = accounts
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: second.refresh_token.clone(),
        })
        .await
        .expect_err("the family's newest refresh token is dead too");
    assert_reason(&after, Code::Unauthenticated, "REFRESH_TOKEN_INVALID");
    refused_everywhere_within_a_second(&world, &second.access_token, revoked_at).await;

    // Two refreshes racing with one token: at most one rotates, and the
    // session ends either way (the loser is a reuse).
    let racing = world.login(&email, PASSWORD).await;
    let race = |token: String| {
        let mut accounts = world.accounts(0);
        async move {
            accounts
                .refresh_session(pb::RefreshSessionRequest {
                    refresh_token: token,
                })
                .await
        }
    };
    let (a, b) = tokio::join!(
        race(racing.refresh_token.clone()),
        race(racing.refresh_token.clone())
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
    let loser = a.err().or(b.err()).expect("one loses");
    assert_reason(&loser, Code::Unauthenticated, "REFRESH_TOKEN_REUSED");

    // Garbage and empty tokens.
    let garbage = accounts
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: "not-a-token".into(),
        })
        .await
        .expect_err("garbage");
    assert_reason(&garbage, Code::Unauthenticated, "REFRESH_TOKEN_INVALID");
    let empty = accounts
        .refresh_session(pb::RefreshSessionRequest::default())
        .await
        .expect_err("empty");
    assert_eq!(empty.code(), Code::InvalidArgument);
    world.stop().await;
}

#[tokio::test]
async fn logout_and_revoked_devices_are_refused_within_a_second_on_two_edges_and_only_by_their_owner()
 {
    let world = World::start().await;
    let (email_a, _, _) = world.register("alice").await;
    let (email_b, _, _) = world.register("bob").await;
    let phone = world.login(&email_a, PASSWORD).await;
    let laptop = world.login(&email_a, PASSWORD).await;
    let bob = world.login(&email_b, PASSWORD).await;
    for edge in &world.edges {
        // Cached by both edges before the revocation.
        get_me(edge, &phone.access_token)
            .await
            .expect("phone works");
        get_me(edge, &laptop.access_token)
            .await
            .expect("laptop works");
    }

    // Alice sees her two devices, the current one marked.
    let listed = world
        .accounts(1)
        .list_sessions(with_token(&laptop.access_token, pb::ListSessionsRequest {}))
        .await
        .expect("listing sessions")
        .into_inner()
        .sessions;
    let ids: Vec<&str> = listed.iter().map(|session| session.id.as_str()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(ids.contains(&phone.session_id.as_str()) && ids.contains(&laptop.session_id.as_str()));
    assert!(
        listed
            .iter()
            .all(|session| session.current == (session.id == laptop.session_id))
    );

    // Bob neither sees nor ends Alice's sessions.
    let bobs = world
        .accounts(0)
        .list_sessions(with_token(&bob.access_token, pb::ListSessionsRequest {}))
        .await
        .expect("bob's sessions")
        .into_inner()
        .sessions;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].id, bob.session_id);
    let refused = world
        .accounts(0)
        .revoke_session(with_token(
            &bob.access_token,
            pb::RevokeSessionRequest {
                session_id: phone.session_id.clone(),
            },
        ))
        .await
        .expect_err("bob revoking alice's phone");
    assert_eq!(refused.code(), Code::NotFound);
    get_me(&world.edges[0], &phone.access_token)
        .await
        .expect("alice's phone still works");
    let anonymous = world
        .accounts(0)
        .list_sessions(pb::ListSessionsRequest {})
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let malformed = world
        .accounts(0)
        .revoke_session(with_token(
            &bob.access_token,
            pb::RevokeSessionRequest {
                session_id: "phone".into(),
            },
        ))
        .await
        .expect_err("not a uuid");
    assert_eq!(malformed.code(), Code::InvalidArgument);

    // Alice ends the phone from the laptop: both edges refuse it within 1 s.
    world
        .accounts(0)
        .revoke_session(with_token(
            &laptop.access_token,
            pb::RevokeSessionRequest {
                session_id: phone.session_id.clone(),
            },
        ))
        .await
        .expect("revoking the phone");
    refused_everywhere_within_a_second(&world, &phone.access_token, Instant::now()).await;
    for edge in &world.edges {
        get_me(edge, &laptop.access_token)
            .await
            .expect("the laptop still works");
    }
    let phone_refresh = world
        .accounts(0)
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: phone.refresh_token.clone(),
        })
        .await
        .expect_err("the phone's refresh token is dead");
    assert_reason(
        &phone_refresh,
        Code::Unauthenticated,
        "REFRESH_TOKEN_INVALID",
    );

    // Logout ends the laptop too.
    world
        .accounts(1)
        .logout(with_token(&laptop.access_token, pb::LogoutRequest {}))
        .await
        .expect("logging out");
    refused_everywhere_within_a_second(&world, &laptop.access_token, Instant::now()).await;
    get_me(&world.edges[1], &bob.access_token)
        .await
        .expect("bob is untouched");

    // WatchRevocations is for services only: the edge does not route it.
    let internal = world
        .accounts(0)
        .watch_revocations(with_token(
            &bob.access_token,
            pb::WatchRevocationsRequest {},
        ))
        .await
        .expect_err("not routed");
    assert_eq!(internal.code(), Code::Unimplemented);
    world.stop().await;
}

#[tokio::test]
async fn profile_email_verification_password_change_and_reset() {
    let world = World::start().await;
    let (email, _, user_id) = world.register("carol").await;
    let (_, _, bob_id) = world.register("bob").await;
    let here = world.login(&email, PASSWORD).await;
    let elsewhere = world.login(&email, PASSWORD).await;
    let delivery = world.system.accounts.accounts.delivery();
    let mut accounts = world.accounts(0);

    // A new name at once; a new email only once verified.
    let new_email = format!("carol-new-{}@example.com", Uuid::new_v4().simple());
    let updated = accounts
        .update_profile(with_token(
            &here.access_token,
            pb::UpdateProfileRequest {
                display_name: Some("Carol Renamed".into()),
                email: Some(new_email.clone()),
            },
        ))
        .await
        .expect("updating the profile")
        .into_inner();
    assert_eq!(updated.display_name, "Carol Renamed");
    assert_eq!(updated.email, email, "unchanged until verified");
    assert_eq!(updated.pending_email, new_email);
    let bad = accounts
        .update_profile(with_token(
            &here.access_token,
            pb::UpdateProfileRequest {
                display_name: None,
                email: Some("nope".into()),
            },
        ))
        .await
        .expect_err("a bad email");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let token = delivery
        .last_delivered(user_id, TokenPurpose::EmailChange)
        .expect("a verification token was sent");
    assert!(
        delivery
            .last_delivered(bob_id, TokenPurpose::EmailChange)
            .is_none()
    );
    let verified = accounts
        .verify_email(pb::VerifyEmailRequest {
            token: token.clone(),
        })
        .await
        .expect("verifying")
        .into_inner();
    assert_eq!(verified.email, new_email);
    assert!(verified.pending_email.is_empty());
    let again = accounts
        .verify_email(pb::VerifyEmailRequest { token })
        .await
        .expect_err("single use");
    assert_reason(&again, Code::InvalidArgument, "TOKEN_INVALID");
    world.login(&new_email, PASSWORD).await;

    // Changing the password: the current one is required; other sessions end.
    let wrong = accounts
        .change_password(with_token(
            &here.access_token,
            pb::ChangePasswordRequest {
                current_password: "not my password".into(),
                new_password: "a new long password".into(),
            },
        ))
        .await
        .expect_err("wrong current password");
    assert_reason(&wrong, Code::PermissionDenied, "WRONG_PASSWORD");
    accounts
        .change_password(with_token(
            &here.access_token,
            pb::ChangePasswordRequest {
                current_password: PASSWORD.into(),
                new_password: "a new long password".into(),
            },
        ))
        .await
        .expect("changing the password");
    refused_everywhere_within_a_second(&world, &elsewhere.access_token, Instant::now()).await;
    get_me(&world.edges[1], &here.access_token)
        .await
        .expect("this session stays");
    let old = accounts
        .login(pb::LoginRequest {
            email: new_email.clone(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("the old password");
    assert_eq!(old.code(), Code::Unauthenticated);

    // Forgotten password: same answer for unknown emails; a single-use token.
    accounts
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: format!("nobody-{}@example.com", Uuid::new_v4().simple()),
        })
        .await
        .expect("an unknown email answers the same");
    accounts
        .request_password_reset(pb::RequestPasswordResetRequest {
            email: new_email.clone(),
        })
        .await
        .expect("requesting a reset");
    let reset = delivery
        .last_delivered(user_id, TokenPurpose::PasswordReset)
        .expect("a reset token was sent");
    let short = accounts
        .reset_password(pb::ResetPasswordRequest {
            token: reset.clone(),
            new_password: "short".into(),
        })
        .await
        .expect_err("too short");
    assert_eq!(short.code(), Code::InvalidArgument);
    accounts
        .reset_password(pb::ResetPasswordRequest {
            token: reset.clone(),
            new_password: "reset long password".into(),
        })
        .await
        .expect("resetting");
    refused_everywhere_within_a_second(&world, &here.access_token, Instant::now()).await;
    let spent = accounts
        .reset_password(pb::ResetPasswordRequest {
            token: reset,
            new_password: "another long password".into(),
        })
        .await
        .expect_err("single use");
    assert_reason(&spent, Code::InvalidArgument, "TOKEN_INVALID");
    world.login(&new_email, "reset long password").await;
    world.stop().await;
}

/// Holds, books and pays for `quantity` places as `token`.
pub async fn buy(
    world: &World,
    token: &str,
    event_id: &str,
    quantity: u32,
    key: &str,
) -> checkout_pb::Booking {
    let hold = InventoryServiceClient::new(world.edges[0].clone())
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
        .expect("holding")
        .into_inner();
    let mut checkout = CheckoutServiceClient::new(world.edges[0].clone());
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
    checkout
        .confirm_booking(with_token(
            token,
            checkout_pb::ConfirmBookingRequest {
                name: booking.name,
                payment_method: Some(checkout_pb::PaymentMethod {
                    token: "tok_visa".into(),
                    ..Default::default()
                }),
                idempotency_key: key.to_owned(),
            },
        ))
        .await
        .expect("paying")
        .into_inner()
}

/// A general-admission event of `capacity` places put on sale by the demo
/// admin, once inventory sells it.
pub async fn event_on_sale(world: &World, title: &str, capacity: u32) -> catalog_pb::Event {
    let admin = login(&mut world.accounts(0), DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    standing_event_on_sale(
        &world.edges[0],
        &admin,
        &format!("{title} Hall"),
        title,
        capacity,
    )
    .await
}

/// Every text-like column of every schema holding `needle`, as
/// `schema.table.column`.
async fn columns_holding(world: &World, needle: &str) -> Vec<String> {
    let client = world.db.client().await;
    let columns = client
        .query(
            "SELECT table_schema, table_name, column_name, data_type
               FROM information_schema.columns c
               JOIN information_schema.tables t USING (table_schema, table_name)
              WHERE t.table_type = 'BASE TABLE'
                AND table_schema NOT IN ('pg_catalog', 'information_schema')
                AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb',
                                  'bytea', 'ARRAY')",
            &[],
        )
        .await
        .expect("listing columns");
    assert!(
        columns.len() > 20,
        "every schema's columns: {}",
        columns.len()
    );
    let mut found = Vec::new();
    for column in columns {
        let (schema, table, name, kind): (String, String, String, String) =
            (column.get(0), column.get(1), column.get(2), column.get(3));
        let expression = match kind.as_str() {
            "bytea" => format!("position(convert_to($1, 'UTF8') in \"{name}\") > 0"),
            _ => format!("strpos(lower(\"{name}\"::text), lower($1)) > 0"),
        };
        let hits: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE {expression}"),
                &[&needle],
            )
            .await
            .expect("searching a column")
            .get(0);
        if hits > 0 {
            found.push(format!("{schema}.{table}.{name}"));
        }
    }
    found
}

#[tokio::test]
async fn export_gathers_everything_and_erasure_leaves_no_name_or_email_while_figures_add_up() {
    let world = World::start().await;
    let edge = world.edges[0].clone();
    let admin = login(&mut world.accounts(0), DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let event = standing_event_on_sale(&edge, &admin, "Erasure Hall", "Forget Me Night", 10).await;

    let (email_a, name_a, id_a) = world.register("dora").await;
    let (email_b, name_b, _) = world.register("eve").await;
    let dora = world.login(&email_a, PASSWORD).await;
    let eve = world.login(&email_b, PASSWORD).await;
    let doras = buy(&world, &dora.access_token, &event.id, 2, "dora-1").await;
    let eves = buy(&world, &eve.access_token, &event.id, 1, "eve-1").await;

    // Dora's export: her profile, sessions and booking with tickets, and
    // nothing of Eve's.
    let export = world
        .accounts(1)
        .export_my_data(with_token(&dora.access_token, pb::ExportMyDataRequest {}))
        .await
        .expect("exporting")
        .into_inner()
        .json;
    let document: serde_json::Value = serde_json::from_str(&export).expect("one JSON document");
    assert_eq!(document["profile"]["email"], email_a.as_str());
    assert_eq!(document["profile"]["display_name"], name_a.as_str());
    assert_eq!(document["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(document["sessions"][0]["id"], dora.session_id.as_str());
    let bookings = document["bookings"].as_array().expect("bookings");
    assert_eq!(bookings.len(), 1);
    assert_eq!(bookings[0]["name"], doras.name.as_str());
    assert_eq!(bookings[0]["tickets"].as_array().map(Vec::len), Some(2));
    for theirs in [&email_b, &name_b, &eves.name, &eve.session_id] {
        assert!(
            !export.contains(theirs.as_str()),
            "eve's data in dora's export"
        );
    }
    let anonymous = world
        .accounts(0)
        .export_my_data(pb::ExportMyDataRequest {})
        .await
        .expect_err("no token, no export");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // The figures before.
    let stats = StatsServiceClient::new(edge.clone());
    // Bookings and seats reach the statistics through two streams
    // (checkout's and inventory's): wait for both.
    let figures = |wanted: u32, sold: u32| {
        let stats = stats.clone();
        let admin = admin.clone();
        let event_id = event.id.clone();
        async move {
            eventually(Duration::from_secs(10), "the sales in the figures", || {
                let mut stats = stats.clone();
                let request = with_token(
                    &admin,
                    stats_pb::GetEventStatsRequest {
                        event_id: event_id.clone(),
                    },
                );
                async move {
                    stats
                        .get_event_stats(request)
                        .await
                        .ok()
                        .map(tonic::Response::into_inner)
                        .filter(|figures| {
                            figures.bookings_confirmed == wanted
                                && figures
                                    .seats
                                    .as_ref()
                                    .is_some_and(|seats| seats.sold == sold)
                        })
                }
            })
            .await
        }
    };
    let before = figures(2, 3).await;

    // Eve gives Dora her ticket: Dora's email is on the transfer, and Dora
    // holds a ticket of Eve's booking.
    let mut checkout = CheckoutServiceClient::new(edge.clone());
    let offer = checkout
        .create_ticket_transfer(with_token(
            &eve.access_token,
            checkout_pb::CreateTicketTransferRequest {
                ticket: eves.tickets[0].name.clone(),
                recipient_email: email_a.clone(),
            },
        ))
        .await
        .expect("giving a ticket")
        .into_inner();
    checkout
        .accept_ticket_transfer(with_token(
            &dora.access_token,
            checkout_pb::AcceptTicketTransferRequest { name: offer.name },
        ))
        .await
        .expect("taking it");

    // Erasure needs the password; Eve cannot erase Dora (nothing names her).
    let wrong = world
        .accounts(0)
        .delete_account(with_token(
            &dora.access_token,
            pb::DeleteAccountRequest {
                password: "not it at all".into(),
            },
        ))
        .await
        .expect_err("the wrong password");
    assert_reason(&wrong, Code::PermissionDenied, "WRONG_PASSWORD");
    world
        .accounts(0)
        .delete_account(with_token(
            &dora.access_token,
            pb::DeleteAccountRequest {
                password: PASSWORD.into(),
            },
        ))
        .await
        .expect("erasing");
    refused_everywhere_within_a_second(&world, &dora.access_token, Instant::now()).await;
    let gone = world
        .accounts(0)
        .login(pb::LoginRequest {
            email: email_a.clone(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("no account any more");
    assert_eq!(gone.code(), Code::Unauthenticated);

    // Checkout applies the erasure from the event: no booking, payment,
    // ticket or transfer keeps her id; the booking itself stays, anonymised.
    let client = world.db.client().await;
    eventually(Duration::from_secs(10), "checkout anonymising", || {
        let client = &client;
        async move {
            let left: i64 = client
                .query_one(
                    "SELECT (SELECT count(*) FROM checkout.bookings WHERE user_id = $1)
                          + (SELECT count(*) FROM checkout.payments WHERE user_id = $1)
                          + (SELECT count(*) FROM checkout.booking_tickets WHERE holder_id = $1)
                          + (SELECT count(*) FROM checkout.ticket_transfers
                             WHERE sender_id = $1 OR recipient_id = $1)",
                    &[&id_a],
                )
                .await
                .ok()?
                .get(0);
            (left == 0).then_some(())
        }
    })
    .await;
    let booking_id: Uuid = doras
        .name
        .trim_start_matches("bookings/")
        .parse()
        .expect("a booking id");
    let kept: (String, i64) = {
        let row = client
            .query_one(
                "SELECT state, total_minor FROM checkout.bookings WHERE id = $1",
                &[&booking_id],
            )
            .await
            .expect("the booking is kept");
        (row.get(0), row.get(1))
    };
    assert_eq!(
        kept,
        (
            "confirmed".to_owned(),
            doras.total.as_ref().expect("a total").amount_minor
        )
    );

    // Nowhere in any schema: not her email, not her name. Eve's are still there.
    for needle in [&email_a, &name_a] {
        assert_eq!(
            columns_holding(&world, needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }
    assert!(!columns_holding(&world, &email_b).await.is_empty());

    // The figures still add up.
    let after = figures(2, 3).await;
    assert_eq!(after.seats, before.seats);
    assert_eq!(after.revenue, before.revenue);
    assert_eq!(after.bookings_confirmed, 2);
    assert_eq!(after.seats.as_ref().map(|seats| seats.sold), Some(3));
    world.stop().await;
}
