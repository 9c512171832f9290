//! The part of PayPal's REST API a merchant integration with buyer approval
//! and later capture uses, over the same ledger as the Stripe part:
//!
//! - `POST /v1/oauth2/token`: client credentials (HTTP Basic) → a bearer
//!   token for 9 hours (stateless: an HMAC over client and expiry, so a
//!   restart keeps every token valid). Anything else without a valid token
//!   answers PayPal's 401 `AUTHENTICATION_FAILURE`.
//! - `POST /v2/checkout/orders` (intent `AUTHORIZE`, one purchase unit with
//!   `amount`, `reference_id`, `custom_id`, `invoice_id`), `GET
//!   /v2/checkout/orders/{id}`, `POST /v2/checkout/orders/{id}/authorize`.
//! - `GET /v2/payments/authorizations/{id}`, `…/capture`, `…/void`;
//!   `GET /v2/payments/captures/{id}`, `POST …/refund`.
//! - `GET /v1/reporting/transactions`: Transaction Search (a date range of
//!   at most 31 days, `transaction_id`, `balance_affecting_records_only`,
//!   pages); each record carries the order's `invoice_id` and `custom_id`
//!   (`custom_field`), which is how a merchant finds what a crashed process
//!   did: PayPal has no search for orders. Live PayPal lists a transaction up
//!   to three hours late; the simulator lists it at once.
//! - `POST`/`GET /v1/notifications/webhooks`, and `POST
//!   /v1/notifications/verify-webhook-signature`, the way a receiver checks
//!   a delivery's transmission headers.
//! - `/checkoutnow?token={order}`: the page the buyer approves (or cancels)
//!   on; not part of the API, no token needed.
//!
//! `PayPal-Request-Id` makes every POST idempotent as PayPal documents it:
//! the same id with the same request answers the first answer again (its
//! status as it was then: read the order for what happened since); the id
//! sent again with another request is refused (422 `DUPLICATE_REQUEST_ID`,
//! the simulator's choice where PayPal leaves it undefined) and changes
//! nothing. Errors have PayPal's shape: `name`, `message`, `debug_id`,
//! `details[]` with `issue` and `description`.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::ledger::{
    Entry, Ledger, PaypalAuthorization, PaypalCapture, PaypalOrder, PaypalRefund, PaypalWebhook,
};
use crate::webhooks::paypal_signature;

/// How long an access token lasts (PayPal's usual 9 hours).
const TOKEN_SECONDS: i64 = 32_400;
/// Transaction Search's widest date range.
const MAX_SEARCH_DAYS: i64 = 31;
const MAX_PAGE_SIZE: usize = 500;

/// What one PayPal call changed and answers.
pub(crate) struct Outcome {
    pub status: StatusCode,
    pub body: Value,
    pub entry: Entry,
    pub events: Vec<Value>,
    /// Whether `PayPal-Request-Id` keeps this answer (not for requests
    /// refused before running).
    pub keep: bool,
}

impl Outcome {
    fn refused((status, body): (StatusCode, Value)) -> Self {
        Self {
            status,
            body,
            entry: Entry::default(),
            events: Vec::new(),
            keep: false,
        }
    }

    fn ran((status, body): (StatusCode, Value)) -> Self {
        Self {
            keep: true,
            ..Self::refused((status, body))
        }
    }

    pub(crate) fn not_found() -> Self {
        Self::refused(unknown_route())
    }

    fn changed(status: StatusCode, body: Value, order: PaypalOrder, events: Vec<Value>) -> Self {
        Self {
            status,
            body,
            entry: Entry {
                order: Some(order),
                ..Entry::default()
            },
            events,
            keep: true,
        }
    }
}

// ---- errors -----------------------------------------------------------

fn debug_id() -> String {
    Uuid::new_v4().simple().to_string()[..13].to_owned()
}

/// PayPal's error object.
fn error(
    status: StatusCode,
    name: &str,
    message: &str,
    field: Option<&str>,
    issue: &str,
    description: &str,
) -> (StatusCode, Value) {
    let mut detail = json!({"issue": issue, "description": description});
    if let Some(field) = field {
        detail["field"] = Value::String(field.to_owned());
    }
    (
        status,
        json!({
            "name": name,
            "message": message,
            "debug_id": debug_id(),
            "details": [detail],
            "links": [{
                "href": format!("https://developer.paypal.com/docs/api/orders/v2/#error-{issue}"),
                "rel": "information_link",
                "method": "GET",
            }],
        }),
    )
}

/// 401 for a call without a valid bearer token.
pub(crate) fn authentication_failure() -> (StatusCode, Value) {
    (
        StatusCode::UNAUTHORIZED,
        json!({
            "name": "AUTHENTICATION_FAILURE",
            "message": "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
            "debug_id": debug_id(),
            "links": [{
                "href": "https://developer.paypal.com/docs/api/overview/#error",
                "rel": "information_link",
            }],
        }),
    )
}

fn invalid(field: &str, issue: &str, description: &str) -> (StatusCode, Value) {
    error(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        "Request is not well-formed, syntactically incorrect, or violates schema.",
        Some(field),
        issue,
        description,
    )
}

