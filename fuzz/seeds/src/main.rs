//! Writes the seed corpora under `fuzz/corpus/<target>/`: the requests the
//! tests send (integration/tests, the crates' unit tests), encoded in each
//! target's input format, plus the malformed bodies the tests refuse.
//! Run from anywhere: `cargo run --manifest-path fuzz/seeds/Cargo.toml`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use boxoffice_contracts::testing::v1 as testing;
use boxoffice_contracts::{accounts::v1 as accounts, catalog::v1 as catalog};
use boxoffice_contracts::{checkout::v1 as checkout, inventory::v1 as inventory};
use hmac::{Hmac, Mac as _};
use prost::Message;

const EVENT: &str = "0190a5a0-0000-7000-8000-000000000001";
const HOLD: &str = "0190a5a0-0000-7000-8000-000000000002";
const BOOKING: &str = "0190a5a0-0000-7000-8000-000000000003";
const USER: &str = "0190a5a0-0000-7000-8000-000000000004";
const SECTION: &str = "0190a5a0-0000-7000-8000-000000000005";
const VENUE: &str = "0190a5a0-0000-7000-8000-000000000006";

/// The RPCs in `boxoffice_fuzz::RPCS` order (the selector byte).
const PATHS: [&str; 30] = [
    "catalog/GetEvent",
    "catalog/ListEvents",
    "catalog/SearchEvents",
    "catalog/GetSeatMap",
    "catalog/GetVenue",
    "catalog/GetPerformer",
    "catalog/CreateVenue",
    "catalog/CreatePerformer",
    "catalog/CreateEvent",
    "catalog/UpdateEvent",
    "catalog/PublishEvent",
    "catalog/CancelEvent",
    "inventory/GetAvailability",
    "inventory/WatchAvailability",
    "inventory/HoldSeats",
    "inventory/GetHold",
    "inventory/ReleaseHold",
    "inventory/CommitHold",
    "inventory/ReleaseSeats",
    "waiting_room/JoinQueue",
    "waiting_room/WatchQueue",
    "waiting_room/ConfigureWaitingRoom",
    "checkout/CreateBooking",
    "checkout/ConfirmBooking",
    "checkout/GetBooking",
    "checkout/ListBookings",
    "checkout/CancelBooking",
    "accounts/Register",
    "accounts/Login",
    "accounts/GetMe",
];

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn venue() -> catalog::CreateVenueRequest {
    catalog::CreateVenueRequest {
        name: "Leeds Arena".into(),
        address: Some(catalog::PostalAddress {
            street: "1 Main St".into(),
            city: "Leeds".into(),
            region: String::new(),
            postal_code: "LS1".into(),
            country_code: "GB".into(),
        }),
        location: Some(catalog::LatLng {
            latitude: 53.8,
            longitude: -1.55,
        }),
        time_zone: "Europe/London".into(),
        sections: vec![
            catalog::SectionSpec {
                name: "Stalls".into(),
                kind: catalog::SectionKind::Seated as i32,
                capacity: 0,
                rows: vec![
                    catalog::RowSpec {
                        label: "A".into(),
                        seat_count: 10,
                        seats: vec![],
                    },
                    catalog::RowSpec {
                        label: "B".into(),
                        seat_count: 0,
                        seats: vec![
                            catalog::SeatSpec {
                                number: "1".into(),
                                x: 1.0,
                                y: 2.0,
                            },
                            catalog::SeatSpec {
                                number: "2".into(),
                                x: 2.0,
                                y: 2.0,
                            },
                        ],
                    },
                ],
            },
            catalog::SectionSpec {
                name: "Standing".into(),
                kind: catalog::SectionKind::GeneralAdmission as i32,
                capacity: 100,
                rows: vec![],
            },
        ],
    }
}

