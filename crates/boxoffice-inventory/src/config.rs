//! Inventory's own settings, read from `BOXOFFICE_*` environment variables
//! and validated before anything starts. Every variable name lives here.

use std::collections::BTreeMap;
use std::time::Duration;

use boxoffice_runtime::ConfigError;
use boxoffice_runtime::config::Secret;
use boxoffice_runtime::config::parse_number as number;

pub const ENV_HOLD_TTL: &str = "BOXOFFICE_HOLD_TTL_SECS";
pub const ENV_HOLD_COMMIT_MARGIN: &str = "BOXOFFICE_HOLD_COMMIT_MARGIN_MS";
pub const ENV_HOLD_MAX_EXTENSION: &str = "BOXOFFICE_HOLD_MAX_EXTENSION_SECS";
pub const ENV_MAX_SEATS_PER_HOLD: &str = "BOXOFFICE_MAX_SEATS_PER_HOLD";
pub const ENV_MAX_HOLDS_PER_USER: &str = "BOXOFFICE_MAX_HOLDS_PER_USER";
pub const ENV_REDIS_KEY_PREFIX: &str = "BOXOFFICE_REDIS_KEY_PREFIX";
pub const ENV_REDIS_POOL_SIZE: &str = "BOXOFFICE_REDIS_POOL_SIZE";
pub const ENV_SWEEP_INTERVAL: &str = "BOXOFFICE_HOLD_SWEEP_INTERVAL_MS";
pub const ENV_FEED_INTERVAL: &str = "BOXOFFICE_INVENTORY_FEED_INTERVAL_MS";
pub const ENV_WATCH_POLL: &str = "BOXOFFICE_WATCH_POLL_MS";
pub const ENV_CHANGE_STREAM_LENGTH: &str = "BOXOFFICE_CHANGE_STREAM_LENGTH";
pub const ENV_WAITING_ROOM_KEY: &str = "BOXOFFICE_WAITING_ROOM_KEY";
pub const ENV_ADMISSION_TOKEN_TTL: &str = "BOXOFFICE_ADMISSION_TOKEN_TTL_SECS";

/// Signs admission tokens when no key is configured: fine on one machine,
/// useless in production (anyone reading the source can forge tokens).
const DEV_WAITING_ROOM_KEY: &str = "boxoffice-waiting-room-key-development-only";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryConfig {
    /// How long a hold keeps its seats.
    pub hold_ttl: Duration,
    /// CommitHold is refused this long before a hold expires, by
    /// PostgreSQL's clock: it must exceed the clock skew between Redis and
    /// PostgreSQL plus the time a commit takes.
    pub commit_margin: Duration,
    /// How far past its original expiry ExtendHold may push a hold (while
    /// its buyer completes 3-D Secure or a PayPal approval); zero: never.
    pub max_hold_extension: Duration,
    pub max_seats_per_hold: u32,
    /// Active holds one user may have on one event.
    pub max_holds_per_user: u32,
    /// Prepended to every Redis key; must not contain `{` or `}` (the event
    /// id is the hash tag).
    pub key_prefix: String,
    pub redis_pool_size: usize,
    /// How often the sweeper frees expired holds.
    pub sweep_interval: Duration,
    /// How often the catalog's events are looked for without a notification.
    pub feed_interval: Duration,
    /// How often an idle WatchAvailability stream looks for changes.
    pub watch_poll: Duration,
    /// About how many changes each event's stream keeps for resuming watchers.
    pub change_stream_length: u32,
    /// HMAC key of the waiting room's admission tokens; every inventory
    /// instance must share it.
    pub waiting_room_key: Secret,
    /// How long an admission token lets its holder start holding seats.
    pub admission_token_ttl: Duration,
    pub waitlist: WaitlistConfig,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        // The defaults are valid by construction (checked by a test).
        Self {
            hold_ttl: Duration::from_secs(600),
            commit_margin: Duration::from_millis(5_000),
            max_hold_extension: Duration::from_secs(300),
            max_seats_per_hold: 10,
            max_holds_per_user: 3,
            key_prefix: "boxoffice:".to_owned(),
            redis_pool_size: 4,
            sweep_interval: Duration::from_millis(200),
            feed_interval: Duration::from_millis(250),
            watch_poll: Duration::from_millis(100),
            change_stream_length: 10_000,
            waiting_room_key: Secret::new(DEV_WAITING_ROOM_KEY),
            admission_token_ttl: Duration::from_secs(300),
            waitlist: WaitlistConfig::default(),
        }
    }
}

