//! The size limits of boxoffice's API, in one place: what each service
//! decodes, what the edge lets through to it (the same numbers, read from
//! here), and how large a request's headers may be. README's table of
//! limits is checked against these constants by a test.

/// Largest request header list a server takes, counted as HTTP/2 counts it
/// (each field's name and value plus 32 bytes). Larger requests answer
/// `RESOURCE_EXHAUSTED` (`HEADERS_TOO_LARGE`), each on its own; the
/// connection and its other calls carry on.
pub const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// What the HTTP/2 layer of the edge and of every service accepts as one
/// request's header list (`SETTINGS_MAX_HEADER_LIST_SIZE`). Far above
/// [`MAX_REQUEST_HEADER_BYTES`] on purpose: h2 closes the whole connection
/// (GOAWAY) for a header block it will not read (over four times this, or
/// split into more CONTINUATION frames than this size needs), and refuses
/// only the stream (431) for one between this and four times this. So a
/// request with, say, a 100 KB `authorization` header reaches the check
/// that refuses it alone.
pub const TRANSPORT_MAX_HEADER_LIST_BYTES: u32 = 1024 * 1024;

/// Largest request message of `boxoffice.catalog.v1.CatalogService`: a
/// stadium venue with every seat spelled out fits comfortably.
pub const CATALOG_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest request message of `boxoffice.inventory.v1.InventoryService` and
/// `WaitingRoomService`: a hold names at most a hundred seats, so anything
/// near this is not a real client.
pub const INVENTORY_MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest request message of `boxoffice.checkout.v1.CheckoutService`: ids,
/// a payment method and a key.
pub const CHECKOUT_MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest request message of `boxoffice.checkout.v1.DoorService`: an
/// offline scanner's upload of at most 500 scans (a code is at most 512
/// characters).
pub const DOOR_MAX_REQUEST_BYTES: usize = 512 * 1024;
/// Largest request message of `boxoffice.accounts.v1.AccountsService`: an
/// email, a password and a name.
pub const ACCOUNTS_MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest request of any other service (health, reflection, testing).
/// Largest stats request (ids, a date range, a page token).
pub const STATS_MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest request of `boxoffice.notify.v1.NotificationService`: a
/// preference switch or an unsubscribe token.
pub const NOTIFY_MAX_REQUEST_BYTES: usize = 4 * 1024;
/// Largest request of `boxoffice.notify.v1.SupportService`: a question or
/// an answer of at most 5,000 characters (up to 4 bytes each) and a subject.
pub const SUPPORT_MAX_REQUEST_BYTES: usize = 32 * 1024;
/// Largest request of `boxoffice.webhooks.v1.WebhookService`: a URL of at
/// most 2,048 characters, a description of at most 500 and a few dozen
/// event types.
pub const WEBHOOKS_MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Largest request of `boxoffice.audit.v1.AuditService`: filters, or the
/// edge's batch of at most 256 admin actions and outcomes.
pub const AUDIT_MAX_REQUEST_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest response any boxoffice service encodes.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// The largest request message `service` (a full gRPC service name, such
/// as `boxoffice.inventory.v1.InventoryService`) decodes.
pub fn max_request_bytes(service: &str) -> usize {
    match service {
        "boxoffice.catalog.v1.CatalogService" => CATALOG_MAX_REQUEST_BYTES,
        "boxoffice.inventory.v1.InventoryService"
        | "boxoffice.inventory.v1.WaitingRoomService"
        | "boxoffice.inventory.v1.WaitlistService" => INVENTORY_MAX_REQUEST_BYTES,
        "boxoffice.checkout.v1.CheckoutService" => CHECKOUT_MAX_REQUEST_BYTES,
        "boxoffice.checkout.v1.DoorService" => DOOR_MAX_REQUEST_BYTES,
        "boxoffice.accounts.v1.AccountsService" => ACCOUNTS_MAX_REQUEST_BYTES,
        "boxoffice.stats.v1.StatsService" => STATS_MAX_REQUEST_BYTES,
        "boxoffice.notify.v1.NotificationService" => NOTIFY_MAX_REQUEST_BYTES,
        "boxoffice.notify.v1.SupportService" => SUPPORT_MAX_REQUEST_BYTES,
        "boxoffice.webhooks.v1.WebhookService" => WEBHOOKS_MAX_REQUEST_BYTES,
        "boxoffice.audit.v1.AuditService" => AUDIT_MAX_REQUEST_BYTES,
        _ => DEFAULT_MAX_REQUEST_BYTES,
    }
}

/// The size of a request's header list as HTTP/2 counts it (RFC 9113
/// §6.5.2: name + value + 32 per field), pseudo-headers included.
pub fn header_list_bytes(uri: &http::Uri, headers: &http::HeaderMap) -> usize {
    // :method, :scheme, :authority and :path, about as the client sent them.
    let pseudo = 4 * 32
        + ":method".len()
        + 4
        + ":scheme".len()
        + 5
        + ":authority".len()
        + uri
            .authority()
            .map_or(0, |authority| authority.as_str().len())
        + ":path".len()
        + uri.path_and_query().map_or(0, |path| path.as_str().len());
    headers.iter().fold(pseudo, |total, (name, value)| {
        total + name.as_str().len() + value.len() + 32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_boxoffice_service_has_its_own_limit() {
        assert_eq!(
            max_request_bytes("boxoffice.inventory.v1.InventoryService"),
            64 * 1024
        );
        assert_eq!(
            max_request_bytes("boxoffice.checkout.v1.CheckoutService"),
            16 * 1024
        );
        assert_eq!(max_request_bytes("grpc.health.v1.Health"), 4 * 1024 * 1024);
    }
}
