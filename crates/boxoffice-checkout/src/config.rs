//! Checkout's own settings, read from `BOXOFFICE_*` environment variables
//! and validated before anything starts. Every variable name lives here.
//! Failure points are not configuration a deployment can set: tests switch
//! them on through [`FailPoints`] in the config they build.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::payment::ProviderStatus;
use crate::payment::paypal::{DEV_CLIENT_ID, DEV_SECRET, PaypalConfig};
use crate::payment::stripe::{DEV_PAYMENTS_KEY, HttpProviderConfig};
use boxoffice_runtime::ConfigError;
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::config::parse_number as number;

pub const ENV_INVENTORY_URL: &str = "BOXOFFICE_INVENTORY_URL";
pub const ENV_CATALOG_URL: &str = "BOXOFFICE_CATALOG_URL";
pub const ENV_ACCOUNTS_URL: &str = "BOXOFFICE_ACCOUNTS_URL";
pub const ENV_WEBHOOK_LISTEN: &str = "BOXOFFICE_CHECKOUT_WEBHOOK_LISTEN";
pub const ENV_WEBHOOK_SECRET: &str = "BOXOFFICE_CHECKOUT_WEBHOOK_SECRET";
pub const ENV_WEBHOOK_TOLERANCE: &str = "BOXOFFICE_CHECKOUT_WEBHOOK_TOLERANCE_SECS";
pub const ENV_TICKET_KEY: &str = "BOXOFFICE_CHECKOUT_TICKET_KEY";
pub const ENV_FEE_PER_TICKET: &str = "BOXOFFICE_CHECKOUT_FEE_PER_TICKET_MINOR";
/// Loyalty points earned per 100 minor units a confirmed booking paid.
pub const ENV_LOYALTY_POINTS_PER_UNIT: &str = "BOXOFFICE_CHECKOUT_LOYALTY_POINTS_PER_UNIT";
pub const ENV_REFUND_CUTOFF: &str = "BOXOFFICE_CHECKOUT_REFUND_CUTOFF_HOURS";
pub const ENV_RECONCILE_INTERVAL: &str = "BOXOFFICE_CHECKOUT_RECONCILE_INTERVAL_MS";
pub const ENV_RECONCILE_AFTER: &str = "BOXOFFICE_CHECKOUT_RECONCILE_AFTER_SECS";
pub const ENV_PAYMENT_LATENCY: &str = "BOXOFFICE_PAYMENT_LATENCY_MS";
pub const ENV_PAYMENT_DECLINE_TOKENS: &str = "BOXOFFICE_PAYMENT_DECLINE_TOKENS";
pub const ENV_PAYMENT_DUPLICATE_PERCENT: &str = "BOXOFFICE_PAYMENT_WEBHOOK_DUPLICATE_PERCENT";
pub const ENV_PAYMENT_WEBHOOK_URL: &str = "BOXOFFICE_PAYMENT_WEBHOOK_URL";
/// The card gateway's base URL (Stripe's API shape: `boxoffice-paysim`,
/// or a real provider). Unset: the in-process simulated provider.
pub const ENV_PAYMENTS_URL: &str = "BOXOFFICE_PAYMENTS_URL";
/// The gateway's secret key (`Authorization: Bearer …`).
pub const ENV_PAYMENTS_KEY: &str = "BOXOFFICE_PAYMENTS_KEY";
/// Where the buyer's browser returns after 3-D Secure.
pub const ENV_PAYMENTS_RETURN_URL: &str = "BOXOFFICE_PAYMENTS_RETURN_URL";
pub const ENV_PAYMENTS_TIMEOUT: &str = "BOXOFFICE_PAYMENTS_TIMEOUT_MS";
/// PayPal's REST API base URL (`boxoffice-paysim`, or
/// `https://api-m.paypal.com`). Unset: no PayPal.
pub const ENV_PAYPAL_URL: &str = "BOXOFFICE_PAYPAL_URL";
pub const ENV_PAYPAL_CLIENT_ID: &str = "BOXOFFICE_PAYPAL_CLIENT_ID";
pub const ENV_PAYPAL_SECRET: &str = "BOXOFFICE_PAYPAL_SECRET";
/// The PayPal webhook deliveries are verified against; unset: checkout
/// registers its endpoint at start and uses the id PayPal answers.
pub const ENV_PAYPAL_WEBHOOK_ID: &str = "BOXOFFICE_PAYPAL_WEBHOOK_ID";
/// Where the buyer's browser goes after approving or cancelling at PayPal.
pub const ENV_PAYPAL_RETURN_URL: &str = "BOXOFFICE_PAYPAL_RETURN_URL";
pub const ENV_PAYPAL_CANCEL_URL: &str = "BOXOFFICE_PAYPAL_CANCEL_URL";

