//! Reviews and ratings through the edge of a whole system: only a holder of
//! a confirmed booking, only once the event has ended, once (then edits);
//! the refusals' reasons; bad stars and oversized text; someone else's
//! review is not found; summaries on GetEvent and GetPerformer; pages;
//! an admin hides a review with a reason.

use std::time::Duration;

use boxoffice_accounts::server::{DEMO_ADMIN_EMAIL, DEMO_PASSWORD};
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient;
use boxoffice_contracts::catalog::v1 as pb;
use boxoffice_contracts::catalog::v1::catalog_service_client::CatalogServiceClient;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient;
use boxoffice_runtime::status::{field_of, reason_of};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::edge_world::{login, with_token};
use crate::harness::eventually;
use crate::inventory::timestamp;
use crate::system_world::{SystemWorld, standing_event_on_sale};

async fn register(accounts: &mut AccountsServiceClient<Channel>, name: &str) -> String {
    let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
    accounts
        .register(accounts_pb::RegisterRequest {
            email: email.clone(),
            password: "correct horse battery".into(),
            display_name: name.into(),
        })
        .await
        .expect("registering");
    login(accounts, &email, "correct horse battery").await
}

async fn buy(edge: &Channel, token: &str, event_id: &str) {
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
    checkout
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
        .expect("paying");
}

