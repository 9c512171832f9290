//! The HTTP endpoint the payment providers post webhooks to, on its own
//! address. A body is accepted only with a valid signature made within the
//! tolerance window (the card gateway's checked here with the shared
//! secret; PayPal's, on its own path, checked by asking PayPal: a forged
//! delivery is refused and recorded nowhere); each event is recorded once by its id, and it can
//! only raise what checkout knows of a payment's provider state, so
//! duplicates and late deliveries change nothing.
//!
//! Recording is advisory bookkeeping (the reconciler asks the provider what
//! happened, never these rows), so it stays off the confirmation's path:
//! deliveries arriving within a few milliseconds of each other are written
//! by one task in one statement that commits asynchronously, and each
//! delivery is answered once its batch is written.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::batch::Batcher;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::payment::ProviderStatus;
use crate::payment::paypal::PaypalProvider;
use crate::payment::webhook::{
    self, PAYPAL_TRANSMISSION_TIME, PAYPAL_WEBHOOK_PATH, SIGNATURE_HEADER, STRIPE_SIGNATURE_HEADER,
    WEBHOOK_PATH, WebhookEvent, paypal_event, stripe_event,
};
use crate::store::CheckoutStore;
use crate::store::postgres::WebhookRecord;

/// Largest webhook body accepted.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most events written by one statement.
const MAX_BATCH: usize = 128;
/// How long the first event of a batch waits for others to join it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(10);

#[derive(Clone)]
struct Receiver {
    /// Records events a batch at a time. Nobody waits on an
    /// acknowledgement in a hurry (the provider retries), so a batch
    /// gathers for up to `LINGER`: one statement then carries a few dozen
    /// events instead of a handful.
    recorder: Arc<Batcher<WebhookRecord, bool>>,
    secret: Arc<Vec<u8>>,
    tolerance_secs: i64,
    /// Verifies PayPal's deliveries, once PayPal is configured.
    paypal: Arc<std::sync::OnceLock<Arc<PaypalProvider>>>,
}

/// Writes a batch of events in one statement, answering whether each was new.
async fn record_batch(
    store: CheckoutStore,
    events: Vec<WebhookRecord>,
) -> Vec<anyhow::Result<bool>> {
    match store.record_webhooks(&events).await {
        Ok(new) => new.into_iter().map(Ok).collect(),
        Err(error) => {
            let error = format!("{:#}", anyhow::Error::from(error));
            events
                .iter()
                .map(|_| Err(anyhow::anyhow!("{error}")))
                .collect()
        }
    }
}

pub(crate) struct WebhookServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    receiver: Receiver,
}

impl WebhookServer {
    pub(crate) async fn bind(
        addr: SocketAddr,
        store: CheckoutStore,
        secret: &[u8],
        tolerance: std::time::Duration,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the webhook listener {addr}"))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            receiver: Receiver {
                recorder: Arc::new(Batcher::spawn_lingering(MAX_BATCH, LINGER, move |events| {
                    record_batch(store.clone(), events)
                })),
                secret: Arc::new(secret.to_vec()),
                tolerance_secs: tolerance.as_secs() as i64,
                paypal: Arc::new(std::sync::OnceLock::new()),
            },
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL the provider should post to.
    pub(crate) fn url(&self) -> String {
        format!("http://{}{WEBHOOK_PATH}", self.local_addr)
    }

    /// The URL PayPal should post to.
    pub(crate) fn paypal_url(&self) -> String {
        format!("http://{}{PAYPAL_WEBHOOK_PATH}", self.local_addr)
    }

    /// Takes PayPal's deliveries from now on, verified through `paypal`.
    pub(crate) fn serve_paypal(&self, paypal: Arc<PaypalProvider>) {
        let _ = self.receiver.paypal.set(paypal);
    }

    pub(crate) async fn run_until_stopped(self, shutdown: Shutdown) {
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "webhook accept failed");
                    continue;
                }
            };
            let receiver = self.receiver.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let receiver = receiver.clone();
                    async move { Ok::<_, Infallible>(receiver.handle(request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "webhook connection ended");
                        }
                    }
                    () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
                }
            });
        }
    }
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

