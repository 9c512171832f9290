//! Who may call what through the edge: the access classes, a route's
//! configuration (which cluster serves a gRPC service, each method's class)
//! and the built-in route table, deny by default: a service's
//! `default_access` is the strictest class that fits, and the methods
//! outsiders may call are listed. A method added to a proto is therefore
//! unreachable from outside until someone classifies it here (or in the TOML
//! file's `[[routes]]`).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Which cluster serves a gRPC service, and who may call each method.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Fully qualified, e.g. `boxoffice.catalog.v1.CatalogService`.
    pub service: String,
    pub cluster: String,
    /// Access of methods not listed in `methods`. Deny-by-default routes use
    /// `internal` here and list every method outsiders may call.
    pub default_access: Access,
    #[serde(default)]
    pub methods: BTreeMap<String, Access>,
}

/// Who may call a method through the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone, token or not (a token that is sent must still be valid).
    Public,
    /// A caller with a valid access token.
    User,
    /// A caller whose token carries the `admin` role.
    Admin,
    /// Service-to-service only: the edge answers `UNIMPLEMENTED`, exactly as
    /// for a method that does not exist, so outsiders learn nothing.
    Internal,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::User => "user",
            Access::Admin => "admin",
            Access::Internal => "internal",
        }
    }
}

fn route(
    service: &str,
    cluster: &str,
    default_access: Access,
    methods: &[(&str, Access)],
) -> RouteConfig {
    RouteConfig {
        service: service.to_owned(),
        cluster: cluster.to_owned(),
        default_access,
        methods: methods
            .iter()
            .map(|(name, access)| ((*name).to_owned(), *access))
            .collect(),
    }
}

