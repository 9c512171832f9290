//! Every request type of every service, as bytes on the wire, through the
//! services' own gRPC handlers behind the server stack a process runs them
//! in (`GrpcServer::in_process`: the wire guard, tonic's routes and
//! decoding with the contracts' codec, then each handler's conversion of
//! the decoded request into domain types). The stores point at a
//! PostgreSQL that is not there (127.0.0.1:1), so a request that converts
//! cleanly ends in the store's `UNAVAILABLE`, never touching data; search
//! runs on an empty in-memory index; checkout's upstreams answer
//! `UNAVAILABLE`.
//!
//! Accounts' Register and Login are converted here with the accounts
//! crate's own parsers rather than through its handler: past validation
//! the handler hashes the password with argon2 (tens of milliseconds),
//! which would starve the fuzzer. GetMe goes through the handler.
//!
//! Inventory needs a Redis to be constructed (it loads its Lua scripts
//! there and nothing else: every request reaches PostgreSQL, which is not
//! there, before Redis): `BOXOFFICE_FUZZ_REDIS_URL`, by default the
//! machine's `redis://127.0.0.1:6379`. Without one, inventory requests are
//! skipped (said once on stderr).
//!
//! Checked: no panic; a body that does not decode answers `INVALID_ARGUMENT`
//! (`MALFORMED_MESSAGE`) or `RESOURCE_EXHAUSTED` (`MESSAGE_TOO_LARGE`);
//! every `INVALID_ARGUMENT` carries an `ErrorInfo` reason; never `UNKNOWN`,
//! never `INTERNAL`.
//!
//! Input: a selector byte (the RPC), a byte whose low bits pick the caller
//! (anonymous, customer, admin, service) and whose top bit frames the rest
//! as one message (otherwise the rest is the raw HTTP body), the rest.
#![no_main]

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use boxoffice_accounts::domain::{DisplayName, Email, NewPassword};
use boxoffice_accounts::error::AccountsError;
use boxoffice_contracts::accounts::v1 as accounts_pb;
use boxoffice_fuzz::{Rpc, Service, frame, rpc, server_decode};
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::status::{reason, reason_of};
use boxoffice_runtime::transport::{Transport, in_process};
use boxoffice_runtime::wire::request_error;
use boxoffice_runtime::{Caller, Shutdown};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use libfuzzer_sys::fuzz_target;
use tonic::{Code, Status};
use tower::ServiceExt as _;
use uuid::Uuid;

struct World {
    runtime: tokio::runtime::Runtime,
    services: Transport,
    inventory: bool,
}

