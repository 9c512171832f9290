//! A card gateway that speaks Stripe's PaymentIntents API over HTTP:
//! PaymentIntents created and confirmed at once with manual capture,
//! captured or cancelled later, refunds, search by metadata, and
//! `Idempotency-Key` on every call that changes anything. It talks to
//! `boxoffice-paysim` (its own process, with a durable ledger) in
//! development and tests; a real provider is its base URL and secret key
//! (plus a TLS backend for reqwest: see the workspace manifest).
//!
//! Checkout's payment id is the authorization's idempotency key and is kept
//! in the intent's metadata (`payment_id`), with the booking (`booking`)
//! and the caller's key (`client_key`), so a restarted process finds what
//! a crashed one did with a metadata search.

use std::time::Duration;

use anyhow::Context as _;
use boxoffice_runtime::config::Secret;
use serde_json::Value;

use super::{
    AuthorizeOutcome, AuthorizeRequest, PaymentProvider, ProviderError, ProviderPayment,
    ProviderStatus,
};

/// The webhook events checkout's endpoint is subscribed to (see
/// [`crate::config::CHECKOUT_SUBSCRIBED_EVENTS`]): voids, declines and
/// refunds.
pub const SUBSCRIBED_EVENTS: &[&str] = &[
    "payment_intent.canceled",
    "payment_intent.payment_failed",
    "charge.refunded",
];

/// Results a search asks for at once (Stripe's maximum).
const PAGE: &str = "100";

/// The payment simulator's development key (`boxoffice-paysim`'s default).
pub(crate) const DEV_PAYMENTS_KEY: &str = "sk_test_boxoffice_development_only";

/// Where the provider is and how to sign in.
#[derive(Clone, Debug)]
pub struct HttpProviderConfig {
    /// e.g. `http://127.0.0.1:8082` (no trailing slash).
    pub base_url: String,
    pub secret_key: Secret,
    /// Where the buyer's browser returns after 3-D Secure.
    pub return_url: Option<String>,
    /// Longest wait for one provider call.
    pub timeout: Duration,
}

impl HttpProviderConfig {
    /// The simulator at `base_url` with its development key.
    pub fn development(base_url: String) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret_key: Secret::new(DEV_PAYMENTS_KEY),
            return_url: None,
            timeout: Duration::from_secs(10),
        }
    }
}

pub struct StripeProvider {
    config: HttpProviderConfig,
    client: reqwest::Client,
}

fn unavailable(error: impl Into<anyhow::Error>) -> ProviderError {
    ProviderError::Unavailable(error.into())
}

/// A metadata search value; ids only ever hold these characters, and
/// anything else could change the query's meaning.
fn quoted(value: &str) -> Result<&str, ProviderError> {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ':')
    {
        Ok(value)
    } else {
        Err(ProviderError::Refused(
            "a search value must be an id".to_owned(),
        ))
    }
}

/// Checkout's view of a PaymentIntent (with `latest_charge` expanded).
/// Answers `None` for intents that never became payments (declined).
pub fn payment_from_intent(intent: &Value) -> Option<ProviderPayment> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    let refunded_minor = intent["latest_charge"]["amount_refunded"]
        .as_i64()
        .unwrap_or(0);
    let status = match intent["status"].as_str()? {
        // Waiting for the buyer's 3-D Secure counts as an authorization
        // under way: the reconciler cancels it when its booking runs out,
        // so a late approval cannot leave money held on the card.
        "requires_capture" | "requires_action" => ProviderStatus::Authorized,
        "succeeded" if refunded_minor > 0 => ProviderStatus::Refunded,
        "succeeded" => ProviderStatus::Captured,
        "canceled" => ProviderStatus::Voided,
        _ => return None,
    };
    let metadata = &intent["metadata"];
    Some(ProviderPayment {
        provider_ref: text(&intent["id"]),
        idempotency_key: text(&metadata["payment_id"]),
        reference: text(&metadata["booking"]),
        client_key: text(&metadata["client_key"]),
        payment_method: text(&intent["payment_method"]),
        status,
        amount_minor: intent["amount"].as_i64().unwrap_or(0),
        currency_code: text(&intent["currency"]).to_ascii_uppercase(),
        refunded_minor,
    })
}

