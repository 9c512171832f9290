//! The PayPal gateway: a client of PayPal's REST API (Orders v2 with intent
//! `AUTHORIZE`, Payments v2, Transaction Search, webhook verification)
//! behind the same [`PaymentProvider`] interface as the card gateway. It
//! talks to `boxoffice-paysim` in development and tests; a real account is
//! its base URL, client id and secret (and webhook id).
//!
//! One attempt is one order. Checkout's payment id is the order's
//! `invoice_id` and the `PayPal-Request-Id` of its creation, the booking its
//! `custom_id`, the caller's key its purchase unit's `reference_id`; the
//! provider reference checkout keeps is the order id. Confirming creates
//! the order (the same request id answers the same order, so a retry
//! resumes it) and reads it: not approved yet, the buyer is sent to the
//! approval link (`ActionRequired`); approved, it is authorized
//! (`PayPal-Request-Id: authorize:{payment id}`); capture, void and refund
//! read the order for its authorization or capture first, so a repeat
//! after a crash finds the step done.
//!
//! Finding what a crashed process did: PayPal has no search for orders,
//! so `lookup` and `search` read Transaction Search (the last
//! [`SEARCH_WINDOW`], authorizations included) and match `invoice_id` or
//! `custom_field`, then read each order found. Only authorizations and
//! later steps are transactions, which is all the reconciler needs: an
//! order never authorized holds no money (a late approval of it moves
//! nothing, since only checkout authorizes). Live PayPal lists a
//! transaction up to three hours late; see ARCHITECTURE.md for what that
//! means for reconciliation against a live account.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use boxoffice_runtime::config::Secret;
use serde_json::{Value, json};

use super::{
    AuthorizeOutcome, AuthorizeRequest, PaymentProvider, ProviderError, ProviderPayment,
    ProviderStatus,
};

pub use super::PAYPAL_METHOD;

/// The events checkout's PayPal webhook subscribes to: like the card
/// gateway's, the ends of payments that took no money or gave it back.
pub const SUBSCRIBED_EVENTS: &[&str] = &[
    "PAYMENT.AUTHORIZATION.VOIDED",
    "PAYMENT.CAPTURE.DENIED",
    "PAYMENT.CAPTURE.REFUNDED",
];

/// How far back `lookup` and `search` read Transaction Search (PayPal
/// allows 31 days per call; a pending booking is settled within minutes).
pub const SEARCH_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);
const SEARCH_PAGE: usize = 500;

/// The simulator's development credentials (`boxoffice-paysim`'s defaults).
pub const DEV_CLIENT_ID: &str = "boxoffice-paypal-client-development-only";
pub const DEV_SECRET: &str = "boxoffice-paypal-secret-development-only";

/// Where PayPal is and how to sign in.
#[derive(Clone, Debug)]
pub struct PaypalConfig {
    /// e.g. `http://127.0.0.1:8082` or `https://api-m.paypal.com`.
    pub base_url: String,
    pub client_id: String,
    pub secret: Secret,
    /// The webhook checkout verifies deliveries against. `None`: checkout
    /// registers its endpoint at start and uses the id PayPal answers.
    pub webhook_id: Option<String>,
    /// Where the buyer's browser returns after approving or cancelling.
    pub return_url: Option<String>,
    pub cancel_url: Option<String>,
    /// Longest wait for one call.
    pub timeout: Duration,
}

