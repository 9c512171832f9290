//! Building envelopes for publication and sorting received bytes into what
//! a consumer can hand to its handler, what it skips and what it
//! dead-letters, as the compatibility rule in `envelope.proto` says.

use boxoffice_contracts::events::v1 as pb;
use prost::Message as _;

pub use pb::Envelope;
pub use pb::envelope::Payload;

/// An event to publish: what it is about and its payload. The outbox fills
/// in the id, producer, sequence and time.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub payload: Payload,
    /// W3C `traceparent` of the request that made the change, if any.
    pub traceparent: String,
}

impl NewEvent {
    pub fn new(
        aggregate_type: impl Into<String>,
        aggregate_id: impl ToString,
        payload: Payload,
    ) -> Self {
        Self {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.to_string(),
            payload,
            traceparent: String::new(),
        }
    }

    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = traceparent.into();
        self
    }
}

/// The payload's full protobuf message name, as written into
/// `Envelope.event_type`.
pub(crate) fn event_type(payload: &Payload) -> &'static str {
    match payload {
        Payload::VenueCreated(_) => "boxoffice.events.v1.VenueCreated",
        Payload::VenueChanged(_) => "boxoffice.events.v1.VenueChanged",
        Payload::PerformerCreated(_) => "boxoffice.events.v1.PerformerCreated",
        Payload::PerformerChanged(_) => "boxoffice.events.v1.PerformerChanged",
        Payload::EventCreated(_) => "boxoffice.events.v1.EventCreated",
        Payload::EventChanged(_) => "boxoffice.events.v1.EventChanged",
        Payload::EventPublished(_) => "boxoffice.events.v1.EventPublished",
        Payload::EventCancelled(_) => "boxoffice.events.v1.EventCancelled",
        Payload::EventRated(_) => "boxoffice.events.v1.EventRated",
        Payload::SeatsSold(_) => "boxoffice.events.v1.SeatsSold",
        Payload::SeatsReleased(_) => "boxoffice.events.v1.SeatsReleased",
        Payload::SoldOut(_) => "boxoffice.events.v1.SoldOut",
        Payload::BackOnSale(_) => "boxoffice.events.v1.BackOnSale",
        Payload::TierPricesChanged(_) => "boxoffice.events.v1.TierPricesChanged",
        Payload::WaitlistOfferMade(_) => "boxoffice.events.v1.WaitlistOfferMade",
        Payload::BookingConfirmed(_) => "boxoffice.events.v1.BookingConfirmed",
        Payload::BookingCancelled(_) => "boxoffice.events.v1.BookingCancelled",
        Payload::RefundIssued(_) => "boxoffice.events.v1.RefundIssued",
        Payload::PaymentFailed(_) => "boxoffice.events.v1.PaymentFailed",
        Payload::UserRegistered(_) => "boxoffice.events.v1.UserRegistered",
        Payload::UserErased(_) => "boxoffice.events.v1.UserErased",
        Payload::WebhookEndpointDisabled(_) => "boxoffice.events.v1.WebhookEndpointDisabled",
    }
}

/// The newest contract version this build understands.
pub(crate) const KNOWN_CONTRACT_VERSION: i32 = pb::ContractVersion::V1 as i32;

/// What a consumer does with the bytes it received.
#[derive(Debug)]
pub(crate) enum Classified {
    /// Readable, of a known type: for the handler.
    Known(Envelope),
    /// Readable envelope, payload type this build does not know (a newer
    /// producer added it): skipped and counted.
    UnknownType(Envelope),
    /// Written under a newer, incompatible contract version:
    /// dead-lettered so it can be replayed after an upgrade.
    NewerContract(Envelope),
    /// Not an envelope at all: dead-lettered with the reason.
    Unreadable(String),
}

pub(crate) fn classify(bytes: &[u8]) -> Classified {
    match Envelope::decode(bytes) {
        Err(error) => Classified::Unreadable(format!("not an envelope: {error}")),
        Ok(envelope) if envelope.contract_version > KNOWN_CONTRACT_VERSION => {
            Classified::NewerContract(envelope)
        }
        Ok(envelope) if envelope.payload.is_none() => Classified::UnknownType(envelope),
        Ok(envelope) => Classified::Known(envelope),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(payload: Option<Payload>, version: i32) -> Vec<u8> {
        Envelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            producer: "test".into(),
            contract_version: version,
            payload,
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn sorts_what_a_consumer_receives() {
        let known = envelope(
            Some(Payload::SoldOut(pb::SoldOut {
                event_id: "e".into(),
            })),
            KNOWN_CONTRACT_VERSION,
        );
        assert!(matches!(classify(&known), Classified::Known(_)));
        assert!(matches!(
            classify(&envelope(None, KNOWN_CONTRACT_VERSION)),
            Classified::UnknownType(_)
        ));
        assert!(matches!(
            classify(&envelope(None, KNOWN_CONTRACT_VERSION + 1)),
            Classified::NewerContract(_)
        ));
        assert!(matches!(
            classify(b"\xff\xff\xff not protobuf"),
            Classified::Unreadable(_)
        ));
    }

    #[test]
    fn an_unknown_payload_field_decodes_as_no_payload() {
        // A newer producer's payload type: field 999 of the envelope, a
        // length-delimited message this build has never heard of.
        let mut bytes = envelope(None, KNOWN_CONTRACT_VERSION);
        bytes.extend_from_slice(&[0xba, 0x3e, 0x02, 0x08, 0x01]);
        match classify(&bytes) {
            Classified::UnknownType(envelope) => assert_eq!(envelope.producer, "test"),
            other => panic!("expected an unknown type, got {other:?}"),
        }
    }
}