async fn create_performer(
    catalog: &CatalogServiceClient<Channel>,
    admin: &str,
    name: &str,
) -> String {
    catalog
        .clone()
        .create_performer(with_token(
            admin,
            pb::CreatePerformerRequest {
                performer: Some(pb::Performer {
                    name: name.into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("a performer")
        .into_inner()
        .id
}

fn mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    }
}

/// The event's performers become `performers`.
fn name_performers(event_id: &str, performers: &[&str]) -> pb::UpdateEventRequest {
    pb::UpdateEventRequest {
        event: Some(pb::Event {
            id: event_id.to_owned(),
            performer_ids: performers.iter().map(|id| (*id).to_owned()).collect(),
            ..Default::default()
        }),
        update_mask: Some(mask(&["performer_ids"])),
    }
}

/// The event takes place: moved into the past, so it has ended.
async fn move_into_the_past(catalog: &CatalogServiceClient<Channel>, admin: &str, event_id: &str) {
    catalog
        .clone()
        .update_event(with_token(
            admin,
            pb::UpdateEventRequest {
                event: Some(pb::Event {
                    id: event_id.to_owned(),
                    start_time: Some(timestamp(-2)),
                    end_time: Some(timestamp(-1)),
                    ..Default::default()
                }),
                update_mask: Some(mask(&["start_time", "end_time"])),
            },
        ))
        .await
        .expect("the event is over");
}

fn review(event_id: &str, rating: u32, text: &str) -> pb::CreateReviewRequest {
    pb::CreateReviewRequest {
        event_id: event_id.to_owned(),
        rating,
        text: text.to_owned(),
    }
}

/// `token`'s review of `event_id`, written once the catalog knows them as an
/// attendee (their booking reaches it through checkout's events).
async fn review_as_attendee(
    catalog: &CatalogServiceClient<Channel>,
    token: &str,
    event_id: &str,
    rating: u32,
    text: &str,
) -> pb::Review {
    eventually(Duration::from_secs(30), "the attendee may review", || {
        let mut catalog = catalog.clone();
        let request = with_token(token, review(event_id, rating, text));
        async move {
            catalog
                .create_review(request)
                .await
                .ok()
                .map(|r| r.into_inner())
        }
    })
    .await
}

fn assert_refused(status: &tonic::Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason_of(status).as_deref(), Some(reason), "{status:?}");
}

#[tokio::test]
async fn only_attendees_of_an_ended_event_review_it_once_and_admins_hide_reviews() {
    let world = SystemWorld::start("reviews", &[]).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let performer = create_performer(&catalog, &admin, "Reviewed Band").await;
    let event = standing_event_on_sale(&edge, &admin, "Brudenell", "Review Night", 10).await;
    catalog
        .update_event(with_token(
            &admin,
            name_performers(&event.id, &[&performer]),
        ))
        .await
        .expect("naming the performer");
    let ann = register(&mut accounts, "Ann").await;
    let bob = register(&mut accounts, "Bob").await;
    let carol = register(&mut accounts, "Carol").await;
    buy(&edge, &ann, &event.id).await;
    buy(&edge, &bob, &event.id).await;

    // Not yet: the event has not happened.
    let early = catalog
        .create_review(with_token(&ann, review(&event.id, 5, "can't wait")))
        .await
        .expect_err("before the event");
    assert_refused(&early, Code::FailedPrecondition, "EVENT_NOT_ENDED");

    // The event takes place (moved into the past).
    move_into_the_past(&catalog, &admin, &event.id).await;

    // Without a token, without a booking, with bad stars or too much text.
    let anonymous = catalog
        .create_review(review(&event.id, 5, "anonymous"))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let stranger = catalog
        .create_review(with_token(&carol, review(&event.id, 5, "was not there")))
        .await
        .expect_err("carol has no booking");
    assert_refused(&stranger, Code::FailedPrecondition, "NOT_AN_ATTENDEE");
    for stars in [0, 6] {
        let bad = catalog
            .create_review(with_token(&ann, review(&event.id, stars, "stars?")))
            .await
            .expect_err("stars out of range");
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert_eq!(field_of(&bad).as_deref(), Some("rating"), "{bad:?}");
    }
    let long = catalog
        .create_review(with_token(&ann, review(&event.id, 4, &"x".repeat(2_001))))
        .await
        .expect_err("2,001 characters");
    assert_eq!(field_of(&long).as_deref(), Some("text"), "{long:?}");

    // Ann reviews (her booking reaches the catalog through checkout's events).
    let text = "<script>alert('hi')</script> loud & great";
    let ann_review = review_as_attendee(&catalog, &ann, &event.id, 5, text).await;
    assert_eq!(ann_review.text, text, "stored as written");
    assert_eq!(ann_review.rating, 5);
    let twice = catalog
        .create_review(with_token(&ann, review(&event.id, 1, "again")))
        .await
        .expect_err("a second review");
    assert_refused(&twice, Code::FailedPrecondition, "ALREADY_REVIEWED");
    // Bob's booking may reach the catalog in a later batch than Ann's.
    let bob_review = review_as_attendee(&catalog, &bob, &event.id, 2, "too loud").await;

    // Bob cannot touch Ann's review; Ann edits hers.
    let update = |name: &str, rating: u32| pb::UpdateReviewRequest {
        name: name.to_owned(),
        rating,
        text: "edited".into(),
    };
    let foreign = catalog
        .update_review(with_token(&bob, update(&ann_review.name, 1)))
        .await
        .expect_err("bob edits ann's review");
    assert_eq!(foreign.code(), Code::NotFound, "{foreign:?}");
    let edited = catalog
        .update_review(with_token(&ann, update(&ann_review.name, 4)))
        .await
        .expect("ann edits hers")
        .into_inner();
    assert_eq!((edited.rating, edited.text.as_str()), (4, "edited"));

    // The summaries: 2 and 4 stars.
    let summary = eventually(Duration::from_secs(10), "the event's summary", || {
        let mut catalog = catalog.clone();
        let id = event.id.clone();
        async move {
            let event = catalog
                .get_event(pb::GetEventRequest { id })
                .await
                .ok()?
                .into_inner();
            event
                .rating
                .filter(|rating| rating.count == 2 && rating.histogram[3] == 1)
        }
    })
    .await;
    assert_eq!(summary.histogram, vec![0, 1, 0, 1, 0]);
    assert!((summary.average - 3.0).abs() < 1e-9);
    let performer_rating = catalog
        .get_performer(pb::GetPerformerRequest {
            id: performer.clone(),
        })
        .await
        .expect("the performer")
        .into_inner()
        .rating
        .expect("a summary");
    assert_eq!(performer_rating.count, 2);

    // Pages of one.
    let first = catalog
        .list_reviews(pb::ListReviewsRequest {
            event_id: event.id.clone(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .expect("page one")
        .into_inner();
    assert_eq!(first.reviews.len(), 1);
    assert_eq!(first.reviews[0].name, bob_review.name, "newest first");
    assert!(!first.next_page_token.is_empty());
    let second = catalog
        .list_reviews(pb::ListReviewsRequest {
            event_id: event.id.clone(),
            page_size: 1,
            page_token: first.next_page_token.clone(),
        })
        .await
        .expect("page two")
        .into_inner();
    assert_eq!(second.reviews.len(), 1);
    assert_eq!(second.reviews[0].name, ann_review.name);
    assert!(second.next_page_token.is_empty());

    // Hiding is for admins, with a reason; then only admins see it.
    let hide = |reason: &str| pb::HideReviewRequest {
        name: ann_review.name.clone(),
        reason: reason.to_owned(),
    };
    let denied = catalog
        .hide_review(with_token(&bob, hide("spite")))
        .await
        .expect_err("bob is no admin");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let no_reason = catalog
        .hide_review(with_token(&admin, hide("")))
        .await
        .expect_err("a reason is required");
    assert_eq!(field_of(&no_reason).as_deref(), Some("reason"));
    let hidden = catalog
        .hide_review(with_token(&admin, hide("markup in the text")))
        .await
        .expect("the admin hides it")
        .into_inner();
    assert!(hidden.hidden);
    assert_eq!(hidden.hidden_reason, "markup in the text");
    let public = catalog
        .list_reviews(pb::ListReviewsRequest {
            event_id: event.id.clone(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .expect("the public list")
        .into_inner();
    assert_eq!(public.reviews.len(), 1);
    assert_eq!(public.reviews[0].name, bob_review.name);
    assert_eq!(public.rating.expect("a summary").count, 1);
    let for_admin = catalog
        .list_reviews(with_token(
            &admin,
            pb::ListReviewsRequest {
                event_id: event.id.clone(),
                page_size: 0,
                page_token: String::new(),
            },
        ))
        .await
        .expect("the admin's list")
        .into_inner();
    assert_eq!(for_admin.reviews.len(), 2);
    world.stop().await;
}

/// The events found for `query`, as `(title, performers_rating,
/// performers_rating_count)`, in the order search answers.
async fn rated_hits(
    catalog: &mut CatalogServiceClient<Channel>,
    query: &str,
    sort: pb::SearchSort,
    min_rating: f64,
) -> Vec<(String, f64, u32)> {
    catalog
        .search_events(pb::SearchEventsRequest {
            query: query.to_owned(),
            sort: sort as i32,
            min_rating,
            ..Default::default()
        })
        .await
        .expect("searching")
        .into_inner()
        .hits
        .into_iter()
        .map(|hit| {
            (
                hit.event.expect("an event").title,
                hit.performers_rating,
                hit.performers_rating_count,
            )
        })
        .collect()
}

#[tokio::test]
async fn search_rates_events_to_come_by_their_performers_reviews() {
    let world = SystemWorld::start("reviews_search", &[]).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let loved = create_performer(&catalog, &admin, "Loved Band").await;
    let unknown = create_performer(&catalog, &admin, "Unknown Band").await;
    // A past show of the loved band, two coming ones (one announced only
    // after the first review) and one of a band nobody reviewed.
    let past = standing_event_on_sale(&edge, &admin, "Hall A", "Zephyr Past Show", 10).await;
    let early = standing_event_on_sale(&edge, &admin, "Hall B", "Zephyr Early Show", 10).await;
    let other = standing_event_on_sale(&edge, &admin, "Hall C", "Zephyr Other Show", 10).await;
    for (event, band) in [(&past, &loved), (&early, &loved), (&other, &unknown)] {
        catalog
            .update_event(with_token(&admin, name_performers(&event.id, &[band])))
            .await
            .expect("naming the performer");
    }
    let ann = register(&mut accounts, "Ann").await;
    let bob = register(&mut accounts, "Bob").await;
    buy(&edge, &ann, &past.id).await;
    buy(&edge, &bob, &past.id).await;
    move_into_the_past(&catalog, &admin, &past.id).await;

    // Nothing rated yet: a rating filter finds nothing, the sort keeps all.
    let by_rating = pb::SearchSort::Rating;
    let all = eventually(Duration::from_secs(10), "both shows to come found", || {
        let mut catalog = catalog.clone();
        async move {
            let hits = rated_hits(&mut catalog, "zephyr", by_rating, 0.0).await;
            (hits.len() == 2).then_some(hits)
        }
    })
    .await;
    assert!(
        all.iter()
            .all(|(_, rating, count)| (*rating, *count) == (0.0, 0)),
        "{all:?}"
    );
    assert!(
        rated_hits(&mut catalog, "zephyr", by_rating, 1.0)
            .await
            .is_empty()
    );

    // Ann gives the past show 5 stars: the loved band's show to come is
    // rated 5 by it, before the other.
    let ann_review = review_as_attendee(&catalog, &ann, &past.id, 5, "superb").await;
    let rated = eventually(Duration::from_secs(10), "the show to come rated 5", || {
        let mut catalog = catalog.clone();
        async move {
            let hits = rated_hits(&mut catalog, "zephyr", by_rating, 0.0).await;
            (hits.first().is_some_and(|hit| hit.2 == 1)).then_some(hits)
        }
    })
    .await;
    assert_eq!(
        rated,
        vec![
            ("Zephyr Early Show".to_owned(), 5.0, 1),
            ("Zephyr Other Show".to_owned(), 0.0, 0)
        ]
    );

    // A show announced after the review starts out rated.
    let late = standing_event_on_sale(&edge, &admin, "Hall D", "Zephyr Late Show", 10).await;
    catalog
        .update_event(with_token(&admin, name_performers(&late.id, &[&loved])))
        .await
        .expect("naming the performer");
    let good = eventually(Duration::from_secs(10), "both loved shows rated", || {
        let mut catalog = catalog.clone();
        async move {
            let hits = rated_hits(&mut catalog, "zephyr", pb::SearchSort::StartTime, 4.5).await;
            (hits.len() == 2).then_some(hits)
        }
    })
    .await;
    let mut titles: Vec<&str> = good.iter().map(|hit| hit.0.as_str()).collect();
    titles.sort_unstable();
    assert_eq!(titles, ["Zephyr Early Show", "Zephyr Late Show"]);
    assert!(
        good.iter().all(|hit| (hit.1, hit.2) == (5.0, 1)),
        "{good:?}"
    );

    // Bob's 1 star brings the band to 3: below 4.5, above 2.5.
    let bob_review = review_as_attendee(&catalog, &bob, &past.id, 1, "too loud").await;
    eventually(Duration::from_secs(10), "the band rated 3", || {
        let mut catalog = catalog.clone();
        async move {
            let hits = rated_hits(&mut catalog, "zephyr", by_rating, 2.5).await;
            (hits.len() == 2 && hits.iter().all(|hit| (hit.1, hit.2) == (3.0, 2))).then_some(())
        }
    })
    .await;
    assert!(
        rated_hits(&mut catalog, "zephyr", by_rating, 4.5)
            .await
            .is_empty()
    );

    // Editing only the text changes no rating; hiding Bob's review does.
    catalog
        .update_review(with_token(
            &ann,
            pb::UpdateReviewRequest {
                name: ann_review.name.clone(),
                rating: 5,
                text: "still superb".into(),
            },
        ))
        .await
        .expect("ann edits her text");
    catalog
        .hide_review(with_token(
            &admin,
            pb::HideReviewRequest {
                name: bob_review.name.clone(),
                reason: "off topic".into(),
            },
        ))
        .await
        .expect("the admin hides bob's review");
    eventually(Duration::from_secs(10), "the band back at 5", || {
        let mut catalog = catalog.clone();
        async move {
            let hits = rated_hits(&mut catalog, "zephyr", by_rating, 4.5).await;
            (hits.len() == 2 && hits.iter().all(|hit| (hit.1, hit.2) == (5.0, 1))).then_some(())
        }
    })
    .await;

    // A rating out of range is refused, naming the field.
    for bad in [0.5, 5.5, -1.0] {
        let refused = catalog
            .search_events(pb::SearchEventsRequest {
                query: "zephyr".into(),
                min_rating: bad,
                ..Default::default()
            })
            .await
            .expect_err("a rating out of range");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(
            field_of(&refused).as_deref(),
            Some("min_rating"),
            "{refused:?}"
        );
    }
    world.stop().await;
}

/// A review racing an event write that has already read the band's rating:
/// the event write is held after its read (a trigger sleeps in its outbox
/// insert), the review is written meanwhile. The review waits for the event
/// write's performer lock and then re-rates the show, so the show ends rated
/// by the review; without the lock it would keep the rating read before.
#[tokio::test]
async fn a_review_racing_an_event_write_still_rates_the_show() {
    let world = SystemWorld::start("reviews_race", &[]).await;
    let edge = world.edge().await;
    let mut accounts = AccountsServiceClient::new(edge.clone());
    let admin = login(&mut accounts, DEMO_ADMIN_EMAIL, DEMO_PASSWORD).await;
    let mut catalog = CatalogServiceClient::new(edge.clone());
    let band = create_performer(&catalog, &admin, "Racing Band").await;
    let past = standing_event_on_sale(&edge, &admin, "Hall P", "Quokka Past Show", 20).await;
    catalog
        .update_event(with_token(&admin, name_performers(&past.id, &[&band])))
        .await
        .expect("naming the performer");
    let fan = register(&mut accounts, "Fan").await;
    buy(&edge, &fan, &past.id).await;
    move_into_the_past(&catalog, &admin, &past.id).await;
    let db = world.db.client().await;
    let past_id = Uuid::parse_str(&past.id).expect("an id");
    eventually(Duration::from_secs(30), "the fan known as an attendee", || {
        let db = &db;
        async move {
            let row = db
                .query_one(
                    "SELECT count(*) FROM catalog.review_attendance WHERE event_id = $1 AND confirmed",
                    &[&past_id],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        }
    })
    .await;
    let show = standing_event_on_sale(&edge, &admin, "Hall S", "Quokka Show", 10).await;

    // Hold the next catalog write after it has read the rating.
    db.batch_execute(
        "CREATE FUNCTION public.hold_outbox_insert() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
         CREATE TRIGGER hold_outbox_insert BEFORE INSERT ON catalog.event_outbox
           FOR EACH STATEMENT EXECUTE FUNCTION public.hold_outbox_insert();",
    )
    .await
    .expect("a slow trigger");
    let naming = {
        let mut catalog = catalog.clone();
        let request = with_token(&admin, name_performers(&show.id, &[&band]));
        tokio::spawn(async move { catalog.update_event(request).await })
    };
    eventually(Duration::from_secs(10), "the event write held", || {
        let db = &db;
        async move {
            let row = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND wait_event = 'PgSleep'",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, i64>(0) == 1).then_some(())
        }
    })
    .await;
    catalog
        .create_review(with_token(&fan, review(&past.id, 5, "superb")))
        .await
        .expect("the review");
    naming
        .await
        .expect("the event write's task")
        .expect("naming the band");
    db.batch_execute(
        "DROP TRIGGER hold_outbox_insert ON catalog.event_outbox;
         DROP FUNCTION public.hold_outbox_insert();",
    )
    .await
    .expect("dropping the trigger");

    eventually(
        Duration::from_secs(15),
        "the show rated by the review",
        || {
            let mut catalog = catalog.clone();
            async move {
                let hits = rated_hits(&mut catalog, "quokka", pb::SearchSort::Rating, 0.0).await;
                (hits == [("Quokka Show".to_owned(), 5.0, 1)]).then_some(())
            }
        },
    )
    .await;
    world.stop().await;
}