impl InventoryConfig {
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
        let hold_ttl = Duration::from_secs(number(
            &get,
            ENV_HOLD_TTL,
            defaults.hold_ttl.as_secs(),
            1,
            86_400,
        )?);
        let commit_margin = Duration::from_millis(number(
            &get,
            ENV_HOLD_COMMIT_MARGIN,
            defaults.commit_margin.as_millis() as u64,
            0,
            3_600_000,
        )?);
        // The default margin shrinks for short TTLs set without a margin.
        let commit_margin = if get(ENV_HOLD_COMMIT_MARGIN).is_none() {
            commit_margin.min(hold_ttl / 4)
        } else {
            commit_margin
        };
        if commit_margin >= hold_ttl {
            return Err(ConfigError {
                variable: ENV_HOLD_COMMIT_MARGIN,
                problem: format!(
                    "must be shorter than the hold TTL ({}s)",
                    hold_ttl.as_secs()
                ),
            });
        }
        // Half the hold's lifetime unless set (10 min holds: at most 15
        // min in all), so short test holds still run out soon.
        let max_hold_extension = match get(ENV_HOLD_MAX_EXTENSION) {
            None => hold_ttl / 2,
            Some(_) => Duration::from_secs(number(&get, ENV_HOLD_MAX_EXTENSION, 0, 0, 3_600)?),
        };
        let key_prefix = get(ENV_REDIS_KEY_PREFIX).unwrap_or(defaults.key_prefix);
        if key_prefix.contains(['{', '}']) || key_prefix.len() > 100 {
            return Err(ConfigError {
                variable: ENV_REDIS_KEY_PREFIX,
                problem: "must be at most 100 characters without { or }".into(),
            });
        }
        let waiting_room_key = match get(ENV_WAITING_ROOM_KEY) {
            None => defaults.waiting_room_key,
            Some(key) if key.len() >= 16 => Secret::new(key),
            Some(_) => {
                return Err(ConfigError {
                    variable: ENV_WAITING_ROOM_KEY,
                    problem: "must be at least 16 characters".into(),
                });
            }
        };
        let waitlist = WaitlistConfig::from_vars(&get, commit_margin)?;
        Ok(Self {
            waitlist,
            waiting_room_key,
            admission_token_ttl: Duration::from_secs(number(
                &get,
                ENV_ADMISSION_TOKEN_TTL,
                300,
                1,
                86_400,
            )?),
            hold_ttl,
            commit_margin,
            max_hold_extension,
            max_seats_per_hold: number(&get, ENV_MAX_SEATS_PER_HOLD, 10, 1, 100)? as u32,
            max_holds_per_user: number(&get, ENV_MAX_HOLDS_PER_USER, 3, 1, 1_000)? as u32,
            key_prefix,
            redis_pool_size: number(&get, ENV_REDIS_POOL_SIZE, 4, 1, 64)? as usize,
            sweep_interval: Duration::from_millis(number(
                &get,
                ENV_SWEEP_INTERVAL,
                200,
                10,
                60_000,
            )?),
            feed_interval: Duration::from_millis(number(&get, ENV_FEED_INTERVAL, 250, 10, 60_000)?),
            watch_poll: Duration::from_millis(number(&get, ENV_WATCH_POLL, 100, 10, 10_000)?),
            change_stream_length: number(&get, ENV_CHANGE_STREAM_LENGTH, 10_000, 100, 10_000_000)?
                as u32,
        })
    }
}

impl InventoryConfig {
    /// True while admission tokens are signed with the development key.
    pub fn uses_development_waiting_room_key(&self) -> bool {
        self.waiting_room_key.expose() == DEV_WAITING_ROOM_KEY
    }
}

// The waitlist ---------------------------------------------------------

/// How long a waitlist offer (a hold in the offered user's name) lasts.
pub const ENV_WAITLIST_OFFER: &str = "BOXOFFICE_WAITLIST_OFFER_SECS";
/// How often each instance looks for seats to offer and offers to settle.
pub const ENV_WAITLIST_POLL: &str = "BOXOFFICE_WAITLIST_POLL_MS";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitlistConfig {
    /// How long an offer keeps its seats for the offered user; longer than
    /// the commit margin, or it could never be bought.
    pub offer_ttl: Duration,
    /// How often the offer pass runs over the events with a line.
    pub poll: Duration,
}

