//! The HTTP API: the part of Stripe's that a manual-capture card
//! integration uses, and beside it PayPal's (see `paypal.rs`, which this
//! file routes to: `/v1/oauth2/token`, `/v2/…`, `/v1/reporting/…`,
//! `/v1/notifications/…` and the approval page `/checkoutnow`).
//!
//! - `POST /v1/payment_intents` (`amount`, `currency`, `payment_method`,
//!   `capture_method=manual`, `confirm=true`, `return_url`, `metadata[…]`)
//! - `GET /v1/payment_intents/{id}`, `GET /v1/payment_intents` (list)
//! - `POST /v1/payment_intents/{id}/capture`, `…/cancel`
//! - `GET /v1/payment_intents/search?query=metadata['k']:'v'`
//! - `POST /v1/refunds` (`payment_intent`, `amount`)
//! - `GET`/`POST /v1/webhook_endpoints` (`url`, `enabled_events[]`)
//! - `GET`/`POST /authenticate/{id}`: the 3-D Secure page a buyer is sent
//!   to (`outcome=approve` or `fail`); not part of the API, no key needed
//!
//! Every mutating call honours `Idempotency-Key` as Stripe does: the first
//! answer is kept (declines included) and replayed for the same request;
//! the key sent again with other parameters is refused with
//! `idempotency_error` and changes nothing. `expand[]=latest_charge` (and
//! `data.latest_charge` on lists) includes the charge with its
//! `amount_refunded`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_runtime::Shutdown;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

use crate::config::{AUTHENTICATION_TOKENS, DECLINES, PaysimConfig};
use crate::ledger::{Charge, Endpoint, Entry, Intent, Journal, Ledger, Refund, Saved};
use crate::paypal::{self, BuyerChoice};
use crate::webhooks::{self, Delivery, DeliveryOptions};

const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_PAGE: usize = 100;

type Reply = Response<Full<Bytes>>;

struct State {
    ledger: Ledger,
}

struct Inner {
    config: PaysimConfig,
    /// One writer at a time: a change is journaled (and fsynced) before it
    /// is applied and answered, in the order it was made.
    state: Mutex<State>,
    /// Where changes go, in the order they are applied (under `state`).
    journal: Journal,
    deliveries: mpsc::UnboundedSender<Delivery>,
    /// `http://{bound address}`, for the authentication pages' URLs.
    base_url: String,
    /// Signs PayPal webhook transmissions (derived from the PayPal secret;
    /// never sent anywhere).
    paypal_key: Vec<u8>,
}

/// A bound simulator.
pub struct Paysim {
    listener: TcpListener,
    inner: Arc<Inner>,
}

impl Paysim {
    /// Replays the ledger and binds (port 0 allowed).
    pub async fn bind(config: PaysimConfig) -> anyhow::Result<Self> {
        let path = config.ledger.clone();
        let (journal, ledger) = tokio::task::spawn_blocking(move || Journal::open(&path))
            .await
            .context("opening the ledger panicked")??;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the payment simulator to {}", config.listen))?;
        let local = listener.local_addr()?;
        let paypal_key =
            format!("paypal-webhook-signing|{}", config.paypal_secret.expose()).into_bytes();
        let deliveries = webhooks::start(DeliveryOptions {
            paypal_key: paypal_key.clone(),
            paypal_cert_url: format!("http://{local}/v1/notifications/certs/CERT-boxoffice-paysim"),
            secret: config.webhook_secret.expose().as_bytes().to_vec(),
            duplicate_percent: config.duplicate_percent,
            max_delay: config.max_delivery_delay,
        });
        Ok(Self {
            listener,
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State { ledger }),
                journal,
                deliveries,
                base_url: format!("http://{local}"),
                paypal_key,
            }),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        match self.listener.local_addr() {
            Ok(addr) => addr,
            Err(_) => unreachable!("a bound listener has an address"),
        }
    }

    pub fn url(&self) -> String {
        self.inner.base_url.clone()
    }

    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        tracing::info!(listen = %self.local_addr(), ledger = %self.inner.config.ledger.display(), "payment simulator serving");
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let inner = self.inner.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let inner = inner.clone();
                    // Every request runs to its end in a task of its own,
                    // even when its client goes away (hyper drops the
                    // handler then): a change cancelled between being
                    // journaled and being applied would be on disk but not
                    // in memory, and a retry with the same idempotency key
                    // would make it a second time.
                    async move {
                        let reply = tokio::spawn(async move { inner.handle(request).await })
                            .await
                            .unwrap_or_else(|_| {
                                json_reply(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    json!({"error": {"type": "api_error", "message": "try again"}})
                                        .to_string(),
                                )
                            });
                        Ok::<_, Infallible>(reply)
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended");
                        }
                    }
                    () = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
                }
            });
        }
    }
}

fn json_reply(status: StatusCode, body: String) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn html_reply(status: StatusCode, body: String) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// Stripe's error object.
fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"error": {"type": kind, "code": code, "message": message}}),
    )
}

fn invalid(message: &str) -> (StatusCode, Value) {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "parameter_invalid",
        message,
    )
}