impl PaypalConfig {
    /// The simulator at `base_url` with its development credentials.
    pub fn development(base_url: String) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client_id: DEV_CLIENT_ID.to_owned(),
            secret: Secret::new(DEV_SECRET),
            webhook_id: None,
            return_url: None,
            cancel_url: None,
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct PaypalProvider {
    config: PaypalConfig,
    client: reqwest::Client,
    /// The access token and when to stop using it.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
    webhook_id: std::sync::RwLock<Option<String>>,
}

fn unavailable(error: impl Into<anyhow::Error>) -> ProviderError {
    ProviderError::Unavailable(error.into())
}

/// Decimal places of a currency's amounts at PayPal.
fn decimals(currency: &str) -> u32 {
    match currency {
        "JPY" | "HUF" | "TWD" => 0,
        _ => 2,
    }
}

/// Minor units as PayPal writes an amount (`4650` EUR → `"46.50"`).
pub fn format_value(minor: i64, currency: &str) -> String {
    let places = decimals(currency);
    if places == 0 {
        return minor.to_string();
    }
    let scale = 10i64.pow(places);
    format!(
        "{}{}.{:0width$}",
        if minor < 0 { "-" } else { "" },
        minor.abs() / scale,
        minor.abs() % scale,
        width = places as usize
    )
}

/// A PayPal amount in minor units (`"46.5"` EUR → 4650).
pub fn parse_value(text: &str, currency: &str) -> Option<i64> {
    let places = decimals(currency) as usize;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || fraction.len() > places {
        return None;
    }
    let mut minor: i64 = whole.parse().ok()?;
    for index in 0..places {
        let digit = match fraction.as_bytes().get(index) {
            Some(byte) if byte.is_ascii_digit() => i64::from(byte - b'0'),
            Some(_) => return None,
            None => 0,
        };
        minor = minor.checked_mul(10)?.checked_add(digit)?;
    }
    Some(if negative { -minor } else { minor })
}

fn amount_of(value: &Value) -> i64 {
    let currency = value["currency_code"].as_str().unwrap_or_default();
    value["value"]
        .as_str()
        .and_then(|text| parse_value(text, currency))
        .unwrap_or(0)
}

/// An id PayPal made (orders, authorizations, captures): letters and
/// digits only, so it can go into a path as it is.
fn checked_id(id: &str) -> Result<&str, ProviderError> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(ProviderError::Refused(
            "not a PayPal resource id".to_owned(),
        ))
    }
}

/// The order's one purchase unit.
fn unit(order: &Value) -> &Value {
    &order["purchase_units"][0]
}

fn authorization(order: &Value) -> &Value {
    &unit(order)["payments"]["authorizations"][0]
}

fn capture_of(order: &Value) -> &Value {
    &unit(order)["payments"]["captures"][0]
}

/// Checkout's view of an order; `None` for an order that never became a
/// payment (not authorized, or its authorization denied).
pub fn payment_from_order(order: &Value) -> Option<ProviderPayment> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let unit = unit(order);
    let refunded_minor: i64 = unit["payments"]["refunds"]
        .as_array()
        .map(|refunds| {
            refunds
                .iter()
                .filter(|refund| refund["status"] == "COMPLETED")
                .map(|refund| amount_of(&refund["amount"]))
                .sum()
        })
        .unwrap_or(0);
    let status = match authorization(order)["status"].as_str()? {
        "CREATED" | "PENDING" => ProviderStatus::Authorized,
        "CAPTURED" | "PARTIALLY_CAPTURED" if refunded_minor > 0 => ProviderStatus::Refunded,
        "CAPTURED" | "PARTIALLY_CAPTURED" => ProviderStatus::Captured,
        "VOIDED" => ProviderStatus::Voided,
        _ => return None,
    };
    let client_key = match unit["reference_id"].as_str() {
        None | Some("default") => String::new(),
        Some(key) => key.to_owned(),
    };
    Some(ProviderPayment {
        provider_ref: text(&order["id"]),
        idempotency_key: text(&unit["invoice_id"]),
        reference: text(&unit["custom_id"]),
        client_key,
        payment_method: PAYPAL_METHOD.to_owned(),
        status,
        amount_minor: amount_of(&unit["amount"]),
        currency_code: text(&unit["amount"]["currency_code"]),
        refunded_minor,
    })
}

/// `NAME: issue` of a PayPal error, for logs.
fn message(body: &Value) -> String {
    format!(
        "{}: {}",
        body["name"].as_str().unwrap_or("error"),
        issue(body).unwrap_or_else(|| body["message"].as_str().unwrap_or("no message"))
    )
}

fn issue(body: &Value) -> Option<&str> {
    body["details"][0]["issue"].as_str()
}

/// The buyer's approval link of an order.
fn approval_link(order: &Value) -> Option<String> {
    order["links"].as_array()?.iter().find_map(|link| {
        matches!(link["rel"].as_str(), Some("approve" | "payer-action"))
            .then(|| link["href"].as_str().map(str::to_owned))
            .flatten()
    })
}