/// The public surface of ARCHITECTURE.md, classified.
pub(crate) fn default_routes() -> Vec<RouteConfig> {
    use Access::{Admin, Internal, Public, User};
    vec![
        route(
            "boxoffice.catalog.v1.CatalogService",
            "catalog",
            // New catalog RPCs are writes more often than not: admin until opened.
            Admin,
            &[
                ("GetEvent", Public),
                ("ListEvents", Public),
                ("SearchEvents", Public),
                ("GetSeatMap", Public),
                ("GetVenue", Public),
                ("GetPerformer", Public),
                ("CreateVenue", Admin),
                ("CreatePerformer", Admin),
                ("CreateEvent", Admin),
                ("UpdateEvent", Admin),
                ("PublishEvent", Admin),
                ("CancelEvent", Admin),
                ("CreateReview", User),
                ("UpdateReview", User),
                ("ListReviews", Public),
                ("HideReview", Admin),
            ],
        ),
        route(
            "boxoffice.inventory.v1.InventoryService",
            "inventory",
            Internal,
            &[
                ("GetAvailability", Public),
                ("WatchAvailability", Public),
                ("HoldSeats", User),
                ("GetHold", User),
                ("ReleaseHold", User),
                ("CommitHold", Internal),
                ("ReleaseSeats", Internal),
                // Checkout, while a buyer completes 3-D Secure or a PayPal
                // approval: never a buyer's own call.
                ("ExtendHold", Internal),
                ("WatchSoldOut", Internal),
                ("SetPricingRule", Admin),
            ],
        ),
        route(
            "boxoffice.inventory.v1.WaitingRoomService",
            "inventory",
            Internal,
            &[
                ("JoinQueue", User),
                ("WatchQueue", User),
                ("ConfigureWaitingRoom", Admin),
                ("GetWaitingRoom", Admin),
                ("ListDrawEntrants", Admin),
            ],
        ),
        route(
            "boxoffice.inventory.v1.WaitlistService",
            "inventory",
            Internal,
            &[
                // Each acts on the caller's own entry only.
                ("JoinWaitlist", User),
                ("GetWaitlistEntry", User),
                ("ListMyWaitlistEntries", User),
                ("LeaveWaitlist", User),
                ("ListWaitlist", Admin),
            ],
        ),
        route(
            "boxoffice.checkout.v1.CheckoutService",
            "checkout",
            Internal,
            &[
                ("CreateBooking", User),
                ("ConfirmBooking", User),
                ("GetBooking", User),
                ("ListBookings", User),
                ("CancelBooking", User),
                // Each checks that the caller holds the ticket, sent the
                // transfer or is its recipient.
                ("ListTickets", User),
                ("CreateTicketTransfer", User),
                ("AcceptTicketTransfer", User),
                ("CancelTicketTransfer", User),
                ("ListTicketTransfers", User),
                // The caller's own pending booking only (NOT_FOUND otherwise).
                ("ApplyPromoCode", User),
                ("RemovePromoCode", User),
                ("CreatePromoCode", Admin),
                ("ListPromoCodes", Admin),
                // The caller's own points and pending booking.
                ("ApplyLoyaltyPoints", User),
                ("GetLoyalty", User),
            ],
        ),
        route(
            // Door staff and organisers.
            "boxoffice.checkout.v1.DoorService",
            "checkout",
            Admin,
            &[
                ("RedeemTicket", Admin),
                ("GetScannerKit", Admin),
                ("UploadOfflineScans", Admin),
                ("ListScanConflicts", Admin),
                ("GetCheckInCounts", Admin),
                ("UpdateDoorSettings", Admin),
            ],
        ),
        route(
            // Served beside checkout (it reads checkout's events).
            "boxoffice.stats.v1.StatsService",
            "checkout",
            Admin,
            &[
                ("GetEventStats", Admin),
                ("WatchEventStats", Admin),
                ("ListEventStats", Admin),
            ],
        ),
        route(
            // Webhooks for integrators, beside checkout (they read the
            // catalog's, inventory's and checkout's events).
            "boxoffice.webhooks.v1.WebhookService",
            "checkout",
            Admin,
            &[
                ("CreateWebhookEndpoint", Admin),
                ("GetWebhookEndpoint", Admin),
                ("ListWebhookEndpoints", Admin),
                ("UpdateWebhookEndpoint", Admin),
                ("DeleteWebhookEndpoint", Admin),
                ("RotateWebhookSecret", Admin),
                ("ListWebhookDeliveries", Admin),
                ("RedeliverWebhook", Admin),
                ("ListWebhookNotifications", Admin),
            ],
        ),
        route(
            // The audit log, beside checkout (payments write it there).
            "boxoffice.audit.v1.AuditService",
            "checkout",
            Internal,
            &[
                ("ListAuditRecords", Admin),
                // The edge's own write-ahead records.
                ("RecordAdminActions", Internal),
            ],
        ),
        route(
            // Served beside accounts (a user's preferences; see
            // ARCHITECTURE.md, boxoffice-notify).
            "boxoffice.notify.v1.NotificationService",
            "accounts",
            Internal,
            &[
                ("GetNotificationPreferences", User),
                ("UpdateNotificationPreferences", User),
                // The signed token from the mail is the credential.
                ("Unsubscribe", Public),
            ],
        ),
        route(
            // Customer questions, beside notifications (answers are mailed).
            "boxoffice.notify.v1.SupportService",
            "accounts",
            Internal,
            &[
                ("OpenQuestion", User),
                ("GetQuestion", User),
                ("ListQuestions", User),
                ("AnswerQuestion", Admin),
                ("CloseQuestion", User),
            ],
        ),
        route(
            "boxoffice.accounts.v1.AccountsService",
            "accounts",
            Internal,
            &[
                ("Register", Public),
                ("Login", Public),
                ("GetMe", User),
                // The refresh token is the credential.
                ("RefreshSession", Public),
                ("Logout", User),
                ("ListSessions", User),
                ("RevokeSession", User),
                ("WatchRevocations", Internal),
                ("UpdateProfile", User),
                // The mailed token is the credential.
                ("VerifyEmail", Public),
                ("ChangePassword", User),
                ("RequestPasswordReset", Public),
                ("ResetPassword", Public),
                ("ExportMyData", User),
                ("DeleteAccount", User),
                // Social login: before a login there is no token; the state
                // (stored server-side) and the provider's code are the
                // credentials, then the link token plus the account's
                // password or access token.
                ("ListSocialProviders", Public),
                ("StartSocialLogin", Public),
                ("FinishSocialLogin", Public),
                ("LinkSocialLogin", Public),
                ("ListSocialIdentities", User),
                ("UnlinkSocialIdentity", User),
            ],
        ),
    ]
}