fn missing(id: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "resource_missing",
        &format!("No such payment_intent: '{id}'"),
    )
}

fn unexpected_state(intent: &Intent, action: &str) -> (StatusCode, Value) {
    let mut body = json!({"error": {
        "type": "invalid_request_error",
        "code": "payment_intent_unexpected_state",
        "message": format!(
            "This PaymentIntent could not be {action} because it has a status of {}.",
            intent.status
        ),
    }});
    body["error"]["payment_intent"] = intent_json(intent, false);
    (StatusCode::BAD_REQUEST, body)
}

/// A PaymentIntent as Stripe answers it.
pub(crate) fn intent_json(intent: &Intent, expand_charge: bool) -> Value {
    let latest_charge = match (&intent.charge, expand_charge) {
        (None, _) => Value::Null,
        (Some(charge), false) => Value::String(charge.id.clone()),
        (Some(charge), true) => charge_json(intent, charge),
    };
    let next_action = match (&intent.action_url, intent.status.as_str()) {
        (Some(url), "requires_action") => json!({
            "type": "redirect_to_url",
            "redirect_to_url": {"url": url, "return_url": intent.return_url},
        }),
        _ => Value::Null,
    };
    let last_payment_error = match &intent.error_code {
        Some(code) => json!({
            "type": "card_error",
            "code": code,
            "decline_code": intent.decline_code,
            "message": "Your card was declined.",
        }),
        None => Value::Null,
    };
    let captured = intent.charge.as_ref().map_or(0, |c| c.amount_captured);
    json!({
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": if intent.status == "requires_capture" { intent.amount } else { 0 },
        "amount_received": captured,
        "currency": intent.currency,
        "status": intent.status,
        "capture_method": intent.capture_method,
        "confirmation_method": "automatic",
        "payment_method": intent.payment_method,
        "metadata": intent.metadata,
        "created": intent.created,
        "latest_charge": latest_charge,
        "last_payment_error": last_payment_error,
        "next_action": next_action,
        "cancellation_reason": intent.cancellation_reason,
        "livemode": false,
    })
}

fn charge_json(intent: &Intent, charge: &Charge) -> Value {
    json!({
        "id": charge.id,
        "object": "charge",
        "amount": charge.amount,
        "amount_captured": charge.amount_captured,
        "amount_refunded": charge.amount_refunded,
        "captured": charge.captured,
        "refunded": charge.amount_refunded > 0 && charge.amount_refunded == charge.amount_captured,
        "currency": intent.currency,
        "payment_intent": intent.id,
        "metadata": intent.metadata,
        "livemode": false,
    })
}

fn refund_json(refund: &Refund) -> Value {
    json!({
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "charge": refund.charge,
        "payment_intent": refund.payment_intent,
        "status": "succeeded",
        "created": refund.created,
    })
}

fn event(kind: &str, object: Value) -> Value {
    json!({
        "id": format!("evt_{}", Uuid::new_v4().simple()),
        "object": "event",
        "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(),
        "type": kind,
        "livemode": false,
        "data": {"object": object},
    })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

/// A decoded form body or query string.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(raw: &[u8]) -> Self {
        Self(form_urlencoded::parse(raw).into_owned().collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `name[]` / `name[0]` values.
    fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix('['))
                    .and_then(|rest| rest.strip_suffix(']'))
                    .is_some_and(|index| index.chars().all(|c| c.is_ascii_digit()))
            })
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// `name[key]` pairs.
    fn map(&self, name: &str) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(key, value)| {
                let inner = key
                    .strip_prefix(name)?
                    .strip_prefix('[')?
                    .strip_suffix(']')?;
                (!inner.is_empty() && !inner.chars().all(|c| c.is_ascii_digit()))
                    .then(|| (inner.to_owned(), value.clone()))
            })
            .collect()
    }

    fn expands(&self, what: &str) -> bool {
        self.list("expand").iter().any(|value| value == what)
    }

    /// What an idempotent replay must match: the call and its parameters.
    fn fingerprint(&self, method: &Method, path: &str) -> String {
        let mut pairs = self.0.clone();
        pairs.sort();
        let mut out = format!("{method} {path}");
        for (key, value) in pairs {
            out.push('\n');
            out.push_str(&key);
            out.push('=');
            out.push_str(&value);
        }
        out
    }
}

/// The answer when the journal cannot take a change: the client retries.
fn try_again() -> (StatusCode, Value) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": {"type": "api_error", "message": "try again"}}),
    )
}

/// What a change produced: its answer, what to journal, what to announce.
struct Change {
    status: StatusCode,
    body: Value,
    entry: Entry,
    events: Vec<Value>,
    /// Whether an idempotency key keeps this answer (Stripe does not keep
    /// answers to requests that failed validation before running).
    keep: bool,
}

impl Change {
    fn refused((status, body): (StatusCode, Value)) -> Self {
        Self {
            status,
            body,
            entry: Entry::default(),
            events: Vec::new(),
            keep: false,
        }
    }

    /// An answer that ran (a decline, a refusal for the payment's state):
    /// kept for its idempotency key.
    fn ran((status, body): (StatusCode, Value)) -> Self {
        Self {
            keep: true,
            ..Self::refused((status, body))
        }
    }
}

