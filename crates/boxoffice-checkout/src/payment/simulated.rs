//! A payment provider that behaves like a real one, in memory: idempotent
//! authorize / capture / void / refund, declines for Stripe-style test
//! tokens, configurable latency, and webhooks signed like Stripe's that are
//! delivered at least once, sometimes twice, in any order, retried until
//! the endpoint accepts them.
//!
//! Its ledger is what tests and benchmarks count charges with.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use rand::Rng as _;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::webhook::{self, SIGNATURE_HEADER, WebhookEvent, WebhookPayment};
use super::{
    AuthorizeOutcome, AuthorizeRequest, PaymentProvider, ProviderError, ProviderPayment,
    ProviderStatus,
};
use crate::config::SimulatedProviderConfig;

/// Deliveries of one event are attempted this many times at most.
const MAX_DELIVERY_ATTEMPTS: u32 = 8;

#[derive(Default)]
struct Ledger {
    payments: HashMap<String, ProviderPayment>,
    /// Authorization idempotency key → provider reference.
    by_key: HashMap<String, String>,
    /// The caller's reference (a booking) → its payments' provider
    /// references, so a search does not scan the whole ledger.
    by_reference: HashMap<String, Vec<String>>,
    /// Decisions already made for an authorization key that declined.
    declined: HashMap<String, String>,
    /// The first request made with each authorization key: a later one
    /// with the same key must ask for the same thing.
    authorize_requests: HashMap<String, AuthorizeRequest>,
    /// Capture / void / refund calls already applied, by payment and
    /// idempotency key, with the parameters they were made with.
    applied: HashMap<String, String>,
}

/// What a real provider answers (Stripe: HTTP 400, `idempotency_error`) when
/// a key comes back with different parameters: nothing happens.
fn key_reused() -> ProviderError {
    ProviderError::KeyReused
}

pub struct SimulatedProvider {
    config: SimulatedProviderConfig,
    secret: Vec<u8>,
    ledger: Mutex<Ledger>,
    webhook_url: Mutex<Option<String>>,
    outbox: mpsc::UnboundedSender<WebhookEvent>,
}

impl SimulatedProvider {
    /// Starts the webhook delivery task (it ends when the provider is
    /// dropped).
    pub fn new(config: SimulatedProviderConfig, webhook_secret: &[u8]) -> std::sync::Arc<Self> {
        let (outbox, events) = mpsc::unbounded_channel();
        let provider = std::sync::Arc::new(Self {
            webhook_url: Mutex::new(config.webhook_url.clone()),
            config,
            secret: webhook_secret.to_vec(),
            ledger: Mutex::new(Ledger::default()),
            outbox,
        });
        tokio::spawn(deliver_all(std::sync::Arc::downgrade(&provider), events));
        provider
    }

    /// Points webhooks at checkout's listener once it is bound.
    pub fn set_webhook_url(&self, url: String) {
        if let Ok(mut current) = self.webhook_url.lock()
            && current.is_none()
        {
            *current = Some(url);
        }
    }

    /// Every payment the provider knows (tests count charges with this).
    pub fn payments(&self) -> Vec<ProviderPayment> {
        self.lock().payments.values().cloned().collect()
    }

    pub fn payment_by_key(&self, idempotency_key: &str) -> Option<ProviderPayment> {
        let ledger = self.lock();
        ledger
            .by_key
            .get(idempotency_key)
            .and_then(|reference| ledger.payments.get(reference))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger half
        // written (every change is a single insert), so keep using it.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn latency(&self) {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
    }

    fn emit(&self, kind: &str, payment: &ProviderPayment) {
        if !self.config.subscribed_events.contains(&payment.status) {
            return;
        }
        let event = WebhookEvent {
            id: format!("evt_{}", Uuid::new_v4().simple()),
            kind: format!("payment.{kind}"),
            created: chrono::Utc::now().timestamp(),
            data: WebhookPayment {
                provider_ref: payment.provider_ref.clone(),
                idempotency_key: payment.idempotency_key.clone(),
                status: payment.status.as_str().to_owned(),
                amount_minor: payment.amount_minor,
                refunded_minor: payment.refunded_minor,
            },
        };
        let _ = self.outbox.send(event);
    }

