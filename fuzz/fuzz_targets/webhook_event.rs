//! The payment webhook's JSON body, as the receiver reads it once its
//! signature is checked: the event, its payment status and the payment id
//! it names. Never a panic; whatever parses survives a round trip.
#![no_main]

use boxoffice_checkout::payment::ProviderStatus;
use boxoffice_checkout::payment::webhook::WebhookEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<WebhookEvent>(data) else {
        return;
    };
    // What `webhook::Receiver::handle` does with a parsed event.
    if let Some(status) = ProviderStatus::parse(&event.data.status) {
        assert_eq!(ProviderStatus::parse(status.as_str()), Some(status));
        let _ = status.rank();
    }
    let _ = uuid::Uuid::parse_str(&event.data.idempotency_key);

    let again: WebhookEvent = serde_json::from_slice(&serde_json::to_vec(&event).unwrap()).unwrap();
    assert_eq!(again, event);
});