fn unprocessable(issue: &str, description: &str) -> (StatusCode, Value) {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "UNPROCESSABLE_ENTITY",
        "The requested action could not be performed, semantically incorrect, or failed business validation.",
        None,
        issue,
        description,
    )
}

fn missing(field: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "The specified resource does not exist.",
        Some(field),
        "INVALID_RESOURCE_ID",
        "Specified resource ID does not exist. Please check the resource ID and try again.",
    )
}

/// A `PayPal-Request-Id` sent again with another request.
pub(crate) fn duplicate_request_id() -> (StatusCode, Value) {
    unprocessable(
        "DUPLICATE_REQUEST_ID",
        "The PayPal-Request-Id was already used for another request.",
    )
}

pub(crate) fn unknown_route() -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "The specified resource does not exist.",
        None,
        "INVALID_URI",
        "The requested URI does not exist.",
    )
}

pub(crate) fn malformed_json() -> (StatusCode, Value) {
    invalid(
        "/",
        "MALFORMED_REQUEST_JSON",
        "The request JSON is not well formed.",
    )
}

// ---- tokens -----------------------------------------------------------

fn token_mac(secret: &str, client_id: &str, expires: i64) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac takes keys of any length"),
    };
    mac.update(format!("access-token|{client_id}|{expires}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// `POST /v1/oauth2/token`: `Authorization: Basic base64(client:secret)`
/// and `grant_type=client_credentials`.
pub(crate) fn issue_token(
    client_id: &str,
    secret: &str,
    authorization: Option<&str>,
    form: &[(String, String)],
    now: i64,
) -> (StatusCode, Value) {
    let presented = authorization
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((id, presented_secret)) = presented.as_deref().and_then(|p| p.split_once(':')) else {
        return invalid_client();
    };
    // Constant time is not needed against a simulator's development key,
    // but costs nothing here: compare MACs.
    if id != client_id || token_mac(presented_secret, id, 0) != token_mac(secret, id, 0) {
        return invalid_client();
    }
    if !form
        .iter()
        .any(|(key, value)| key == "grant_type" && value == "client_credentials")
    {
        return (
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}),
        );
    }
    let expires = now + TOKEN_SECONDS;
    (
        StatusCode::OK,
        json!({
            "scope": "https://uri.paypal.com/services/payments/payment https://uri.paypal.com/services/reporting/search/read",
            "access_token": format!("A21AA{expires}.{}", token_mac(secret, client_id, expires)),
            "token_type": "Bearer",
            "app_id": "APP-80W284485P519543T",
            "expires_in": TOKEN_SECONDS,
            "nonce": format!("{}", Uuid::new_v4().simple()),
        }),
    )
}

fn invalid_client() -> (StatusCode, Value) {
    (
        StatusCode::UNAUTHORIZED,
        json!({"error": "invalid_client", "error_description": "Client Authentication failed"}),
    )
}

/// Whether `Authorization: Bearer …` carries a token this simulator issued
/// to `client_id` that has not expired.
pub(crate) fn token_valid(
    client_id: &str,
    secret: &str,
    authorization: Option<&str>,
    now: i64,
) -> bool {
    let Some(token) = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| token.strip_prefix("A21AA"))
    else {
        return false;
    };
    let Some((expires, mac)) = token.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    expires > now && token_mac(secret, client_id, expires) == mac
}

// ---- ids, money, times --------------------------------------------------

/// A PayPal-looking id: 17 characters, digits and capitals.
fn new_id() -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let bytes = Uuid::new_v4().into_bytes();
    let more = Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .chain(more.iter())
        .take(17)
        .map(|byte| DIGITS[(*byte as usize) % 36] as char)
        .collect()
}

/// Decimal places of a currency's amounts (PayPal's zero-decimal ones).
fn decimals(currency: &str) -> u32 {
    match currency {
        "JPY" | "HUF" | "TWD" => 0,
        _ => 2,
    }
}

pub(crate) fn format_value(minor: i64, currency: &str) -> String {
    let places = decimals(currency);
    if places == 0 {
        return minor.to_string();
    }
    let scale = 10i64.pow(places);
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.abs();
    format!(
        "{sign}{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = places as usize
    )
}

/// `"12.34"` → 1234 for a currency of two decimals; `None` when the text
/// is not such an amount.
pub(crate) fn parse_value(text: &str, currency: &str) -> Option<i64> {
    let places = decimals(currency) as usize;
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if whole.is_empty()
        || whole.len() > 10
        || !whole.chars().all(|c| c.is_ascii_digit())
        || fraction.len() > places
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut minor: i64 = whole.parse().ok()?;
    for index in 0..places {
        let digit = fraction
            .as_bytes()
            .get(index)
            .map_or(0, |byte| i64::from(byte - b'0'));
        minor = minor * 10 + digit;
    }
    Some(minor)
}

fn time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn money(minor: i64, currency: &str) -> Value {
    json!({"currency_code": currency, "value": format_value(minor, currency)})
}

fn link(href: String, rel: &str, method: &str) -> Value {
    json!({"href": href, "rel": rel, "method": method})
}

// ---- resources as PayPal answers them ----------------------------------

/// Where the buyer approves an order.
pub(crate) fn approval_url(base: &str, order_id: &str) -> String {
    format!("{base}/checkoutnow?token={order_id}")
}

