//! Webhook settings, from `BOXOFFICE_WEBHOOKS_*` variables, validated
//! before anything starts.

use std::collections::BTreeMap;
use std::time::Duration;

use boxoffice_runtime::ConfigError;
use boxoffice_runtime::config::parse_number as number;

/// `true` lets endpoints point at loopback, private and link-local
/// addresses (development and tests). Default `false`: production must not
/// let an admin aim the sender at the internal network.
pub const ENV_ALLOW_PRIVATE: &str = "BOXOFFICE_WEBHOOKS_ALLOW_PRIVATE";
/// The wait before the second attempt, in milliseconds; each later wait
/// doubles, up to the maximum.
pub const ENV_FIRST_BACKOFF_MS: &str = "BOXOFFICE_WEBHOOKS_FIRST_BACKOFF_MS";
/// The longest wait between two attempts, in milliseconds.
pub const ENV_MAX_BACKOFF_MS: &str = "BOXOFFICE_WEBHOOKS_MAX_BACKOFF_MS";
/// How long a delivery is retried before it is given up, in seconds.
pub const ENV_RETRY_WINDOW_S: &str = "BOXOFFICE_WEBHOOKS_RETRY_WINDOW_S";
/// An endpoint is disabled after this many failed attempts in a row...
pub const ENV_DISABLE_AFTER_FAILURES: &str = "BOXOFFICE_WEBHOOKS_DISABLE_AFTER_FAILURES";
/// ...that span at least this many seconds.
pub const ENV_DISABLE_AFTER_S: &str = "BOXOFFICE_WEBHOOKS_DISABLE_AFTER_S";
/// The longest one attempt may take (connect, send, answer), in ms.
pub const ENV_TIMEOUT_MS: &str = "BOXOFFICE_WEBHOOKS_TIMEOUT_MS";
/// Attempts in flight at once.
pub const ENV_CONCURRENCY: &str = "BOXOFFICE_WEBHOOKS_CONCURRENCY";

const DAY_SECONDS: u64 = 24 * 3600;

#[derive(Clone, Debug)]
pub struct WebhooksConfig {
    pub allow_private: bool,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_window: Duration,
    pub disable_after_failures: u32,
    pub disable_after: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    /// Looks for due deliveries this often even when nothing wakes it.
    pub poll: Duration,
    /// Deliveries claimed per round.
    pub batch: i64,
}

impl WebhooksConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let allow_private = match get(ENV_ALLOW_PRIVATE).as_deref() {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                return Err(ConfigError {
                    variable: ENV_ALLOW_PRIVATE,
                    problem: format!("'{other}' is not true or false"),
                });
            }
        };
        let first_backoff = number(&get, ENV_FIRST_BACKOFF_MS, 10_000, 10, 3_600_000)?;
        let max_backoff = number(&get, ENV_MAX_BACKOFF_MS, 3_600_000, 10, 86_400_000)?;
        if max_backoff < first_backoff {
            return Err(ConfigError {
                variable: ENV_MAX_BACKOFF_MS,
                problem: "must not be below the first backoff".into(),
            });
        }
        Ok(Self {
            allow_private,
            first_backoff: Duration::from_millis(first_backoff),
            max_backoff: Duration::from_millis(max_backoff),
            retry_window: Duration::from_secs(number(
                &get,
                ENV_RETRY_WINDOW_S,
                3 * DAY_SECONDS,
                1,
                30 * DAY_SECONDS,
            )?),
            disable_after_failures: number(&get, ENV_DISABLE_AFTER_FAILURES, 50, 1, 1_000_000)?
                as u32,
            disable_after: Duration::from_secs(number(
                &get,
                ENV_DISABLE_AFTER_S,
                3 * DAY_SECONDS,
                0,
                30 * DAY_SECONDS,
            )?),
            timeout: Duration::from_millis(number(&get, ENV_TIMEOUT_MS, 10_000, 100, 60_000)?),
            concurrency: number(&get, ENV_CONCURRENCY, 16, 1, 256)? as usize,
            poll: Duration::from_millis(500),
            batch: 100,
        })
    }

    /// Development settings: private addresses allowed (`boxoffice up`,
    /// tests), everything else as in production.
    pub fn development() -> Self {
        let mut config = Self::from_vars(&BTreeMap::new())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"));
        config.allow_private = true;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_deny_private_addresses_and_bad_values_are_refused() {
        let config = WebhooksConfig::from_vars(&BTreeMap::new()).expect("defaults");
        assert!(!config.allow_private);
        assert_eq!(config.retry_window, Duration::from_secs(3 * DAY_SECONDS));
        for (variable, value) in [
            (ENV_ALLOW_PRIVATE, "maybe"),
            (ENV_FIRST_BACKOFF_MS, "0"),
            (ENV_DISABLE_AFTER_FAILURES, "0"),
            (ENV_TIMEOUT_MS, "10"),
        ] {
            let vars = BTreeMap::from([(variable.to_owned(), value.to_owned())]);
            let error = WebhooksConfig::from_vars(&vars).expect_err("refused");
            assert_eq!(error.variable, variable);
        }
    }
}