impl Inner {
    async fn handle(&self, request: Request<Incoming>) -> Reply {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let headers = request.headers().clone();
        let idempotency_key = request
            .headers()
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let authorized = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .is_some_and(|key| key == self.config.api_key.expose());
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                let (status, body) = invalid("request body too large");
                return json_reply(status, body.to_string());
            }
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        if let ["authenticate", id] = segments.as_slice() {
            return self.authenticate(&method, id, &body).await;
        }
        if let Some(reply) = self
            .paypal(&method, &path, &query, &segments, &headers, &body)
            .await
        {
            return reply;
        }
        if path == "/healthz" {
            return json_reply(StatusCode::OK, r#"{"status":"ok"}"#.into());
        }
        if !authorized {
            let (status, body) = error(
                StatusCode::UNAUTHORIZED,
                "invalid_request_error",
                "api_key_invalid",
                "Invalid API Key provided.",
            );
            return json_reply(status, body.to_string());
        }
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let form = Form::parse(if method == Method::GET {
            query.as_bytes()
        } else {
            &body
        });
        let (status, body) = match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "payment_intents", "search"]) => self.search(&form).await,
            (&Method::GET, ["v1", "payment_intents"]) => self.list(&form).await,
            (&Method::GET, ["v1", "payment_intents", id]) => self.retrieve(id, &form).await,
            (&Method::GET, ["v1", "webhook_endpoints"]) => self
                .read(|ledger| {
                    let data: Vec<Value> = ledger
                        .endpoints
                        .iter()
                        .map(|endpoint| self.endpoint_json(endpoint))
                        .collect();
                    (
                        StatusCode::OK,
                        json!({"object": "list", "data": data, "has_more": false}),
                    )
                })
                .await
                .unwrap_or_else(try_again),
            (&Method::POST, _) => {
                let fingerprint = form.fingerprint(&method, &path);
                let segments: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
                self.mutate(idempotency_key, fingerprint, stripe_key_reused, |ledger| {
                    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
                    match segments.as_slice() {
                        ["v1", "payment_intents"] => self.create(ledger, &form),
                        ["v1", "payment_intents", id, "capture"] => capture(ledger, id, &form),
                        ["v1", "payment_intents", id, "cancel"] => cancel(ledger, id, &form),
                        ["v1", "refunds"] => refund(ledger, &form),
                        ["v1", "webhook_endpoints"] => self.add_endpoint(ledger, &form),
                        _ => Change::refused(not_found()),
                    }
                })
                .await
            }
            _ => not_found(),
        };
        json_reply(status, body.to_string())
    }

    /// PayPal's part of the API, when `path` is one of its routes.
    async fn paypal(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        segments: &[&str],
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Option<Reply> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let query_pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if path == "/checkoutnow" {
            let token = query_pairs
                .iter()
                .find(|(key, _)| key == "token")
                .map(|(_, value)| value.clone())
                .unwrap_or_default();
            return Some(self.paypal_approval(method, &token, body).await);
        }
        let is_paypal = matches!(
            segments,
            ["v2", ..]
                | ["v1", "oauth2", ..]
                | ["v1", "reporting", ..]
                | ["v1", "notifications", ..]
        );
        if !is_paypal {
            return None;
        }
        let config = &self.config;
        let now = chrono::Utc::now().timestamp();
        if segments == ["v1", "oauth2", "token"] && *method == Method::POST {
            let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
            let (status, answer) = paypal::issue_token(
                &config.paypal_client_id,
                config.paypal_secret.expose(),
                header("authorization"),
                &form,
                now,
            );
            return Some(json_reply(status, answer.to_string()));
        }
        if !paypal::token_valid(
            &config.paypal_client_id,
            config.paypal_secret.expose(),
            header("authorization"),
            now,
        ) {
            let (status, answer) = paypal::authentication_failure();
            return Some(json_reply(status, answer.to_string()));
        }
        if !config.latency.is_zero() {
            tokio::time::sleep(config.latency).await;
        }
        let request: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(body) {
                Ok(value) => value,
                Err(_) => {
                    let (status, answer) = paypal::malformed_json();
                    return Some(json_reply(status, answer.to_string()));
                }
            }
        };
        let (status, answer) = if *method == Method::GET {
            self.paypal_read(segments, &query_pairs).await
        } else if *method == Method::POST {
            let request_id = header("paypal-request-id").map(|id| format!("paypal:{id}"));
            self.paypal_write(segments, path, request_id, &request)
                .await
        } else {
            paypal::unknown_route()
        };
        Some(json_reply(status, answer.to_string()))
    }

    async fn paypal_read(
        &self,
        segments: &[&str],
        query: &[(String, String)],
    ) -> (StatusCode, Value) {
        self.read(|ledger| {
            let base = &self.base_url;
            match segments {
                ["v2", "checkout", "orders", id] => paypal::get_order(ledger, id, base),
                ["v2", "payments", "authorizations", id] => {
                    paypal::get_authorization(ledger, id, base)
                }
                ["v2", "payments", "captures", id] => paypal::get_capture(ledger, id, base),
                ["v1", "reporting", "transactions"] => paypal::transactions(ledger, query),
                ["v1", "notifications", "webhooks"] => paypal::list_webhooks(ledger),
                _ => paypal::unknown_route(),
            }
        })
        .await
        .unwrap_or_else(try_again)
    }

    async fn paypal_write(
        &self,
        segments: &[&str],
        path: &str,
        request_id: Option<String>,
        request: &Value,
    ) -> (StatusCode, Value) {
        let base = self.base_url.clone();
        if segments == ["v1", "notifications", "verify-webhook-signature"] {
            return self
                .read(|ledger| paypal::verify_webhook_signature(ledger, &self.paypal_key, request))
                .await
                .unwrap_or_else(try_again);
        }
        let fingerprint = format!("POST {path}\n{request}");
        let segments: Vec<String> = segments.iter().map(|s| (*s).to_owned()).collect();
        self.mutate(
            request_id,
            fingerprint,
            paypal::duplicate_request_id,
            |ledger| {
                let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
                match segments.as_slice() {
                    ["v2", "checkout", "orders"] => paypal::create_order(request, &base),
                    ["v2", "checkout", "orders", id, "authorize"] => {
                        paypal::authorize_order(ledger, id, &base)
                    }
                    ["v2", "payments", "authorizations", id, "capture"] => {
                        paypal::capture(ledger, id, request, &base)
                    }
                    ["v2", "payments", "authorizations", id, "void"] => {
                        paypal::void(ledger, id, &base)
                    }
                    ["v2", "payments", "captures", id, "refund"] => {
                        paypal::refund(ledger, id, request, &base)
                    }
                    ["v1", "notifications", "webhooks"] => paypal::add_webhook(ledger, request),
                    _ => paypal::Outcome::not_found(),
                }
                .into()
            },
        )
        .await
    }

    /// The page the buyer approves a PayPal order on: GET shows it, POST
    /// `outcome=approve|decline|cancel` answers it (and sends the browser
    /// to the order's return or cancel URL, when it has one).
    async fn paypal_approval(&self, method: &Method, token: &str, body: &[u8]) -> Reply {
        if *method == Method::GET {
            return self
                .read(|ledger| match ledger.orders.get(token) {
                    Some(order) => html_reply(StatusCode::OK, paypal::approval_page(order)),
                    None => html_reply(StatusCode::NOT_FOUND, "no such order".into()),
                })
                .await
                .unwrap_or_else(|| {
                    html_reply(StatusCode::INTERNAL_SERVER_ERROR, "try again".into())
                });
        }
        if *method != Method::POST {
            return html_reply(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST".into());
        }
        let form = Form::parse(body);
        let Some(choice) = form.get("outcome").and_then(BuyerChoice::parse) else {
            return html_reply(
                StatusCode::BAD_REQUEST,
                "outcome: approve, decline or cancel".into(),
            );
        };
        let base = self.base_url.clone();
        let (status, answer) = self
            .mutate(
                None,
                String::new(),
                paypal::duplicate_request_id,
                |ledger| paypal::buyer_answers(ledger, token, choice, &base).into(),
            )
            .await;
        if !status.is_success() {
            return html_reply(status, answer.to_string());
        }
        let done = match choice {
            BuyerChoice::Cancel => "cancelled",
            _ => "approved",
        };
        html_reply(
            StatusCode::OK,
            format!(
                "<!doctype html><title>PayPal</title><p>Payment {done}. Return to the merchant.</p>"
            ),
        )
    }

    fn endpoint_json(&self, endpoint: &Endpoint) -> Value {
        json!({
            "id": endpoint.id,
            "object": "webhook_endpoint",
            "url": endpoint.url,
            "enabled_events": endpoint.enabled_events,
            "status": "enabled",
            "secret": self.config.webhook_secret.expose(),
        })
    }

    /// Runs one change under the ledger's lock: replays a kept answer for
    /// a known idempotency key, refuses the key with other parameters, or
    /// hands the change to the journal and applies it, so the next change
    /// sees it. The lock is let go before the change is on disk; the answer
    /// and the change's webhooks wait for that (group commit: changes made
    /// meanwhile share the flush). An answer never shows a change that is
    /// not on disk, a replayed one included.
    async fn mutate(
        &self,
        idempotency_key: Option<String>,
        fingerprint: String,
        key_reused: fn() -> (StatusCode, Value),
        change: impl FnOnce(&Ledger) -> Change,
    ) -> (StatusCode, Value) {
        let mut state = self.state.lock().await;
        if let Some(key) = &idempotency_key
            && let Some(saved) = state.ledger.saved.get(key)
        {
            // Either answer tells of the kept one, which may still be on
            // its way to disk.
            let (status, body) = if saved.fingerprint != fingerprint {
                key_reused()
            } else {
                (
                    StatusCode::from_u16(saved.status).unwrap_or(StatusCode::OK),
                    serde_json::from_str(&saved.body).unwrap_or(Value::Null),
                )
            };
            let seen = self.journal.appended();
            drop(state);
            return match self.on_disk(seen).await {
                Ok(()) => (status, body),
                Err(failed) => failed,
            };
        }
        let Change {
            status,
            body,
            mut entry,
            events,
            keep,
        } = change(&state.ledger);
        if keep && let Some(key) = idempotency_key {
            entry.saved = Some(Saved {
                key,
                fingerprint,
                status: status.as_u16(),
                body: body.to_string(),
            });
        }
        if !entry.is_empty() {
            if let Err(error) = self.journal.enqueue(&entry) {
                tracing::error!(error = format!("{error:#}"), "journal entry refused");
                return try_again();
            }
            state.ledger.apply(entry);
        }
        let deliveries: Vec<Delivery> = events
            .into_iter()
            .flat_map(|event| Self::deliveries_of(&state.ledger, event))
            .collect();
        let seen = self.journal.appended();
        drop(state);
        if let Err(failed) = self.on_disk(seen).await {
            return failed;
        }
        for delivery in deliveries {
            let _ = self.deliveries.send(delivery);
        }
        (status, body)
    }

    /// Waits until journal line `line` is on disk; the answer to give when
    /// it never will be.
    async fn on_disk(&self, line: u64) -> Result<(), (StatusCode, Value)> {
        self.journal.wait_durable(line).await.map_err(|error| {
            tracing::error!(error = format!("{error:#}"), path = %self.journal.path().display(), "journal write failed");
            try_again()
        })
    }

    /// Runs `read` on the ledger and answers what it made once every change
    /// it could have seen is on disk (so no answer shows a change a crash
    /// could still take back); `None` when that will never be.
    async fn read<T>(&self, read: impl FnOnce(&Ledger) -> T) -> Option<T> {
        let (answer, seen) = {
            let state = self.state.lock().await;
            (read(&state.ledger), self.journal.appended())
        };
        self.on_disk(seen).await.ok().map(|()| answer)
    }

    /// The deliveries of an event to every endpoint subscribed to its type
    /// (PayPal's events, which have an `event_type`, to PayPal's webhooks).
    fn deliveries_of(ledger: &Ledger, event: Value) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        let event_id = event["id"].as_str().unwrap_or_default().to_owned();
        let body = event.to_string().into_bytes();
        if let Some(kind) = event["event_type"].as_str() {
            for webhook in &ledger.paypal_webhooks {
                if webhook
                    .event_types
                    .iter()
                    .any(|enabled| enabled == "*" || enabled == kind)
                {
                    deliveries.push(Delivery {
                        url: webhook.url.clone(),
                        body: body.clone(),
                        event_id: event_id.clone(),
                        paypal_webhook_id: Some(webhook.id.clone()),
                    });
                }
            }
            return deliveries;
        }
        let kind = event["type"].as_str().unwrap_or_default();
        for endpoint in &ledger.endpoints {
            if endpoint
                .enabled_events
                .iter()
                .any(|enabled| enabled == "*" || enabled == kind)
            {
                deliveries.push(Delivery {
                    url: endpoint.url.clone(),
                    body: body.clone(),
                    event_id: event_id.clone(),
                    paypal_webhook_id: None,
                });
            }
        }
        deliveries
    }

    fn create(&self, ledger: &Ledger, form: &Form) -> Change {
        let _ = ledger;
        let Some(amount) = form.get("amount").and_then(|a| a.parse::<i64>().ok()) else {
            return Change::refused(invalid("amount: a whole number of minor units"));
        };
        if amount < 1 {
            return Change::refused(invalid("amount must be at least 1"));
        }
        let currency = form
            .get("currency")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_lowercase()) {
            return Change::refused(invalid("currency: a three-letter ISO code"));
        }
        let capture_method = form.get("capture_method").unwrap_or("automatic").to_owned();
        if capture_method != "manual" && capture_method != "automatic" {
            return Change::refused(invalid("capture_method: manual or automatic"));
        }
        if form.get("confirm") != Some("true") {
            return Change::refused(invalid(
                "this simulator creates PaymentIntents with confirm=true only",
            ));
        }
        let Some(payment_method) = form.get("payment_method").filter(|pm| !pm.is_empty()) else {
            return Change::refused(invalid("payment_method is required with confirm=true"));
        };
        let metadata = form.map("metadata");
        if metadata.len() > 50 || metadata.values().any(|value| value.len() > 500) {
            return Change::refused(invalid("metadata: at most 50 keys of 500 characters"));
        }
        let id = new_id("pi");
        let mut intent = Intent {
            id: id.clone(),
            amount,
            currency,
            status: String::new(),
            capture_method,
            payment_method: payment_method.to_owned(),
            metadata,
            created: chrono::Utc::now().timestamp(),
            charge: None,
            decline_code: None,
            error_code: None,
            return_url: form.get("return_url").map(str::to_owned),
            cancellation_reason: None,
            action_url: None,
        };
        if self
            .config
            .decline_tokens
            .iter()
            .any(|t| t == payment_method)
        {
            let decline_code = DECLINES
                .iter()
                .find(|(token, _)| *token == payment_method)
                .map_or("generic_decline", |(_, code)| code);
            intent.status = "requires_payment_method".into();
            intent.decline_code = Some(decline_code.to_owned());
            intent.error_code = Some("card_declined".into());
            let object = intent_json(&intent, false);
            let body = json!({"error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": "Your card was declined.",
                "payment_intent": object,
            }});
            return Change {
                status: StatusCode::PAYMENT_REQUIRED,
                body,
                events: vec![event("payment_intent.payment_failed", object)],
                entry: Entry {
                    intent: Some(intent),
                    ..Entry::default()
                },
                keep: true,
            };
        }
        if AUTHENTICATION_TOKENS.contains(&payment_method) {
            intent.status = "requires_action".into();
            intent.action_url = Some(format!("{}/authenticate/{id}", self.base_url));
            let object = intent_json(&intent, false);
            return Change {
                status: StatusCode::OK,
                body: object.clone(),
                events: vec![event("payment_intent.requires_action", object)],
                entry: Entry {
                    intent: Some(intent),
                    ..Entry::default()
                },
                keep: true,
            };
        }
        let events = authorize(&mut intent);
        Change {
            status: StatusCode::OK,
            body: intent_json(&intent, false),
            events,
            entry: Entry {
                intent: Some(intent),
                ..Entry::default()
            },
            keep: true,
        }
    }

    fn add_endpoint(&self, ledger: &Ledger, form: &Form) -> Change {
        let Some(url) = form
            .get("url")
            .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
        else {
            return Change::refused(invalid("url: an http(s) URL"));
        };
        let enabled_events = form.list("enabled_events");
        if enabled_events.is_empty() {
            return Change::refused(invalid("enabled_events: at least one"));
        }
        // One endpoint per URL: registering it again updates its events.
        let id = ledger
            .endpoints
            .iter()
            .find(|known| known.url == url)
            .map_or_else(|| new_id("we"), |known| known.id.clone());
        let endpoint = Endpoint {
            id,
            url: url.to_owned(),
            enabled_events,
        };
        Change {
            status: StatusCode::OK,
            body: self.endpoint_json(&endpoint),
            events: Vec::new(),
            entry: Entry {
                endpoint: Some(endpoint),
                ..Entry::default()
            },
            keep: true,
        }
    }

    async fn retrieve(&self, id: &str, form: &Form) -> (StatusCode, Value) {
        self.read(|ledger| match ledger.intents.get(id) {
            Some(intent) => (
                StatusCode::OK,
                intent_json(intent, form.expands("latest_charge")),
            ),
            None => missing(id),
        })
        .await
        .unwrap_or_else(try_again)
    }

    /// Newest first, `limit` (≤ 100) at a time from `starting_after`.
    async fn list(&self, form: &Form) -> (StatusCode, Value) {
        self.read(|ledger| {
            let limit = page_size(form);
            let newest_first = ledger.order.iter().rev();
            let mut ids: Vec<&String> = match form.get("starting_after") {
                Some(after) => newest_first.skip_while(|id| *id != after).skip(1).collect(),
                None => newest_first.collect(),
            };
            let has_more = ids.len() > limit;
            ids.truncate(limit);
            let expand = form.expands("data.latest_charge");
            let data: Vec<Value> = ids
                .into_iter()
                .filter_map(|id| ledger.intents.get(id))
                .map(|intent| intent_json(intent, expand))
                .collect();
            (
                StatusCode::OK,
                json!({"object": "list", "url": "/v1/payment_intents", "data": data, "has_more": has_more}),
            )
        })
        .await
        .unwrap_or_else(try_again)
    }

    /// `query=metadata['k']:'v' AND status:'succeeded'`, newest first, a
    /// page of `limit` from the cursor `page`.
    async fn search(&self, form: &Form) -> (StatusCode, Value) {
        let Some(clauses) = form.get("query").and_then(parse_query) else {
            return invalid("query: clauses like metadata['key']:'value' joined by AND");
        };
        self.read(|ledger| {
            let mut candidates: Option<Vec<&String>> = None;
            for (field, value) in &clauses {
                if let Some(key) = field.strip_prefix("metadata:") {
                    let ids: Vec<&String> = ledger
                        .by_metadata
                        .get(&crate::ledger::metadata_index_key(key, value))
                        .map(|ids| ids.iter().collect())
                        .unwrap_or_default();
                    candidates = Some(match candidates {
                        None => ids,
                        Some(known) => known.into_iter().filter(|id| ids.contains(id)).collect(),
                    });
                }
            }
            let candidates = candidates.unwrap_or_else(|| ledger.order.iter().collect());
            let matching: Vec<&Intent> = candidates
                .into_iter()
                .rev()
                .filter_map(|id| ledger.intents.get(id))
                .filter(|intent| {
                    clauses.iter().all(|(field, value)| match field.as_str() {
                        "status" => intent.status == *value,
                        "currency" => intent.currency == *value,
                        _ => true,
                    })
                })
                .collect();
            let start: usize = form.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
            let limit = page_size(form);
            let expand = form.expands("data.latest_charge");
            let data: Vec<Value> = matching
                .iter()
                .skip(start)
                .take(limit)
                .map(|intent| intent_json(intent, expand))
                .collect();
            let has_more = matching.len() > start + limit;
            (
                StatusCode::OK,
                json!({
                    "object": "search_result",
                    "url": "/v1/payment_intents/search",
                    "data": data,
                    "has_more": has_more,
                    "next_page": if has_more { Value::String((start + limit).to_string()) } else { Value::Null },
                    "total_count": matching.len(),
                }),
            )
        })
        .await
        .unwrap_or_else(try_again)
    }

    /// The page a buyer's browser is sent to for 3-D Secure: GET shows it,
    /// POST `outcome=approve|fail` answers it.
    async fn authenticate(&self, method: &Method, id: &str, body: &[u8]) -> Reply {
        if *method == Method::GET {
            return self
                .read(|ledger| match ledger.intents.get(id) {
                Some(intent) => html_reply(
                    StatusCode::OK,
                    format!(
                        "<!doctype html><title>3-D Secure</title><h1>Authenticate a payment of {} {}</h1>\
                         <p>Status: {}</p>\
                         <form method=post><button name=outcome value=approve>Complete authentication</button>\
                         <button name=outcome value=fail>Fail authentication</button></form>",
                        intent.amount,
                        intent.currency.to_ascii_uppercase(),
                        intent.status
                    ),
                ),
                None => html_reply(StatusCode::NOT_FOUND, "no such payment".into()),
            })
            .await
            .unwrap_or_else(|| html_reply(StatusCode::INTERNAL_SERVER_ERROR, "try again".into()));
        }
        if *method != Method::POST {
            return html_reply(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST".into());
        }
        let form = Form::parse(body);
        let approve = match form.get("outcome") {
            Some("approve") => true,
            Some("fail") => false,
            _ => return html_reply(StatusCode::BAD_REQUEST, "outcome: approve or fail".into()),
        };
        let id = id.to_owned();
        let (status, answer) = self
            .mutate(None, String::new(), stripe_key_reused, |ledger| {
                let Some(intent) = ledger.intents.get(&id) else {
                    return Change::refused(missing(&id));
                };
                if intent.status != "requires_action" {
                    return Change::refused(unexpected_state(intent, "authenticated"));
                }
                let mut intent = intent.clone();
                let events = if approve {
                    authorize(&mut intent)
                } else {
                    intent.status = "requires_payment_method".into();
                    intent.error_code = Some("payment_intent_authentication_failure".into());
                    vec![event(
                        "payment_intent.payment_failed",
                        intent_json(&intent, false),
                    )]
                };
                Change {
                    status: StatusCode::OK,
                    body: intent_json(&intent, false),
                    events,
                    entry: Entry {
                        intent: Some(intent),
                        ..Entry::default()
                    },
                    keep: false,
                }
            })
            .await;
        if !status.is_success() {
            return html_reply(status, answer.to_string());
        }
        html_reply(
            StatusCode::OK,
            format!(
                "<!doctype html><title>3-D Secure</title><p>Authentication {}. Return to the merchant.</p>",
                if approve { "complete" } else { "failed" }
            ),
        )
    }
}

