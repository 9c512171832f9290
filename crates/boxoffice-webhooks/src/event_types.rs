//! The event types integrators subscribe to, and the JSON a delivery
//! carries: `{"id", "type", "occurred_at", "producer", "aggregate": {"type",
//! "id"}, "data"}`, where `data` is the event's payload in the protobuf
//! JSON mapping (proto field names; 64-bit integers as strings; every field
//! present), made from the contracts' own descriptors, so a field added to
//! an event appears in its webhooks without code here.

use std::sync::OnceLock;

use boxoffice_events::{Envelope, Payload};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// The producers whose events integrators may receive. Accounts' events are
/// not offered: they carry personal data.
pub(crate) const STREAMS: &[&str] = &["catalog", "inventory", "checkout"];

/// Subscribes to every event type, present and future.
pub const ALL: &str = "*";

/// Every event type a filter may name, with the payload it stands for.
pub const EVENT_TYPES: &[&str] = &[
    "venue.created",
    "venue.changed",
    "performer.created",
    "performer.changed",
    "event.created",
    "event.changed",
    "event.published",
    "event.cancelled",
    "event.rated",
    "seats.sold",
    "seats.released",
    "event.sold_out",
    "event.back_on_sale",
    "event.prices_changed",
    "booking.confirmed",
    "booking.cancelled",
    "refund.issued",
    "payment.failed",
];

/// Whether a filter may name `name`.
pub fn is_known(name: &str) -> bool {
    name == ALL || EVENT_TYPES.contains(&name)
}

/// The webhook type of a payload; `None` for events not offered.
pub(crate) fn type_of(payload: &Payload) -> Option<&'static str> {
    Some(match payload {
        Payload::VenueCreated(_) => "venue.created",
        Payload::VenueChanged(_) => "venue.changed",
        Payload::PerformerCreated(_) => "performer.created",
        Payload::PerformerChanged(_) => "performer.changed",
        Payload::EventCreated(_) => "event.created",
        Payload::EventChanged(_) => "event.changed",
        Payload::EventPublished(_) => "event.published",
        Payload::EventCancelled(_) => "event.cancelled",
        Payload::EventRated(_) => "event.rated",
        Payload::SeatsSold(_) => "seats.sold",
        Payload::SeatsReleased(_) => "seats.released",
        Payload::SoldOut(_) => "event.sold_out",
        Payload::BackOnSale(_) => "event.back_on_sale",
        Payload::TierPricesChanged(_) => "event.prices_changed",
        Payload::BookingConfirmed(_) => "booking.confirmed",
        Payload::BookingCancelled(_) => "booking.cancelled",
        Payload::RefundIssued(_) => "refund.issued",
        Payload::PaymentFailed(_) => "payment.failed",
        // Personal (who is offered what), or about the webhooks
        // themselves (mailed to their admin): not for integrators.
        Payload::UserRegistered(_)
        | Payload::UserErased(_)
        | Payload::WaitlistOfferMade(_)
        | Payload::WebhookEndpointDisabled(_) => {
            return None;
        }
    })
}

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(boxoffice_contracts::FILE_DESCRIPTOR_SET)
            .unwrap_or_else(|_| unreachable!("the contracts' descriptors are made by the build"))
    })
}

/// The payload of `envelope` in the protobuf JSON mapping.
fn payload_json(envelope: &Envelope) -> Result<serde_json::Value, String> {
    let descriptor = pool()
        .get_message_by_name("boxoffice.events.v1.Envelope")
        .ok_or("the contracts have no Envelope")?;
    let message = DynamicMessage::decode(descriptor.clone(), envelope.encode_to_vec().as_slice())
        .map_err(|error| format!("re-reading the envelope: {error}"))?;
    let oneof = descriptor
        .oneofs()
        .find(|oneof| oneof.name() == "payload")
        .ok_or("the Envelope has no payload")?;
    let field = oneof
        .fields()
        .find(|field| message.has_field(field))
        .ok_or("the envelope carries no payload")?;
    let value = message.get_field(&field);
    let payload = value.as_message().ok_or("the payload is not a message")?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let mut serializer = serde_json::Serializer::new(Vec::new());
    payload
        .serialize_with_options(&mut serializer, &options)
        .map_err(|error| format!("rendering the payload: {error}"))?;
    serde_json::from_slice(&serializer.into_inner())
        .map_err(|error| format!("reading the rendered payload: {error}"))
}

fn rfc3339(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// The body of every delivery of this event.
pub(crate) fn body(envelope: &Envelope, event_type: &str) -> Result<String, String> {
    let document = serde_json::json!({
        "id": envelope.event_id,
        "type": event_type,
        "occurred_at": rfc3339(envelope.occurred_at.as_ref()),
        "producer": envelope.producer,
        "aggregate": {"type": envelope.aggregate_type, "id": envelope.aggregate_id},
        "data": payload_json(envelope)?,
    });
    serde_json::to_string(&document).map_err(|error| format!("writing the body: {error}"))
}

#[cfg(test)]
mod tests {
    use boxoffice_contracts::events::v1 as pb;

    use super::*;

    #[test]
    fn a_booking_confirmed_renders_with_its_data() {
        let envelope = Envelope {
            event_id: "0193c0de-0000-7000-8000-000000000001".into(),
            producer: "checkout".into(),
            aggregate_type: "booking".into(),
            aggregate_id: "b-1".into(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            payload: Some(Payload::BookingConfirmed(pb::BookingConfirmed {
                booking_id: "b-1".into(),
                total: Some(pb::Money {
                    currency_code: "GBP".into(),
                    amount_minor: 2500,
                }),
                seat_indexes: vec![3, 4],
                ..Default::default()
            })),
            ..Default::default()
        };
        let payload = envelope.payload.as_ref().unwrap();
        let text = body(&envelope, type_of(payload).unwrap()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], "booking.confirmed");
        assert_eq!(json["occurred_at"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(json["data"]["booking_id"], "b-1");
        assert_eq!(json["data"]["total"]["amount_minor"], "2500");
        assert_eq!(json["data"]["seat_indexes"], serde_json::json!([3, 4]));
        // Every field is present, set or not.
        assert_eq!(json["data"]["user_id"], "");
    }

    #[test]
    fn every_offered_type_is_known_and_unknown_ones_are_not() {
        for name in EVENT_TYPES {
            assert!(is_known(name));
        }
        assert!(is_known("*"));
        assert!(!is_known("booking.exploded"));
        assert!(!is_known("user.registered"));
    }
}