impl PaypalProvider {
    pub fn new(config: PaypalConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()
            .context("building PayPal's HTTP client")?;
        let webhook_id = std::sync::RwLock::new(config.webhook_id.clone());
        Ok(Self {
            config,
            client,
            token: tokio::sync::Mutex::new(None),
            webhook_id,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// A bearer token, from the cache or a new client-credentials grant.
    async fn token(&self, fresh: bool) -> Result<String, ProviderError> {
        let mut cached = self.token.lock().await;
        if !fresh
            && let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let response = self
            .client
            .post(format!("{}/v1/oauth2/token", self.config.base_url))
            .basic_auth(&self.config.client_id, Some(self.config.secret.expose()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|error| {
                unavailable(anyhow::Error::new(error).context("signing in to PayPal"))
            })?;
        let status = response.status();
        let body: Value = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let token = body["access_token"]
            .as_str()
            .filter(|_| status.is_success());
        let Some(token) = token else {
            // Wrong credentials are a configuration fault; nothing moved.
            return Err(unavailable(anyhow::anyhow!(
                "PayPal refused the client credentials ({status})"
            )));
        };
        let lifetime = body["expires_in"]
            .as_u64()
            .unwrap_or(300)
            .saturating_sub(60);
        *cached = Some((
            token.to_owned(),
            Instant::now() + Duration::from_secs(lifetime),
        ));
        Ok(token.to_owned())
    }

    /// One call with a bearer token (a new one once if PayPal refuses the
    /// cached one). PayPal's own failures (5xx), rate limits and requests
    /// still running under the same id (409) are `Unavailable`; a request
    /// id reused with another request is `KeyReused`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        request_id: Option<&str>,
    ) -> Result<(reqwest::StatusCode, Value), ProviderError> {
        let mut fresh = false;
        loop {
            let token = self.token(fresh).await?;
            let verb = if method == reqwest::Method::GET {
                "GET"
            } else {
                "POST"
            };
            let span = boxoffice_runtime::telemetry::http_client_span("paypal", verb);
            let mut headers = reqwest::header::HeaderMap::new();
            boxoffice_runtime::telemetry::inject(&span, &mut headers);
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.config.base_url))
                .bearer_auth(token)
                .headers(headers);
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            if let Some(id) = request_id {
                request = request.header("paypal-request-id", id);
            }
            let exchange = async {
                let response = request.send().await.map_err(|error| {
                    unavailable(anyhow::Error::new(error).context("calling PayPal"))
                })?;
                let status = response.status();
                let bytes = response.bytes().await.map_err(|error| {
                    unavailable(anyhow::Error::new(error).context("reading PayPal's answer"))
                })?;
                Ok::<_, ProviderError>((status, bytes))
            };
            let (status, bytes) = tracing::Instrument::instrument(exchange, span).await?;
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status == reqwest::StatusCode::UNAUTHORIZED && !fresh {
                fresh = true;
                continue;
            }
            if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::CONFLICT
                || status == reqwest::StatusCode::UNAUTHORIZED
            {
                return Err(unavailable(anyhow::anyhow!("PayPal answered {status}")));
            }
            if issue(&answer) == Some("DUPLICATE_REQUEST_ID") {
                return Err(ProviderError::KeyReused);
            }
            return Ok((status, answer));
        }
    }

    /// An order, with its payments.
    pub async fn order(&self, order_id: &str) -> Result<Value, ProviderError> {
        let id = checked_id(order_id)?;
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/v2/checkout/orders/{id}"),
                None,
                None,
            )
            .await?;
        if !status.is_success() {
            return Err(ProviderError::Refused(message(&body)));
        }
        Ok(body)
    }

    /// What an order answers a confirmation: approve first, authorized,
    /// or declined.
    async fn decide(
        &self,
        order: &Value,
        payment_id: &str,
    ) -> Result<AuthorizeOutcome, ProviderError> {
        let provider_ref = order["id"].as_str().unwrap_or_default().to_owned();
        match order["status"].as_str() {
            Some("CREATED" | "PAYER_ACTION_REQUIRED") => Ok(AuthorizeOutcome::ActionRequired {
                url: approval_link(order).unwrap_or_default(),
                provider_ref,
            }),
            Some("APPROVED") => {
                let id = checked_id(&provider_ref)?;
                let (status, body) = self
                    .call(
                        reqwest::Method::POST,
                        &format!("/v2/checkout/orders/{id}/authorize"),
                        Some(&json!({})),
                        Some(&format!("authorize:{payment_id}")),
                    )
                    .await?;
                match (status.is_success(), issue(&body)) {
                    (true, _) => Ok(AuthorizeOutcome::Authorized { provider_ref }),
                    (false, Some("INSTRUMENT_DECLINED")) => Ok(AuthorizeOutcome::Declined {
                        decline_code: "instrument_declined".to_owned(),
                    }),
                    (false, Some("ORDER_ALREADY_AUTHORIZED")) => {
                        Box::pin(self.decide(&self.order(id).await?, payment_id)).await
                    }
                    _ => Err(ProviderError::Refused(message(&body))),
                }
            }
            Some("COMPLETED") => match authorization(order)["status"].as_str() {
                Some("CREATED" | "PENDING" | "CAPTURED" | "PARTIALLY_CAPTURED") => {
                    Ok(AuthorizeOutcome::Authorized { provider_ref })
                }
                Some("DENIED") => Ok(AuthorizeOutcome::Declined {
                    decline_code: "authorization_denied".to_owned(),
                }),
                other => Err(ProviderError::Refused(format!(
                    "the PayPal authorization is {}",
                    other.unwrap_or("missing")
                ))),
            },
            other => Err(ProviderError::Refused(format!(
                "the PayPal order is {}",
                other.unwrap_or("in an unknown state")
            ))),
        }
    }