impl StripeProvider {
    pub fn new(config: HttpProviderConfig) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()
            .context("building the payment provider's HTTP client")?;
        Ok(Self { config, client })
    }

    pub fn base_url(&self) -> &str {
        &self.config.base_url
    }

    /// Sends one request; answers the status and the JSON body. Failures
    /// to reach the provider, its own errors (5xx), rate limits and
    /// concurrent use of a key (409) are `Unavailable`: retried later with
    /// the same key. A key reused with other parameters is `KeyReused`.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        method: &'static str,
    ) -> Result<(reqwest::StatusCode, Value), ProviderError> {
        // The provider's call continues this request's trace (traceparent).
        let span = boxoffice_runtime::telemetry::http_client_span("payment provider", method);
        let mut trace = reqwest::header::HeaderMap::new();
        boxoffice_runtime::telemetry::inject(&span, &mut trace);
        let exchange = async {
            let response = request
                .bearer_auth(self.config.secret_key.expose())
                .headers(trace)
                .send()
                .await
                .map_err(|error| {
                    unavailable(anyhow::Error::new(error).context("calling the payment provider"))
                })?;
            let status = response.status();
            let body = response.bytes().await.map_err(|error| {
                unavailable(
                    anyhow::Error::new(error).context("reading the payment provider's answer"),
                )
            })?;
            Ok::<_, ProviderError>((status, body))
        };
        let (status, body) = tracing::Instrument::instrument(exchange, span).await?;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::CONFLICT
        {
            return Err(unavailable(anyhow::anyhow!(
                "the payment provider answered {status}"
            )));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(unavailable(anyhow::anyhow!(
                "the payment provider refused the secret key"
            )));
        }
        if body["error"]["type"] == "idempotency_error" {
            return Err(ProviderError::KeyReused);
        }
        Ok((status, body))
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        idempotency_key: &str,
    ) -> Result<(reqwest::StatusCode, Value), ProviderError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            self.client
                .post(format!("{}{path}", self.config.base_url))
                .header("idempotency-key", idempotency_key)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body),
            "POST",
        )
        .await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ProviderError> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        let (status, body) = self
            .send(
                self.client
                    .get(format!("{}{path}?{query}", self.config.base_url)),
                "GET",
            )
            .await?;
        if !status.is_success() {
            return Err(ProviderError::Refused(message(&body)));
        }
        Ok(body)
    }

    /// Every intent a search query matches, page after page.
    async fn search_intents(&self, query: &str) -> Result<Vec<Value>, ProviderError> {
        let mut found = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut parameters = vec![
                ("query", query),
                ("limit", PAGE),
                ("expand[]", "data.latest_charge"),
            ];
            if let Some(page) = &page {
                parameters.push(("page", page));
            }
            let body = self.get("/v1/payment_intents/search", &parameters).await?;
            if let Some(data) = body["data"].as_array() {
                found.extend(data.iter().cloned());
            }
            match body["next_page"].as_str() {
                Some(next) if body["has_more"] == true => page = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }

    /// One intent with its charge.
    pub async fn retrieve(&self, provider_ref: &str) -> Result<Value, ProviderError> {
        let id = quoted(provider_ref)?;
        self.get(
            &format!("/v1/payment_intents/{id}"),
            &[("expand[]", "latest_charge")],
        )
        .await
    }

    /// Every intent the account has, newest first (tests count charges
    /// with it; a real account would page through a lot).
    pub async fn all_intents(&self) -> Result<Vec<Value>, ProviderError> {
        let mut found: Vec<Value> = Vec::new();
        loop {
            let mut parameters = vec![("limit", PAGE), ("expand[]", "data.latest_charge")];
            let last = found
                .last()
                .and_then(|intent| intent["id"].as_str())
                .map(str::to_owned);
            if let Some(last) = &last {
                parameters.push(("starting_after", last));
            }
            let body = self.get("/v1/payment_intents", &parameters).await?;
            if let Some(data) = body["data"].as_array() {
                found.extend(data.iter().cloned());
            }
            if body["has_more"] != true {
                return Ok(found);
            }
        }
    }

    /// Every payment (declines and intents waiting for the buyer are not).
    pub async fn payments(&self) -> Result<Vec<ProviderPayment>, ProviderError> {
        Ok(self
            .all_intents()
            .await?
            .iter()
            .filter_map(payment_from_intent)
            .collect())
    }

    /// Makes sure the provider posts the events checkout takes to `url`
    /// (an endpoint already there for it is updated, not duplicated).
    pub async fn register_webhook(&self, url: &str) -> Result<(), ProviderError> {
        let known = self
            .get("/v1/webhook_endpoints", &[("limit", PAGE)])
            .await?;
        let registered = known["data"].as_array().is_some_and(|endpoints| {
            endpoints.iter().any(|endpoint| {
                endpoint["url"] == url
                    && SUBSCRIBED_EVENTS.iter().all(|wanted| {
                        endpoint["enabled_events"]
                            .as_array()
                            .is_some_and(|events| events.iter().any(|e| e == wanted))
                    })
            })
        });
        if registered {
            return Ok(());
        }
        let mut form = vec![("url", url)];
        form.extend(
            SUBSCRIBED_EVENTS
                .iter()
                .map(|event| ("enabled_events[]", *event)),
        );
        let (status, body) = self
            .post(
                "/v1/webhook_endpoints",
                &form,
                &format!("webhook-endpoint:{url}"),
            )
            .await?;
        if !status.is_success() {
            return Err(ProviderError::Refused(message(&body)));
        }
        Ok(())
    }

    /// Capture and cancel answer `payment_intent_unexpected_state` when the
    /// intent already is where the call would take it (a repeat after a
    /// crash); that counts as done.
    async fn change(
        &self,
        provider_ref: &str,
        action: &str,
        idempotency_key: &str,
        done: &[&str],
    ) -> Result<(), ProviderError> {
        let id = quoted(provider_ref)?;
        let (status, body) = self
            .post(
                &format!("/v1/payment_intents/{id}/{action}"),
                &[],
                idempotency_key,
            )
            .await?;
        if status.is_success() {
            return Ok(());
        }
        let now = body["error"]["payment_intent"]["status"]
            .as_str()
            .unwrap_or_default();
        if body["error"]["code"] == "payment_intent_unexpected_state" && done.contains(&now) {
            return Ok(());
        }
        Err(ProviderError::Refused(message(&body)))
    }
}

