//! The clients, all through the edge over gRPC as users call it: buyers who
//! hold (best available or named seats), book, confirm (retrying with the
//! same idempotency key after an unknown outcome), read back and cancel;
//! paused holders who wait past their hold's expiry and then race a rival
//! for the same seats; and an admin who puts new events on sale when the
//! current one runs low. Every call has a deadline and every loop ends by
//! the run's end time.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::history::{Op, OpKind, Outcome, Recorder, outcome_of};

/// An `authorization` header value.
pub type Bearer = tonic::metadata::AsciiMetadataValue;

pub fn bearer(token: &str) -> anyhow::Result<Bearer> {
    format!("Bearer {token}")
        .parse()
        .context("a token that is not a header value")
}

/// Every call's deadline: a paused or dead server ends in an unknown
/// outcome, never a stuck client.
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);
const CONFIRM_ATTEMPTS: u32 = 6;
const PAYMENT_TOKEN: &str = "tok_visa";
const DECLINED_TOKEN: &str = "tok_chargeDeclined";

fn request<T>(bearer: Option<&Bearer>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
    }
    request
}

/// A lazily connected channel to the edge: it reconnects by itself after
/// the process behind it was killed and restarted.
pub fn channel(edge: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{edge}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_DEADLINE + Duration::from_secs(1))
        .connect_lazy())
}

#[derive(Clone, Debug)]
pub struct EventInfo {
    pub id: String,
    pub seats: u32,
}

/// The events on sale, newest last.
#[derive(Default)]
pub struct Events {
    list: Mutex<Vec<EventInfo>>,
    /// A buyer found the newest one sold out.
    want_more: AtomicBool,
}

impl Events {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<EventInfo>> {
        self.list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn push(&self, event: EventInfo) {
        self.list().push(event);
        self.want_more.store(false, Ordering::SeqCst);
    }

    pub fn all(&self) -> Vec<EventInfo> {
        self.list().clone()
    }

    pub fn newest(&self) -> Option<EventInfo> {
        self.list().last().cloned()
    }

    /// Mostly the newest event, sometimes one of the two before it.
    fn pick(&self, rng: &mut StdRng) -> Option<EventInfo> {
        let list = self.list();
        if list.len() > 1 && rng.random_bool(0.2) {
            let recent = &list[list.len().saturating_sub(3)..];
            return recent.choose(rng).cloned();
        }
        list.last().cloned()
    }
}

/// Settings of the clients.
#[derive(Clone, Debug)]
pub struct WorkloadSettings {
    pub buyers: usize,
    pub seats_per_event: u32,
    pub max_events: usize,
    /// The hold lifetime boxoffice was given (paused holders wait past it).
    pub hold_ttl: Duration,
    /// Time between paused-holder rounds.
    pub holder_every: Duration,
    /// Pause between a buyer's operations (bounds the load).
    pub think: Duration,
}

/// What every client shares.
pub struct Workload {
    pub edge: SocketAddr,
    pub recorder: Recorder,
    pub events: Events,
    pub admin: Bearer,
    pub settings: WorkloadSettings,
    /// Paused holders start no round that would end after this (buyers
    /// stop when told).
    pub end: Instant,
}

/// A hold as a client saw it.
struct HeldSeats {
    name: String,
    seats: Vec<u32>,
    expire_unix_ms: Option<i64>,
}

/// A booking as a client saw it.
struct Booked {
    name: String,
}

impl Workload {
    fn begin(&self, process: &str, kind: OpKind, attempt: u32) -> Op {
        let invoke_ms = self.recorder.now_ms();
        Op {
            process: process.to_owned(),
            kind,
            invoke_ms,
            complete_ms: invoke_ms,
            outcome: Outcome::Unknown,
            code: None,
            message: None,
            event: None,
            hold: None,
            booking: None,
            key: None,
            seats: Vec::new(),
            state: None,
            total_minor: None,
            refunded_minor: None,
            expire_unix_ms: None,
            invoke_unix_ms: self.recorder.unix_ms(invoke_ms),
            attempt,
        }
    }