    /// Every Transaction Search record of the last [`SEARCH_WINDOW`],
    /// authorizations included.
    async fn transactions(&self) -> Result<Vec<Value>, ProviderError> {
        let end = chrono::Utc::now() + chrono::Duration::minutes(1);
        let start = end
            - chrono::Duration::from_std(SEARCH_WINDOW)
                .unwrap_or_else(|_| chrono::Duration::days(3));
        let format = |at: chrono::DateTime<chrono::Utc>| {
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        let mut found = Vec::new();
        for page in 1.. {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("start_date", &format(start))
                .append_pair("end_date", &format(end))
                .append_pair("fields", "transaction_info")
                .append_pair("balance_affecting_records_only", "N")
                .append_pair("page_size", &SEARCH_PAGE.to_string())
                .append_pair("page", &page.to_string())
                .finish();
            let (status, body) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/reporting/transactions?{query}"),
                    None,
                    None,
                )
                .await?;
            if !status.is_success() {
                return Err(ProviderError::Refused(message(&body)));
            }
            if let Some(details) = body["transaction_details"].as_array() {
                found.extend(details.iter().map(|d| d["transaction_info"].clone()));
            }
            if body["total_pages"].as_u64().unwrap_or(1) <= page {
                break;
            }
        }
        Ok(found)
    }

    /// The payments of the orders whose transactions `matches` picks.
    async fn payments_where(
        &self,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Vec<ProviderPayment>, ProviderError> {
        let orders: BTreeSet<String> = self
            .transactions()
            .await?
            .iter()
            .filter(|info| matches(info))
            .filter_map(|info| info["paypal_reference_id"].as_str().map(str::to_owned))
            .collect();
        let mut payments = Vec::new();
        for order_id in orders {
            if let Some(payment) = payment_from_order(&self.order(&order_id).await?) {
                payments.push(payment);
            }
        }
        Ok(payments)
    }

    /// Every payment of the last [`SEARCH_WINDOW`] (tests count them).
    pub async fn payments(&self) -> Result<Vec<ProviderPayment>, ProviderError> {
        self.payments_where(|_| true).await
    }

    /// Makes sure PayPal posts the events checkout takes to `url`, and
    /// remembers the webhook's id for verifying deliveries (a configured
    /// id is used as it is).
    pub async fn register_webhook(&self, url: &str) -> Result<String, ProviderError> {
        if let Some(id) = self.webhook_id() {
            return Ok(id);
        }
        let (_, known) = self
            .call(
                reqwest::Method::GET,
                "/v1/notifications/webhooks",
                None,
                None,
            )
            .await?;
        let existing = known["webhooks"].as_array().and_then(|webhooks| {
            webhooks
                .iter()
                .find(|webhook| webhook["url"] == url)
                .and_then(|webhook| webhook["id"].as_str().map(str::to_owned))
        });
        let id = match existing {
            Some(id) => id,
            None => {
                let types: Vec<Value> = SUBSCRIBED_EVENTS
                    .iter()
                    .map(|name| json!({"name": name}))
                    .collect();
                let (status, body) = self
                    .call(
                        reqwest::Method::POST,
                        "/v1/notifications/webhooks",
                        Some(&json!({"url": url, "event_types": types})),
                        None,
                    )
                    .await?;
                match body["id"].as_str().filter(|_| status.is_success()) {
                    Some(id) => id.to_owned(),
                    None => return Err(ProviderError::Refused(message(&body))),
                }
            }
        };
        if let Ok(mut slot) = self.webhook_id.write() {
            *slot = Some(id.clone());
        }
        Ok(id)
    }

    pub fn webhook_id(&self) -> Option<String> {
        self.webhook_id.read().ok().and_then(|id| id.clone())
    }

    /// Asks PayPal whether a delivery is genuine
    /// (`/v1/notifications/verify-webhook-signature` with its transmission
    /// headers and the event as received). `false` for anything missing.
    pub async fn verify_webhook(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<bool, ProviderError> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let (Some(webhook_id), Ok(event)) =
            (self.webhook_id(), serde_json::from_slice::<Value>(body))
        else {
            return Ok(false);
        };
        let names = [
            ("auth_algo", "paypal-auth-algo"),
            ("cert_url", "paypal-cert-url"),
            ("transmission_id", "paypal-transmission-id"),
            ("transmission_sig", "paypal-transmission-sig"),
            ("transmission_time", "paypal-transmission-time"),
        ];
        let mut request = json!({"webhook_id": webhook_id, "webhook_event": event});
        for (field, name) in names {
            let Some(value) = header(name) else {
                return Ok(false);
            };
            request[field] = Value::String(value.to_owned());
        }
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                "/v1/notifications/verify-webhook-signature",
                Some(&request),
                None,
            )
            .await?;
        Ok(status.is_success() && answer["verification_status"] == "SUCCESS")
    }
}