fn event() -> catalog::Event {
    catalog::Event {
        id: EVENT.into(),
        title: "Opening night".into(),
        description: "An evening".into(),
        category: catalog::Category::Concert as i32,
        venue_id: VENUE.into(),
        performer_ids: vec![USER.into()],
        start_time: ts(1_900_000_000),
        end_time: ts(1_900_086_400),
        on_sale_time: ts(1_890_000_000),
        price_tiers: vec![catalog::PriceTier {
            name: "Seated".into(),
            price: Some(catalog::Money {
                currency_code: "GBP".into(),
                amount_minor: 4500,
            }),
            section_ids: vec![SECTION.into()],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// (RPC index, caller for `requests`: 0 anonymous, 1 customer, 2 admin, 3 service, message)
fn requests() -> Vec<(u8, u8, Vec<u8>)> {
    let mut out: Vec<(u8, u8, Vec<u8>)> = Vec::new();
    let mut add = |index: u8, caller: u8, message: Vec<u8>| out.push((index, caller, message));
    add(
        0,
        0,
        catalog::GetEventRequest { id: EVENT.into() }.encode_to_vec(),
    );
    add(
        1,
        0,
        catalog::ListEventsRequest {
            page_size: 20,
            start_after: ts(1_800_000_000),
            start_before: ts(1_900_000_000),
            status: catalog::EventStatus::Published as i32,
            venue_id: VENUE.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    add(
        2,
        0,
        catalog::SearchEventsRequest {
            query: "jazz leeds".into(),
            page_size: 10,
            city: "Leeds".into(),
            category: catalog::Category::Concert as i32,
            near: Some(catalog::LatLng {
                latitude: 53.8,
                longitude: -1.55,
            }),
            radius_km: 25.0,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    add(
        3,
        0,
        catalog::GetSeatMapRequest {
            event_id: EVENT.into(),
        }
        .encode_to_vec(),
    );
    add(
        4,
        0,
        catalog::GetVenueRequest { id: VENUE.into() }.encode_to_vec(),
    );
    add(
        5,
        0,
        catalog::GetPerformerRequest { id: USER.into() }.encode_to_vec(),
    );
    add(6, 2, venue().encode_to_vec());
    add(
        7,
        2,
        catalog::CreatePerformerRequest {
            performer: Some(catalog::Performer {
                name: "The Band".into(),
                genre: "rock".into(),
                ..Default::default()
            }),
        }
        .encode_to_vec(),
    );
    add(
        8,
        2,
        catalog::CreateEventRequest {
            event: Some(event()),
        }
        .encode_to_vec(),
    );
    add(
        9,
        2,
        catalog::UpdateEventRequest {
            event: Some(event()),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into(), "description".into(), "category".into()],
            }),
        }
        .encode_to_vec(),
    );
    add(
        10,
        2,
        catalog::PublishEventRequest { id: EVENT.into() }.encode_to_vec(),
    );
    add(
        11,
        2,
        catalog::CancelEventRequest {
            id: EVENT.into(),
            reason: "weather".into(),
        }
        .encode_to_vec(),
    );
    add(
        12,
        0,
        inventory::GetAvailabilityRequest {
            event_id: EVENT.into(),
        }
        .encode_to_vec(),
    );
    add(
        13,
        0,
        inventory::WatchAvailabilityRequest {
            event_id: EVENT.into(),
            cursor: "0190a5a0:1700000000000-0".into(),
        }
        .encode_to_vec(),
    );
    add(
        14,
        1,
        inventory::HoldSeatsRequest {
            event_id: EVENT.into(),
            selection: Some(inventory::hold_seats_request::Selection::Seats(
                inventory::SeatSelection {
                    seat_indexes: vec![0, 1, 2],
                },
            )),
            admission_token: String::new(),
        }
        .encode_to_vec(),
    );
    add(
        14,
        1,
        inventory::HoldSeatsRequest {
            event_id: EVENT.into(),
            selection: Some(inventory::hold_seats_request::Selection::BestAvailable(
                inventory::BestAvailable {
                    quantity: 2,
                    section_id: SECTION.into(),
                    price_tier_id: String::new(),
                    max_price: Some(inventory::Money {
                        currency_code: "GBP".into(),
                        amount_minor: 5000,
                    }),
                },
            )),
            admission_token: String::new(),
        }
        .encode_to_vec(),
    );
    let hold = format!("events/{EVENT}/holds/{HOLD}");
    add(
        15,
        1,
        inventory::GetHoldRequest { name: hold.clone() }.encode_to_vec(),
    );
    add(
        16,
        1,
        inventory::ReleaseHoldRequest { name: hold.clone() }.encode_to_vec(),
    );
    add(
        17,
        3,
        inventory::CommitHoldRequest {
            name: hold.clone(),
            booking_id: BOOKING.into(),
            user_id: USER.into(),
            sale_id: String::new(),
        }
        .encode_to_vec(),
    );
    add(
        18,
        3,
        inventory::ReleaseSeatsRequest {
            event_id: EVENT.into(),
            booking_id: BOOKING.into(),
        }
        .encode_to_vec(),
    );
    add(
        19,
        1,
        inventory::JoinQueueRequest {
            event_id: EVENT.into(),
        }
        .encode_to_vec(),
    );
    add(
        20,
        1,
        inventory::WatchQueueRequest {
            event_id: EVENT.into(),
        }
        .encode_to_vec(),
    );
    add(
        21,
        2,
        inventory::ConfigureWaitingRoomRequest {
            event_id: EVENT.into(),
            enabled: true,
            admission_rate_per_second: 50,
            open_time: ts(1_900_000_000),
            max_active_shoppers: 200,
        }
        .encode_to_vec(),
    );
    add(
        22,
        1,
        checkout::CreateBookingRequest {
            hold,
            idempotency_key: "key-1".into(),
        }
        .encode_to_vec(),
    );
    add(
        23,
        1,
        checkout::ConfirmBookingRequest {
            name: format!("bookings/{BOOKING}"),
            payment_method: Some(checkout::PaymentMethod {
                token: "pm_card_visa".into(),
                ..Default::default()
            }),
            idempotency_key: "confirm-1".into(),
        }
        .encode_to_vec(),
    );
    add(
        24,
        1,
        checkout::GetBookingRequest {
            name: format!("bookings/{BOOKING}"),
        }
        .encode_to_vec(),
    );
    add(
        25,
        1,
        checkout::ListBookingsRequest {
            page_size: 10,
            // A token as checkout issues them: base64url("{micros}:{id}").
            page_token: base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("1700000000000000:{BOOKING}")),
        }
        .encode_to_vec(),
    );
    add(
        26,
        1,
        checkout::CancelBookingRequest {
            name: format!("bookings/{BOOKING}"),
            idempotency_key: "cancel-1".into(),
        }
        .encode_to_vec(),
    );
    add(
        27,
        0,
        accounts::RegisterRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
            display_name: "Ada".into(),
        }
        .encode_to_vec(),
    );
    add(
        28,
        0,
        accounts::LoginRequest {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
        }
        .encode_to_vec(),
    );
    add(29, 1, accounts::GetMeRequest {}.encode_to_vec());
    out
}

fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

fn webhook_event(status: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "evt_0190a5a0000070008000000000000007",
        "type": format!("payment.{status}"),
        "created": 1_700_000_000,
        "data": {
            "provider_ref": "pi_test",
            "idempotency_key": BOOKING,
            "status": status,
            "amount_minor": 4650,
            "refunded_minor": 0,
        },
    }))
    .unwrap()
}

struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    fn new(root: &Path, target: &str) -> Self {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let codec = Corpus::new(&root, "codec");
    let server = Corpus::new(&root, "requests");
    for (n, (index, caller, message)) in requests().into_iter().enumerate() {
        let name = PATHS[usize::from(index)].replace('/', "-");
        // codec: top bit frames the rest; without it the rest is the body.
        codec.write(
            &format!("{n:02}-{name}"),
            &[&[index | 0x80][..], &message].concat(),
        );
        codec.write(
            &format!("{n:02}-{name}-body"),
            &[&[index][..], &frame(0, &message)].concat(),
        );
        server.write(
            &format!("{n:02}-{name}"),
            &[&[index, caller | 0x80][..], &message].concat(),
        );
    }
    // Bodies the wire guard's tests refuse: garbage, a wrong wire type,
    // invalid UTF-8 in a string, a bad compression flag, an empty or
    // truncated frame.
    let hold_seats = 14u8;
    let malformed: [(&str, Vec<u8>); 6] = [
        ("garbage", frame(0, b"\xff\xff\xff\xff")),
        ("wire-type", frame(0, &[0x0b, 0x01])),
        ("utf8", frame(0, &[0x0a, 0x02, 0xc3, 0x28])),
        (
            "compression-flag",
            [&[7u8][..], &frame(0, b"")[1..]].concat(),
        ),
        ("empty", Vec::new()),
        ("truncated", frame(0, &[0x0a, 0x24, b'0'])[..4].to_vec()),
    ];
    for (name, body) in &malformed {
        codec.write(
            &format!("malformed-{name}"),
            &[&[hold_seats][..], body].concat(),
        );
        server.write(
            &format!("malformed-{name}"),
            &[&[hold_seats, 1][..], body].concat(),
        );
    }

    let web = Corpus::new(&root, "grpc_web");
    let echo = testing::EchoRequest {
        message: "hello, grpc-web".into(),
    }
    .encode_to_vec();
    // flags: bits 0-1 content type, 2 framed, 3 base64, 4-5 path, 6 Origin, 7 gzip
    web.write("echo-binary", &[&[0x04][..], &echo].concat());
    web.write("echo-binary-proto-cors", &[&[0x45][..], &echo].concat());
    web.write("echo-text", &[&[0x0e][..], &echo].concat());
    web.write("echo-text-proto-cors", &[&[0x4f][..], &echo].concat());
    web.write("echo-raw-frame", &[&[0x00][..], &frame(0, &echo)].concat());
    web.write(
        "echo-text-raw",
        &[
            &[0x02][..],
            base64::engine::general_purpose::STANDARD
                .encode(frame(0, &echo))
                .as_bytes(),
        ]
        .concat(),
    );
    web.write("health", &[0x24]);
    web.write("unknown-method", &[&[0x34][..], &echo].concat());
    web.write("gzip", &[&[0x84][..], &echo].concat());
    web.write("bad-flag", &[&[0x00][..], &frame(0x80, &echo)].concat());

    let signature = Corpus::new(&root, "webhook_signature");
    let body = webhook_event("captured");
    let header = sign(b"whsec_fuzz", 1_700_000_000, &body);
    let with_header = |header: &str| [&[header.len() as u8][..], header.as_bytes(), &body].concat();
    signature.write("genuine", &with_header(&header));
    signature.write(
        "other-secret",
        &with_header(&sign(b"whsec_test", 1_700_000_000, &body)),
    );
    signature.write(
        "stale",
        &with_header(&sign(b"whsec_fuzz", 1_699_999_000, &body)),
    );
    signature.write("rotating", &with_header(&format!("{header},v1=00ff")));
    signature.write("no-timestamp", &with_header("v1=00"));
    signature.write("no-signature", &with_header("t=1"));
    signature.write("odd-hex", &with_header("t=1700000000,v1=abc"));

    let events = Corpus::new(&root, "webhook_event");
    for status in [
        "authorized",
        "captured",
        "voided",
        "declined",
        "refunded",
        "disputed",
    ] {
        events.write(status, &webhook_event(status));
    }
    events.write(
        "missing-data",
        br#"{"id":"evt_1","type":"payment.captured","created":1}"#,
    );
}
