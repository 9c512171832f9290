//! Notification settings, from `BOXOFFICE_SMTP_*`, `BOXOFFICE_MAIL_*` and
//! `BOXOFFICE_NOTIFY_*` variables, validated before anything starts.

use std::collections::BTreeMap;
use std::time::Duration;

use boxoffice_runtime::ConfigError;
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::config::parse_number as number;

/// Where mail goes: `smtp://host:port` (plain, or STARTTLS with
/// `?tls=required`) or `smtps://host:port`, credentials as
/// `smtp://user:password@host`.
pub const ENV_SMTP_URL: &str = "BOXOFFICE_SMTP_URL";
/// The sender, e.g. `Boxoffice <tickets@example.com>`.
pub const ENV_MAIL_FROM: &str = "BOXOFFICE_MAIL_FROM";
/// Where users reach the web app: unsubscribe links start with it.
pub const ENV_PUBLIC_URL: &str = "BOXOFFICE_PUBLIC_URL";
/// Signs unsubscribe tokens (at least 16 characters). Unset: a random key
/// per process (development only: links die with the process).
pub const ENV_UNSUBSCRIBE_SECRET: &str = "BOXOFFICE_UNSUBSCRIBE_SECRET";
/// How long one send may take before another attempt may start (a sender
/// that died mid-send is retried after this), in milliseconds.
pub const ENV_CLAIM_MS: &str = "BOXOFFICE_NOTIFY_CLAIM_MS";
/// The longest wait between two attempts at one message, in milliseconds.
pub const ENV_MAX_BACKOFF_MS: &str = "BOXOFFICE_NOTIFY_MAX_BACKOFF_MS";
/// Messages sent at once (SMTP connections in the pool).
pub const ENV_CONCURRENCY: &str = "BOXOFFICE_NOTIFY_CONCURRENCY";

pub const DEFAULT_SMTP_URL: &str = "smtp://127.0.0.1:2525";
pub const DEFAULT_MAIL_FROM: &str = "Boxoffice <tickets@boxoffice.localhost>";
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost:8080";

#[derive(Clone, Debug)]
pub struct NotifyConfig {
    pub smtp_url: Secret,
    pub from: lettre::message::Mailbox,
    pub public_url: String,
    pub unsubscribe_secret: Secret,
    /// True when the unsubscribe key was made up for this process.
    pub ephemeral_secret: bool,
    pub claim: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Looks for due messages this often even when nothing wakes it.
    pub poll: Duration,
    pub concurrency: usize,
    /// Messages claimed per round.
    pub batch: i64,
}

fn random_secret() -> String {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl NotifyConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
        };
        let smtp_url = get(ENV_SMTP_URL).unwrap_or_else(|| DEFAULT_SMTP_URL.to_owned());
        if !(smtp_url.starts_with("smtp://") || smtp_url.starts_with("smtps://")) {
            return Err(ConfigError {
                variable: ENV_SMTP_URL,
                problem: "must start with smtp:// or smtps://".into(),
            });
        }
        // Checked now, by the reader the sender uses, so a bad URL stops
        // the process before it binds.
        crate::smtp::SmtpPool::from_url(&smtp_url, 0, Duration::from_secs(1)).map_err(|_| {
            ConfigError {
                variable: ENV_SMTP_URL,
                problem: "is not an SMTP URL like smtp://host:25".into(),
            }
        })?;
        let from_text = get(ENV_MAIL_FROM).unwrap_or_else(|| DEFAULT_MAIL_FROM.to_owned());
        let from = from_text.parse().map_err(|_| ConfigError {
            variable: ENV_MAIL_FROM,
            problem: format!("'{from_text}' is not a mailbox like Name <name@example.com>"),
        })?;
        let public_url = get(ENV_PUBLIC_URL).unwrap_or_else(|| DEFAULT_PUBLIC_URL.to_owned());
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError {
                variable: ENV_PUBLIC_URL,
                problem: "must start with http:// or https://".into(),
            });
        }
        let (unsubscribe_secret, ephemeral_secret) = match get(ENV_UNSUBSCRIBE_SECRET) {
            None => (Secret::new(random_secret()), true),
            Some(value) if value.len() >= 16 => (Secret::new(value), false),
            Some(_) => {
                return Err(ConfigError {
                    variable: ENV_UNSUBSCRIBE_SECRET,
                    problem: "must be at least 16 characters".into(),
                });
            }
        };
        Ok(Self {
            smtp_url: Secret::new(smtp_url),
            from,
            public_url: public_url.trim_end_matches('/').to_owned(),
            unsubscribe_secret,
            ephemeral_secret,
            claim: Duration::from_millis(number(&get, ENV_CLAIM_MS, 60_000, 100, 3_600_000)?),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(number(
                &get,
                ENV_MAX_BACKOFF_MS,
                300_000,
                10,
                86_400_000,
            )?),
            poll: Duration::from_millis(500),
            concurrency: number(&get, ENV_CONCURRENCY, 16, 1, 256)? as usize,
            batch: 200,
        })
    }

    /// Development settings towards `smtp_url` (tests).
    pub fn development(smtp_url: &str) -> Result<Self, ConfigError> {
        Self::from_vars(&BTreeMap::from([(
            ENV_SMTP_URL.to_owned(),
            smtp_url.to_owned(),
        )]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_refusals() {
        let config = NotifyConfig::from_vars(&BTreeMap::new()).expect("defaults");
        assert_eq!(config.smtp_url.expose(), DEFAULT_SMTP_URL);
        assert!(config.ephemeral_secret);
        assert_eq!(config.claim, Duration::from_secs(60));
        for (variable, value) in [
            (ENV_SMTP_URL, "http://mail"),
            (ENV_MAIL_FROM, "not a mailbox"),
            (ENV_PUBLIC_URL, "ftp://x"),
            (ENV_UNSUBSCRIBE_SECRET, "short"),
            (ENV_CLAIM_MS, "5"),
            (ENV_CONCURRENCY, "0"),
        ] {
            let error = NotifyConfig::from_vars(&vars(&[(variable, value)]))
                .expect_err("a bad value is refused");
            assert_eq!(error.variable, variable);
        }
    }
}
