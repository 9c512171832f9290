//! Accounts and token configuration from `BOXOFFICE_JWT_*` environment
//! variables, and the OpenID Connect providers of social login from
//! `BOXOFFICE_OIDC_*`. Every variable name accounts and the edge read lives
//! here.

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

/// Social login: the OpenID providers' names, comma-separated (lowercase
/// letters and digits). Each NAME then needs `BOXOFFICE_OIDC_<NAME>_ISSUER`,
/// `BOXOFFICE_OIDC_<NAME>_CLIENT_ID` and `BOXOFFICE_OIDC_<NAME>_CLIENT_SECRET`.
pub const ENV_OIDC_PROVIDERS: &str = "BOXOFFICE_OIDC_PROVIDERS";
/// Where providers may send the browser back (comma-separated absolute URLs;
/// `StartSocialLogin` accepts only these). Required with any provider.
pub const ENV_OIDC_REDIRECT_URIS: &str = "BOXOFFICE_OIDC_REDIRECT_URIS";
const OIDC_PROVIDER_PREFIX: &str = "BOXOFFICE_OIDC_";

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
    /// OpenID Connect providers for social login (none by default).
    pub social: SocialLoginConfig,
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
            social: SocialLoginConfig::from_env()?,
            ..Self::development()
        })
    }

    /// `boxoffice up` and tests: tokens are logged and kept in memory.
    pub fn development() -> Self {
        Self {
            social: SocialLoginConfig::default(),
            dev_token_log: true,
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            single_use_token_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// One OpenID provider of social login.
#[derive(Clone, Debug)]
pub struct OidcProviderConfig {
    /// What clients pass to `StartSocialLogin` (lowercase letters and digits).
    pub name: String,
    /// The issuer identifier, exactly as the provider's discovery document
    /// and ID tokens spell it; discovery is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
}

/// Social login's providers and the redirect URIs clients may use.
#[derive(Clone, Debug)]
pub struct SocialLoginConfig {
    pub providers: Vec<OidcProviderConfig>,
    pub redirect_uris: Vec<String>,
    /// How long a login may take between start and finish.
    pub state_ttl: Duration,
    /// How long a link offer waits for the account owner's proof.
    pub link_ttl: Duration,
    /// A provider's keys are fetched again at most this often when an ID
    /// token names a key id they do not have (bounds what forged tokens
    /// can make accounts fetch).
    pub jwks_min_refetch: Duration,
    /// Discovery documents and keys are fetched again after this long.
    pub metadata_max_age: Duration,
}

impl Default for SocialLoginConfig {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            redirect_uris: Vec::new(),
            state_ttl: Duration::from_secs(600),
            link_ttl: Duration::from_secs(600),
            jwks_min_refetch: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(3600),
        }
    }
}

/// An issuer or redirect URI: https, or http on a loopback host (development
/// and tests), absolute, without a fragment.
fn acceptable_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|_| format!("'{raw}' is not an absolute URL"))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "'{raw}' must be https (http only on a loopback host)"
            ));
        }
    }
    if url.fragment().is_some() {
        return Err(format!("'{raw}' must not have a fragment"));
    }
    Ok(url)
}