impl Default for WaitlistConfig {
    fn default() -> Self {
        Self {
            offer_ttl: Duration::from_secs(1_800),
            poll: Duration::from_millis(500),
        }
    }
}

impl WaitlistConfig {
    fn from_vars(
        get: &impl Fn(&str) -> Option<String>,
        commit_margin: Duration,
    ) -> Result<Self, ConfigError> {
        let offer_ttl = Duration::from_secs(number(get, ENV_WAITLIST_OFFER, 1_800, 1, 7 * 86_400)?);
        if offer_ttl <= commit_margin {
            return Err(ConfigError {
                variable: ENV_WAITLIST_OFFER,
                problem: format!(
                    "must be longer than the hold commit margin ({} ms)",
                    commit_margin.as_millis()
                ),
            });
        }
        Ok(Self {
            offer_ttl,
            poll: Duration::from_millis(number(get, ENV_WAITLIST_POLL, 500, 10, 60_000)?),
        })
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
        assert_eq!(
            InventoryConfig::from_vars(&BTreeMap::new()).unwrap(),
            InventoryConfig::default()
        );
        assert_eq!(
            InventoryConfig::default().hold_ttl,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = InventoryConfig::from_vars(&vars(&[(ENV_HOLD_TTL, "0")])).unwrap_err();
        assert_eq!(err.variable, ENV_HOLD_TTL);
        let err = InventoryConfig::from_vars(&vars(&[(ENV_REDIS_KEY_PREFIX, "a{b")])).unwrap_err();
        assert_eq!(err.variable, ENV_REDIS_KEY_PREFIX);
        let err = InventoryConfig::from_vars(&vars(&[
            (ENV_HOLD_TTL, "2"),
            (ENV_HOLD_COMMIT_MARGIN, "2000"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, ENV_HOLD_COMMIT_MARGIN);
    }

    #[test]
    fn the_waiting_room_key_is_checked_and_never_printed() {
        assert!(InventoryConfig::default().uses_development_waiting_room_key());
        let err =
            InventoryConfig::from_vars(&vars(&[(ENV_WAITING_ROOM_KEY, "short")])).unwrap_err();
        assert_eq!(err.variable, ENV_WAITING_ROOM_KEY);
        let config =
            InventoryConfig::from_vars(&vars(&[(ENV_WAITING_ROOM_KEY, "0123456789abcdef-secret")]))
                .unwrap();
        assert!(!config.uses_development_waiting_room_key());
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn a_hold_may_be_extended_by_half_its_lifetime_unless_set() {
        assert_eq!(
            InventoryConfig::default().max_hold_extension,
            Duration::from_secs(300)
        );
        let config = InventoryConfig::from_vars(&vars(&[(ENV_HOLD_TTL, "4")])).unwrap();
        assert_eq!(config.max_hold_extension, Duration::from_secs(2));
        let config = InventoryConfig::from_vars(&vars(&[(ENV_HOLD_MAX_EXTENSION, "0")])).unwrap();
        assert_eq!(config.max_hold_extension, Duration::ZERO);
        let err =
            InventoryConfig::from_vars(&vars(&[(ENV_HOLD_MAX_EXTENSION, "3601")])).unwrap_err();
        assert_eq!(err.variable, ENV_HOLD_MAX_EXTENSION);
    }

    #[test]
    fn a_waitlist_offer_must_outlast_the_commit_margin() {
        let err = InventoryConfig::from_vars(&vars(&[(ENV_WAITLIST_OFFER, "1")])).unwrap_err();
        assert_eq!(err.variable, ENV_WAITLIST_OFFER);
        let config = InventoryConfig::from_vars(&vars(&[
            (ENV_WAITLIST_OFFER, "2"),
            (ENV_HOLD_COMMIT_MARGIN, "500"),
        ]))
        .unwrap();
        assert_eq!(config.waitlist.offer_ttl, Duration::from_secs(2));
    }

    #[test]
    fn short_ttls_get_a_proportionate_default_margin() {
        let config = InventoryConfig::from_vars(&vars(&[(ENV_HOLD_TTL, "2")])).unwrap();
        assert_eq!(config.commit_margin, Duration::from_millis(500));
    }
}