fn order_status(order: &PaypalOrder) -> &str {
    if order.status == "CREATED" && order.payer_action {
        "PAYER_ACTION_REQUIRED"
    } else {
        &order.status
    }
}

fn authorization_json(order: &PaypalOrder, auth: &PaypalAuthorization, base: &str) -> Value {
    json!({
        "id": auth.id,
        "status": auth.status,
        "amount": money(order.amount_minor, &order.currency),
        "invoice_id": order.invoice_id,
        "custom_id": order.custom_id,
        "seller_protection": {"status": "ELIGIBLE"},
        "expiration_time": time(auth.created + 29 * 86_400),
        "create_time": time(auth.created),
        "update_time": time(auth.created),
        "supplementary_data": {"related_ids": {"order_id": order.id}},
        "links": [
            link(format!("{base}/v2/payments/authorizations/{}", auth.id), "self", "GET"),
            link(format!("{base}/v2/payments/authorizations/{}/capture", auth.id), "capture", "POST"),
            link(format!("{base}/v2/payments/authorizations/{}/void", auth.id), "void", "POST"),
            link(format!("{base}/v2/checkout/orders/{}", order.id), "up", "GET"),
        ],
    })
}

fn capture_json(
    order: &PaypalOrder,
    auth: &PaypalAuthorization,
    capture: &PaypalCapture,
    base: &str,
) -> Value {
    json!({
        "id": capture.id,
        "status": capture.status,
        "amount": money(capture.amount_minor, &order.currency),
        "final_capture": true,
        "invoice_id": order.invoice_id,
        "custom_id": order.custom_id,
        "seller_protection": {"status": "ELIGIBLE"},
        "create_time": time(capture.created),
        "update_time": time(capture.created),
        "supplementary_data": {"related_ids": {"order_id": order.id, "authorization_id": auth.id}},
        "links": [
            link(format!("{base}/v2/payments/captures/{}", capture.id), "self", "GET"),
            link(format!("{base}/v2/payments/captures/{}/refund", capture.id), "refund", "POST"),
            link(format!("{base}/v2/payments/authorizations/{}", auth.id), "up", "GET"),
        ],
    })
}

fn refund_json(order: &PaypalOrder, refund: &PaypalRefund, base: &str) -> Value {
    let auth = order.authorization.as_ref();
    json!({
        "id": refund.id,
        "status": "COMPLETED",
        "amount": money(refund.amount_minor, &order.currency),
        "invoice_id": order.invoice_id,
        "custom_id": order.custom_id,
        "create_time": time(refund.created),
        "update_time": time(refund.created),
        "supplementary_data": {"related_ids": {
            "order_id": order.id,
            "authorization_id": auth.map(|a| a.id.clone()),
            "capture_id": auth.and_then(|a| a.capture.as_ref()).map(|c| c.id.clone()),
        }},
        "links": [link(format!("{base}/v2/payments/refunds/{}", refund.id), "self", "GET")],
    })
}

/// An order as PayPal answers it, its payments included.
pub(crate) fn order_json(order: &PaypalOrder, base: &str) -> Value {
    let mut links = vec![link(
        format!("{base}/v2/checkout/orders/{}", order.id),
        "self",
        "GET",
    )];
    match order.status.as_str() {
        "CREATED" => links.push(link(
            approval_url(base, &order.id),
            if order.payer_action {
                "payer-action"
            } else {
                "approve"
            },
            "GET",
        )),
        "APPROVED" => links.push(link(
            format!("{base}/v2/checkout/orders/{}/authorize", order.id),
            "authorize",
            "POST",
        )),
        _ => {}
    }
    let mut unit = json!({
        "reference_id": order.reference_id,
        "amount": money(order.amount_minor, &order.currency),
        "payee": {"merchant_id": "BOXOFFICESIM01"},
        "custom_id": order.custom_id,
        "invoice_id": order.invoice_id,
        "description": order.description,
    });
    if let Some(auth) = &order.authorization {
        let captures: Vec<Value> = auth
            .capture
            .iter()
            .map(|capture| capture_json(order, auth, capture, base))
            .collect();
        let refunds: Vec<Value> = order
            .refunds
            .iter()
            .map(|refund| refund_json(order, refund, base))
            .collect();
        unit["payments"] = json!({
            "authorizations": [authorization_json(order, auth, base)],
            "captures": captures,
            "refunds": refunds,
        });
    }
    let mut body = json!({
        "id": order.id,
        "intent": "AUTHORIZE",
        "status": order_status(order),
        "purchase_units": [unit],
        "create_time": time(order.created),
        "links": links,
    });
    if let Some(payer_id) = &order.payer_id {
        body["payer"] = json!({
            "payer_id": payer_id,
            "email_address": "buyer@example.com",
            "name": {"given_name": "Test", "surname": "Buyer"},
        });
        body["payment_source"] =
            json!({"paypal": {"account_id": payer_id, "account_status": "VERIFIED"}});
    }
    body
}

fn event(event_type: &str, resource_type: &str, summary: &str, resource: Value) -> Value {
    json!({
        "id": format!("WH-{}-{}", new_id(), new_id()),
        "event_version": "1.0",
        "create_time": time(now()),
        "resource_type": resource_type,
        "resource_version": "2.0",
        "event_type": event_type,
        "summary": summary,
        "resource": resource,
    })
}

