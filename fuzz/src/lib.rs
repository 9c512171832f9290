//! What the fuzz targets share: the table of every request type the
//! services accept, gRPC framing, and the server's decode path for one
//! request message (tonic's stream decoder with the contracts' codec, then
//! `boxoffice_runtime::wire`'s mapping of what it refuses).

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use boxoffice_contracts::codec::ProstCodec;
use boxoffice_contracts::{accounts, catalog, checkout, inventory};
use boxoffice_runtime::limits;
use bytes::{BufMut as _, Bytes, BytesMut};
use tonic::Status;
use tonic::codec::{Codec as _, Streaming};

/// Which service a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Catalog,
    Inventory,
    WaitingRoom,
    Checkout,
    Accounts,
}

/// One RPC: its path, the largest request its server decodes, and its
/// request type's decoders.
#[derive(Clone, Copy)]
pub struct Rpc {
    pub service: Service,
    pub path: &'static str,
    pub max_request_bytes: usize,
    pub server_streaming: bool,
    /// The server's decode of a request body (see [`server_decode`]),
    /// message dropped.
    pub server_decode: fn(Bytes, usize) -> Result<(), Status>,
    /// prost's decode of one message, independent of tonic.
    pub decodes: fn(&[u8]) -> bool,
}

fn decodes<M: prost::Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

fn server_decode_erased<M: prost::Message + Default + Send + 'static>(
    body: Bytes,
    limit: usize,
) -> Result<(), Status> {
    server_decode::<M>(body, limit).map(drop)
}

macro_rules! rpcs {
    ($( $service:ident $limit:expr, $streaming:expr, $path:literal => $message:ty; )*) => {
        /// Every RPC of the four services, in proto order.
        pub const RPCS: &[Rpc] = &[
            $(Rpc {
                service: Service::$service,
                path: $path,
                max_request_bytes: $limit,
                server_streaming: $streaming,
                server_decode: server_decode_erased::<$message>,
                decodes: decodes::<$message>,
            },)*
        ];
    };
}

const CATALOG: usize = limits::CATALOG_MAX_REQUEST_BYTES;
const INVENTORY: usize = limits::INVENTORY_MAX_REQUEST_BYTES;
const CHECKOUT: usize = limits::CHECKOUT_MAX_REQUEST_BYTES;
const ACCOUNTS: usize = limits::ACCOUNTS_MAX_REQUEST_BYTES;