fn unavailable_upstream() -> Transport {
    in_process(tower::service_fn(
        |_request: http::Request<tonic::body::Body>| async {
            Ok::<_, Infallible>(Status::unavailable("fuzz: no upstream").into_http())
        },
    ))
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (services, inventory) = runtime.block_on(async {
            let pool = boxoffice_runtime::postgres::pool(
                &Secret::new("postgres://fuzz@127.0.0.1:1/fuzz"),
                4,
            )
            .unwrap();
            let mut server = GrpcServer::bind(([127, 0, 0, 1], 0).into()).await.unwrap();

            use boxoffice_catalog::search::EventSearch;
            use boxoffice_contracts::catalog::v1::catalog_service_server::CatalogServiceServer;
            let catalog = Arc::new(boxoffice_catalog::service::Catalog::new(
                boxoffice_catalog::store::CatalogStore::new(pool.clone()),
                Duration::from_secs(60),
            ));
            let index = boxoffice_search::embedded::EmbeddedIndex::in_memory().unwrap();
            let search = Arc::new(EventSearch::new(Arc::new(index)));
            server.add_service(
                CatalogServiceServer::new(boxoffice_catalog::grpc::CatalogGrpc::new(
                    catalog, search,
                ))
                .max_decoding_message_size(boxoffice_runtime::limits::CATALOG_MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
            );

            use boxoffice_contracts::inventory::v1::inventory_service_server::InventoryServiceServer;
            use boxoffice_contracts::inventory::v1::waiting_room_service_server::WaitingRoomServiceServer;
            let redis = std::env::var("BOXOFFICE_FUZZ_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
            let config = boxoffice_inventory::InventoryConfig {
                key_prefix: format!("fuzz-{}:", std::process::id()),
                redis_pool_size: 1,
                ..Default::default()
            };
            let holds = tokio::time::timeout(
                Duration::from_secs(10),
                boxoffice_inventory::store::HoldStore::connect(&redis, &config),
            )
            .await;
            let inventory = match holds {
                Ok(Ok(holds)) => {
                    let rooms = boxoffice_inventory::store::WaitingRoomStore::new(
                        holds.pool().clone(),
                        &config.key_prefix,
                    );
                    let tickets = boxoffice_inventory::store::TicketStore::new(pool.clone());
                    let inventory = Arc::new(boxoffice_inventory::service::Inventory::new(
                        tickets.clone(),
                        holds,
                        config,
                    ));
                    let room = Arc::new(boxoffice_inventory::WaitingRoom::new(
                        inventory.clone(),
                        tickets,
                        rooms,
                        inventory.config(),
                    ));
                    let watch_hub = Arc::new(boxoffice_inventory::WatchHub::new(
                        inventory.clone(),
                        inventory.config().watch_poll,
                    ));
                    let shutdown = Shutdown::new();
                    server.add_service(
                        InventoryServiceServer::new(boxoffice_inventory::grpc::InventoryGrpc::new(
                            inventory.clone(),
                            watch_hub,
                            shutdown.clone(),
                        ))
                        .max_decoding_message_size(boxoffice_inventory::server::MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
                    );
                    server.add_service(
                        WaitingRoomServiceServer::new(
                            boxoffice_inventory::waiting_room_grpc::WaitingRoomGrpc::new(
                                room, shutdown,
                            ),
                        )
                        .max_decoding_message_size(boxoffice_inventory::server::MAX_REQUEST_BYTES)
                        .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
                    );
                    true
                }
                _ => {
                    eprintln!(
                        "fuzz: no Redis at {redis} (BOXOFFICE_FUZZ_REDIS_URL): inventory requests are skipped"
                    );
                    false
                }
            };

            use boxoffice_checkout::payment::{PaymentProvider, SimulatedProvider};
            use boxoffice_contracts::checkout::v1::checkout_service_server::CheckoutServiceServer;
            let config = boxoffice_checkout::CheckoutConfig::default();
            let provider: Arc<dyn PaymentProvider> = SimulatedProvider::new(
                config.provider.clone(),
                config.webhook_secret.expose().as_bytes(),
            );
            let checkout = Arc::new(boxoffice_checkout::service::Checkout::new(
                boxoffice_checkout::store::CheckoutStore::new(pool.clone()),
                provider,
                boxoffice_checkout::upstream::Upstream::new(
                    unavailable_upstream(),
                    unavailable_upstream(),
                ),
                config,
            ));
            server.add_service(
                CheckoutServiceServer::new(boxoffice_checkout::grpc::CheckoutGrpc::new(
                    checkout,
                    boxoffice_checkout::domain::ticket_code::TicketSigner::new(b"fuzz-ticket-key"),
                ))
                .max_decoding_message_size(boxoffice_checkout::server::MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
            );

            use boxoffice_contracts::accounts::v1::accounts_service_server::AccountsServiceServer;
            let tokens = boxoffice_accounts::TokenConfig::from_vars(
                &Default::default(),
                boxoffice_accounts::config::MissingSecret::GenerateEphemeral,
            )
            .unwrap();
            let store = boxoffice_accounts::store::AccountsStore::new(pool);
            let revocations = boxoffice_accounts::RevocationHub::new(store.clone(), Shutdown::new());
            let accounts = Arc::new(boxoffice_accounts::service::Accounts::new(
                store,
                boxoffice_accounts::token::TokenIssuer::new(&tokens),
                boxoffice_accounts::AccountsConfig::development(),
            ));
            server.add_service(
                AccountsServiceServer::new(boxoffice_accounts::grpc::AccountsGrpc::new(
                    accounts,
                    revocations,
                ))
                    .max_decoding_message_size(
                        boxoffice_runtime::limits::ACCOUNTS_MAX_REQUEST_BYTES,
                    )
                    .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
            );
            (server.in_process(), inventory)
        });
        World {
            runtime,
            services,
            inventory,
        }
    })
}

fn caller(choice: u8) -> Caller {
    let user = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_f022);
    match choice & 0x03 {
        0 => Caller::anonymous(),
        1 => Caller::user(user, &["customer"]),
        2 => Caller::user(user, &["customer", Caller::ADMIN]),
        _ => Caller::user(user, &[Caller::SERVICE]),
    }
}

/// The status a call ended with: in the headers (trailers-only, every
/// error) or the trailers after the body.
async fn call(services: &Transport, rpc: &Rpc, who: &Caller, body: Bytes) -> Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    who.write_to(&mut metadata);
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://fuzz{}", rpc.path))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(body)))
        .unwrap();
    request.headers_mut().extend(metadata.into_headers());
    let response = services
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|error| panic!("{}: the call failed: {error}", rpc.path));
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|error| panic!("{}: the body broke: {error}", rpc.path));
    let trailers = collected
        .trailers()
        .unwrap_or_else(|| panic!("{}: an answer without a status", rpc.path));
    Status::from_header_map(trailers)
        .unwrap_or_else(|| panic!("{}: trailers without a status", rpc.path))
}