    /// Applies a state change to a payment once per idempotency key; the
    /// key repeated with other `parameters` (another operation or amount)
    /// is refused.
    fn transition(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
        parameters: String,
        change: impl FnOnce(&mut ProviderPayment) -> Result<&'static str, ProviderError>,
    ) -> Result<(), ProviderError> {
        let mut ledger = self.lock();
        let operation_key = format!("{provider_ref}/{idempotency_key}");
        if let Some(applied) = ledger.applied.get(&operation_key) {
            return if *applied == parameters {
                Ok(())
            } else {
                Err(key_reused())
            };
        }
        let payment = ledger
            .payments
            .get_mut(provider_ref)
            .ok_or_else(|| ProviderError::Refused(format!("no such payment {provider_ref}")))?;
        let kind = change(payment)?;
        let snapshot = payment.clone();
        ledger.applied.insert(operation_key, parameters);
        drop(ledger);
        if !kind.is_empty() {
            self.emit(kind, &snapshot);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl PaymentProvider for SimulatedProvider {
    async fn authorize(
        &self,
        request: AuthorizeRequest,
    ) -> Result<AuthorizeOutcome, ProviderError> {
        self.latency().await;
        let mut ledger = self.lock();
        match ledger.authorize_requests.get(&request.idempotency_key) {
            Some(first) if *first != request => return Err(key_reused()),
            Some(_) => {}
            None if request.amount_minor > 0 => {
                ledger
                    .authorize_requests
                    .insert(request.idempotency_key.clone(), request.clone());
            }
            None => {}
        }
        if let Some(reference) = ledger.by_key.get(&request.idempotency_key) {
            return Ok(AuthorizeOutcome::Authorized {
                provider_ref: reference.clone(),
            });
        }
        if let Some(decline_code) = ledger.declined.get(&request.idempotency_key) {
            return Ok(AuthorizeOutcome::Declined {
                decline_code: decline_code.clone(),
            });
        }
        if request.amount_minor <= 0 {
            return Err(ProviderError::Refused("amount must be positive".into()));
        }
        if self.config.decline_tokens.contains(&request.payment_method) {
            let decline_code = match request.payment_method.as_str() {
                "tok_chargeDeclinedInsufficientFunds" => "insufficient_funds",
                "tok_chargeDeclinedExpiredCard" => "expired_card",
                "tok_chargeDeclinedFraudulent" => "fraudulent",
                _ => "generic_decline",
            }
            .to_owned();
            ledger
                .declined
                .insert(request.idempotency_key.clone(), decline_code.clone());
            let declined = ProviderPayment {
                provider_ref: format!("pi_{}", Uuid::new_v4().simple()),
                idempotency_key: request.idempotency_key,
                reference: request.reference,
                client_key: request.client_key,
                payment_method: request.payment_method,
                status: ProviderStatus::Declined,
                amount_minor: request.amount_minor,
                currency_code: request.currency_code,
                refunded_minor: 0,
            };
            drop(ledger);
            self.emit("declined", &declined);
            return Ok(AuthorizeOutcome::Declined { decline_code });
        }
        let payment = ProviderPayment {
            provider_ref: format!("pi_{}", Uuid::new_v4().simple()),
            idempotency_key: request.idempotency_key.clone(),
            reference: request.reference,
            client_key: request.client_key,
            payment_method: request.payment_method,
            status: ProviderStatus::Authorized,
            amount_minor: request.amount_minor,
            currency_code: request.currency_code,
            refunded_minor: 0,
        };
        ledger
            .by_key
            .insert(request.idempotency_key, payment.provider_ref.clone());
        ledger
            .by_reference
            .entry(payment.reference.clone())
            .or_default()
            .push(payment.provider_ref.clone());
        ledger
            .payments
            .insert(payment.provider_ref.clone(), payment.clone());
        drop(ledger);
        self.emit("authorized", &payment);
        Ok(AuthorizeOutcome::Authorized {
            provider_ref: payment.provider_ref,
        })
    }

    async fn capture(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        self.latency().await;
        self.transition(
            provider_ref,
            idempotency_key,
            "capture".into(),
            |payment| match payment.status {
                ProviderStatus::Authorized => {
                    payment.status = ProviderStatus::Captured;
                    Ok("captured")
                }
                ProviderStatus::Captured | ProviderStatus::Refunded => Ok(""),
                other => Err(ProviderError::Refused(format!(
                    "cannot capture a {} payment",
                    other.as_str()
                ))),
            },
        )
    }

    async fn void(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), ProviderError> {
        self.latency().await;
        self.transition(
            provider_ref,
            idempotency_key,
            "void".into(),
            |payment| match payment.status {
                ProviderStatus::Authorized => {
                    payment.status = ProviderStatus::Voided;
                    Ok("voided")
                }
                ProviderStatus::Voided => Ok(""),
                other => Err(ProviderError::Refused(format!(
                    "cannot void a {} payment",
                    other.as_str()
                ))),
            },
        )
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        self.latency().await;
        let parameters = format!("refund {amount_minor}");
        self.transition(
            provider_ref,
            idempotency_key,
            parameters,
            |payment| match payment.status {
                ProviderStatus::Captured | ProviderStatus::Refunded
                    if payment.refunded_minor + amount_minor <= payment.amount_minor
                        && amount_minor >= 0 =>
                {
                    payment.refunded_minor += amount_minor;
                    payment.status = ProviderStatus::Refunded;
                    Ok("refunded")
                }
                ProviderStatus::Captured | ProviderStatus::Refunded => Err(ProviderError::Refused(
                    "refund exceeds the captured amount".into(),
                )),
                other => Err(ProviderError::Refused(format!(
                    "cannot refund a {} payment",
                    other.as_str()
                ))),
            },
        )
    }

    async fn lookup(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<ProviderPayment>, ProviderError> {
        self.latency().await;
        Ok(self.payment_by_key(idempotency_key))
    }

    async fn search(&self, reference: &str) -> Result<Vec<ProviderPayment>, ProviderError> {
        self.latency().await;
        let ledger = self.lock();
        Ok(ledger
            .by_reference
            .get(reference)
            .into_iter()
            .flatten()
            .filter_map(|provider_ref| ledger.payments.get(provider_ref))
            .cloned()
            .collect())
    }
}

/// Delivers every event at least once (sometimes twice), each after a
/// random delay so deliveries overtake each other.
async fn deliver_all(
    provider: std::sync::Weak<SimulatedProvider>,
    mut events: mpsc::UnboundedReceiver<WebhookEvent>,
) {
    let connections = std::sync::Arc::new(Connections::default());
    while let Some(event) = events.recv().await {
        let Some(strong) = provider.upgrade() else {
            return;
        };
        let Some(url) = strong.webhook_url.lock().ok().and_then(|url| url.clone()) else {
            tracing::debug!(event_id = %event.id, "no webhook endpoint; event dropped");
            continue;
        };
        let copies = if rand::rng().random_range(0..100u8) < strong.config.duplicate_percent {
            2
        } else {
            1
        };
        let max_delay = strong.config.max_delivery_delay;
        let secret = strong.secret.clone();
        drop(strong);
        let Ok(body) = serde_json::to_vec(&event) else {
            continue;
        };
        for _ in 0..copies {
            let (url, secret, body, event_id) =
                (url.clone(), secret.clone(), body.clone(), event.id.clone());
            let connections = connections.clone();
            tokio::spawn(async move {
                let delay = random_delay(max_delay);
                tokio::time::sleep(delay).await;
                for attempt in 0..MAX_DELIVERY_ATTEMPTS {
                    match connections.post(&url, &secret, &body).await {
                        Ok(status) if status.is_success() => return,
                        Ok(status) => {
                            tracing::debug!(%event_id, %status, attempt, "webhook refused")
                        }
                        Err(error) => {
                            tracing::debug!(%event_id, error = format!("{error:#}"), attempt, "webhook failed")
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(6))).await;
                }
                tracing::warn!(%event_id, "webhook undeliverable");
            });
        }
    }
}

fn random_delay(max: Duration) -> Duration {
    let max_ms = max.as_millis() as u64;
    if max_ms == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(rand::rng().random_range(0..=max_ms))
    }
}

/// Idle keep-alive connections kept for the next deliveries. A receiver
/// that answers after a few milliseconds (checkout's gathers its records
/// for 10 ms) keeps dozens of deliveries in flight at a few thousand
/// events a second; a pool smaller than that working set closed and
/// reopened about one TCP connection per confirmation.
const MAX_IDLE_CONNECTIONS: usize = 256;

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Keep-alive HTTP/1.1 connections to webhook endpoints, reused from one
/// delivery to the next as a real provider's client does, so a delivery
/// costs the receiver a request rather than a TCP handshake and a task.
#[derive(Default)]
struct Connections {
    /// (host:port, connection), most recently used last.
    idle: Mutex<Vec<(String, Sender)>>,
}

impl Connections {
    fn take_idle(&self, authority: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, sender)| !sender.is_closed());
        let position = idle.iter().rposition(|(to, _)| to == authority)?;
        Some(idle.swap_remove(position).1)
    }

    fn put_idle(&self, authority: String, sender: Sender) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_CONNECTIONS && !sender.is_closed() {
            idle.push((authority, sender));
        }
    }