// ---- reads ---------------------------------------------------------------

pub(crate) fn get_order(ledger: &Ledger, id: &str, base: &str) -> (StatusCode, Value) {
    match ledger.orders.get(id) {
        Some(order) => (StatusCode::OK, order_json(order, base)),
        None => missing("order_id"),
    }
}

pub(crate) fn get_authorization(ledger: &Ledger, id: &str, base: &str) -> (StatusCode, Value) {
    match ledger.order_holding(id) {
        Some(order) => match order.authorization.as_ref().filter(|auth| auth.id == id) {
            Some(auth) => (StatusCode::OK, authorization_json(order, auth, base)),
            None => missing("authorization_id"),
        },
        None => missing("authorization_id"),
    }
}

pub(crate) fn get_capture(ledger: &Ledger, id: &str, base: &str) -> (StatusCode, Value) {
    let found = ledger.order_holding(id).and_then(|order| {
        let auth = order.authorization.as_ref()?;
        let capture = auth.capture.as_ref().filter(|capture| capture.id == id)?;
        Some(capture_json(order, auth, capture, base))
    });
    match found {
        Some(body) => (StatusCode::OK, body),
        None => missing("capture_id"),
    }
}

pub(crate) fn list_webhooks(ledger: &Ledger) -> (StatusCode, Value) {
    let webhooks: Vec<Value> = ledger.paypal_webhooks.iter().map(webhook_json).collect();
    (StatusCode::OK, json!({"webhooks": webhooks}))
}

fn webhook_json(webhook: &PaypalWebhook) -> Value {
    let types: Vec<Value> = webhook
        .event_types
        .iter()
        .map(|name| json!({"name": name}))
        .collect();
    json!({"id": webhook.id, "url": webhook.url, "event_types": types})
}

/// One Transaction Search record.
struct Transaction<'a> {
    order: &'a PaypalOrder,
    id: &'a str,
    event_code: &'static str,
    status: &'static str,
    amount_minor: i64,
    at: i64,
    balance_affecting: bool,
}

fn transactions_of(order: &PaypalOrder) -> Vec<Transaction<'_>> {
    let mut out = Vec::new();
    let Some(auth) = &order.authorization else {
        return out;
    };
    let record = |id, event_code, status, amount_minor, at, balance_affecting| Transaction {
        order,
        id,
        event_code,
        status,
        amount_minor,
        at,
        balance_affecting,
    };
    // T1300: an authorization; T1302: its void; T0006: a checkout
    // payment (the capture); T1107: a refund by the merchant.
    let status = if auth.status == "VOIDED" { "V" } else { "S" };
    out.push(record(
        auth.id.as_str(),
        "T1300",
        status,
        order.amount_minor,
        auth.created,
        false,
    ));
    if auth.status == "VOIDED" {
        out.push(record(
            auth.id.as_str(),
            "T1302",
            "S",
            order.amount_minor,
            auth.created,
            false,
        ));
    }
    if let Some(capture) = &auth.capture {
        out.push(record(
            capture.id.as_str(),
            "T0006",
            "S",
            capture.amount_minor,
            capture.created,
            true,
        ));
    }
    for refund in &order.refunds {
        out.push(record(
            refund.id.as_str(),
            "T1107",
            "S",
            -refund.amount_minor,
            refund.created,
            true,
        ));
    }
    out
}

fn transaction_json(transaction: &Transaction<'_>) -> Value {
    let order = transaction.order;
    json!({"transaction_info": {
        "paypal_account_id": order.payer_id,
        "transaction_id": transaction.id,
        "paypal_reference_id": order.id,
        "paypal_reference_id_type": "ODR",
        "transaction_event_code": transaction.event_code,
        "transaction_initiation_date": time(transaction.at),
        "transaction_updated_date": time(transaction.at),
        "transaction_amount": money(transaction.amount_minor, &order.currency),
        "transaction_status": transaction.status,
        "invoice_id": order.invoice_id,
        "custom_field": order.custom_id,
    }})
}

fn query_time(query: &[(String, String)], name: &str) -> Result<i64, (StatusCode, Value)> {
    let value = query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
        .ok_or_else(|| {
            invalid(
                name,
                "MISSING_REQUIRED_PARAMETER",
                "A required field / parameter is missing.",
            )
        })?;
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|at| at.timestamp())
        .map_err(|_| {
            invalid(
                name,
                "INVALID_PARAMETER_SYNTAX",
                "The value of a field does not conform to the expected format.",
            )
        })
}