impl Receiver {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.uri().path() == PAYPAL_WEBHOOK_PATH && request.method() == Method::POST {
            return self.handle_paypal(request).await;
        }
        if request.uri().path() != WEBHOOK_PATH {
            return reply(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#);
        }
        if request.method() != Method::POST {
            return reply(StatusCode::METHOD_NOT_ALLOWED, r#"{"error":"use POST"}"#);
        }
        // The in-process simulator signs with its own header, a Stripe-shaped
        // gateway with Stripe's; the scheme is the same.
        let stripe_signature = request
            .headers()
            .get(STRIPE_SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let stripe = stripe_signature.is_some();
        let signature = stripe_signature.or_else(|| {
            request
                .headers()
                .get(SIGNATURE_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        });
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    r#"{"error":"body too large"}"#,
                );
            }
        };
        let Some(signature) = signature else {
            return reply(StatusCode::BAD_REQUEST, r#"{"error":"missing signature"}"#);
        };
        let now = chrono::Utc::now().timestamp();
        if let Err(error) =
            webhook::verify(&self.secret, &signature, &body, now, self.tolerance_secs)
        {
            tracing::warn!(%error, "webhook refused");
            return match error {
                webhook::SignatureError::Stale => {
                    reply(StatusCode::BAD_REQUEST, r#"{"error":"stale timestamp"}"#)
                }
                _ => reply(StatusCode::BAD_REQUEST, r#"{"error":"bad signature"}"#),
            };
        }
        let parsed = if stripe {
            stripe_event(&body)
        } else {
            serde_json::from_slice::<WebhookEvent>(&body).ok()
        };
        let Some(event) = parsed else {
            return reply(StatusCode::BAD_REQUEST, r#"{"error":"malformed event"}"#);
        };
        self.record(event).await
    }

    /// A PayPal delivery: verified by PayPal (its transmission headers and
    /// the event as received), its transmission time within the tolerance.
    async fn handle_paypal(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(paypal) = self.paypal.get().cloned() else {
            return reply(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#);
        };
        let headers = request.headers().clone();
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    r#"{"error":"body too large"}"#,
                );
            }
        };
        let sent_at = headers
            .get(PAYPAL_TRANSMISSION_TIME)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| chrono::DateTime::parse_from_rfc3339(value).ok());
        let now = chrono::Utc::now().timestamp();
        match sent_at {
            Some(at) if (now - at.timestamp()).abs() <= self.tolerance_secs => {}
            Some(_) => {
                tracing::warn!("paypal webhook refused: stale transmission time");
                return reply(StatusCode::BAD_REQUEST, r#"{"error":"stale timestamp"}"#);
            }
            None => return reply(StatusCode::BAD_REQUEST, r#"{"error":"missing signature"}"#),
        }
        match paypal.verify_webhook(&headers, &body).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("paypal webhook refused: PayPal did not verify it");
                return reply(StatusCode::BAD_REQUEST, r#"{"error":"bad signature"}"#);
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{:#}", anyhow::Error::from(error)),
                    "paypal webhook not verified: PayPal unreachable"
                );
                // PayPal retries later.
                return reply(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"try again"}"#);
            }
        }
        let Some(event) = paypal_event(&body) else {
            return reply(StatusCode::BAD_REQUEST, r#"{"error":"malformed event"}"#);
        };
        self.record(event).await
    }

    /// Records a verified event once by its id.
    async fn record(&self, event: WebhookEvent) -> Response<Full<Bytes>> {
        let Some(status) = ProviderStatus::parse(&event.data.status) else {
            // A signed event of a kind we do not know: acknowledge, ignore.
            return reply(StatusCode::OK, r#"{"received":true}"#);
        };
        let payment_id = Uuid::parse_str(&event.data.idempotency_key).ok();
        let record = WebhookRecord {
            event_id: event.id.clone(),
            kind: event.kind.clone(),
            payment_id,
            provider_ref: event.data.provider_ref.clone(),
            status: status.as_str().to_owned(),
            rank: status.rank(),
        };
        match self.recorder.submit(record).await {
            Ok(true) => {
                tracing::info!(event_id = %event.id, kind = %event.kind, "webhook recorded");
                reply(StatusCode::OK, r#"{"received":true}"#)
            }
            Ok(false) => reply(StatusCode::OK, r#"{"received":true,"duplicate":true}"#),
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "recording a webhook failed");
                // The provider retries later.
                reply(StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"try again"}"#)
            }
        }
    }
}
