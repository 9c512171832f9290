//! `ExportMyData`: the caller's profile, sessions and linked social
//! identities from accounts, and
//! their bookings with tickets from checkout (read as the caller, through
//! checkout's own `ListBookings`, so the export shows exactly what the
//! caller may see and nothing of anyone else), as one JSON document.

use boxoffice_contracts::checkout::v1 as checkout;
use boxoffice_runtime::Caller;
use boxoffice_runtime::transport::Transport;
use serde_json::{Value, json};

use crate::domain::User;
use crate::error::AccountsError;
use crate::store::{IdentityRecord, SessionRecord};

/// Pages read at most (100 bookings each).
const MAX_PAGES: usize = 1000;

fn time(seconds: &Option<prost_types::Timestamp>) -> Value {
    match seconds {
        Some(timestamp) => chrono::DateTime::from_timestamp(timestamp.seconds, 0)
            .map_or(Value::Null, |time| json!(time.to_rfc3339())),
        None => Value::Null,
    }
}

fn money(money: &Option<checkout::Money>) -> Value {
    match money {
        Some(money) => {
            json!({"currency_code": money.currency_code, "amount_minor": money.amount_minor})
        }
        None => Value::Null,
    }
}

fn booking(booking: &checkout::Booking) -> Value {
    json!({
        "name": booking.name,
        "event_id": booking.event_id,
        "state": checkout::BookingState::try_from(booking.state)
            .map_or("UNKNOWN", |state| state.as_str_name()),
        "tickets": booking.tickets.iter().map(|ticket| json!({
            "seat_index": ticket.seat_index,
            "section_id": ticket.section_id,
            "price_tier_id": ticket.price_tier_id,
            "price": money(&ticket.price),
            "code": ticket.code,
        })).collect::<Vec<_>>(),
        "subtotal": money(&booking.subtotal),
        "fees": money(&booking.fees),
        "total": money(&booking.total),
        "refunded": money(&booking.refunded),
        "create_time": time(&booking.create_time),
        "confirm_time": time(&booking.confirm_time),
        "cancel_time": time(&booking.cancel_time),
    })
}

/// Every booking of `user`, read from checkout as that user.
pub(crate) async fn bookings_of(
    checkout: Option<&Transport>,
    user: &User,
) -> Result<Vec<Value>, AccountsError> {
    let Some(transport) = checkout else {
        return Err(AccountsError::DependencyUnavailable(anyhow::anyhow!(
            "checkout is not connected"
        )));
    };
    let mut client =
        checkout::checkout_service_client::CheckoutServiceClient::new(transport.clone());
    let roles = user.role_names();
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    let mut bookings = Vec::new();
    let mut page_token = String::new();
    for _ in 0..MAX_PAGES {
        let mut request = tonic::Request::new(checkout::ListBookingsRequest {
            page_size: 100,
            page_token: page_token.clone(),
        });
        Caller::user(user.id, &roles).write_to(request.metadata_mut());
        let page = client
            .list_bookings(request)
            .await
            .map_err(|status| {
                AccountsError::DependencyUnavailable(anyhow::anyhow!(
                    "listing bookings: {:?}",
                    status.code()
                ))
            })?
            .into_inner();
        bookings.extend(page.bookings.iter().map(booking));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    Ok(bookings)
}

pub(crate) fn document(
    user: &User,
    sessions: &[SessionRecord],
    identities: &[IdentityRecord],
    bookings: Vec<Value>,
) -> Value {
    json!({
        "format": "boxoffice.export.v1",
        "exported_at": chrono::Utc::now().to_rfc3339(),
        "profile": {
            "id": user.id,
            "email": user.email,
            "pending_email": user.pending_email,
            "display_name": user.display_name,
            "email_verified": user.email_verified,
            "roles": user.role_names(),
            "create_time": user.created_at.to_rfc3339(),
        },
        "sessions": sessions.iter().map(|session| json!({
            "id": session.id,
            "create_time": session.created_at.to_rfc3339(),
            "last_use_time": session.last_used_at.to_rfc3339(),
            "expire_time": session.expires_at.to_rfc3339(),
            "revoke_time": session.revoked_at.map(|time| time.to_rfc3339()),
        })).collect::<Vec<_>>(),
        "social_identities": identities.iter().map(|identity| json!({
            "id": identity.id,
            "issuer": identity.issuer,
            "subject": identity.subject,
            "email": identity.email,
            "create_time": identity.created_at.to_rfc3339(),
            "last_login_time": identity.last_login_at.to_rfc3339(),
        })).collect::<Vec<_>>(),
        "bookings": bookings,
        // Not held by boxoffice yet; listed so a reader knows they were asked for.
        "reviews": [],
        "loyalty": null,
    })
}