#[async_trait::async_trait]
impl PaymentProvider for PaypalProvider {
    async fn authorize(
        &self,
        request: AuthorizeRequest,
    ) -> Result<AuthorizeOutcome, ProviderError> {
        let currency = request.currency_code.to_ascii_uppercase();
        let mut unit = json!({
            "custom_id": request.reference,
            "invoice_id": request.idempotency_key,
            "amount": {
                "currency_code": currency,
                "value": format_value(request.amount_minor, &currency),
            },
        });
        if !request.client_key.is_empty() {
            unit["reference_id"] = Value::String(request.client_key.clone());
        }
        let mut order = json!({"intent": "AUTHORIZE", "purchase_units": [unit]});
        let mut context = json!({"user_action": "CONTINUE", "shipping_preference": "NO_SHIPPING"});
        if let Some(url) = &self.config.return_url {
            context["return_url"] = Value::String(url.clone());
        }
        if let Some(url) = &self.config.cancel_url {
            context["cancel_url"] = Value::String(url.clone());
        }
        order["application_context"] = context;
        let (status, created) = self
            .call(
                reqwest::Method::POST,
                "/v2/checkout/orders",
                Some(&order),
                Some(&request.idempotency_key),
            )
            .await?;
        if !status.is_success() {
            return Err(ProviderError::Refused(message(&created)));
        }
        // The request id replays the creation's answer; the order itself
        // tells what the buyer did since.
        let order_id = created["id"].as_str().unwrap_or_default();
        let order = self.order(order_id).await?;
        self.decide(&order, &request.idempotency_key).await
    }