/// `GET /v1/reporting/transactions`.
pub(crate) fn transactions(ledger: &Ledger, query: &[(String, String)]) -> (StatusCode, Value) {
    let param = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let (start, end) = match (
        query_time(query, "start_date"),
        query_time(query, "end_date"),
    ) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(error), _) | (_, Err(error)) => return error,
    };
    if end < start || end - start > MAX_SEARCH_DAYS * 86_400 {
        return invalid(
            "end_date",
            "INVALID_DATE_RANGE",
            "The date range must be 31 days at most, ending after it starts.",
        );
    }
    let page_size = match param("page_size").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(size)) if (1..=MAX_PAGE_SIZE).contains(&size) => size,
        Some(_) => {
            return invalid(
                "page_size",
                "INVALID_PARAMETER_VALUE",
                "page_size: 1 to 500.",
            );
        }
    };
    let page = match param("page").map(str::parse::<usize>) {
        None => 1,
        Some(Ok(page)) if page >= 1 => page,
        Some(_) => return invalid("page", "INVALID_PARAMETER_VALUE", "page: 1 or more."),
    };
    let balance_only = param("balance_affecting_records_only") != Some("N");
    let wanted_id = param("transaction_id");
    let matching: Vec<Transaction<'_>> = ledger
        .order_list
        .iter()
        .filter_map(|id| ledger.orders.get(id))
        .flat_map(transactions_of)
        .filter(|t| (start..=end).contains(&t.at))
        .filter(|t| !balance_only || t.balance_affecting)
        .filter(|t| wanted_id.is_none_or(|id| t.id == id))
        .collect();
    let total_pages = matching.len().div_ceil(page_size).max(1);
    let details: Vec<Value> = matching
        .iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .map(transaction_json)
        .collect();
    (
        StatusCode::OK,
        json!({
            "transaction_details": details,
            "account_number": "BOXOFFICESIM01",
            "start_date": time(start),
            "end_date": time(end),
            "last_refreshed_datetime": time(now()),
            "page": page,
            "total_items": matching.len(),
            "total_pages": total_pages,
        }),
    )
}

/// `POST /v1/notifications/verify-webhook-signature`.
pub(crate) fn verify_webhook_signature(
    ledger: &Ledger,
    key: &[u8],
    request: &Value,
) -> (StatusCode, Value) {
    let text = |name: &str| request[name].as_str();
    let fields = [
        "auth_algo",
        "cert_url",
        "transmission_id",
        "transmission_sig",
        "transmission_time",
        "webhook_id",
    ];
    if let Some(absent) = fields.iter().find(|name| text(name).is_none()) {
        return invalid(
            absent,
            "MISSING_REQUIRED_PARAMETER",
            "A required field / parameter is missing.",
        );
    }
    if !request["webhook_event"].is_object() {
        return invalid(
            "webhook_event",
            "MISSING_REQUIRED_PARAMETER",
            "A required field / parameter is missing.",
        );
    }
    let webhook_id = text("webhook_id").unwrap_or_default();
    let known = ledger.paypal_webhooks.iter().any(|w| w.id == webhook_id);
    let body = request["webhook_event"].to_string();
    let expected = paypal_signature(
        key,
        text("transmission_id").unwrap_or_default(),
        text("transmission_time").unwrap_or_default(),
        webhook_id,
        body.as_bytes(),
    );
    let matches = known
        && text("auth_algo") == Some(crate::webhooks::PAYPAL_AUTH_ALGO)
        && constant_time_eq(
            expected.as_bytes(),
            text("transmission_sig").unwrap_or_default().as_bytes(),
        );
    let status = if matches { "SUCCESS" } else { "FAILURE" };
    (StatusCode::OK, json!({"verification_status": status}))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---- changes -------------------------------------------------------------

fn text_field<'a>(
    unit: &'a Value,
    name: &str,
    max: usize,
) -> Result<Option<&'a str>, (StatusCode, Value)> {
    match &unit[name] {
        Value::Null => Ok(None),
        Value::String(text) if !text.is_empty() && text.len() <= max => Ok(Some(text)),
        _ => Err(invalid(
            &format!("/purchase_units/0/{name}"),
            "INVALID_STRING_LENGTH",
            &format!("The value of {name} must be 1 to {max} characters."),
        )),
    }
}

/// The amount of a purchase unit or a refund request.
fn amount(value: &Value, field: &str) -> Result<(i64, String), (StatusCode, Value)> {
    let currency = value["currency_code"].as_str().unwrap_or_default();
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(invalid(
            &format!("{field}/currency_code"),
            "INVALID_CURRENCY_CODE",
            "Currency code is invalid or is not currently supported.",
        ));
    }
    let Some(text) = value["value"].as_str() else {
        return Err(invalid(
            &format!("{field}/value"),
            "MISSING_REQUIRED_PARAMETER",
            "A required field / parameter is missing.",
        ));
    };
    let Some(minor) = parse_value(text, currency) else {
        return Err(invalid(
            &format!("{field}/value"),
            "DECIMAL_PRECISION",
            "The value of the field should not be more than two decimal places.",
        ));
    };
    if minor < 1 {
        return Err(unprocessable(
            "CANNOT_BE_ZERO_OR_NEGATIVE",
            "Must be greater than zero.",
        ));
    }
    Ok((minor, currency.to_owned()))
}

/// `POST /v2/checkout/orders`.
pub(crate) fn create_order(request: &Value, base: &str) -> Outcome {
    match parse_order(request) {
        Ok(order) => Outcome::changed(
            StatusCode::CREATED,
            order_json(&order, base),
            order,
            Vec::new(),
        ),
        Err(refusal) => Outcome::refused(refusal),
    }
}