fn message(body: &Value) -> String {
    let error = &body["error"];
    format!(
        "{}: {}",
        error["code"].as_str().unwrap_or("error"),
        error["message"].as_str().unwrap_or("no message")
    )
}

#[async_trait::async_trait]
impl PaymentProvider for StripeProvider {
    async fn authorize(
        &self,
        request: AuthorizeRequest,
    ) -> Result<AuthorizeOutcome, ProviderError> {
        let amount = request.amount_minor.to_string();
        let currency = request.currency_code.to_ascii_lowercase();
        let mut form = vec![
            ("amount", amount.as_str()),
            ("currency", currency.as_str()),
            ("payment_method", request.payment_method.as_str()),
            ("capture_method", "manual"),
            ("confirm", "true"),
            ("metadata[booking]", request.reference.as_str()),
            ("metadata[payment_id]", request.idempotency_key.as_str()),
            ("metadata[client_key]", request.client_key.as_str()),
        ];
        if let Some(return_url) = &self.config.return_url {
            form.push(("return_url", return_url.as_str()));
        }
        let (status, body) = self
            .post("/v1/payment_intents", &form, &request.idempotency_key)
            .await?;
        if status == reqwest::StatusCode::PAYMENT_REQUIRED {
            let error = &body["error"];
            let decline_code = error["decline_code"]
                .as_str()
                .or(error["code"].as_str())
                .unwrap_or("generic_decline")
                .to_owned();
            return Ok(AuthorizeOutcome::Declined { decline_code });
        }
        if !status.is_success() {
            return Err(ProviderError::Refused(message(&body)));
        }
        let provider_ref = body["id"].as_str().unwrap_or_default().to_owned();
        // The key replays the first answer; after the buyer's
        // authentication the intent itself tells how it went.
        let body = if body["status"] == "requires_action" {
            self.retrieve(&provider_ref).await?
        } else {
            body
        };
        match body["status"].as_str() {
            Some("requires_action") => Ok(AuthorizeOutcome::ActionRequired {
                url: body["next_action"]["redirect_to_url"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                provider_ref,
            }),
            Some("requires_capture") | Some("succeeded") => {
                Ok(AuthorizeOutcome::Authorized { provider_ref })
            }
            Some("requires_payment_method") => Ok(AuthorizeOutcome::Declined {
                decline_code: body["last_payment_error"]["decline_code"]
                    .as_str()
                    .or(body["last_payment_error"]["code"].as_str())
                    .unwrap_or("generic_decline")
                    .to_owned(),
            }),
            other => Err(ProviderError::Refused(format!(
                "the payment is {} at the provider",
                other.unwrap_or("in an unknown state")
            ))),
        }
    }

    async fn capture(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        self.change(provider_ref, "capture", idempotency_key, &["succeeded"])
            .await
    }

    async fn void(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), ProviderError> {
        self.change(provider_ref, "cancel", idempotency_key, &["canceled"])
            .await
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        if amount_minor == 0 {
            // Nothing to give back; Stripe refuses refunds of 0.
            return Ok(());
        }
        let amount = amount_minor.to_string();
        let (status, body) = self
            .post(
                "/v1/refunds",
                &[("payment_intent", provider_ref), ("amount", &amount)],
                idempotency_key,
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
        let query = format!("metadata['payment_id']:'{}'", quoted(idempotency_key)?);
        Ok(self
            .search_intents(&query)
            .await?
            .iter()
            .find_map(payment_from_intent))
    }

    async fn search(&self, reference: &str) -> Result<Vec<ProviderPayment>, ProviderError> {
        let query = format!("metadata['booking']:'{}'", quoted(reference)?);
        Ok(self
            .search_intents(&query)
            .await?
            .iter()
            .filter_map(payment_from_intent)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    //! The same behaviour the in-process provider's tests ask for, from the
    //! simulator over real HTTP.

    use super::*;

    async fn gateway() -> (StripeProvider, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let paysim = boxoffice_paysim::Paysim::bind(boxoffice_paysim::PaysimConfig::for_ledger(
            dir.path().join("ledger.jsonl"),
        ))
        .await
        .unwrap();
        let url = paysim.url();
        tokio::spawn(paysim.run_until_stopped(boxoffice_runtime::Shutdown::new()));
        (
            StripeProvider::new(HttpProviderConfig::development(url)).unwrap(),
            dir,
        )
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

    async fn authorized(provider: &StripeProvider, request: AuthorizeRequest) -> String {
        match provider.authorize(request).await.unwrap() {
            AuthorizeOutcome::Authorized { provider_ref } => provider_ref,
            other => panic!("expected an authorization, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn operations_are_idempotent() {
        let (provider, _dir) = gateway().await;
        let provider_ref = authorized(&provider, request("k1", "tok_visa")).await;
        assert_eq!(
            authorized(&provider, request("k1", "tok_visa")).await,
            provider_ref
        );
        assert_eq!(provider.payments().await.unwrap().len(), 1);
        provider.capture(&provider_ref, "c").await.unwrap();
        provider.capture(&provider_ref, "c").await.unwrap();
        // Captured already: another key's capture is done too.
        provider.capture(&provider_ref, "c2").await.unwrap();
        provider.refund(&provider_ref, 400, "r1").await.unwrap();
        provider.refund(&provider_ref, 400, "r1").await.unwrap();
        let payment = provider.lookup("k1").await.unwrap().unwrap();
        assert_eq!(payment.status, ProviderStatus::Refunded);
        assert_eq!(payment.refunded_minor, 400);
        assert_eq!(payment.reference, "booking-of-k1");
        assert_eq!(payment.client_key, "client-k1");
        assert_eq!(payment.currency_code, "EUR");
        assert!(provider.void(&provider_ref, "v").await.is_err());
        assert!(matches!(
            provider.refund(&provider_ref, 700, "r2").await,
            Err(ProviderError::Refused(_))
        ));
    }

    #[tokio::test]
    async fn a_key_reused_with_other_parameters_is_refused_and_changes_nothing() {
        let (provider, _dir) = gateway().await;
        let provider_ref = authorized(&provider, request("k4", "tok_visa")).await;
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
        provider
            .authorize(request("k5", "tok_chargeDeclined"))
            .await
            .unwrap();
        assert!(matches!(
            provider.authorize(request("k5", "tok_visa")).await,
            Err(ProviderError::KeyReused)
        ));
        assert_eq!(provider.payments().await.unwrap().len(), 1);
        provider.capture(&provider_ref, "c").await.unwrap();
        provider.refund(&provider_ref, 300, "r").await.unwrap();
        assert!(matches!(
            provider.refund(&provider_ref, 500, "r").await,
            Err(ProviderError::KeyReused)
        ));
        assert!(matches!(
            provider.void(&provider_ref, "c").await,
            Err(ProviderError::KeyReused)
        ));
        let payment = provider.lookup("k4").await.unwrap().unwrap();
        assert_eq!((payment.amount_minor, payment.refunded_minor), (1_000, 300));
    }

    #[tokio::test]
    async fn test_tokens_decline_with_their_codes() {
        let (provider, _dir) = gateway().await;
        for (token, code) in [
            ("tok_chargeDeclined", "generic_decline"),
            ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
        ] {
            let key = format!("key-{token}");
            let outcome = provider.authorize(request(&key, token)).await.unwrap();
            assert_eq!(
                outcome,
                AuthorizeOutcome::Declined {
                    decline_code: code.to_owned()
                }
            );
            // The same decision again for the same key.
            assert_eq!(
                provider.authorize(request(&key, token)).await.unwrap(),
                outcome
            );
            assert!(provider.lookup(&key).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn authorizations_are_found_by_reference() {
        let (provider, _dir) = gateway().await;
        let for_booking = |key: &str, token: &str| AuthorizeRequest {
            reference: "b1".to_owned(),
            ..request(key, token)
        };
        let first = authorized(&provider, for_booking("a", "tok_visa")).await;
        provider
            .authorize(for_booking("b", "tok_chargeDeclined"))
            .await
            .unwrap();
        authorized(&provider, for_booking("c", "tok_visa")).await;
        authorized(&provider, request("d", "tok_visa")).await;
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
        provider.capture(&first, "cap-a").await.unwrap();
        let captured: Vec<String> = provider
            .search("b1")
            .await
            .unwrap()
            .into_iter()
            .filter(|payment| payment.status == ProviderStatus::Captured)
            .map(|payment| payment.idempotency_key)
            .collect();
        assert_eq!(captured, ["a"]);
        // Search values are ids; anything else could change the query.
        assert!(provider.search("x' OR status:'succeeded").await.is_err());
    }

    #[tokio::test]
    async fn voided_payments_cannot_be_captured() {
        let (provider, _dir) = gateway().await;
        let provider_ref = authorized(&provider, request("k3", "tok_visa")).await;
        provider.void(&provider_ref, "v").await.unwrap();
        provider.void(&provider_ref, "v2").await.unwrap();
        assert!(matches!(
            provider.capture(&provider_ref, "c").await,
            Err(ProviderError::Refused(_))
        ));
        assert_eq!(
            provider.lookup("k3").await.unwrap().unwrap().status,
            ProviderStatus::Voided
        );
    }

    #[tokio::test]
    async fn a_wrong_key_or_no_provider_is_unavailable() {
        let (provider, _dir) = gateway().await;
        let wrong = StripeProvider::new(HttpProviderConfig {
            secret_key: Secret::new("sk_test_not_the_key"),
            ..HttpProviderConfig::development(provider.base_url().to_owned())
        })
        .unwrap();
        assert!(matches!(
            wrong.authorize(request("k", "tok_visa")).await,
            Err(ProviderError::Unavailable(_))
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let nobody = StripeProvider::new(HttpProviderConfig::development(closed)).unwrap();
        assert!(matches!(
            nobody.lookup("k").await,
            Err(ProviderError::Unavailable(_))
        ));
    }
}
