//! W3C trace context across a hop, with the OTLP exporter installed (its
//! own test binary: the exporter is process-wide): a call served under a
//! caller's `traceparent` continues that trace, and a call it makes in turn
//! sends the same trace id with its own span as the parent.

use std::collections::BTreeMap;

use boxoffice_runtime::Config;
use boxoffice_runtime::telemetry::{self, TRACEPARENT, Telemetry};
use http::{HeaderMap, HeaderValue};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn parts(header: &HeaderValue) -> Vec<String> {
    header
        .to_str()
        .expect("an ASCII traceparent")
        .split('-')
        .map(str::to_owned)
        .collect()
}

// Multi-threaded: flushing at shutdown blocks this thread while the
// exporter's connection is driven by the runtime's others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_call_continues_the_callers_trace_and_passes_it_on() {
    // Nothing listens there: spans are batched and dropped, which is all
    // this test needs of the exporter.
    let config = Config::from_vars(BTreeMap::from([(
        "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
        "http://127.0.0.1:9".to_owned(),
    )]))
    .expect("a configuration");
    let telemetry = Telemetry::init(&config).expect("telemetry");
    assert!(telemetry::exporting());

    let mut incoming = HeaderMap::new();
    incoming.insert(
        TRACEPARENT,
        HeaderValue::from_str(&format!("00-{TRACE_ID}-{CALLER_SPAN}-01")).expect("a header"),
    );
    let server = telemetry::server_span(
        "/boxoffice.checkout.v1.CheckoutService/ConfirmBooking",
        &incoming,
    );
    assert!(!server.is_none());
    let client = server
        .in_scope(|| telemetry::client_span("/boxoffice.inventory.v1.InventoryService/CommitHold"));
    let mut outgoing = HeaderMap::new();
    telemetry::inject(&client, &mut outgoing);
    let sent = parts(outgoing.get(TRACEPARENT).expect("a traceparent sent on"));
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(sent[0], "00");
    assert_eq!(sent[1], TRACE_ID, "the caller's trace goes on");
    assert_ne!(
        sent[2], CALLER_SPAN,
        "with this hop's own span as the parent"
    );
    assert_eq!(sent[3], "01", "still sampled");

    // A call without a traceparent starts a trace of its own.
    let fresh = telemetry::server_span("/a.B/C", &HeaderMap::new());
    let mut outgoing = HeaderMap::new();
    telemetry::inject(&fresh, &mut outgoing);
    let started = parts(outgoing.get(TRACEPARENT).expect("a traceparent"));
    assert_ne!(started[1], TRACE_ID);
    assert_ne!(started[1], "0".repeat(32));
    drop((server, client, fresh));
    telemetry.shutdown();
}