fn stripe_key_reused() -> (StatusCode, Value) {
    error(
        StatusCode::BAD_REQUEST,
        "idempotency_error",
        "idempotency_key_in_use",
        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
    )
}

impl From<paypal::Outcome> for Change {
    fn from(outcome: paypal::Outcome) -> Self {
        Self {
            status: outcome.status,
            body: outcome.body,
            entry: outcome.entry,
            events: outcome.events,
            keep: outcome.keep,
        }
    }
}

fn not_found() -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "resource_missing",
        "Unrecognized request URL.",
    )
}

fn page_size(form: &Form) -> usize {
    form.get("limit")
        .and_then(|limit| limit.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, MAX_PAGE)
}

/// Parses `metadata['k']:'v' AND status:'x'` into (`metadata:k` | `status`
/// | `currency`, value) pairs.
fn parse_query(query: &str) -> Option<Vec<(String, String)>> {
    query
        .split(" AND ")
        .map(|clause| {
            let clause = clause.trim();
            let (field, value) = clause.split_once(':')?;
            let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
            let field = match field.strip_prefix("metadata[") {
                Some(rest) => {
                    let key = rest.strip_suffix(']')?;
                    let key = key
                        .strip_prefix('\'')
                        .and_then(|k| k.strip_suffix('\''))
                        .or_else(|| key.strip_prefix('"').and_then(|k| k.strip_suffix('"')))?;
                    format!("metadata:{key}")
                }
                None if field == "status" || field == "currency" => field.to_owned(),
                None => return None,
            };
            Some((field, value.to_owned()))
        })
        .collect()
}

