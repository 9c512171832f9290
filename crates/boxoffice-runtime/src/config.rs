//! Typed configuration read from `BOXOFFICE_*` environment variables,
//! validated before anything binds. Every variable name lives in this file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Exit code for bad configuration (EX_CONFIG from sysexits.h is 78, but the
/// project uses EX_USAGE, 64, for "you started me wrong").
pub const EXIT_BAD_CONFIG: i32 = 64;

pub const ENV_DATABASE_URL: &str = "BOXOFFICE_DATABASE_URL";
pub const ENV_REDIS_URL: &str = "BOXOFFICE_REDIS_URL";
pub const ENV_LISTEN: &str = "BOXOFFICE_LISTEN";
pub const ENV_DB_POOL_SIZE: &str = "BOXOFFICE_DB_POOL_SIZE";
pub const ENV_SHUTDOWN_GRACE: &str = "BOXOFFICE_SHUTDOWN_GRACE_SECS";
pub const ENV_CACHE_TTL: &str = "BOXOFFICE_CACHE_TTL_SECS";
pub const ENV_LOG: &str = "BOXOFFICE_LOG";
pub const ENV_LOG_FORMAT: &str = "BOXOFFICE_LOG_FORMAT";
pub const ENV_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// A value that must never be printed (passwords inside URLs and keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// PostgreSQL connection URL; may carry a password.
    pub database_url: Secret,
    pub redis_url: Secret,
    /// Where the gRPC listener binds.
    pub listen: SocketAddr,
    pub db_pool_size: usize,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Safety-net lifetime of read-through cache entries; LISTEN/NOTIFY
    /// invalidates them much sooner.
    pub cache_ttl: Duration,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars().collect())
    }

    /// Reads the given variables; the environment is not consulted. Tests use
    /// this to build configurations without touching process state.
    pub fn from_vars(vars: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let database_url = get(ENV_DATABASE_URL)
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/boxoffice".to_owned());
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError {
                variable: ENV_DATABASE_URL,
                problem: "must be a postgres:// URL".into(),
            });
        }
        database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|_| ConfigError {
                variable: ENV_DATABASE_URL,
                problem: "is not a valid PostgreSQL URL".into(),
            })?;

        let redis_url = get(ENV_REDIS_URL).unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
        if !(redis_url.starts_with("redis://")
            || redis_url.starts_with("rediss://")
            || redis_url.starts_with("redis-cluster://"))
        {
            return Err(ConfigError {
                variable: ENV_REDIS_URL,
                problem: "must be a redis://, rediss:// or redis-cluster:// URL".into(),
            });
        }

        let listen = get(ENV_LISTEN).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = listen.parse::<SocketAddr>().map_err(|_| ConfigError {
            variable: ENV_LISTEN,
            problem: format!("'{listen}' is not an address like 127.0.0.1:8080"),
        })?;

        let db_pool_size = parse_number(&get, ENV_DB_POOL_SIZE, 16, 1, 1_000)? as usize;
        let shutdown_grace =
            Duration::from_secs(parse_number(&get, ENV_SHUTDOWN_GRACE, 10, 0, 3_600)?);
        let cache_ttl = Duration::from_secs(parse_number(&get, ENV_CACHE_TTL, 30, 1, 86_400)?);

        let log_format = match get(ENV_LOG_FORMAT).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    variable: ENV_LOG_FORMAT,
                    problem: format!("'{other}' is neither text nor json"),
                });
            }
        };

        Ok(Self {
            database_url: Secret::new(database_url),
            redis_url: Secret::new(redis_url),
            listen,
            db_pool_size,
            shutdown_grace,
            cache_ttl,
            log_filter: get(ENV_LOG).unwrap_or_else(|| "info".to_owned()),
            log_format,
            otlp_endpoint: get(ENV_OTLP_ENDPOINT),
            service_name: get(ENV_SERVICE_NAME).unwrap_or_else(|| "boxoffice".to_owned()),
        })
    }
}

/// Reads a whole number from `variable` within `min..=max`, or `default`
/// when unset; every service's configuration uses it so the messages agree.
pub fn parse_number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(raw) = get(variable) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(ConfigError {
            variable,
            problem: format!("'{raw}' is not a whole number from {min} to {max}"),
        }),
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
    fn defaults_work_on_a_developer_machine() {
        let config = Config::from_vars(BTreeMap::new()).expect("defaults are valid");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(config.database_url.expose().contains("127.0.0.1:5432"));
        assert_eq!(config.redis_url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = Config::from_vars(vars(&[(ENV_LISTEN, "localhost")])).unwrap_err();
        assert_eq!(err.variable, ENV_LISTEN);
        let err = Config::from_vars(vars(&[(ENV_DB_POOL_SIZE, "0")])).unwrap_err();
        assert_eq!(err.variable, ENV_DB_POOL_SIZE);
        let err = Config::from_vars(vars(&[(ENV_DATABASE_URL, "mysql://x")])).unwrap_err();
        assert_eq!(err.variable, ENV_DATABASE_URL);
        let err = Config::from_vars(vars(&[(ENV_LOG_FORMAT, "xml")])).unwrap_err();
        assert_eq!(err.variable, ENV_LOG_FORMAT);
    }

    #[test]
    fn secrets_never_print() {
        let config =
            Config::from_vars(vars(&[(ENV_DATABASE_URL, "postgres://u:hunter2@db/x")])).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