fn parse_order(request: &Value) -> Result<PaypalOrder, (StatusCode, Value)> {
    match request["intent"].as_str() {
        Some("AUTHORIZE") => {}
        Some(_) => {
            return Err(invalid(
                "/intent",
                "INVALID_PARAMETER_VALUE",
                "The simulator creates orders with intent AUTHORIZE only.",
            ));
        }
        None => {
            return Err(invalid(
                "/intent",
                "MISSING_REQUIRED_PARAMETER",
                "A required field / parameter is missing.",
            ));
        }
    }
    let units = request["purchase_units"].as_array();
    let unit = match units.map(Vec::as_slice) {
        Some([unit]) => unit,
        Some([]) | None => {
            return Err(invalid(
                "/purchase_units",
                "MISSING_REQUIRED_PARAMETER",
                "A required field / parameter is missing.",
            ));
        }
        Some(_) => {
            return Err(invalid(
                "/purchase_units",
                "INVALID_ARRAY_MAX_ITEMS",
                "The simulator takes one purchase unit per order.",
            ));
        }
    };
    let (amount_minor, currency) = amount(&unit["amount"], "/purchase_units/0/amount")?;
    let experience = &request["payment_source"]["paypal"]["experience_context"];
    let payer_action = request["payment_source"]["paypal"].is_object();
    let context = if payer_action {
        experience
    } else {
        &request["application_context"]
    };
    let url = |name: &str| context[name].as_str().map(str::to_owned);
    Ok(PaypalOrder {
        id: new_id(),
        status: "CREATED".to_owned(),
        currency,
        amount_minor,
        reference_id: text_field(unit, "reference_id", 256)?
            .unwrap_or("default")
            .to_owned(),
        custom_id: text_field(unit, "custom_id", 127)?.map(str::to_owned),
        invoice_id: text_field(unit, "invoice_id", 127)?.map(str::to_owned),
        description: text_field(unit, "description", 127)?.map(str::to_owned),
        return_url: url("return_url"),
        cancel_url: url("cancel_url"),
        payer_action,
        payer_id: None,
        funding_declined: false,
        created: now(),
        authorization: None,
        refunds: Vec::new(),
    })
}

/// `POST /v2/checkout/orders/{id}/authorize`.
pub(crate) fn authorize_order(ledger: &Ledger, id: &str, base: &str) -> Outcome {
    let Some(order) = ledger.orders.get(id) else {
        return Outcome::refused(missing("order_id"));
    };
    match order.status.as_str() {
        "APPROVED" => {}
        "COMPLETED" => {
            return Outcome::ran(unprocessable(
                "ORDER_ALREADY_AUTHORIZED",
                "Order already authorized. If 'intent=AUTHORIZE' only one authorization per order is allowed.",
            ));
        }
        _ => {
            return Outcome::ran(unprocessable(
                "ORDER_NOT_APPROVED",
                "Payer has not yet approved the Order for payment. Please redirect the payer to the 'rel':'approve' url returned as part of the HATEOAS links within the Create Order call or provide a valid payment_source in the request.",
            ));
        }
    }
    if order.funding_declined {
        return Outcome::ran(unprocessable(
            "INSTRUMENT_DECLINED",
            "The instrument presented was either declined by the processor or bank, or it can't be used for this payment.",
        ));
    }
    let mut order = order.clone();
    let auth = PaypalAuthorization {
        id: new_id(),
        status: "CREATED".to_owned(),
        created: now(),
        capture: None,
    };
    let resource = authorization_json(&order, &auth, base);
    order.authorization = Some(auth);
    order.status = "COMPLETED".to_owned();
    let events = vec![event(
        "PAYMENT.AUTHORIZATION.CREATED",
        "authorization",
        "Payment authorization created",
        resource,
    )];
    Outcome::changed(StatusCode::CREATED, order_json(&order, base), order, events)
}

/// The order holding authorization `id`, with that authorization.
fn with_authorization<'a>(
    ledger: &'a Ledger,
    id: &str,
) -> Result<(&'a PaypalOrder, &'a PaypalAuthorization), (StatusCode, Value)> {
    ledger
        .order_holding(id)
        .and_then(|order| {
            let auth = order.authorization.as_ref().filter(|auth| auth.id == id)?;
            Some((order, auth))
        })
        .ok_or_else(|| missing("authorization_id"))
}