/// Moves a confirmed intent to authorized (manual capture) or paid.
fn authorize(intent: &mut Intent) -> Vec<Value> {
    let manual = intent.capture_method == "manual";
    intent.charge = Some(Charge {
        id: new_id("ch"),
        amount: intent.amount,
        amount_captured: if manual { 0 } else { intent.amount },
        amount_refunded: 0,
        captured: !manual,
    });
    intent.action_url = None;
    if manual {
        intent.status = "requires_capture".into();
        vec![event(
            "payment_intent.amount_capturable_updated",
            intent_json(intent, false),
        )]
    } else {
        intent.status = "succeeded".into();
        vec![event(
            "payment_intent.succeeded",
            intent_json(intent, false),
        )]
    }
}

fn capture(ledger: &Ledger, id: &str, form: &Form) -> Change {
    let Some(intent) = ledger.intents.get(id) else {
        return Change::refused(missing(id));
    };
    if intent.status != "requires_capture" {
        return Change::ran(unexpected_state(intent, "captured"));
    }
    let amount = match form.get("amount_to_capture").map(str::parse::<i64>) {
        None => intent.amount,
        Some(Ok(amount)) if (1..=intent.amount).contains(&amount) => amount,
        Some(_) => return Change::refused(invalid("amount_to_capture: 1 up to the amount")),
    };
    let mut intent = intent.clone();
    intent.status = "succeeded".into();
    if let Some(charge) = intent.charge.as_mut() {
        charge.captured = true;
        charge.amount_captured = amount;
    }
    let object = intent_json(&intent, false);
    Change {
        status: StatusCode::OK,
        body: object.clone(),
        events: vec![event("payment_intent.succeeded", object)],
        entry: Entry {
            intent: Some(intent),
            ..Entry::default()
        },
        keep: true,
    }
}