/// Register and Login, converted as their handler and service do before
/// the first password hash (see the module's documentation).
fn accounts_conversion(rpc: &Rpc, body: Bytes) -> Status {
    let status = |result: Result<(), AccountsError>| match result {
        Ok(()) => Status::ok(""),
        Err(error) => Status::from(error),
    };
    if rpc.path.ends_with("/Register") {
        let request =
            match server_decode::<accounts_pb::RegisterRequest>(body, rpc.max_request_bytes) {
                Ok(request) => request,
                Err(error) => return request_error(&error).unwrap_or(error),
            };
        status((|| {
            Email::parse("email", &request.email)?;
            NewPassword::parse("password", &request.password)?;
            DisplayName::parse("display_name", &request.display_name)?;
            Ok(())
        })())
    } else {
        let request = match server_decode::<accounts_pb::LoginRequest>(body, rpc.max_request_bytes)
        {
            Ok(request) => request,
            Err(error) => return request_error(&error).unwrap_or(error),
        };
        // A malformed email is answered like any unknown one, so only
        // the parse itself is exercised here.
        let _ = Email::parse("email", &request.email);
        Status::ok("")
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, choice, rest @ ..] = data else {
        return;
    };
    let world = world();
    let rpc = rpc(*selector);
    if !world.inventory && matches!(rpc.service, Service::Inventory | Service::WaitingRoom) {
        return;
    }
    let body = if choice & 0x80 != 0 {
        frame(0, rest)
    } else {
        Bytes::copy_from_slice(rest)
    };
    let decode = (rpc.server_decode)(body.clone(), rpc.max_request_bytes);
    let status = if rpc.service == Service::Accounts && !rpc.path.ends_with("/GetMe") {
        accounts_conversion(rpc, body)
    } else {
        world
            .runtime
            .block_on(call(&world.services, rpc, &caller(*choice), body))
    };

    let code = status.code();
    assert!(
        !matches!(code, Code::Unknown | Code::Internal),
        "{}: answered {status:?}",
        rpc.path
    );
    if decode.is_err() {
        let expected = match code {
            Code::InvalidArgument => reason::MALFORMED_MESSAGE,
            Code::ResourceExhausted => reason::MESSAGE_TOO_LARGE,
            _ => panic!(
                "{}: a body that does not decode ({decode:?}) answered {status:?}",
                rpc.path
            ),
        };
        assert_eq!(
            reason_of(&status).as_deref(),
            Some(expected),
            "{}: {status:?}",
            rpc.path
        );
    }
    if code == Code::InvalidArgument {
        assert!(
            reason_of(&status).is_some(),
            "{}: INVALID_ARGUMENT without a reason: {status:?}",
            rpc.path
        );
    }
});
