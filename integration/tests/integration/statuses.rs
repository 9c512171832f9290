//! What a caller is told when the trouble is not in the request's meaning:
//! a database that is down (`UNAVAILABLE`), a body that does not decode
//! (`INVALID_ARGUMENT`), headers or a message over the limits
//! (`RESOURCE_EXHAUSTED`, for that one request, on a connection that keeps
//! serving its other calls). Raw HTTP/2 frames through the edge (over the
//! network and in-process) and straight at each service.

use std::net::SocketAddr;
use std::time::Duration;

use boxoffice_checkout::{CheckoutComponent, CheckoutConfig};
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_contracts::catalog::v1 as catalog_pb;
use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::inventory::v1 as inventory_pb;
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::limits;
use boxoffice_runtime::server::GrpcServer;
use boxoffice_runtime::status::reason_of;
use bytes::Bytes;
use prost::Message as _;
use tokio::net::TcpStream;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::checkout::{CheckoutWorld, booking_id, confirm, get};
use crate::edge_world::{BOTH_WAYS, EdgeWorld, connect, login, with_token};
use crate::harness::{
    KillableProxy, RunningServer, TestDb, customer, postgres_server_url, spawn_server,
};
use crate::system_world::SystemWorld;

// ---------------------------------------------------------------------------
// A database that is down

/// A pool for `db` that reaches PostgreSQL only through `proxy`.
fn pool_through(db: &TestDb, proxy: SocketAddr) -> deadpool_postgres::Pool {
    let server: tokio_postgres::Config = postgres_server_url().parse().expect("test server url");
    let mut url = format!(
        "host={} port={} dbname={}",
        proxy.ip(),
        proxy.port(),
        db.name
    );
    if let Some(user) = server.get_user() {
        url.push_str(&format!(" user={user}"));
    }
    if let Some(password) = server.get_password() {
        url.push_str(&format!(
            " password='{}'",
            String::from_utf8_lossy(password).replace('\'', "\\'")
        ));
    }
    boxoffice_runtime::postgres::pool(&Secret::new(url), 4).expect("pool through the proxy")
}

/// The address of the test PostgreSQL server.
fn postgres_addr() -> SocketAddr {
    let config: tokio_postgres::Config = postgres_server_url().parse().expect("test server url");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let host = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    format!("{host}:{port}")
        .parse()
        .expect("the test PostgreSQL server is an IP address")
}

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
    assert_eq!(
        reason_of(&status).as_deref(),
        Some("UNAVAILABLE"),
        "{what}: {status:?}"
    );
    assert!(
        !status.message().contains("SQL") && !status.message().contains("connect"),
        "{what} leaks its cause: {status:?}"
    );
}

#[tokio::test]
async fn a_checkout_whose_database_stops_answering_says_unavailable_and_changes_nothing() {
    let world = CheckoutWorld::new().await;
    let alice = customer();
    let (_, booking) = world.booking_for(&alice, &[7, 8]).await;

    // A second checkout instance whose only way to PostgreSQL is a proxy
    // the test pulls, as a crashed database host would. It did not create
    // the booking, so a confirmation must read it first.
    let proxy = KillableProxy::start(postgres_addr()).await;
    let mut local = GrpcServer::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binding");
    world.world.component.register(&mut local);
    world.world._catalog_component.register(&mut local);
    let shutdown = Shutdown::new();
    let component = CheckoutComponent::start_with(
        CheckoutConfig {
            inventory_url: format!("http://{}", world.world.server.addr),
            catalog_url: format!("http://{}", world.world.server.addr),
            webhook_listen: "127.0.0.1:0".parse().expect("address"),
            reconcile_interval: Duration::from_secs(3600),
            ..CheckoutConfig::default()
        },
        pool_through(&world.world.db, proxy.addr),
        shutdown.clone(),
        Some(local.in_process()),
    )
    .await
    .expect("starting the second checkout");
    let mut server = GrpcServer::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("binding the second checkout");
    component.register(&mut server);
    let addr = server.local_addr();
    spawn_server(server, &shutdown);
    let running = RunningServer { addr, shutdown };
    let mut client = CheckoutServiceClient::new(running.channel().await);
    // It works while the database answers (the proxy is its way there).
    get(&mut client, &alice, &booking.name)
        .await
        .expect("reading through the proxy");

    proxy.kill();

    assert_unavailable(
        confirm(&mut client, &alice, &booking.name, "tok_visa", "down-1").await,
        "ConfirmBooking",
    );
    assert_unavailable(get(&mut client, &alice, &booking.name).await, "GetBooking");
    assert_unavailable(
        client
            .list_bookings(crate::harness::as_caller(
                &alice,
                checkout_pb::ListBookingsRequest {
                    page_size: 10,
                    page_token: String::new(),
                },
            ))
            .await,
        "ListBookings",
    );

    // Nothing changed: the booking is pending, its seats held and unsold,
    // and no money was asked for.
    let id = booking_id(&booking);
    assert_eq!(
        world.booking_states().await,
        vec![(id, "pending".to_owned())]
    );
    assert_eq!(world.held_seats().await, vec![7, 8]);
    assert!(world.sold_seats().await.is_empty());
    assert!(
        component
            .simulated
            .as_ref()
            .expect("in-process provider")
            .payments()
            .is_empty(),
        "no payment was started"
    );
    // The instance that reaches the database still sells it.
    let confirmed = confirm(
        &mut world.client.clone(),
        &alice,
        &booking.name,
        "tok_visa",
        "up-1",
    )
    .await
    .expect("confirming where the database answers");
    assert_eq!(
        crate::checkout::state(&confirmed),
        checkout_pb::BookingState::Confirmed
    );
}