fn cancel(ledger: &Ledger, id: &str, form: &Form) -> Change {
    let Some(intent) = ledger.intents.get(id) else {
        return Change::refused(missing(id));
    };
    if !matches!(
        intent.status.as_str(),
        "requires_capture" | "requires_action" | "requires_payment_method"
    ) {
        return Change::ran(unexpected_state(intent, "canceled"));
    }
    let mut intent = intent.clone();
    intent.status = "canceled".into();
    intent.action_url = None;
    intent.cancellation_reason = Some(
        form.get("cancellation_reason")
            .unwrap_or("requested_by_customer")
            .to_owned(),
    );
    let object = intent_json(&intent, false);
    Change {
        status: StatusCode::OK,
        body: object.clone(),
        events: vec![event("payment_intent.canceled", object)],
        entry: Entry {
            intent: Some(intent),
            ..Entry::default()
        },
        keep: true,
    }
}

fn refund(ledger: &Ledger, form: &Form) -> Change {
    let Some(id) = form.get("payment_intent") else {
        return Change::refused(invalid("payment_intent is required"));
    };
    let Some(intent) = ledger.intents.get(id) else {
        return Change::refused(missing(id));
    };
    let Some(charge) = intent.charge.as_ref().filter(|c| c.captured) else {
        return Change::ran(unexpected_state(intent, "refunded"));
    };
    let remaining = charge.amount_captured - charge.amount_refunded;
    let amount = match form.get("amount").map(str::parse::<i64>) {
        None => remaining,
        Some(Ok(amount)) if amount >= 1 => amount,
        Some(_) => return Change::refused(invalid("amount must be at least 1")),
    };
    if remaining == 0 {
        return Change::ran(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "charge_already_refunded",
            "This charge has already been refunded.",
        ));
    }
    if amount > remaining {
        return Change::ran(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "amount_too_large",
            "Refund amount is greater than unrefunded amount on charge.",
        ));
    }
    let mut intent = intent.clone();
    let refund = Refund {
        id: new_id("re"),
        payment_intent: intent.id.clone(),
        charge: charge.id.clone(),
        amount,
        created: chrono::Utc::now().timestamp(),
    };
    let charge = match intent.charge.as_mut() {
        Some(charge) => {
            charge.amount_refunded += amount;
            charge.clone()
        }
        None => unreachable!("checked above: the intent has a captured charge"),
    };
    Change {
        status: StatusCode::OK,
        body: refund_json(&refund),
        events: vec![event("charge.refunded", charge_json(&intent, &charge))],
        entry: Entry {
            intent: Some(intent),
            refund: Some(refund),
            ..Entry::default()
        },
        keep: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse() {
        assert_eq!(
            parse_query("metadata['booking']:'b1' AND status:'succeeded'"),
            Some(vec![
                ("metadata:booking".to_owned(), "b1".to_owned()),
                ("status".to_owned(), "succeeded".to_owned()),
            ])
        );
        assert_eq!(
            parse_query("metadata[\"k\"]:'v'"),
            Some(vec![("metadata:k".to_owned(), "v".to_owned())])
        );
        assert_eq!(parse_query("amount>5"), None);
        assert_eq!(parse_query("metadata['k']:v"), None);
    }

    #[test]
    fn forms_read_stripes_brackets() {
        let form = Form::parse(
            b"metadata[booking]=b1&metadata[payment_id]=p&expand[]=latest_charge&enabled_events[0]=a&enabled_events[1]=b",
        );
        assert_eq!(form.map("metadata").len(), 2);
        assert!(form.expands("latest_charge"));
        assert_eq!(form.list("enabled_events"), ["a", "b"]);
        // Parameter order does not change what a request asks for.
        let reordered = Form::parse(b"b=2&a=1");
        let ordered = Form::parse(b"a=1&b=2");
        assert_eq!(
            reordered.fingerprint(&Method::POST, "/x"),
            ordered.fingerprint(&Method::POST, "/x")
        );
    }
}