rpcs! {
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/GetEvent" => catalog::v1::GetEventRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/ListEvents" => catalog::v1::ListEventsRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/SearchEvents" => catalog::v1::SearchEventsRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/GetSeatMap" => catalog::v1::GetSeatMapRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/GetVenue" => catalog::v1::GetVenueRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/GetPerformer" => catalog::v1::GetPerformerRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/CreateVenue" => catalog::v1::CreateVenueRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/CreatePerformer" => catalog::v1::CreatePerformerRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/CreateEvent" => catalog::v1::CreateEventRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/UpdateEvent" => catalog::v1::UpdateEventRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/PublishEvent" => catalog::v1::PublishEventRequest;
    Catalog CATALOG, false, "/boxoffice.catalog.v1.CatalogService/CancelEvent" => catalog::v1::CancelEventRequest;
    Inventory INVENTORY, false, "/boxoffice.inventory.v1.InventoryService/GetAvailability" => inventory::v1::GetAvailabilityRequest;
    Inventory INVENTORY, true, "/boxoffice.inventory.v1.InventoryService/WatchAvailability" => inventory::v1::WatchAvailabilityRequest;
    Inventory INVENTORY, false, "/boxoffice.inventory.v1.InventoryService/HoldSeats" => inventory::v1::HoldSeatsRequest;
    Inventory INVENTORY, false, "/boxoffice.inventory.v1.InventoryService/GetHold" => inventory::v1::GetHoldRequest;
    Inventory INVENTORY, false, "/boxoffice.inventory.v1.InventoryService/ReleaseHold" => inventory::v1::ReleaseHoldRequest;
    Inventory INVENTORY, false, "/boxoffice.inventory.v1.InventoryService/CommitHold" => inventory::v1::CommitHoldRequest;
    Inventory INVENTORY, false, "/boxoffice.inventory.v1.InventoryService/ReleaseSeats" => inventory::v1::ReleaseSeatsRequest;
    WaitingRoom INVENTORY, false, "/boxoffice.inventory.v1.WaitingRoomService/JoinQueue" => inventory::v1::JoinQueueRequest;
    WaitingRoom INVENTORY, true, "/boxoffice.inventory.v1.WaitingRoomService/WatchQueue" => inventory::v1::WatchQueueRequest;
    WaitingRoom INVENTORY, false, "/boxoffice.inventory.v1.WaitingRoomService/ConfigureWaitingRoom" => inventory::v1::ConfigureWaitingRoomRequest;
    Checkout CHECKOUT, false, "/boxoffice.checkout.v1.CheckoutService/CreateBooking" => checkout::v1::CreateBookingRequest;
    Checkout CHECKOUT, false, "/boxoffice.checkout.v1.CheckoutService/ConfirmBooking" => checkout::v1::ConfirmBookingRequest;
    Checkout CHECKOUT, false, "/boxoffice.checkout.v1.CheckoutService/GetBooking" => checkout::v1::GetBookingRequest;
    Checkout CHECKOUT, false, "/boxoffice.checkout.v1.CheckoutService/ListBookings" => checkout::v1::ListBookingsRequest;
    Checkout CHECKOUT, false, "/boxoffice.checkout.v1.CheckoutService/CancelBooking" => checkout::v1::CancelBookingRequest;
    Accounts ACCOUNTS, false, "/boxoffice.accounts.v1.AccountsService/Register" => accounts::v1::RegisterRequest;
    Accounts ACCOUNTS, false, "/boxoffice.accounts.v1.AccountsService/Login" => accounts::v1::LoginRequest;
    Accounts ACCOUNTS, false, "/boxoffice.accounts.v1.AccountsService/GetMe" => accounts::v1::GetMeRequest;
}

/// The RPC a selector byte names.
pub fn rpc(selector: u8) -> &'static Rpc {
    &RPCS[selector as usize % RPCS.len()]
}

/// The RPC at `path`.
pub fn rpc_at(path: &str) -> Option<(usize, &'static Rpc)> {
    RPCS.iter().enumerate().find(|(_, rpc)| rpc.path == path)
}

/// One gRPC length-prefixed message.
pub fn frame(flag: u8, message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.put_u8(flag);
    framed.put_u32(message.len() as u32);
    framed.put_slice(message);
    framed.freeze()
}

/// Whether `body` is exactly one uncompressed frame: its message, if so.
pub fn single_frame(body: &[u8]) -> Option<&[u8]> {
    let (header, message) = body.split_at_checked(5)?;
    let length = u32::from_be_bytes(header[1..5].try_into().ok()?) as usize;
    (header[0] == 0 && message.len() == length).then_some(message)
}

/// What a tonic server does with a unary request's body (tonic's
/// `Grpc::map_request_unary`): one message through the stream decoder with
/// the contracts' codec, then the rest of the body drained for trailers.
pub fn server_decode<M: prost::Message + Default + Send + 'static>(
    body: Bytes,
    limit: usize,
) -> Result<M, Status> {
    let decoder = ProstCodec::<M, M>::default().decoder();
    let mut stream =
        Streaming::new_request(decoder, http_body_util::Full::new(body), None, Some(limit));
    now(async move {
        let message = stream
            .message()
            .await?
            .ok_or_else(|| Status::internal("Missing request message."))?;
        stream.trailers().await?;
        Ok(message)
    })
}

/// Runs a future that never waits (everything it reads is in memory).
pub fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory decode waited"),
    }
}