    async fn connect(host: &str, port: u16) -> anyhow::Result<Sender> {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .context("connecting")?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .context("http handshake")?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// One signed HTTP/1.1 POST, signed at send time like Stripe does.
    async fn post(
        &self,
        url: &str,
        secret: &[u8],
        body: &[u8],
    ) -> anyhow::Result<http::StatusCode> {
        let uri: http::Uri = url.parse().context("webhook url")?;
        let host = uri.host().context("webhook url has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let authority = format!("{host}:{port}");
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_owned();
        let signature = webhook::sign(secret, chrono::Utc::now().timestamp(), body);
        let request = || {
            http::Request::post(path.as_str())
                .header(http::header::HOST, authority.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, signature.as_str())
                .body(Full::new(Bytes::copy_from_slice(body)))
                .context("building the webhook request")
        };
        // A reused connection the receiver closed meanwhile fails before
        // anything was read: try once more on a fresh one.
        if let Some(mut sender) = self.take_idle(&authority)
            && sender.ready().await.is_ok()
            && let Ok(response) = sender.send_request(request()?).await
        {
            let status = response.status();
            // The body is tiny; reading it frees the connection for reuse.
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
            self.put_idle(authority, sender);
            return Ok(status);
        }
        let mut sender = Self::connect(&host, port).await?;
        let response = sender
            .send_request(request()?)
            .await
            .context("sending the webhook")?;
        let status = response.status();
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
        self.put_idle(authority, sender);
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP/1.1 endpoint that answers every request after `delay`;
    /// answers its address and how many connections it has accepted.
    async fn slow_endpoint(
        delay: Duration,
    ) -> (
        std::net::SocketAddr,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_request| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"{}"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, accepted)
    }

    #[tokio::test]
    async fn deliveries_reuse_their_connections_across_waves() {
        // Waves of 64 concurrent deliveries to a receiver that takes 10 ms
        // to answer: the first wave opens its connections, later waves
        // find them idle instead of opening new ones.
        let (addr, accepted) = slow_endpoint(Duration::from_millis(10)).await;
        let connections = std::sync::Arc::new(Connections::default());
        let url = format!("http://{addr}/webhooks/payments");
        for _ in 0..4 {
            let mut wave = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let (connections, url) = (connections.clone(), url.clone());
                wave.spawn(async move { connections.post(&url, b"secret", b"{}").await });
            }
            while let Some(delivered) = wave.join_next().await {
                assert!(delivered.unwrap().unwrap().is_success());
            }
        }
        let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            accepted <= 64,
            "256 deliveries in waves of 64 opened {accepted} connections"
        );
    }