    fn finish(&self, mut op: Op, error: Option<&tonic::Status>) -> Outcome {
        op.complete_ms = self.recorder.now_ms();
        match error {
            None => op.outcome = Outcome::Ok,
            Some(status) => {
                op.outcome = outcome_of(status.code());
                op.code = Some(format!("{:?}", status.code()));
                op.message = Some(status.message().chars().take(200).collect());
            }
        }
        let outcome = op.outcome;
        self.recorder.record(op);
        outcome
    }

    fn booking_fields(op: &mut Op, booking: &checkout_pb::Booking) {
        op.booking = Some(booking.name.clone());
        op.state = Some(state_name(booking.state));
        op.total_minor = booking.total.as_ref().map(|m| m.amount_minor);
        op.refunded_minor = booking.refunded.as_ref().map(|m| m.amount_minor);
        op.seats = booking.tickets.iter().map(|t| t.seat_index).collect();
        if op.seats.is_empty() {
            op.seats = booking
                .line_items
                .iter()
                .filter(|line| line.kind == checkout_pb::LineItemKind::Ticket as i32)
                .map(|line| line.seat_index)
                .collect();
        }
    }

    async fn hold(
        &self,
        process: &str,
        client: &mut Clients,
        event: &EventInfo,
        selection: inventory_pb::hold_seats_request::Selection,
    ) -> Result<HeldSeats, tonic::Status> {
        let mut op = self.begin(process, OpKind::Hold, 1);
        op.event = Some(event.id.clone());
        if let inventory_pb::hold_seats_request::Selection::Seats(seats) = &selection {
            op.seats = seats.seat_indexes.clone();
        }
        let result = client
            .inventory
            .hold_seats(request(
                Some(&client.bearer),
                inventory_pb::HoldSeatsRequest {
                    event_id: event.id.clone(),
                    selection: Some(selection),
                    admission_token: String::new(),
                },
            ))
            .await
            .map(tonic::Response::into_inner);
        match result {
            Ok(hold) => {
                op.hold = Some(hold.name.clone());
                op.seats = hold.seats.iter().map(|s| s.seat_index).collect();
                op.expire_unix_ms = hold
                    .expire_time
                    .as_ref()
                    .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
                let held = HeldSeats {
                    name: hold.name,
                    seats: op.seats.clone(),
                    expire_unix_ms: op.expire_unix_ms,
                };
                self.finish(op, None);
                Ok(held)
            }
            Err(status) => {
                self.finish(op, Some(&status));
                Err(status)
            }
        }
    }

    /// CreateBooking, retried with the same key after unknown outcomes.
    async fn create_booking(
        &self,
        process: &str,
        client: &mut Clients,
        hold: &str,
    ) -> Option<Booked> {
        let key = Uuid::new_v4().to_string();
        for attempt in 1..=3 {
            let mut op = self.begin(process, OpKind::CreateBooking, attempt);
            op.hold = Some(hold.to_owned());
            op.key = Some(key.clone());
            let result = client
                .checkout
                .create_booking(request(
                    Some(&client.bearer),
                    checkout_pb::CreateBookingRequest {
                        hold: hold.to_owned(),
                        idempotency_key: key.clone(),
                    },
                ))
                .await
                .map(tonic::Response::into_inner);
            match result {
                Ok(booking) => {
                    Self::booking_fields(&mut op, &booking);
                    self.finish(op, None);
                    return Some(Booked { name: booking.name });
                }
                Err(status) => {
                    if self.finish(op, Some(&status)) != Outcome::Unknown {
                        return None;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt))).await;
        }
        None
    }

