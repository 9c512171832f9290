//! Accounts and token configuration from `BOXOFFICE_JWT_*` environment
//! variables. Every variable name accounts and the edge read lives here.

use std::collections::BTreeMap;
use std::time::Duration;

use boxoffice_runtime::ConfigError;
use boxoffice_runtime::config::Secret;
use rand::RngCore as _;

/// HS256 signing secret shared by accounts (signs) and the edge (verifies).
pub const ENV_JWT_SECRET: &str = "BOXOFFICE_JWT_SECRET";
pub const ENV_JWT_ISSUER: &str = "BOXOFFICE_JWT_ISSUER";
pub const ENV_JWT_AUDIENCE: &str = "BOXOFFICE_JWT_AUDIENCE";
pub const ENV_ACCESS_TOKEN_TTL: &str = "BOXOFFICE_ACCESS_TOKEN_TTL_SECS";

/// Development only: write email-verification and password-reset tokens to
/// the log (and keep the last few in memory for tests) until notifications
/// deliver them. Never set in production: a token in a log is a login.
pub const ENV_DEV_TOKEN_LOG: &str = "BOXOFFICE_ACCOUNTS_DEV_TOKEN_LOG";

/// Where accounts reaches checkout (for exports) when it runs alone.
pub const ENV_CHECKOUT_URL: &str = "BOXOFFICE_CHECKOUT_URL";

/// The configured checkout URL, if any.
pub fn checkout_url() -> Option<String> {
    std::env::var(ENV_CHECKOUT_URL)
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// Accounts' own settings.
#[derive(Clone, Debug)]
pub struct AccountsConfig {
    /// See [`ENV_DEV_TOKEN_LOG`].
    pub dev_token_log: bool,
    /// How long a refresh token stays valid unless used.
    pub refresh_ttl: Duration,
    /// How long an email-verification or password-reset token is valid.
    pub single_use_token_ttl: Duration,
}

impl AccountsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let raw = std::env::var(ENV_DEV_TOKEN_LOG).unwrap_or_default();
        let dev_token_log = match raw.trim() {
            "" | "0" | "false" => false,
            "1" | "true" => true,
            other => {
                return Err(ConfigError {
                    variable: ENV_DEV_TOKEN_LOG,
                    problem: format!("'{other}' is not true or false"),
                });
            }
        };
        Ok(Self {
            dev_token_log,
            ..Self::development()
        })
    }

    /// `boxoffice up` and tests: tokens are logged and kept in memory.
    pub fn development() -> Self {
        Self {
            dev_token_log: true,
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            single_use_token_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// A shorter secret makes HS256 brute-forceable offline from one token.
pub const MIN_SECRET_BYTES: usize = 32;

/// How tokens are signed and checked.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    pub secret: Secret,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    /// True when no secret was configured and a random one was made for
    /// this process (`boxoffice up` only): tokens die with the process.
    pub ephemeral_secret: bool,
}

/// What to do when `BOXOFFICE_JWT_SECRET` is not set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingSecret {
    /// Refuse to start (every deployment where two processes share tokens).
    Refuse,
    /// Make a random per-process secret (`boxoffice up`, tests).
    GenerateEphemeral,
}

impl TokenConfig {
    pub fn from_env(missing: MissingSecret) -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect(), missing)
    }

    pub fn from_vars(
        vars: &BTreeMap<String, String>,
        missing: MissingSecret,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let (secret, ephemeral_secret) = match (get(ENV_JWT_SECRET), missing) {
            (Some(secret), _) if secret.len() < MIN_SECRET_BYTES => {
                return Err(ConfigError {
                    variable: ENV_JWT_SECRET,
                    problem: format!(
                        "must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -base64 48`)"
                    ),
                });
            }
            (Some(secret), _) => (secret, false),
            (None, MissingSecret::Refuse) => {
                return Err(ConfigError {
                    variable: ENV_JWT_SECRET,
                    problem: "is required: accounts and the edge must share one signing secret"
                        .into(),
                });
            }
            (None, MissingSecret::GenerateEphemeral) => (random_secret(), true),
        };
        let ttl_secs = match get(ENV_ACCESS_TOKEN_TTL) {
            None => 900,
            Some(raw) => match raw.parse::<u64>() {
                Ok(value) if (30..=86_400).contains(&value) => value,
                _ => {
                    return Err(ConfigError {
                        variable: ENV_ACCESS_TOKEN_TTL,
                        problem: format!("'{raw}' is not a whole number from 30 to 86400"),
                    });
                }
            },
        };
        Ok(Self {
            secret: Secret::new(secret),
            issuer: get(ENV_JWT_ISSUER).unwrap_or_else(|| "boxoffice-accounts".to_owned()),
            audience: get(ENV_JWT_AUDIENCE).unwrap_or_else(|| "boxoffice".to_owned()),
            access_token_ttl: Duration::from_secs(ttl_secs),
            ephemeral_secret,
        })
    }

    /// A configuration with a fresh random secret (tests, `up`).
    pub fn ephemeral() -> Self {
        Self {
            secret: Secret::new(random_secret()),
            issuer: "boxoffice-accounts".to_owned(),
            audience: "boxoffice".to_owned(),
            access_token_ttl: Duration::from_secs(900),
            ephemeral_secret: true,
        }
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
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
    fn a_missing_secret_is_refused_unless_ephemeral_is_allowed() {
        let err = TokenConfig::from_vars(&vars(&[]), MissingSecret::Refuse).unwrap_err();
        assert_eq!(err.variable, ENV_JWT_SECRET);
        let config = TokenConfig::from_vars(&vars(&[]), MissingSecret::GenerateEphemeral).unwrap();
        assert!(config.ephemeral_secret);
        assert!(config.secret.expose().len() >= MIN_SECRET_BYTES);
    }

    #[test]
    fn short_secrets_are_refused_and_secrets_never_print() {
        let err =
            TokenConfig::from_vars(&vars(&[(ENV_JWT_SECRET, "short")]), MissingSecret::Refuse)
                .unwrap_err();
        assert_eq!(err.variable, ENV_JWT_SECRET);
        let secret = "a-very-long-secret-that-is-long-enough-for-hs256";
        let config =
            TokenConfig::from_vars(&vars(&[(ENV_JWT_SECRET, secret)]), MissingSecret::Refuse)
                .unwrap();
        assert!(!config.ephemeral_secret);
        assert!(!format!("{config:?}").contains(secret));
    }
}