    /// An endpoint that keeps the `type` of every event posted to it.
    async fn recording_endpoint() -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/webhooks/payments",
            listener.local_addr().unwrap()
        );
        let kinds = std::sync::Arc::new(Mutex::new(Vec::new()));
        let seen = kinds.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: http::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                let body = http_body_util::BodyExt::collect(request.into_body())
                                    .await
                                    .map(|body| body.to_bytes())
                                    .unwrap_or_default();
                                if let Ok(event) = serde_json::from_slice::<WebhookEvent>(&body) {
                                    seen.lock().unwrap().push(event.kind);
                                }
                                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                    Bytes::from_static(b"{}"),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (url, kinds)
    }

    /// Authorizes, captures and refunds one payment and waits until the
    /// endpoint has heard of the refund, the last of them, and of at least
    /// `expected` events in all; answers the kinds it received, in order.
    async fn kinds_delivered(subscribed: Vec<ProviderStatus>, expected: usize) -> Vec<String> {
        let (url, kinds) = recording_endpoint().await;
        let provider = SimulatedProvider::new(
            SimulatedProviderConfig {
                duplicate_percent: 0,
                max_delivery_delay: Duration::ZERO,
                webhook_url: Some(url),
                subscribed_events: subscribed,
                ..SimulatedProviderConfig::default()
            },
            b"secret",
        );
        let AuthorizeOutcome::Authorized { provider_ref } = provider
            .authorize(request("sub", "tok_visa"))
            .await
            .unwrap()
        else {
            panic!("tok_visa authorizes")
        };
        provider.capture(&provider_ref, "c").await.unwrap();
        provider.refund(&provider_ref, 100, "r").await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = kinds.lock().unwrap().clone();
            if seen.iter().any(|kind| kind == "payment.refunded") && seen.len() >= expected {
                return seen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deliveries missing: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn only_the_events_the_endpoint_subscribed_to_are_sent() {
        // Checkout's subscription: the refund, not the authorization or
        // the capture (queued first, they would have arrived by the time
        // the refund, queued last, did).
        let kinds = kinds_delivered(SimulatedProviderConfig::default().subscribed_events, 1).await;
        assert_eq!(kinds, ["payment.refunded"]);
        // Subscribed to everything, it hears of all three.
        let mut kinds = kinds_delivered(
            vec![
                ProviderStatus::Authorized,
                ProviderStatus::Captured,
                ProviderStatus::Refunded,
            ],
            3,
        )
        .await;
        kinds.sort();
        assert_eq!(
            kinds,
            ["payment.authorized", "payment.captured", "payment.refunded"]
        );
    }

    fn request(key: &str, token: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            idempotency_key: key.to_owned(),
            reference: format!("booking-of-{key}"),
            client_key: format!("client-{key}"),
            amount_minor: 1_000,
            currency_code: "EUR".to_owned(),
            payment_method: token.to_owned(),
        }
    }

    #[tokio::test]
    async fn operations_are_idempotent() {
        let provider = SimulatedProvider::new(SimulatedProviderConfig::default(), b"secret");
        let AuthorizeOutcome::Authorized { provider_ref } =
            provider.authorize(request("k1", "tok_visa")).await.unwrap()
        else {
            panic!("tok_visa authorizes")
        };
        let again = provider.authorize(request("k1", "tok_visa")).await.unwrap();
        assert_eq!(
            again,
            AuthorizeOutcome::Authorized {
                provider_ref: provider_ref.clone()
            }
        );
        assert_eq!(provider.payments().len(), 1);
        provider.capture(&provider_ref, "c").await.unwrap();
        provider.capture(&provider_ref, "c").await.unwrap();
        provider.refund(&provider_ref, 400, "r1").await.unwrap();
        provider.refund(&provider_ref, 400, "r1").await.unwrap();
        let payment = provider.payment_by_key("k1").unwrap();
        assert_eq!(payment.status, ProviderStatus::Refunded);
        assert_eq!(payment.refunded_minor, 400);
        assert!(provider.void(&provider_ref, "v").await.is_err());
    }

    #[tokio::test]
    async fn a_key_reused_with_other_parameters_is_refused_and_changes_nothing() {
        let provider = SimulatedProvider::new(SimulatedProviderConfig::default(), b"secret");
        let AuthorizeOutcome::Authorized { provider_ref } =
            provider.authorize(request("k4", "tok_visa")).await.unwrap()
        else {
            panic!("tok_visa authorizes")
        };
        let more = AuthorizeRequest {
            amount_minor: 2_000,
            ..request("k4", "tok_visa")
        };
        assert!(matches!(
            provider.authorize(more).await,
            Err(ProviderError::KeyReused)
        ));
        assert!(matches!(
            provider.authorize(request("k4", "tok_mastercard")).await,
            Err(ProviderError::KeyReused)
        ));
        // The same key for something else (another booking) is refused too.
        let elsewhere = AuthorizeRequest {
            reference: "another-booking".to_owned(),
            ..request("k4", "tok_visa")
        };
        assert!(matches!(
            provider.authorize(elsewhere).await,
            Err(ProviderError::KeyReused)
        ));
        // A declined key is bound to its first request too.
        provider
            .authorize(request("k5", "tok_chargeDeclined"))
            .await
            .unwrap();
        assert!(matches!(
            provider.authorize(request("k5", "tok_visa")).await,
            Err(ProviderError::KeyReused)
        ));
        assert_eq!(provider.payments().len(), 1);
        let payment = provider.payment_by_key("k4").unwrap();
        assert_eq!(payment.amount_minor, 1_000);
        assert_eq!(payment.status, ProviderStatus::Authorized);

        provider.capture(&provider_ref, "c").await.unwrap();
        provider.refund(&provider_ref, 300, "r").await.unwrap();
        assert!(matches!(
            provider.refund(&provider_ref, 500, "r").await,
            Err(ProviderError::KeyReused)
        ));
        // The capture key cannot be replayed as a void either.
        assert!(matches!(
            provider.void(&provider_ref, "c").await,
            Err(ProviderError::KeyReused)
        ));
        let payment = provider.payment_by_key("k4").unwrap();
        assert_eq!(payment.refunded_minor, 300);
        assert_eq!(payment.status, ProviderStatus::Refunded);
    }

    #[tokio::test]
    async fn test_tokens_decline() {
        let provider = SimulatedProvider::new(SimulatedProviderConfig::default(), b"secret");
        let outcome = provider
            .authorize(request("k2", "tok_chargeDeclined"))
            .await
            .unwrap();
        assert!(matches!(outcome, AuthorizeOutcome::Declined { .. }));
        assert!(provider.lookup("k2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn authorizations_are_found_by_reference() {
        let provider = SimulatedProvider::new(SimulatedProviderConfig::default(), b"secret");
        let for_booking = |key: &str, token: &str| AuthorizeRequest {
            reference: "b1".to_owned(),
            ..request(key, token)
        };
        let AuthorizeOutcome::Authorized {
            provider_ref: first,
        } = provider
            .authorize(for_booking("a", "tok_visa"))
            .await
            .unwrap()
        else {
            panic!("tok_visa authorizes");
        };
        provider
            .authorize(for_booking("b", "tok_chargeDeclined"))
            .await
            .unwrap();
        provider
            .authorize(for_booking("c", "tok_visa"))
            .await
            .unwrap();
        provider.authorize(request("d", "tok_visa")).await.unwrap();
        let mut keys: Vec<String> = provider
            .search("b1")
            .await
            .unwrap()
            .into_iter()
            .map(|payment| payment.idempotency_key)
            .collect();
        keys.sort();
        assert_eq!(keys, ["a", "c"], "declines are not payments");
        assert!(provider.search("nobody").await.unwrap().is_empty());
        // A search answers each payment as it stands now.
        provider.capture(&first, "cap-a").await.unwrap();
        let found = provider.search("b1").await.unwrap();
        let captured: Vec<&str> = found
            .iter()
            .filter(|payment| payment.status == ProviderStatus::Captured)
            .map(|payment| payment.idempotency_key.as_str())
            .collect();
        assert_eq!(captured, ["a"]);
    }

    #[tokio::test]
    async fn voided_payments_cannot_be_captured() {
        let provider = SimulatedProvider::new(SimulatedProviderConfig::default(), b"secret");
        let AuthorizeOutcome::Authorized { provider_ref } =
            provider.authorize(request("k3", "tok_visa")).await.unwrap()
        else {
            panic!("tok_visa authorizes")
        };
        provider.void(&provider_ref, "v").await.unwrap();
        assert!(matches!(
            provider.capture(&provider_ref, "c").await,
            Err(ProviderError::Refused(_))
        ));
    }
}