    /// ConfirmBooking with one idempotency key, retried after unknown
    /// outcomes; the booking's final answer, if one came.
    async fn confirm(
        &self,
        process: &str,
        client: &mut Clients,
        booking: &str,
        payment_token: &str,
    ) -> Option<checkout_pb::Booking> {
        let key = Uuid::new_v4().to_string();
        let started = Instant::now();
        for attempt in 1..=CONFIRM_ATTEMPTS {
            let mut op = self.begin(process, OpKind::ConfirmBooking, attempt);
            op.booking = Some(booking.to_owned());
            op.key = Some(key.clone());
            let result = client
                .checkout
                .confirm_booking(request(
                    Some(&client.bearer),
                    checkout_pb::ConfirmBookingRequest {
                        name: booking.to_owned(),
                        payment_method: Some(checkout_pb::PaymentMethod {
                            token: payment_token.to_owned(),
                            ..Default::default()
                        }),
                        idempotency_key: key.clone(),
                    },
                ))
                .await
                .map(tonic::Response::into_inner);
            match result {
                Ok(answer) => {
                    Self::booking_fields(&mut op, &answer);
                    self.finish(op, None);
                    return Some(answer);
                }
                Err(status) => {
                    if self.finish(op, Some(&status)) != Outcome::Unknown {
                        return None;
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(40) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(400 * u64::from(attempt))).await;
        }
        None
    }

    async fn cancel(&self, process: &str, client: &mut Clients, booking: &str) {
        let key = Uuid::new_v4().to_string();
        for attempt in 1..=CONFIRM_ATTEMPTS {
            let mut op = self.begin(process, OpKind::CancelBooking, attempt);
            op.booking = Some(booking.to_owned());
            op.key = Some(key.clone());
            let result = client
                .checkout
                .cancel_booking(request(
                    Some(&client.bearer),
                    checkout_pb::CancelBookingRequest {
                        name: booking.to_owned(),
                        idempotency_key: key.clone(),
                    },
                ))
                .await
                .map(tonic::Response::into_inner);
            match result {
                Ok(answer) => {
                    Self::booking_fields(&mut op, &answer);
                    self.finish(op, None);
                    return;
                }
                Err(status) => {
                    if self.finish(op, Some(&status)) != Outcome::Unknown {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(400 * u64::from(attempt))).await;
        }
    }

    async fn get(&self, process: &str, client: &mut Clients, booking: &str) {
        let mut op = self.begin(process, OpKind::GetBooking, 1);
        op.booking = Some(booking.to_owned());
        let result = client
            .checkout
            .get_booking(request(
                Some(&client.bearer),
                checkout_pb::GetBookingRequest {
                    name: booking.to_owned(),
                },
            ))
            .await
            .map(tonic::Response::into_inner);
        match result {
            Ok(answer) => {
                Self::booking_fields(&mut op, &answer);
                self.finish(op, None);
            }
            Err(status) => {
                self.finish(op, Some(&status));
            }
        }
    }

    /// One buyer until the end time: hold → book → confirm → maybe read
    /// back → maybe cancel, with a few abandoned on the way (left for the
    /// sweeper and the reconciler).
    pub async fn buyer(&self, index: usize, bearer: Bearer, stop: &AtomicBool) {
        let process = format!("buyer-{index}");
        let Ok(mut client) = Clients::new(self.edge, bearer) else {
            return;
        };
        let mut rng = StdRng::from_os_rng();
        while !stop.load(Ordering::SeqCst) {
            let think = self.settings.think.mul_f64(rng.random_range(0.5..1.5));
            tokio::time::sleep(think).await;
            let Some(event) = self.events.pick(&mut rng) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let named = rng.random_bool(0.3);
            let selection = if named {
                // A small hot block, so buyers race for the same seats.
                let hot = event.seats.min(30);
                let count = rng.random_range(1..=3);
                let mut seats: Vec<u32> = Vec::new();
                while seats.len() < count {
                    let seat = rng.random_range(0..hot);
                    if !seats.contains(&seat) {
                        seats.push(seat);
                    }
                }
                inventory_pb::hold_seats_request::Selection::Seats(inventory_pb::SeatSelection {
                    seat_indexes: seats,
                })
            } else {
                inventory_pb::hold_seats_request::Selection::BestAvailable(
                    inventory_pb::BestAvailable {
                        quantity: rng.random_range(1..=4),
                        ..Default::default()
                    },
                )
            };
            let hold = match self.hold(&process, &mut client, &event, selection).await {
                Ok(hold) => hold,
                Err(status) => {
                    if outcome_of(status.code()) == Outcome::Unknown {
                        // Down or paused: back off rather than spin.
                        tokio::time::sleep(Duration::from_millis(rng.random_range(100..300))).await;
                    }
                    if !named
                        && status.code() == tonic::Code::FailedPrecondition
                        && status.message().contains("no available seats")
                    {
                        self.events.want_more.store(true, Ordering::SeqCst);
                    }
                    continue;
                }
            };
            if rng.random_bool(0.04) {
                continue; // walks away from the hold; it expires
            }
            let Some(booking) = self.create_booking(&process, &mut client, &hold.name).await else {
                continue;
            };
            if rng.random_bool(0.04) {
                continue; // walks away from the booking; the reconciler ends it
            }
            let token = if rng.random_bool(0.05) {
                DECLINED_TOKEN
            } else {
                PAYMENT_TOKEN
            };
            let Some(answer) = self
                .confirm(&process, &mut client, &booking.name, token)
                .await
            else {
                continue;
            };
            if answer.state != checkout_pb::BookingState::Confirmed as i32 {
                continue;
            }
            if rng.random_bool(0.3) {
                self.get(&process, &mut client, &booking.name).await;
            }
            if rng.random_bool(0.25) {
                self.cancel(&process, &mut client, &booking.name).await;
            }
        }
    }

    /// Rounds of a holder paused past its hold's expiry: the holder holds
    /// and books, waits until the hold has expired, and then confirms at
    /// the same moment as a rival who took the same seats meanwhile. The
    /// holder must lose (the checker: no confirmation invoked after its
    /// hold expired is ever answered CONFIRMED).
    pub async fn paused_holders(&self, holder: Bearer, rival: Bearer) {
        let (Ok(mut holder), Ok(mut rival)) = (
            Clients::new(self.edge, holder),
            Clients::new(self.edge, rival),
        ) else {
            return;
        };
        let mut round = 0_u32;
        loop {
            tokio::time::sleep(self.settings.holder_every).await;
            // A round takes the hold's lifetime plus a few seconds.
            if Instant::now() + self.settings.hold_ttl + Duration::from_secs(10) > self.end {
                return;
            }
            round += 1;
            let (holder_name, rival_name) = (format!("holder-{round}"), format!("rival-{round}"));
            let Some(event) = self.events.newest() else {
                continue;
            };
            let selection = inventory_pb::hold_seats_request::Selection::BestAvailable(
                inventory_pb::BestAvailable {
                    quantity: 2,
                    ..Default::default()
                },
            );
            let Ok(hold) = self
                .hold(&holder_name, &mut holder, &event, selection)
                .await
            else {
                continue;
            };
            let Some(booking) = self
                .create_booking(&holder_name, &mut holder, &hold.name)
                .await
            else {
                continue;
            };
            // The pause: until the hold has run out (and the sweeper freed it).
            let now_unix = chrono::Utc::now().timestamp_millis();
            let expire = hold.expire_unix_ms.unwrap_or(now_unix);
            let wait = Duration::from_millis((expire - now_unix).max(0) as u64 + 1_000);
            tokio::time::sleep(wait).await;
            let mut rival_booking = None;
            for _ in 0..10 {
                let selection = inventory_pb::hold_seats_request::Selection::Seats(
                    inventory_pb::SeatSelection {
                        seat_indexes: hold.seats.clone(),
                    },
                );
                if let Ok(rival_hold) = self.hold(&rival_name, &mut rival, &event, selection).await
                {
                    rival_booking = self
                        .create_booking(&rival_name, &mut rival, &rival_hold.name)
                        .await;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let holder_confirm =
                self.confirm(&holder_name, &mut holder, &booking.name, PAYMENT_TOKEN);
            match rival_booking {
                Some(rival_booking) => {
                    let rival_confirm =
                        self.confirm(&rival_name, &mut rival, &rival_booking.name, PAYMENT_TOKEN);
                    tokio::join!(holder_confirm, rival_confirm);
                }
                None => {
                    holder_confirm.await;
                }
            }
        }
    }

    /// Keeps an event on sale with seats left: a new one when buyers find
    /// the newest sold out or it runs below a quarter (at most `max_events`).
    pub async fn event_keeper(&self, catalog: Channel, stop: &AtomicBool) {
        let mut availability = Clients::inventory_client(catalog.clone());
        let mut catalog_client =
            catalog_pb::catalog_service_client::CatalogServiceClient::new(catalog);
        let mut created = self.events.all().len();
        let mut failures = 0_u32;
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut wanted = self.events.want_more.load(Ordering::SeqCst);
            if !wanted && let Some(newest) = self.events.newest() {
                let answer = availability
                    .get_availability(request(
                        None,
                        inventory_pb::GetAvailabilityRequest {
                            event_id: newest.id.clone(),
                        },
                    ))
                    .await;
                if let Ok(answer) = answer {
                    wanted = answer.get_ref().available_count * 4 < newest.seats;
                }
            }
            if !wanted || created >= self.settings.max_events {
                continue;
            }
            match create_event(
                &mut catalog_client,
                &mut availability,
                &self.admin,
                self.settings.seats_per_event,
                created + 1,
            )
            .await
            {
                Ok(event) => {
                    created += 1;
                    self.events.push(event);
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 {
                        self.recorder.notice(format!(
                            "could not put a new event on sale (retrying): {error:#}"
                        ));
                    }
                    continue;
                }
            }
            if failures > 0 {
                self.recorder.notice(format!(
                    "put a new event on sale after {failures} failed attempts"
                ));
            }
            failures = 0;
        }
    }
}

/// One user's clients of the edge.
pub struct Clients {
    bearer: Bearer,
    inventory: inventory_pb::inventory_service_client::InventoryServiceClient<Channel>,
    checkout: checkout_pb::checkout_service_client::CheckoutServiceClient<Channel>,
}

impl Clients {
    fn new(edge: SocketAddr, bearer: Bearer) -> anyhow::Result<Self> {
        let channel = channel(edge)?;
        Ok(Self {
            bearer,
            inventory: Self::inventory_client(channel.clone()),
            checkout: checkout_pb::checkout_service_client::CheckoutServiceClient::new(channel),
        })
    }

    fn inventory_client(
        channel: Channel,
    ) -> inventory_pb::inventory_service_client::InventoryServiceClient<Channel> {
        inventory_pb::inventory_service_client::InventoryServiceClient::new(channel)
    }
}

pub fn state_name(state: i32) -> String {
    checkout_pb::BookingState::try_from(state)
        .map(|state| {
            state
                .as_str_name()
                .trim_start_matches("BOOKING_STATE_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("STATE_{state}"))
}

/// Registers a user and logs in through the edge (recorded in the
/// history); the access token.
pub async fn register_and_login(
    recorder: &Recorder,
    edge: SocketAddr,
    process: &str,
) -> anyhow::Result<Bearer> {
    let mut accounts =
        accounts_pb::accounts_service_client::AccountsServiceClient::new(channel(edge)?);
    let email = format!("{process}-{}@faults.example", Uuid::new_v4().simple());
    let password = format!("faults-{}", Uuid::new_v4().simple());
    let record = |kind, invoke_ms: u64, error: Option<&tonic::Status>| {
        recorder.record(Op {
            process: process.to_owned(),
            kind,
            invoke_ms,
            complete_ms: recorder.now_ms(),
            outcome: error.map_or(Outcome::Ok, |s| outcome_of(s.code())),
            code: error.map(|s| format!("{:?}", s.code())),
            message: error.map(|s| s.message().to_owned()),
            event: None,
            hold: None,
            booking: None,
            key: None,
            seats: Vec::new(),
            state: None,
            total_minor: None,
            refunded_minor: None,
            expire_unix_ms: None,
            invoke_unix_ms: recorder.unix_ms(invoke_ms),
            attempt: 1,
        });
    };
    let invoke_ms = recorder.now_ms();
    let registered = accounts
        .register(request(
            None,
            accounts_pb::RegisterRequest {
                email: email.clone(),
                password: password.clone(),
                display_name: process.to_owned(),
            },
        ))
        .await;
    record(OpKind::Register, invoke_ms, registered.as_ref().err());
    registered.with_context(|| format!("registering {process}"))?;
    let invoke_ms = recorder.now_ms();
    let login = accounts
        .login(request(None, accounts_pb::LoginRequest { email, password }))
        .await;
    record(OpKind::Login, invoke_ms, login.as_ref().err());
    let login = login.with_context(|| format!("logging {process} in"))?;
    bearer(&login.into_inner().access_token)
}

fn timestamp_in_days(days: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + days * 86_400,
        nanos: 0,
    }
}

/// A published event at a venue of its own with `seats` seats (rows of
/// ten), once inventory says it is on sale.
pub async fn create_event(
    catalog: &mut catalog_pb::catalog_service_client::CatalogServiceClient<Channel>,
    inventory: &mut inventory_pb::inventory_service_client::InventoryServiceClient<Channel>,
    admin: &Bearer,
    seats: u32,
    number: usize,
) -> anyhow::Result<EventInfo> {
    let rows = seats.div_ceil(10).max(1);
    let sections = vec![catalog_pb::SectionSpec {
        name: "Stalls".into(),
        kind: catalog_pb::SectionKind::Seated as i32,
        capacity: 0,
        rows: (0..rows)
            .map(|row| catalog_pb::RowSpec {
                label: format!("R{}", row + 1),
                seat_count: 10,
                seats: vec![],
            })
            .collect(),
    }];
    let venue = catalog
        .create_venue(request(
            Some(admin),
            catalog_pb::CreateVenueRequest {
                name: format!("Fault Hall {number}"),
                address: Some(catalog_pb::PostalAddress {
                    city: "Leeds".into(),
                    country_code: "GB".into(),
                    ..Default::default()
                }),
                location: None,
                time_zone: "Europe/London".into(),
                sections,
            },
        ))
        .await
        .context("creating a venue")?
        .into_inner();
    let event = catalog
        .create_event(request(
            Some(admin),
            catalog_pb::CreateEventRequest {
                event: Some(catalog_pb::Event {
                    title: format!("Fault Night {number}"),
                    category: catalog_pb::Category::Concert as i32,
                    venue_id: venue.id.clone(),
                    start_time: Some(timestamp_in_days(30)),
                    end_time: Some(timestamp_in_days(31)),
                    price_tiers: vec![catalog_pb::PriceTier {
                        name: "Standard".into(),
                        price: Some(catalog_pb::Money {
                            currency_code: "GBP".into(),
                            amount_minor: 2500,
                        }),
                        section_ids: venue.sections.iter().map(|s| s.id.clone()).collect(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
        ))
        .await
        .context("creating an event")?
        .into_inner();
    catalog
        .publish_event(request(
            Some(admin),
            catalog_pb::PublishEventRequest {
                id: event.id.clone(),
            },
        ))
        .await
        .context("publishing the event")?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let answer = inventory
            .get_availability(request(
                None,
                inventory_pb::GetAvailabilityRequest {
                    event_id: event.id.clone(),
                },
            ))
            .await;
        if answer.as_ref().is_ok_and(|a| a.get_ref().on_sale) {
            return Ok(EventInfo {
                id: event.id,
                seats: venue.capacity,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "inventory did not put event {} on sale within 30 s",
        event.id
    )
}
