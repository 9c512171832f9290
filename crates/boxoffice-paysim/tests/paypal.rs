//! PayPal's part of the simulator over real HTTP: sign-in and PayPal's 401,
//! the order → approval → authorize → capture → refund path, every error
//! in PayPal's shape, `PayPal-Request-Id` replays and refusals, Transaction
//! Search, and a ledger that keeps every answered change across a restart.

use boxoffice_paysim::config::{DEV_PAYPAL_CLIENT_ID, DEV_PAYPAL_SECRET};
use boxoffice_paysim::{Paysim, PaysimConfig};
use serde_json::{Value, json};

async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

struct Sim {
    url: String,
    http: reqwest::Client,
    token: String,
    shutdown: boxoffice_runtime::Shutdown,
}

async fn start(ledger: &std::path::Path) -> Sim {
    let paysim = Paysim::bind(PaysimConfig::for_ledger(ledger.to_owned()))
        .await
        .unwrap();
    let url = paysim.url();
    let shutdown = boxoffice_runtime::Shutdown::new();
    tokio::spawn(paysim.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{url}/v1/oauth2/token"))
        .basic_auth(DEV_PAYPAL_CLIENT_ID, Some(DEV_PAYPAL_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .map(json_of)
        .unwrap()
        .await;
    let token = answer["access_token"].as_str().unwrap().to_owned();
    Sim {
        url,
        http,
        token,
        shutdown,
    }
}

impl Sim {
    async fn post(&self, path: &str, body: Value, request_id: Option<&str>) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(id) = request_id {
            request = request.header("paypal-request-id", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, json_of(response).await)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, json_of(response).await)
    }

    async fn buyer(&self, order: &Value, outcome: &str) -> u16 {
        let link = order["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["rel"] == "approve")
            .expect("an approve link");
        let href = link["href"].as_str().unwrap();
        assert!(
            self.http
                .get(href)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
        boxoffice_paysim::answer_buyer_page(&self.http, href, outcome)
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn order_request(invoice: &str, value: &str) -> Value {
    json!({
        "intent": "AUTHORIZE",
        "purchase_units": [{
            "reference_id": "client-key",
            "custom_id": "booking-1",
            "invoice_id": invoice,
            "amount": {"currency_code": "EUR", "value": value},
        }],
    })
}

/// PayPal's error object: name, message, debug_id, details[].issue.
fn assert_paypal_error(body: &Value, name: &str, issue: &str) {
    assert_eq!(body["name"], name, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["debug_id"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(body["details"][0]["issue"], issue, "{body}");
}

#[tokio::test]
async fn calls_without_a_valid_token_get_paypals_401() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(&dir.path().join("ledger.jsonl")).await;
    for token in [
        None,
        Some("A21AAnot-a-token"),
        Some("sk_test_boxoffice_development_only"),
    ] {
        let mut request = sim.http.get(format!("{}/v2/checkout/orders/X", sim.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        let body: Value = json_of(response).await;
        assert_eq!(body["name"], "AUTHENTICATION_FAILURE");
        assert!(body["debug_id"].is_string());
    }
    let wrong = sim
        .http
        .post(format!("{}/v1/oauth2/token", sim.url))
        .basic_auth(DEV_PAYPAL_CLIENT_ID, Some("not-the-secret"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let body: Value = json_of(wrong).await;
    assert_eq!(body["error"], "invalid_client");
    sim.shutdown.trigger();
}

#[tokio::test]
async fn an_order_is_approved_authorized_captured_and_refunded_once_per_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(&dir.path().join("ledger.jsonl")).await;
    let (status, order) = sim
        .post(
            "/v2/checkout/orders",
            order_request("pay-1", "46.50"),
            Some("pay-1"),
        )
        .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "CREATED");
    let id = order["id"].as_str().unwrap().to_owned();
    // The same request id and request: the same order, nothing new.
    let (status, again) = sim
        .post(
            "/v2/checkout/orders",
            order_request("pay-1", "46.50"),
            Some("pay-1"),
        )
        .await;
    assert_eq!((status, again["id"].as_str()), (201, Some(id.as_str())));
    // The same id with another request: refused, nothing changed.
    let (status, refused) = sim
        .post(
            "/v2/checkout/orders",
            order_request("pay-1", "99.00"),
            Some("pay-1"),
        )
        .await;
    assert_eq!(status, 422);
    assert_paypal_error(&refused, "UNPROCESSABLE_ENTITY", "DUPLICATE_REQUEST_ID");

    // Not approved yet: the authorization is refused, PayPal's way.
    let (status, early) = sim
        .post(
            &format!("/v2/checkout/orders/{id}/authorize"),
            json!({}),
            Some("auth-early"),
        )
        .await;
    assert_eq!(status, 422);
    assert_paypal_error(&early, "UNPROCESSABLE_ENTITY", "ORDER_NOT_APPROVED");

    assert_eq!(sim.buyer(&order, "approve").await, 200);
    let (_, approved) = sim.get(&format!("/v2/checkout/orders/{id}")).await;
    assert_eq!(approved["status"], "APPROVED");
    assert!(approved["payer"]["payer_id"].is_string());

    let (status, completed) = sim
        .post(
            &format!("/v2/checkout/orders/{id}/authorize"),
            json!({}),
            Some("auth-1"),
        )
        .await;
    assert_eq!(status, 201, "{completed}");
    assert_eq!(completed["status"], "COMPLETED");
    let auth = &completed["purchase_units"][0]["payments"]["authorizations"][0];
    assert_eq!(auth["status"], "CREATED");
    assert_eq!(auth["amount"]["value"], "46.50");
    let auth_id = auth["id"].as_str().unwrap().to_owned();
    // Replayed: the same authorization; a second one is refused.
    let (_, replay) = sim
        .post(
            &format!("/v2/checkout/orders/{id}/authorize"),
            json!({}),
            Some("auth-1"),
        )
        .await;
    assert_eq!(
        replay["purchase_units"][0]["payments"]["authorizations"][0]["id"],
        auth_id.as_str()
    );
    let (status, twice) = sim
        .post(
            &format!("/v2/checkout/orders/{id}/authorize"),
            json!({}),
            Some("auth-2"),
        )
        .await;
    assert_eq!(status, 422);
    assert_paypal_error(&twice, "UNPROCESSABLE_ENTITY", "ORDER_ALREADY_AUTHORIZED");

    let capture_path = format!("/v2/payments/authorizations/{auth_id}/capture");
    let (status, capture) = sim
        .post(&capture_path, json!({"final_capture": true}), Some("cap-1"))
        .await;
    assert_eq!(status, 201, "{capture}");
    assert_eq!(capture["status"], "COMPLETED");
    assert_eq!(
        capture["supplementary_data"]["related_ids"]["order_id"],
        id.as_str()
    );
    let capture_id = capture["id"].as_str().unwrap().to_owned();
    let (_, replay) = sim
        .post(&capture_path, json!({"final_capture": true}), Some("cap-1"))
        .await;
    assert_eq!(replay["id"], capture_id.as_str());
    let (status, again) = sim.post(&capture_path, json!({}), Some("cap-2")).await;
    assert_eq!(status, 422);
    assert_paypal_error(
        &again,
        "UNPROCESSABLE_ENTITY",
        "AUTHORIZATION_ALREADY_CAPTURED",
    );
    let (status, void) = sim
        .post(
            &format!("/v2/payments/authorizations/{auth_id}/void"),
            json!({}),
            None,
        )
        .await;
    assert_eq!(status, 422);
    assert_paypal_error(&void, "UNPROCESSABLE_ENTITY", "PREVIOUSLY_CAPTURED");

    let refund_path = format!("/v2/payments/captures/{capture_id}/refund");
    let partial = json!({"amount": {"currency_code": "EUR", "value": "45.00"}});
    let (status, refund) = sim.post(&refund_path, partial.clone(), Some("ref-1")).await;
    assert_eq!(status, 201, "{refund}");
    let (_, replay) = sim.post(&refund_path, partial.clone(), Some("ref-1")).await;
    assert_eq!(replay["id"], refund["id"]);
    let (status, over) = sim.post(&refund_path, partial, Some("ref-2")).await;
    assert_eq!(status, 422);
    assert_paypal_error(&over, "UNPROCESSABLE_ENTITY", "REFUND_AMOUNT_EXCEEDED");
    let (_, order) = sim.get(&format!("/v2/checkout/orders/{id}")).await;
    let payments = &order["purchase_units"][0]["payments"];
    assert_eq!(
        payments["refunds"].as_array().unwrap().len(),
        1,
        "one refund"
    );
    assert_eq!(payments["captures"][0]["status"], "PARTIALLY_REFUNDED");
    sim.shutdown.trigger();
}

#[tokio::test]
async fn bad_requests_and_unknown_ids_have_paypals_error_shape_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(&dir.path().join("ledger.jsonl")).await;
    let (status, body) = sim
        .post(
            "/v2/checkout/orders",
            order_request("p", "1.234"),
            Some("bad-1"),
        )
        .await;
    assert_eq!(status, 400);
    assert_paypal_error(&body, "INVALID_REQUEST", "DECIMAL_PRECISION");
    let (status, body) = sim
        .post("/v2/checkout/orders", json!({"intent": "AUTHORIZE"}), None)
        .await;
    assert_eq!(status, 400);
    assert_paypal_error(&body, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER");
    // Refused before running: the request id is not spent.
    let (status, _) = sim
        .post(
            "/v2/checkout/orders",
            order_request("p", "1.00"),
            Some("bad-1"),
        )
        .await;
    assert_eq!(status, 201);
    for path in [
        "/v2/checkout/orders/NOSUCHORDER00000",
        "/v2/payments/authorizations/NOSUCHAUTH000000",
        "/v2/payments/captures/NOSUCHCAPTURE000",
    ] {
        let (status, body) = sim.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_paypal_error(&body, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID");
    }
    let (status, body) = sim
        .post(
            "/v2/checkout/orders/NOSUCHORDER00000/authorize",
            json!({}),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_paypal_error(&body, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID");
    let response = sim
        .http
        .post(format!("{}/v2/checkout/orders", sim.url))
        .bearer_auth(&sim.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = json_of(response).await;
    assert_paypal_error(&body, "INVALID_REQUEST", "MALFORMED_REQUEST_JSON");
    sim.shutdown.trigger();
}

#[tokio::test]
async fn transaction_search_finds_authorizations_by_invoice_and_custom_id_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    let sim = start(&ledger).await;
    let (_, order) = sim
        .post(
            "/v2/checkout/orders",
            order_request("pay-9", "10.00"),
            Some("pay-9"),
        )
        .await;
    let id = order["id"].as_str().unwrap().to_owned();
    sim.buyer(&order, "approve").await;
    sim.post(
        &format!("/v2/checkout/orders/{id}/authorize"),
        json!({}),
        Some("a"),
    )
    .await;
    // Another order the buyer cancelled at PayPal: it stays created, and
    // no transaction exists for it.
    let (_, cancelled) = sim
        .post(
            "/v2/checkout/orders",
            order_request("pay-10", "10.00"),
            Some("pay-10"),
        )
        .await;
    assert_eq!(sim.buyer(&cancelled, "cancel").await, 200);
    sim.shutdown.trigger();

    let sim = start(&ledger).await;
    let now = chrono::Utc::now();
    let range = |days: i64| {
        format!(
            "start_date={}&end_date={}",
            (now - chrono::Duration::days(days)).format("%Y-%m-%dT%H:%M:%SZ"),
            (now + chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        )
    };
    let (status, all) = sim
        .get(&format!(
            "/v1/reporting/transactions?{}&balance_affecting_records_only=N",
            range(1)
        ))
        .await;
    assert_eq!(status, 200, "{all}");
    let details = all["transaction_details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "one authorization: {all}");
    let info = &details[0]["transaction_info"];
    assert_eq!(info["invoice_id"], "pay-9");
    assert_eq!(info["custom_field"], "booking-1");
    assert_eq!(info["paypal_reference_id"], id.as_str());
    assert_eq!(info["transaction_event_code"], "T1300");
    // By default only balance-affecting records: no capture yet.
    let (_, balance) = sim
        .get(&format!("/v1/reporting/transactions?{}", range(1)))
        .await;
    assert_eq!(balance["transaction_details"].as_array().unwrap().len(), 0);
    let (status, wide) = sim
        .get(&format!("/v1/reporting/transactions?{}", range(40)))
        .await;
    assert_eq!(status, 400);
    assert_paypal_error(&wide, "INVALID_REQUEST", "INVALID_DATE_RANGE");
    let (_, cancelled) = sim
        .get(&format!(
            "/v2/checkout/orders/{}",
            cancelled["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(cancelled["status"], "CREATED");
    sim.shutdown.trigger();
}

#[tokio::test]
async fn webhooks_verify_only_as_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(&dir.path().join("ledger.jsonl")).await;
    let (status, webhook) = sim
        .post(
            "/v1/notifications/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "event_types": [{"name": "*"}]}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{webhook}");
    let (status, again) = sim
        .post(
            "/v1/notifications/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "event_types": [{"name": "*"}]}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(again["name"], "WEBHOOK_URL_ALREADY_EXISTS");
    let forged = json!({
        "auth_algo": "HMACSHA256",
        "cert_url": format!("{}/v1/notifications/certs/CERT", sim.url),
        "transmission_id": "b2384410-f8d2-11ec-8d4a-1b2b8fd5e4f1",
        "transmission_sig": "bm90IGEgc2lnbmF0dXJl",
        "transmission_time": "2026-01-01T00:00:00Z",
        "webhook_id": webhook["id"],
        "webhook_event": {"id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED"},
    });
    let (status, answer) = sim
        .post("/v1/notifications/verify-webhook-signature", forged, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["verification_status"], "FAILURE");
    let (status, answer) = sim
        .post(
            "/v1/notifications/verify-webhook-signature",
            json!({"auth_algo": "x"}),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_paypal_error(&answer, "INVALID_REQUEST", "MISSING_REQUIRED_PARAMETER");
    sim.shutdown.trigger();
}