impl SocialLoginConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = Self::default();
        let Some(names) = get(ENV_OIDC_PROVIDERS) else {
            return Ok(config);
        };
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let valid = name.len() <= 32
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !valid {
                return Err(ConfigError {
                    variable: ENV_OIDC_PROVIDERS,
                    problem: format!(
                        "'{name}' is not a provider name (lowercase letters and digits, at most 32)"
                    ),
                });
            }
            if config.providers.iter().any(|p| p.name == name) {
                return Err(ConfigError {
                    variable: ENV_OIDC_PROVIDERS,
                    problem: format!("'{name}' is listed twice"),
                });
            }
            // Named once at start-up, per configured provider: leaking the
            // few names keeps `ConfigError` a plain `&'static str`.
            let variable = |suffix: &str| -> &'static str {
                Box::leak(
                    format!(
                        "{OIDC_PROVIDER_PREFIX}{}_{suffix}",
                        name.to_ascii_uppercase()
                    )
                    .into_boxed_str(),
                )
            };
            let required = |suffix: &str| {
                let variable = variable(suffix);
                get(variable).ok_or_else(|| ConfigError {
                    variable,
                    problem: format!("is required for provider '{name}'"),
                })
            };
            let issuer = required("ISSUER")?;
            acceptable_url(&issuer).map_err(|problem| ConfigError {
                variable: variable("ISSUER"),
                problem,
            })?;
            if issuer.contains('?') {
                return Err(ConfigError {
                    variable: variable("ISSUER"),
                    problem: format!("'{issuer}' must not have a query"),
                });
            }
            let client_id = required("CLIENT_ID")?;
            let client_secret = Secret::new(required("CLIENT_SECRET")?);
            config.providers.push(OidcProviderConfig {
                name: name.to_owned(),
                issuer,
                client_id,
                client_secret,
            });
        }
        if config.providers.is_empty() {
            return Ok(config);
        }
        let Some(redirect_uris) = get(ENV_OIDC_REDIRECT_URIS) else {
            return Err(ConfigError {
                variable: ENV_OIDC_REDIRECT_URIS,
                problem: format!("is required when {ENV_OIDC_PROVIDERS} is set"),
            });
        };
        for uri in redirect_uris
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            acceptable_url(uri).map_err(|problem| ConfigError {
                variable: ENV_OIDC_REDIRECT_URIS,
                problem,
            })?;
            config.redirect_uris.push(uri.to_owned());
        }
        Ok(config)
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
    fn oidc_providers_are_validated_and_their_secrets_never_print() {
        let good = [
            (ENV_OIDC_PROVIDERS, "google, corp"),
            (
                "BOXOFFICE_OIDC_GOOGLE_ISSUER",
                "https://accounts.google.com",
            ),
            ("BOXOFFICE_OIDC_GOOGLE_CLIENT_ID", "id-1"),
            ("BOXOFFICE_OIDC_GOOGLE_CLIENT_SECRET", "very-secret-1"),
            ("BOXOFFICE_OIDC_CORP_ISSUER", "http://127.0.0.1:9000"),
            ("BOXOFFICE_OIDC_CORP_CLIENT_ID", "id-2"),
            ("BOXOFFICE_OIDC_CORP_CLIENT_SECRET", "very-secret-2"),
            (ENV_OIDC_REDIRECT_URIS, "https://tickets.example/callback"),
        ];
        let config = SocialLoginConfig::from_vars(&vars(&good)).unwrap();
        assert_eq!(config.providers.len(), 2);
        assert_eq!(config.providers[1].issuer, "http://127.0.0.1:9000");
        assert!(!format!("{config:?}").contains("very-secret"));
        assert!(
            SocialLoginConfig::from_vars(&vars(&[]))
                .unwrap()
                .providers
                .is_empty()
        );

        let with = |name: &str, value: &str| {
            let mut changed = vars(&good);
            changed.insert(name.to_owned(), value.to_owned());
            SocialLoginConfig::from_vars(&changed).unwrap_err().variable
        };
        assert_eq!(with(ENV_OIDC_PROVIDERS, "Google"), ENV_OIDC_PROVIDERS);
        assert_eq!(
            with("BOXOFFICE_OIDC_GOOGLE_ISSUER", "http://accounts.google.com"),
            "BOXOFFICE_OIDC_GOOGLE_ISSUER"
        );
        assert_eq!(
            with("BOXOFFICE_OIDC_CORP_CLIENT_SECRET", " "),
            "BOXOFFICE_OIDC_CORP_CLIENT_SECRET"
        );
        assert_eq!(
            with(ENV_OIDC_REDIRECT_URIS, "not a url"),
            ENV_OIDC_REDIRECT_URIS
        );
        assert_eq!(with(ENV_OIDC_REDIRECT_URIS, ""), ENV_OIDC_REDIRECT_URIS);
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