/// `POST /v2/payments/authorizations/{id}/capture` (the whole amount,
/// or `amount` when given, as the final capture).
pub(crate) fn capture(ledger: &Ledger, id: &str, request: &Value, base: &str) -> Outcome {
    let (order, auth) = match with_authorization(ledger, id) {
        Ok(found) => found,
        Err(refusal) => return Outcome::refused(refusal),
    };
    match auth.status.as_str() {
        "CREATED" => {}
        "VOIDED" => {
            return Outcome::ran(unprocessable(
                "AUTHORIZATION_VOIDED",
                "A voided authorization cannot be captured or reauthorized.",
            ));
        }
        _ => {
            return Outcome::ran(unprocessable(
                "AUTHORIZATION_ALREADY_CAPTURED",
                "Authorization has been previously captured and hence cannot be captured again.",
            ));
        }
    }
    let amount_minor = if request["amount"].is_object() {
        match amount(&request["amount"], "/amount") {
            Ok((minor, currency)) if currency == order.currency && minor <= order.amount_minor => {
                minor
            }
            Ok(_) => {
                return Outcome::refused(unprocessable(
                    "CAPTURE_AMOUNT_EXCEEDS_AUTHORIZATION",
                    "The capture amount must be at most the authorized amount, in its currency.",
                ));
            }
            Err(refusal) => return Outcome::refused(refusal),
        }
    } else {
        order.amount_minor
    };
    let mut order = order.clone();
    let capture = PaypalCapture {
        id: new_id(),
        status: "COMPLETED".to_owned(),
        amount_minor,
        created: now(),
    };
    let mut auth = auth.clone();
    auth.status = "CAPTURED".to_owned();
    let body = capture_json(&order, &auth, &capture, base);
    auth.capture = Some(capture);
    order.authorization = Some(auth);
    let events = vec![event(
        "PAYMENT.CAPTURE.COMPLETED",
        "capture",
        "Payment completed",
        body.clone(),
    )];
    Outcome::changed(StatusCode::CREATED, body, order, events)
}

/// `POST /v2/payments/authorizations/{id}/void`: answered with the voided
/// authorization (as with `Prefer: return=representation`).
pub(crate) fn void(ledger: &Ledger, id: &str, base: &str) -> Outcome {
    let (order, auth) = match with_authorization(ledger, id) {
        Ok(found) => found,
        Err(refusal) => return Outcome::refused(refusal),
    };
    match auth.status.as_str() {
        "CREATED" => {}
        "VOIDED" => {
            return Outcome::ran(unprocessable(
                "PREVIOUSLY_VOIDED",
                "Authorization has been previously voided and hence cannot be voided again.",
            ));
        }
        _ => {
            return Outcome::ran(unprocessable(
                "PREVIOUSLY_CAPTURED",
                "Authorization has been previously captured and hence cannot be voided.",
            ));
        }
    }
    let mut order = order.clone();
    let mut auth = auth.clone();
    auth.status = "VOIDED".to_owned();
    let body = authorization_json(&order, &auth, base);
    order.authorization = Some(auth);
    let events = vec![event(
        "PAYMENT.AUTHORIZATION.VOIDED",
        "authorization",
        "A payment authorization was voided",
        body.clone(),
    )];
    Outcome::changed(StatusCode::OK, body, order, events)
}

/// `POST /v2/payments/captures/{id}/refund` (what is left, or `amount`).
pub(crate) fn refund(ledger: &Ledger, id: &str, request: &Value, base: &str) -> Outcome {
    let found = ledger.order_holding(id).and_then(|order| {
        let auth = order.authorization.as_ref()?;
        let capture = auth.capture.as_ref().filter(|capture| capture.id == id)?;
        Some((order, capture))
    });
    let Some((order, capture)) = found else {
        return Outcome::refused(missing("capture_id"));
    };
    let refunded: i64 = order.refunds.iter().map(|r| r.amount_minor).sum();
    let remaining = capture.amount_minor - refunded;
    if remaining == 0 {
        return Outcome::ran(unprocessable(
            "CAPTURE_FULLY_REFUNDED",
            "The capture has already been fully refunded.",
        ));
    }
    let amount_minor = if request["amount"].is_object() {
        match amount(&request["amount"], "/amount") {
            Ok((minor, currency)) if currency == order.currency => minor,
            Ok(_) => {
                return Outcome::refused(unprocessable(
                    "CURRENCY_MISMATCH",
                    "The refund's currency must be the capture's.",
                ));
            }
            Err(refusal) => return Outcome::refused(refusal),
        }
    } else {
        remaining
    };
    if amount_minor > remaining {
        return Outcome::ran(unprocessable(
            "REFUND_AMOUNT_EXCEEDED",
            "The refund amount must be less than or equal to the capture amount that has not yet been refunded.",
        ));
    }
    let mut order = order.clone();
    let refund = PaypalRefund {
        id: new_id(),
        amount_minor,
        created: now(),
    };
    if let Some(capture) = order
        .authorization
        .as_mut()
        .and_then(|auth| auth.capture.as_mut())
    {
        capture.status = if amount_minor == remaining {
            "REFUNDED"
        } else {
            "PARTIALLY_REFUNDED"
        }
        .to_owned();
    }
    order.refunds.push(refund.clone());
    let body = refund_json(&order, &refund, base);
    let events = vec![event(
        "PAYMENT.CAPTURE.REFUNDED",
        "refund",
        "A capture was refunded",
        body.clone(),
    )];
    Outcome::changed(StatusCode::CREATED, body, order, events)
}