    async fn capture(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        let order = self.order(provider_ref).await?;
        let auth = authorization(&order);
        match auth["status"].as_str() {
            Some("CAPTURED" | "PARTIALLY_CAPTURED") => return Ok(()),
            Some("CREATED" | "PENDING") => {}
            other => {
                return Err(ProviderError::Refused(format!(
                    "cannot capture a PayPal authorization that is {}",
                    other.unwrap_or("missing")
                )));
            }
        }
        let id = checked_id(auth["id"].as_str().unwrap_or_default())?;
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v2/payments/authorizations/{id}/capture"),
                Some(&json!({"final_capture": true})),
                Some(idempotency_key),
            )
            .await?;
        if status.is_success() || issue(&body) == Some("AUTHORIZATION_ALREADY_CAPTURED") {
            return Ok(());
        }
        Err(ProviderError::Refused(message(&body)))
    }

    async fn void(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), ProviderError> {
        let order = self.order(provider_ref).await?;
        let auth = authorization(&order);
        match auth["status"].as_str() {
            // Never authorized: nothing is held.
            None | Some("VOIDED" | "DENIED") => return Ok(()),
            Some("CREATED" | "PENDING") => {}
            Some(other) => {
                return Err(ProviderError::Refused(format!(
                    "cannot void a PayPal authorization that is {other}"
                )));
            }
        }
        let id = checked_id(auth["id"].as_str().unwrap_or_default())?;
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v2/payments/authorizations/{id}/void"),
                None,
                Some(idempotency_key),
            )
            .await?;
        if status.is_success() || issue(&body) == Some("PREVIOUSLY_VOIDED") {
            return Ok(());
        }
        Err(ProviderError::Refused(message(&body)))
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        if amount_minor == 0 {
            return Ok(());
        }
        let order = self.order(provider_ref).await?;
        let capture = capture_of(&order);
        let id = checked_id(capture["id"].as_str().unwrap_or_default())?;
        let currency = capture["amount"]["currency_code"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/v2/payments/captures/{id}/refund"),
                Some(&json!({"amount": {
                    "currency_code": currency,
                    "value": format_value(amount_minor, &currency),
                }})),
                Some(idempotency_key),
            )
            .await?;
        if status.is_success() {
            return Ok(());
        }
        Err(ProviderError::Refused(message(&body)))
    }

    async fn lookup(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<ProviderPayment>, ProviderError> {
        Ok(self
            .payments_where(|info| info["invoice_id"] == idempotency_key)
            .await?
            .into_iter()
            .next())
    }

    async fn search(&self, reference: &str) -> Result<Vec<ProviderPayment>, ProviderError> {
        self.payments_where(|info| info["custom_field"] == reference)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn gateway() -> (PaypalProvider, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let paysim = boxoffice_paysim::Paysim::bind(boxoffice_paysim::PaysimConfig::for_ledger(
            dir.path().join("ledger.jsonl"),
        ))
        .await
        .unwrap();
        let url = paysim.url();
        tokio::spawn(paysim.run_until_stopped(boxoffice_runtime::Shutdown::new()));
        (
            PaypalProvider::new(PaypalConfig::development(url)).unwrap(),
            dir,
        )
    }

    fn request(key: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            idempotency_key: key.to_owned(),
            reference: format!("booking-of-{key}"),
            client_key: format!("client-{key}"),
            amount_minor: 4_650,
            currency_code: "EUR".to_owned(),
            payment_method: PAYPAL_METHOD.to_owned(),
        }
    }

    /// The buyer at the approval page.
    async fn buyer(url: &str, outcome: &str) {
        let answer = boxoffice_paysim::answer_buyer_page(&reqwest::Client::new(), url, outcome)
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
    }

    async fn approval(provider: &PaypalProvider, key: &str) -> (String, String) {
        match provider.authorize(request(key)).await.unwrap() {
            AuthorizeOutcome::ActionRequired { provider_ref, url } => (provider_ref, url),
            other => panic!("expected the approval step, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_approved_order_is_authorized_captured_and_refunded_once() {
        let (provider, _dir) = gateway().await;
        let (order, url) = approval(&provider, "k1").await;
        assert!(url.starts_with(provider.base_url()), "{url}");
        // Before approval, asking again answers the same order and link.
        assert_eq!(
            approval(&provider, "k1").await,
            (order.clone(), url.clone())
        );
        assert!(
            provider.lookup("k1").await.unwrap().is_none(),
            "no money yet"
        );
        buyer(&url, "approve").await;
        let authorized = provider.authorize(request("k1")).await.unwrap();
        assert_eq!(
            authorized,
            AuthorizeOutcome::Authorized {
                provider_ref: order.clone()
            }
        );
        assert_eq!(provider.authorize(request("k1")).await.unwrap(), authorized);
        provider.capture(&order, "c1").await.unwrap();
        provider.capture(&order, "c1").await.unwrap();
        provider.capture(&order, "c2").await.unwrap();
        assert!(provider.void(&order, "v").await.is_err());
        provider.refund(&order, 4_500, "r1").await.unwrap();
        provider.refund(&order, 4_500, "r1").await.unwrap();
        let payment = provider.lookup("k1").await.unwrap().unwrap();
        assert_eq!(payment.status, ProviderStatus::Refunded);
        assert_eq!(payment.refunded_minor, 4_500);
        assert_eq!(payment.reference, "booking-of-k1");
        assert_eq!(payment.client_key, "client-k1");
        assert_eq!(payment.payment_method, PAYPAL_METHOD);
        assert!(matches!(
            provider.refund(&order, 500, "r2").await,
            Err(ProviderError::Refused(_))
        ));
        assert_eq!(provider.search("booking-of-k1").await.unwrap().len(), 1);
        assert!(
            provider
                .search("booking-of-nobody")
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_cancelled_or_declining_approval_takes_no_money() {
        let (provider, _dir) = gateway().await;
        let (_, url) = approval(&provider, "cancelled").await;
        buyer(&url, "cancel").await;
        assert!(matches!(
            provider.authorize(request("cancelled")).await.unwrap(),
            AuthorizeOutcome::ActionRequired { .. }
        ));
        let (_, url) = approval(&provider, "declining").await;
        buyer(&url, "decline").await;
        let declined = provider.authorize(request("declining")).await.unwrap();
        assert!(matches!(declined, AuthorizeOutcome::Declined { .. }));
        assert_eq!(
            provider.authorize(request("declining")).await.unwrap(),
            declined
        );
        assert!(provider.payments().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_voided_authorization_cannot_be_captured_and_a_reused_key_is_refused() {
        let (provider, _dir) = gateway().await;
        let (order, url) = approval(&provider, "k3").await;
        buyer(&url, "approve").await;
        provider.authorize(request("k3")).await.unwrap();
        provider.void(&order, "v").await.unwrap();
        provider.void(&order, "v2").await.unwrap();
        assert!(provider.capture(&order, "c").await.is_err());
        assert_eq!(
            provider.lookup("k3").await.unwrap().unwrap().status,
            ProviderStatus::Voided
        );
        let more = AuthorizeRequest {
            amount_minor: 9_999,
            ..request("k3")
        };
        assert!(matches!(
            provider.authorize(more).await,
            Err(ProviderError::KeyReused)
        ));
        assert!(provider.order("../../v1").await.is_err());
    }

    #[tokio::test]
    async fn wrong_credentials_or_no_paypal_are_unavailable() {
        let (provider, _dir) = gateway().await;
        let wrong = PaypalProvider::new(PaypalConfig {
            secret: Secret::new("not-the-paypal-secret"),
            ..PaypalConfig::development(provider.base_url().to_owned())
        })
        .unwrap();
        assert!(matches!(
            wrong.authorize(request("k")).await,
            Err(ProviderError::Unavailable(_))
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let nobody = PaypalProvider::new(PaypalConfig::development(closed)).unwrap();
        assert!(matches!(
            nobody.lookup("k").await,
            Err(ProviderError::Unavailable(_))
        ));
    }

    #[test]
    fn amounts_round_trip() {
        for (minor, currency, text) in [
            (4650, "EUR", "46.50"),
            (5, "USD", "0.05"),
            (-4500, "EUR", "-45.00"),
            (4650, "JPY", "4650"),
        ] {
            assert_eq!(format_value(minor, currency), text);
            assert_eq!(parse_value(text, currency), Some(minor));
        }
        assert_eq!(parse_value("46.5", "EUR"), Some(4650));
        assert_eq!(parse_value("1.234", "EUR"), None);
        assert_eq!(parse_value("x", "EUR"), None);
    }

    #[test]
    fn orders_read_as_payments() {
        let order = json!({
            "id": "5O190127TN364715T",
            "status": "COMPLETED",
            "purchase_units": [{
                "reference_id": "client-key",
                "custom_id": "booking-1",
                "invoice_id": "payment-1",
                "amount": {"currency_code": "EUR", "value": "46.50"},
                "payments": {
                    "authorizations": [{"id": "AUTH1", "status": "CAPTURED"}],
                    "captures": [{"id": "CAP1", "status": "PARTIALLY_REFUNDED"}],
                    "refunds": [{"id": "R1", "status": "COMPLETED", "amount": {"currency_code": "EUR", "value": "45.00"}}],
                },
            }],
        });
        let payment = payment_from_order(&order).unwrap();
        assert_eq!(payment.status, ProviderStatus::Refunded);
        assert_eq!(payment.refunded_minor, 4500);
        assert_eq!(payment.amount_minor, 4650);
        assert_eq!(payment.idempotency_key, "payment-1");
        assert_eq!(payment.reference, "booking-1");
        assert_eq!(payment.client_key, "client-key");
        let created = json!({"id": "X", "status": "APPROVED", "purchase_units": [{"amount": {}}]});
        assert!(payment_from_order(&created).is_none(), "not a payment yet");
        assert!(checked_id("../x").is_err());
    }
}
