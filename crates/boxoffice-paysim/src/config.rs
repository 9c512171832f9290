//! The simulator's settings, from `BOXOFFICE_PAYSIM_*` variables (and the
//! `BOXOFFICE_PAYMENT_*` ones the in-process simulator reads, so a test
//! means the same against either).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use boxoffice_runtime::ConfigError;
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::config::parse_number as number;

pub const ENV_LISTEN: &str = "BOXOFFICE_PAYSIM_LISTEN";
pub const ENV_LEDGER: &str = "BOXOFFICE_PAYSIM_LEDGER";
pub const ENV_API_KEY: &str = "BOXOFFICE_PAYSIM_API_KEY";
pub const ENV_WEBHOOK_SECRET: &str = "BOXOFFICE_PAYSIM_WEBHOOK_SECRET";
/// The PayPal REST app's client id and secret (`POST /v1/oauth2/token`).
pub const ENV_PAYPAL_CLIENT_ID: &str = "BOXOFFICE_PAYSIM_PAYPAL_CLIENT_ID";
pub const ENV_PAYPAL_SECRET: &str = "BOXOFFICE_PAYSIM_PAYPAL_SECRET";
/// Set by a parent that starts the simulator as its child (`boxoffice
/// up`): the simulator stops when that process dies.
pub const ENV_PARENT_PID: &str = "BOXOFFICE_PAYSIM_PARENT_PID";
pub const ENV_LATENCY: &str = "BOXOFFICE_PAYMENT_LATENCY_MS";
pub const ENV_DECLINE_TOKENS: &str = "BOXOFFICE_PAYMENT_DECLINE_TOKENS";
pub const ENV_DUPLICATE_PERCENT: &str = "BOXOFFICE_PAYMENT_WEBHOOK_DUPLICATE_PERCENT";

/// Development-only credentials, the same ones checkout uses by default.
pub const DEV_API_KEY: &str = "sk_test_boxoffice_development_only";
pub const DEV_WEBHOOK_SECRET: &str = "whsec_boxoffice_development_only";
pub const DEV_PAYPAL_CLIENT_ID: &str = "boxoffice-paypal-client-development-only";
pub const DEV_PAYPAL_SECRET: &str = "boxoffice-paypal-secret-development-only";

/// Stripe's test tokens that decline, and their decline codes.
pub const DECLINES: &[(&str, &str)] = &[
    ("tok_chargeDeclined", "generic_decline"),
    ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ("tok_chargeDeclinedExpiredCard", "expired_card"),
    ("tok_chargeDeclinedFraudulent", "fraudulent"),
];

/// Stripe's test tokens whose card asks for 3-D Secure.
pub const AUTHENTICATION_TOKENS: &[&str] = &[
    "tok_threeDSecure2Required",
    "tok_threeDSecureRequired",
    "pm_card_threeDSecure2Required",
];

#[derive(Clone, Debug)]
pub struct PaysimConfig {
    pub listen: SocketAddr,
    pub ledger: PathBuf,
    pub api_key: Secret,
    pub webhook_secret: Secret,
    pub paypal_client_id: String,
    pub paypal_secret: Secret,
    pub latency: Duration,
    pub decline_tokens: Vec<String>,
    pub duplicate_percent: u8,
    pub max_delivery_delay: Duration,
    /// Stop when this process dies (see [`ENV_PARENT_PID`]).
    pub parent_pid: Option<i32>,
}

impl PaysimConfig {
    /// Settings for a ledger at `ledger`, everything else the development
    /// defaults, listening on a free loopback port.
    pub fn for_ledger(ledger: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ledger,
            api_key: Secret::new(DEV_API_KEY),
            webhook_secret: Secret::new(DEV_WEBHOOK_SECRET),
            paypal_client_id: DEV_PAYPAL_CLIENT_ID.to_owned(),
            paypal_secret: Secret::new(DEV_PAYPAL_SECRET),
            latency: Duration::ZERO,
            decline_tokens: DECLINES.iter().map(|(t, _)| (*t).to_owned()).collect(),
            duplicate_percent: 20,
            max_delivery_delay: Duration::from_millis(50),
            parent_pid: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = Self::for_ledger(
            get(ENV_LEDGER)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("boxoffice-paysim.jsonl")),
        );
        config.listen = match get(ENV_LISTEN) {
            None => SocketAddr::from(([127, 0, 0, 1], 8082)),
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                variable: ENV_LISTEN,
                problem: format!("'{raw}' is not an address like 127.0.0.1:8082"),
            })?,
        };
        let secret = |variable: &'static str, default: &str| -> Result<Secret, ConfigError> {
            match get(variable) {
                None => Ok(Secret::new(default)),
                Some(value) if value.len() >= 16 => Ok(Secret::new(value)),
                Some(_) => Err(ConfigError {
                    variable,
                    problem: "must be at least 16 characters".into(),
                }),
            }
        };
        config.api_key = secret(ENV_API_KEY, DEV_API_KEY)?;
        config.webhook_secret = secret(ENV_WEBHOOK_SECRET, DEV_WEBHOOK_SECRET)?;
        config.paypal_secret = secret(ENV_PAYPAL_SECRET, DEV_PAYPAL_SECRET)?;
        if let Some(client_id) = get(ENV_PAYPAL_CLIENT_ID) {
            config.paypal_client_id = client_id;
        }
        config.latency = Duration::from_millis(number(&get, ENV_LATENCY, 0, 0, 60_000)?);
        if let Some(list) = get(ENV_DECLINE_TOKENS) {
            config.decline_tokens = list
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
        }
        config.duplicate_percent = number(&get, ENV_DUPLICATE_PERCENT, 20, 0, 100)? as u8;
        config.parent_pid = match get(ENV_PARENT_PID) {
            None => None,
            Some(raw) => Some(raw.parse().map_err(|_| ConfigError {
                variable: ENV_PARENT_PID,
                problem: format!("'{raw}' is not a process id"),
            })?),
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let config = PaysimConfig::from_vars(&BTreeMap::new()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8082");
        assert!(!format!("{config:?}").contains(DEV_API_KEY));
        let bad = |name: &str, value: &str| {
            PaysimConfig::from_vars(&BTreeMap::from([(name.to_owned(), value.to_owned())]))
                .unwrap_err()
                .variable
        };
        assert_eq!(bad(ENV_LISTEN, "nowhere"), ENV_LISTEN);
        assert_eq!(bad(ENV_API_KEY, "short"), ENV_API_KEY);
        assert_eq!(bad(ENV_DUPLICATE_PERCENT, "101"), ENV_DUPLICATE_PERCENT);
    }
}