// ---------------------------------------------------------------------------
// Raw HTTP/2

/// One HTTP/2 connection, as a client library would hold it.
async fn h2_connect(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let stream = TcpStream::connect(addr).await.expect("connecting");
    let (send, connection) = h2::client::handshake(stream)
        .await
        .expect("HTTP/2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

fn grpc_request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request")
}

/// The status a call ended with, from its headers (trailers-only) or its
/// trailers.
async fn answer(response: h2::client::ResponseFuture) -> Result<Status, h2::Error> {
    let response = response.await?;
    let (parts, mut body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return Ok(status);
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    Ok(Status::from_header_map(&trailers)
        .unwrap_or_else(|| Status::unknown(format!("no grpc-status (HTTP {})", parts.status))))
}

/// Sends one call whose body is `body`, exactly as given.
async fn raw_call(
    send: &h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Status, h2::Error> {
    let mut send = send.clone().ready().await?;
    let (response, mut stream) = send.send_request(grpc_request(addr, path, headers), false)?;
    stream.send_data(Bytes::copy_from_slice(body), true)?;
    answer(response).await
}

/// A gRPC frame: flag, length, message.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

/// Bodies that do not decode as any request, each with what is wrong.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut truncated = frame(0, &[0x0a, 0x03, b'a', b'b', b'c']);
    truncated.truncate(7);
    vec![
        ("garbage bytes", frame(0, &[0xff; 12])),
        // Field 1 is a string in every request used here.
        (
            "invalid UTF-8 in a string",
            frame(0, &[0x0a, 0x02, 0xc3, 0x28]),
        ),
        (
            "a wrong wire type",
            frame(0, &[0x0d, 0x01, 0x02, 0x03, 0x04]),
        ),
        ("a bad compression flag", frame(7, &[])),
        (
            "a compressed flag without grpc-encoding",
            frame(1, &[0x0a, 0x00]),
        ),
        ("an empty body", Vec::new()),
        ("a frame cut short", truncated),
        ("half a frame header", vec![0, 0]),
    ]
}

fn assert_malformed(status: &Status, what: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert_eq!(
        reason_of(status).as_deref(),
        Some("MALFORMED_MESSAGE"),
        "{what}: {status:?}"
    );
}

/// Every malformed body at every path answers INVALID_ARGUMENT with its
/// reason, and the connection serves the next call.
async fn every_malformed_body_is_invalid_argument(
    addr: SocketAddr,
    paths: &[(&str, &[(&str, &str)])],
) {
    let send = h2_connect(addr).await;
    for (path, headers) in paths {
        for (what, body) in malformed_bodies() {
            let status = raw_call(&send, addr, path, headers, &body)
                .await
                .unwrap_or_else(|error| panic!("{path}, {what}: {error}"));
            assert_malformed(&status, &format!("{path}, {what}"));
        }
    }
}

#[tokio::test]
async fn a_body_that_does_not_decode_is_invalid_argument_through_the_edge_and_at_each_service() {
    let public: &[(&str, &[(&str, &str)])] = &[
        ("/boxoffice.catalog.v1.CatalogService/GetEvent", &[]),
        ("/boxoffice.catalog.v1.CatalogService/ListEvents", &[]),
        ("/boxoffice.catalog.v1.CatalogService/SearchEvents", &[]),
        ("/boxoffice.accounts.v1.AccountsService/Login", &[]),
        ("/boxoffice.accounts.v1.AccountsService/Register", &[]),
    ];
    for reach in BOTH_WAYS {
        println!("the edge reaches the services: {reach:?}");
        let world = EdgeWorld::reaching(reach, |_| {}).await;
        every_malformed_body_is_invalid_argument(world.edge.addr, public).await;
        if reach == crate::edge_world::Reach::Network {
            // The services themselves, without the edge.
            every_malformed_body_is_invalid_argument(world.upstream.server.addr, public).await;
        }
    }

    // Inventory and checkout, each straight at its own server (a service
    // decodes before it looks at who is calling).
    let world = CheckoutWorld::new().await;
    every_malformed_body_is_invalid_argument(
        world.world.server.addr,
        &[
            ("/boxoffice.inventory.v1.InventoryService/HoldSeats", &[]),
            (
                "/boxoffice.inventory.v1.InventoryService/GetAvailability",
                &[],
            ),
            ("/boxoffice.inventory.v1.InventoryService/CommitHold", &[]),
        ],
    )
    .await;
    every_malformed_body_is_invalid_argument(
        world._checkout_server.addr,
        &[
            ("/boxoffice.checkout.v1.CheckoutService/ConfirmBooking", &[]),
            ("/boxoffice.checkout.v1.CheckoutService/CreateBooking", &[]),
            ("/boxoffice.checkout.v1.CheckoutService/ListBookings", &[]),
        ],
    )
    .await;
    // Nothing was written by any of it.
    assert!(world.booking_states().await.is_empty());
}

/// One connection: a call in flight, a call with a 100 KB `authorization`
/// header, then more calls. Only the oversized one fails.
async fn one_oversized_header_fails_only_its_own_call(addr: SocketAddr) {
    let path = "/boxoffice.catalog.v1.CatalogService/ListEvents";
    let list = frame(
        0,
        &catalog_pb::ListEventsRequest {
            page_size: 1,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let send = h2_connect(addr).await;

    // In flight: headers sent, body still to come.
    let mut first = send.clone().ready().await.expect("connection ready");
    let (in_flight, mut in_flight_body) = first
        .send_request(grpc_request(addr, path, &[]), false)
        .expect("opening the first call");

    let huge = format!("Bearer {}", "x".repeat(100 * 1024));
    let refused = raw_call(&send, addr, path, &[("authorization", &huge)], &list)
        .await
        .expect("the oversized call is answered on its own stream");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        reason_of(&refused).as_deref(),
        Some("HEADERS_TOO_LARGE"),
        "{refused:?}"
    );

    in_flight_body
        .send_data(Bytes::from(list.clone()), true)
        .expect("finishing the call in flight");
    let status = answer(in_flight)
        .await
        .expect("the call in flight survives");
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    for _ in 0..3 {
        let status = raw_call(&send, addr, path, &[], &list)
            .await
            .expect("later calls on the same connection");
        assert_eq!(status.code(), Code::Ok, "{status:?}");
    }
}

#[tokio::test]
async fn one_oversized_header_fails_that_request_and_not_the_connection() {
    for reach in BOTH_WAYS {
        println!("the edge reaches the services: {reach:?}");
        let world = EdgeWorld::reaching(reach, |_| {}).await;
        one_oversized_header_fails_only_its_own_call(world.edge.addr).await;
        if reach == crate::edge_world::Reach::Network {
            one_oversized_header_fails_only_its_own_call(world.upstream.server.addr).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Documented limits

/// Pads `fill` until `encode` gives exactly `size` bytes.
fn message_of_size(size: usize, encode: impl Fn(String) -> Vec<u8>) -> Vec<u8> {
    let mut fill = size.saturating_sub(16);
    loop {
        let encoded = encode("x".repeat(fill));
        match encoded.len().cmp(&size) {
            std::cmp::Ordering::Equal => return encoded,
            std::cmp::Ordering::Less => fill += 1,
            std::cmp::Ordering::Greater => fill -= 1,
        }
    }
}

fn hold_request(padding: String) -> Vec<u8> {
    inventory_pb::HoldSeatsRequest {
        event_id: Uuid::new_v4().to_string(),
        selection: Some(inventory_pb::hold_seats_request::Selection::Seats(
            inventory_pb::SeatSelection {
                seat_indexes: vec![1],
            },
        )),
        admission_token: padding,
    }
    .encode_to_vec()
}

fn create_booking_request(padding: String) -> Vec<u8> {
    checkout_pb::CreateBookingRequest {
        hold: format!("events/{}/holds/{}", Uuid::new_v4(), Uuid::new_v4()),
        idempotency_key: padding,
    }
    .encode_to_vec()
}

/// The limit's row in README's table of limits, in bytes.
fn documented_limit(rpc: &str) -> usize {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .expect("reading README.md");
    let row = readme
        .lines()
        .find(|line| line.starts_with(&format!("| `{rpc}`")))
        .unwrap_or_else(|| panic!("README's table of limits has no row for {rpc}"));
    let cell = row.split('|').nth(2).expect("a request size column");
    let bytes: String = cell
        .split('(')
        .nth(1)
        .and_then(|inner| inner.split(" bytes").next())
        .expect("the size in bytes, in brackets")
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    bytes.parse().expect("a number of bytes")
}

/// At the limit the message is read (and answered for what it says); one
/// byte over, it is refused for its size, with the limit in the answer.
async fn the_limit_is_enforced(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    limit: usize,
    encode: &impl Fn(String) -> Vec<u8>,
) {
    let send = h2_connect(addr).await;
    let at = message_of_size(limit, encode);
    let status = raw_call(&send, addr, path, headers, &frame(0, &at))
        .await
        .expect("a call at the limit");
    assert!(
        !matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{path} at its limit of {limit} bytes: {status:?}"
    );
    let over = message_of_size(limit + 1, encode);
    let status = raw_call(&send, addr, path, headers, &frame(0, &over))
        .await
        .expect("a call over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{path}: {status:?}");
    assert_eq!(
        reason_of(&status).as_deref(),
        Some("MESSAGE_TOO_LARGE"),
        "{status:?}"
    );
    let info = status.get_details_error_info().expect("error info");
    assert_eq!(
        info.metadata.get("limit_bytes"),
        Some(&limit.to_string()),
        "{status:?}"
    );
}

#[tokio::test]
async fn the_documented_message_limits_are_the_enforced_ones() {
    // README has a row for every RPC of every boxoffice service, and each
    // row says what the code enforces...
    let contracts =
        prost_types::FileDescriptorSet::decode(boxoffice_contracts::FILE_DESCRIPTOR_SET)
            .expect("the contracts' descriptors");
    let mut rpcs = 0;
    for file in &contracts.file {
        let package = file.package();
        if !package.starts_with("boxoffice.") || package.starts_with("boxoffice.testing.") {
            continue;
        }
        for service in &file.service {
            let name = format!("{package}.{}", service.name());
            for method in &service.method {
                assert_eq!(
                    documented_limit(method.name()),
                    limits::max_request_bytes(&name),
                    "README's limit for {name}/{}",
                    method.name()
                );
                rpcs += 1;
            }
        }
    }
    assert!(rpcs >= 28, "only {rpcs} RPCs found in the contracts");
    assert_eq!(
        documented_limit("HoldSeats"),
        limits::INVENTORY_MAX_REQUEST_BYTES
    );
    assert_eq!(
        documented_limit("CreateBooking"),
        limits::CHECKOUT_MAX_REQUEST_BYTES
    );

    // ...and the edge and the services enforce exactly that.
    let world = SystemWorld::start("limits", &[]).await;
    let system = &world.system;
    let channel = connect(system.edge_addr).await;
    let mut accounts =
        boxoffice_contracts::accounts::v1::accounts_service_client::AccountsServiceClient::new(
            channel,
        );
    accounts
        .register(accounts_pb::RegisterRequest {
            email: "limits@example.com".into(),
            password: "correct horse battery".into(),
            display_name: "Limits".into(),
        })
        .await
        .expect("registering");
    let token = login(&mut accounts, "limits@example.com", "correct horse battery").await;
    let bearer = format!("Bearer {token}");
    let signed_in: &[(&str, &str)] = &[("authorization", bearer.as_str())];

    let hold_seats = "/boxoffice.inventory.v1.InventoryService/HoldSeats";
    let create_booking = "/boxoffice.checkout.v1.CheckoutService/CreateBooking";
    // Through the edge...
    the_limit_is_enforced(
        system.edge_addr,
        hold_seats,
        signed_in,
        limits::INVENTORY_MAX_REQUEST_BYTES,
        &hold_request,
    )
    .await;
    the_limit_is_enforced(
        system.edge_addr,
        create_booking,
        signed_in,
        limits::CHECKOUT_MAX_REQUEST_BYTES,
        &create_booking_request,
    )
    .await;
    // ...and at the services themselves, with the identity the edge would
    // have set.
    let caller = customer();
    let mut identity = tonic::metadata::MetadataMap::new();
    caller.write_to(&mut identity);
    let identity = identity.into_headers();
    let identity: Vec<(&str, &str)> = identity
        .iter()
        .map(|(name, value)| (name.as_str(), value.to_str().expect("ascii identity")))
        .collect();
    the_limit_is_enforced(
        system.internal_addr,
        hold_seats,
        &identity,
        limits::INVENTORY_MAX_REQUEST_BYTES,
        &hold_request,
    )
    .await;
    the_limit_is_enforced(
        system.internal_addr,
        create_booking,
        &identity,
        limits::CHECKOUT_MAX_REQUEST_BYTES,
        &create_booking_request,
    )
    .await;
    // A tonic client sees the same through the edge.
    let mut inventory =
        boxoffice_contracts::inventory::v1::inventory_service_client::InventoryServiceClient::new(
            connect(system.edge_addr).await,
        );
    let status = inventory
        .hold_seats(with_token(
            &token,
            inventory_pb::HoldSeatsRequest::decode(
                &message_of_size(limits::INVENTORY_MAX_REQUEST_BYTES + 1, hold_request)[..],
            )
            .expect("a request"),
        ))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    world.stop().await;
}