/// Development-only secrets: `up` works without configuration, and a log
/// line warns when they are in use.
const DEV_WEBHOOK_SECRET: &str = "whsec_boxoffice_development_only";
const DEV_TICKET_KEY: &str = "boxoffice-ticket-key-development-only";

/// Stripe's test tokens that decline.
pub const DEFAULT_DECLINE_TOKENS: &[&str] = &[
    "tok_chargeDeclined",
    "tok_chargeDeclinedInsufficientFunds",
    "tok_chargeDeclinedExpiredCard",
    "tok_chargeDeclinedFraudulent",
];

/// The boundaries between the steps of confirming and cancelling, where a
/// test can make checkout stop as if the process had died there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailPoint {
    /// The payment is authorized; the seats are not committed.
    AfterAuthorize,
    /// The seats are sold; the payment is not captured.
    AfterCommit,
    /// The payment is captured; the booking is not marked confirmed.
    AfterCapture,
    /// The booking is marked cancelling; nothing refunded.
    AfterCancelIntent,
    /// The refund is made; the seats are not released.
    AfterRefund,
}

impl FailPoint {
    pub const ALL: [FailPoint; 5] = [
        FailPoint::AfterAuthorize,
        FailPoint::AfterCommit,
        FailPoint::AfterCapture,
        FailPoint::AfterCancelIntent,
        FailPoint::AfterRefund,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Switches tests flip at run time; all off in production.
#[derive(Debug, Default)]
pub struct FailPoints {
    armed: [AtomicBool; FailPoint::ALL.len()],
}

impl FailPoints {
    pub fn arm(&self, point: FailPoint) {
        self.armed[point.index()].store(true, Ordering::SeqCst);
    }

    pub fn disarm(&self, point: FailPoint) {
        self.armed[point.index()].store(false, Ordering::SeqCst);
    }

    pub fn is_armed(&self, point: FailPoint) -> bool {
        self.armed[point.index()].load(Ordering::Relaxed)
    }
}

/// How the simulated payment provider behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedProviderConfig {
    /// Added to every provider call, like a network round trip.
    pub latency: Duration,
    /// Payment method tokens that decline.
    pub decline_tokens: Vec<String>,
    /// How often a webhook is delivered twice, in percent.
    pub duplicate_percent: u8,
    /// Longest random delay before a delivery (so deliveries reorder).
    pub max_delivery_delay: Duration,
    /// Where webhooks go; `None`: to checkout's own webhook listener.
    pub webhook_url: Option<String>,
    /// The payment states whose events the webhook endpoint is subscribed
    /// to, like a Stripe endpoint's `enabled_events`; others are not sent.
    pub subscribed_events: Vec<ProviderStatus>,
}

/// What checkout's endpoint subscribes to: the ends of attempts that took
/// no money or gave it back (a void, a decline, a refund), the rare paths
/// an operator reconciles against the provider's own record. Not
/// authorizations or captures: checkout makes both itself and acts on their
/// answers in the same request (the reconciler asks the provider directly
/// after a crash), so their events would only echo what it already
/// recorded. The capture's echo is not free: one signed delivery, one
/// verification and one log row per booking on the busiest path, about a
/// third of a confirmation's CPU when measured. As Stripe advises, an
/// endpoint takes only the events its integration needs.
pub const CHECKOUT_SUBSCRIBED_EVENTS: &[ProviderStatus] = &[
    ProviderStatus::Voided,
    ProviderStatus::Declined,
    ProviderStatus::Refunded,
];

impl Default for SimulatedProviderConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            decline_tokens: DEFAULT_DECLINE_TOKENS
                .iter()
                .map(|token| (*token).to_owned())
                .collect(),
            duplicate_percent: 20,
            max_delivery_delay: Duration::from_millis(50),
            webhook_url: None,
            subscribed_events: CHECKOUT_SUBSCRIBED_EVENTS.to_vec(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CheckoutConfig {
    /// Inventory's gRPC address (CommitHold, ReleaseSeats, GetHold).
    pub inventory_url: String,
    /// Catalog's gRPC address (the event's start time for refunds).
    pub catalog_url: String,
    /// Accounts' gRPC address (a transfer's recipient is matched by the
    /// email of the user accepting it). Defaults to the catalog's.
    pub accounts_url: String,
    /// Where the payment webhook HTTP endpoint binds (port 0 allowed).
    pub webhook_listen: SocketAddr,
    /// Shared with the payment provider; signs webhooks.
    pub webhook_secret: Secret,
    /// Webhooks signed longer ago than this are refused (replays).
    pub webhook_tolerance: Duration,
    /// Signs ticket codes.
    pub ticket_key: Secret,
    /// Service fee per ticket, in the event currency's minor units.
    pub fee_per_ticket_minor: i64,
    /// Loyalty points earned per 100 minor units paid (0: none).
    pub loyalty_points_per_unit: u32,
    /// Confirmed bookings are refunded on cancellation only until this long
    /// before the event starts.
    pub refund_cutoff: Duration,
    /// How often the reconciler looks for half-done work.
    pub reconcile_interval: Duration,
    /// Work untouched this long counts as abandoned by a crashed process.
    /// Longer than any request's deadline, so the reconciler never races a
    /// live request.
    pub reconcile_after: Duration,
    /// The in-process simulated provider's behaviour (used when
    /// `payments` is `None`).
    pub provider: SimulatedProviderConfig,
    /// The card gateway over HTTP (`BOXOFFICE_PAYMENTS_URL`), in its own
    /// process; `None`: the in-process simulated provider.
    pub payments: Option<HttpProviderConfig>,
    /// PayPal (`BOXOFFICE_PAYPAL_URL`), in its own process; `None`: buyers
    /// cannot pay with PayPal here.
    pub paypal: Option<PaypalConfig>,
    pub fail_points: Arc<FailPoints>,
}

impl Default for CheckoutConfig {
    fn default() -> Self {
        Self {
            inventory_url: "http://127.0.0.1:8080".to_owned(),
            catalog_url: "http://127.0.0.1:8080".to_owned(),
            accounts_url: "http://127.0.0.1:8080".to_owned(),
            webhook_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            webhook_secret: Secret::new(DEV_WEBHOOK_SECRET),
            webhook_tolerance: Duration::from_secs(300),
            ticket_key: Secret::new(DEV_TICKET_KEY),
            fee_per_ticket_minor: 150,
            loyalty_points_per_unit: 1,
            refund_cutoff: Duration::from_secs(48 * 3600),
            reconcile_interval: Duration::from_millis(1_000),
            reconcile_after: Duration::from_secs(60),
            provider: SimulatedProviderConfig::default(),
            payments: None,
            paypal: None,
            fail_points: Arc::new(FailPoints::default()),
        }
    }
}

impl CheckoutConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let defaults = Self::default();
        let url = |variable: &'static str, default: String| -> Result<String, ConfigError> {
            let value = get(variable).unwrap_or(default);
            if value.starts_with("http://") || value.starts_with("https://") {
                Ok(value)
            } else {
                Err(ConfigError {
                    variable,
                    problem: format!("'{value}' is not an http:// or https:// URL"),
                })
            }
        };
        let inventory_url = url(ENV_INVENTORY_URL, defaults.inventory_url)?;
        let catalog_url = url(ENV_CATALOG_URL, inventory_url.clone())?;
        let accounts_url = url(ENV_ACCOUNTS_URL, catalog_url.clone())?;
        let webhook_listen = match get(ENV_WEBHOOK_LISTEN) {
            None => defaults.webhook_listen,
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                variable: ENV_WEBHOOK_LISTEN,
                problem: format!("'{raw}' is not an address like 127.0.0.1:8081"),
            })?,
        };
        let secret = |variable: &'static str, default: Secret| -> Result<Secret, ConfigError> {
            match get(variable) {
                None => Ok(default),
                Some(value) if value.len() >= 16 => Ok(Secret::new(value)),
                Some(_) => Err(ConfigError {
                    variable,
                    problem: "must be at least 16 characters".into(),
                }),
            }
        };
        let webhook_secret = secret(ENV_WEBHOOK_SECRET, defaults.webhook_secret)?;
        let ticket_key = secret(ENV_TICKET_KEY, defaults.ticket_key)?;
        let decline_tokens = match get(ENV_PAYMENT_DECLINE_TOKENS) {
            None => defaults.provider.decline_tokens,
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let webhook_url = match get(ENV_PAYMENT_WEBHOOK_URL) {
            None => None,
            Some(value) if value.starts_with("http://") => Some(value),
            Some(value) => {
                return Err(ConfigError {
                    variable: ENV_PAYMENT_WEBHOOK_URL,
                    problem: format!("'{value}' is not an http:// URL"),
                });
            }
        };
        let payments = match get(ENV_PAYMENTS_URL) {
            None => None,
            Some(base_url) => {
                if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                    return Err(ConfigError {
                        variable: ENV_PAYMENTS_URL,
                        problem: format!("'{base_url}' is not an http:// or https:// URL"),
                    });
                }
                Some(HttpProviderConfig {
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    secret_key: secret(ENV_PAYMENTS_KEY, Secret::new(DEV_PAYMENTS_KEY))?,
                    return_url: get(ENV_PAYMENTS_RETURN_URL),
                    timeout: Duration::from_millis(number(
                        &get,
                        ENV_PAYMENTS_TIMEOUT,
                        10_000,
                        100,
                        120_000,
                    )?),
                })
            }
        };
        let timeout =
            Duration::from_millis(number(&get, ENV_PAYMENTS_TIMEOUT, 10_000, 100, 120_000)?);
        let paypal = match get(ENV_PAYPAL_URL) {
            None => None,
            Some(base_url) => Some(PaypalConfig {
                base_url: url(ENV_PAYPAL_URL, base_url)?
                    .trim_end_matches('/')
                    .to_owned(),
                client_id: get(ENV_PAYPAL_CLIENT_ID).unwrap_or_else(|| DEV_CLIENT_ID.to_owned()),
                secret: secret(ENV_PAYPAL_SECRET, Secret::new(DEV_SECRET))?,
                webhook_id: get(ENV_PAYPAL_WEBHOOK_ID),
                return_url: get(ENV_PAYPAL_RETURN_URL),
                cancel_url: get(ENV_PAYPAL_CANCEL_URL),
                timeout,
            }),
        };
        Ok(Self {
            inventory_url,
            catalog_url,
            accounts_url,
            webhook_listen,
            webhook_secret,
            webhook_tolerance: Duration::from_secs(number(
                &get,
                ENV_WEBHOOK_TOLERANCE,
                300,
                1,
                86_400,
            )?),
            ticket_key,
            fee_per_ticket_minor: number(&get, ENV_FEE_PER_TICKET, 150, 0, 1_000_000)? as i64,
            loyalty_points_per_unit: number(&get, ENV_LOYALTY_POINTS_PER_UNIT, 1, 0, 1_000)? as u32,
            refund_cutoff: Duration::from_secs(
                3600 * number(&get, ENV_REFUND_CUTOFF, 48, 0, 24 * 365)?,
            ),
            reconcile_interval: Duration::from_millis(number(
                &get,
                ENV_RECONCILE_INTERVAL,
                1_000,
                10,
                600_000,
            )?),
            reconcile_after: Duration::from_secs(number(&get, ENV_RECONCILE_AFTER, 60, 0, 86_400)?),
            provider: SimulatedProviderConfig {
                latency: Duration::from_millis(number(&get, ENV_PAYMENT_LATENCY, 0, 0, 60_000)?),
                decline_tokens,
                duplicate_percent: number(&get, ENV_PAYMENT_DUPLICATE_PERCENT, 20, 0, 100)? as u8,
                max_delivery_delay: defaults.provider.max_delivery_delay,
                webhook_url,
                subscribed_events: defaults.provider.subscribed_events,
            },
            payments,
            paypal,
            fail_points: Arc::new(FailPoints::default()),
        })
    }

    /// True while a development-only secret is in use.
    pub fn uses_development_secrets(&self) -> bool {
        self.webhook_secret.expose() == DEV_WEBHOOK_SECRET
            || self.ticket_key.expose() == DEV_TICKET_KEY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = CheckoutConfig::from_vars(&BTreeMap::new()).unwrap();
        assert_eq!(config.webhook_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(config.catalog_url, config.inventory_url);
        assert!(config.uses_development_secrets());
        assert!(
            config
                .provider
                .decline_tokens
                .iter()
                .any(|t| t == "tok_chargeDeclined")
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err =
            CheckoutConfig::from_vars(&vars(&[(ENV_INVENTORY_URL, "localhost:1")])).unwrap_err();
        assert_eq!(err.variable, ENV_INVENTORY_URL);
        let err = CheckoutConfig::from_vars(&vars(&[(ENV_WEBHOOK_LISTEN, "x")])).unwrap_err();
        assert_eq!(err.variable, ENV_WEBHOOK_LISTEN);
        let err = CheckoutConfig::from_vars(&vars(&[(ENV_WEBHOOK_SECRET, "short")])).unwrap_err();
        assert_eq!(err.variable, ENV_WEBHOOK_SECRET);
        let err = CheckoutConfig::from_vars(&vars(&[(ENV_PAYMENT_DUPLICATE_PERCENT, "101")]))
            .unwrap_err();
        assert_eq!(err.variable, ENV_PAYMENT_DUPLICATE_PERCENT);
        let err =
            CheckoutConfig::from_vars(&vars(&[(ENV_PAYMENTS_URL, "localhost:8082")])).unwrap_err();
        assert_eq!(err.variable, ENV_PAYMENTS_URL);
    }

    #[test]
    fn the_card_gateway_is_a_url_and_a_key_away() {
        let config = CheckoutConfig::from_vars(&BTreeMap::new()).unwrap();
        assert!(config.payments.is_none(), "in-process by default");
        let config = CheckoutConfig::from_vars(&vars(&[
            (ENV_PAYMENTS_URL, "http://127.0.0.1:8082/"),
            (ENV_PAYMENTS_KEY, "sk_test_0123456789abcdef"),
        ]))
        .unwrap();
        let payments = config.payments.clone().unwrap();
        assert_eq!(payments.base_url, "http://127.0.0.1:8082");
        assert_eq!(payments.secret_key.expose(), "sk_test_0123456789abcdef");
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn paypal_is_a_url_and_credentials_away() {
        let config = CheckoutConfig::from_vars(&BTreeMap::new()).unwrap();
        assert!(config.paypal.is_none());
        let config = CheckoutConfig::from_vars(&vars(&[
            (ENV_PAYPAL_URL, "http://127.0.0.1:8082/"),
            (ENV_PAYPAL_CLIENT_ID, "client-1"),
            (ENV_PAYPAL_SECRET, "paypal-secret-0123456789"),
            (ENV_PAYPAL_WEBHOOK_ID, "WH123"),
        ]))
        .unwrap();
        let paypal = config.paypal.clone().unwrap();
        assert_eq!(paypal.base_url, "http://127.0.0.1:8082");
        assert_eq!(paypal.client_id, "client-1");
        assert_eq!(paypal.webhook_id.as_deref(), Some("WH123"));
        assert!(!format!("{config:?}").contains("0123456789"));
        let err = CheckoutConfig::from_vars(&vars(&[(ENV_PAYPAL_URL, "paypal.com")])).unwrap_err();
        assert_eq!(err.variable, ENV_PAYPAL_URL);
        let err = CheckoutConfig::from_vars(&vars(&[
            (ENV_PAYPAL_URL, "http://127.0.0.1:1"),
            (ENV_PAYPAL_SECRET, "short"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, ENV_PAYPAL_SECRET);
    }

    #[test]
    fn secrets_never_print() {
        let config =
            CheckoutConfig::from_vars(&vars(&[(ENV_WEBHOOK_SECRET, "whsec_0123456789abcdef")]))
                .unwrap();
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn fail_points_switch() {
        let points = FailPoints::default();
        for point in FailPoint::ALL {
            assert!(!points.is_armed(point));
            points.arm(point);
            assert!(points.is_armed(point));
            points.disarm(point);
            assert!(!points.is_armed(point));
        }
    }
}