/// `POST /v1/notifications/webhooks` (`url`, `event_types[].name`; `*`
/// for every type). One webhook per URL: registering it again answers
/// PayPal's `WEBHOOK_URL_ALREADY_EXISTS`.
pub(crate) fn add_webhook(ledger: &Ledger, request: &Value) -> Outcome {
    let Some(url) = request["url"]
        .as_str()
        .filter(|url| url.starts_with("http://") || url.starts_with("https://"))
    else {
        return Outcome::refused(invalid(
            "/url",
            "INVALID_PARAMETER_SYNTAX",
            "url: an http(s) URL.",
        ));
    };
    let event_types: Vec<String> = request["event_types"]
        .as_array()
        .map(|types| {
            types
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if event_types.is_empty() {
        return Outcome::refused(invalid(
            "/event_types",
            "MISSING_REQUIRED_PARAMETER",
            "At least one event type.",
        ));
    }
    if ledger.paypal_webhooks.iter().any(|known| known.url == url) {
        return Outcome::refused(error(
            StatusCode::BAD_REQUEST,
            "WEBHOOK_URL_ALREADY_EXISTS",
            "Webhook URL already exists.",
            None,
            "WEBHOOK_URL_ALREADY_EXISTS",
            "A webhook with this URL already exists.",
        ));
    }
    let webhook = PaypalWebhook {
        id: new_id(),
        url: url.to_owned(),
        event_types,
    };
    Outcome {
        status: StatusCode::CREATED,
        body: webhook_json(&webhook),
        entry: Entry {
            paypal_webhook: Some(webhook),
            ..Entry::default()
        },
        events: Vec::new(),
        keep: true,
    }
}

/// What the buyer does on the approval page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BuyerChoice {
    Approve,
    /// Approve with a funding source that declines at authorization.
    ApproveDeclining,
    Cancel,
}

impl BuyerChoice {
    pub(crate) fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "approve" => Self::Approve,
            "decline" => Self::ApproveDeclining,
            "cancel" => Self::Cancel,
            _ => return None,
        })
    }
}

/// The buyer's answer on the approval page. Cancelling changes nothing at
/// PayPal (the order stays created until it lapses; the buyer is sent to
/// the cancel URL); approving makes it `APPROVED` and announces
/// `CHECKOUT.ORDER.APPROVED`.
pub(crate) fn buyer_answers(ledger: &Ledger, id: &str, choice: BuyerChoice, base: &str) -> Outcome {
    let Some(order) = ledger.orders.get(id) else {
        return Outcome::refused(missing("token"));
    };
    if order.status != "CREATED" {
        return Outcome::refused(unprocessable(
            "ORDER_ALREADY_APPROVED",
            "The order was approved already.",
        ));
    }
    if choice == BuyerChoice::Cancel {
        return Outcome::refused((StatusCode::OK, order_json(order, base)));
    }
    let mut order = order.clone();
    order.status = "APPROVED".to_owned();
    order.payer_id = Some(new_id()[..13].to_owned());
    order.funding_declined = choice == BuyerChoice::ApproveDeclining;
    let body = order_json(&order, base);
    let events = vec![event(
        "CHECKOUT.ORDER.APPROVED",
        "checkout-order",
        "An order has been approved by buyer",
        body.clone(),
    )];
    Outcome::changed(StatusCode::OK, body, order, events)
}

/// The approval page for an order.
pub(crate) fn approval_page(order: &PaypalOrder) -> String {
    format!(
        "<!doctype html><title>PayPal</title><h1>Pay {} {} with PayPal</h1><p>Order {} ({})</p>\
         <form method=post><button name=outcome value=approve>Continue</button>\
         <button name=outcome value=decline>Pay with a card that declines</button>\
         <button name=outcome value=cancel>Cancel and return to merchant</button></form>",
        format_value(order.amount_minor, &order.currency),
        order.currency,
        order.id,
        order_status(order),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_and_write_as_paypal_does() {
        assert_eq!(format_value(4650, "EUR"), "46.50");
        assert_eq!(format_value(5, "USD"), "0.05");
        assert_eq!(format_value(-4500, "EUR"), "-45.00");
        assert_eq!(format_value(4650, "JPY"), "4650");
        assert_eq!(parse_value("46.50", "EUR"), Some(4650));
        assert_eq!(parse_value("46.5", "EUR"), Some(4650));
        assert_eq!(parse_value("46", "EUR"), Some(4600));
        assert_eq!(parse_value("46.505", "EUR"), None);
        assert_eq!(parse_value("4.5", "JPY"), None);
        assert_eq!(parse_value("-1.00", "EUR"), None);
        assert_eq!(parse_value("", "EUR"), None);
    }

    #[test]
    fn tokens_are_checked_by_client_secret_and_expiry() {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("client:secret-of-sixteen")
        );
        let form = vec![("grant_type".to_owned(), "client_credentials".to_owned())];
        let (status, body) = issue_token("client", "secret-of-sixteen", Some(&basic), &form, 100);
        assert_eq!(status, StatusCode::OK);
        let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
        assert!(token_valid(
            "client",
            "secret-of-sixteen",
            Some(&bearer),
            100
        ));
        assert!(!token_valid(
            "client",
            "another-secret!!",
            Some(&bearer),
            100
        ));
        assert!(!token_valid(
            "other",
            "secret-of-sixteen",
            Some(&bearer),
            100
        ));
        assert!(!token_valid(
            "client",
            "secret-of-sixteen",
            Some(&bearer),
            100 + TOKEN_SECONDS
        ));
        let wrong = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("client:wrong")
        );
        let (status, body) = issue_token("client", "secret-of-sixteen", Some(&wrong), &form, 100);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid_client");
    }

    #[test]
    fn ids_look_like_paypals() {
        let id = new_id();
        assert_eq!(id.len(), 17);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_ne!(id, new_id());
    }
}
