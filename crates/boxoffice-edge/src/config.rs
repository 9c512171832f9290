//! The edge's configuration: built-in defaults (enough for `boxoffice up`),
//! then an optional TOML file (`BOXOFFICE_EDGE_CONFIG`), then `BOXOFFICE_EDGE_*`
//! environment overrides. Validated before anything binds. Every variable
//! name the edge reads lives in this file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use boxoffice_runtime::ConfigError;
use serde::Deserialize;

pub use crate::access::RouteConfig;
use crate::access::default_routes;

pub const ENV_CONFIG_FILE: &str = "BOXOFFICE_EDGE_CONFIG";
pub const ENV_LISTEN: &str = "BOXOFFICE_EDGE_LISTEN";
pub const ENV_ADMIN_LISTEN: &str = "BOXOFFICE_EDGE_ADMIN_LISTEN";
pub const ENV_CORS_ORIGINS: &str = "BOXOFFICE_EDGE_CORS_ORIGINS";
pub const ENV_DEFAULT_TIMEOUT_MS: &str = "BOXOFFICE_EDGE_DEFAULT_TIMEOUT_MS";
pub const ENV_MAX_TIMEOUT_MS: &str = "BOXOFFICE_EDGE_MAX_TIMEOUT_MS";
pub const ENV_MAX_MESSAGE_BYTES: &str = "BOXOFFICE_EDGE_MAX_MESSAGE_BYTES";
pub const ENV_RATE_PER_ADDRESS: &str = "BOXOFFICE_EDGE_RATE_PER_ADDRESS";
pub const ENV_BURST_PER_ADDRESS: &str = "BOXOFFICE_EDGE_BURST_PER_ADDRESS";
pub const ENV_RATE_PER_USER: &str = "BOXOFFICE_EDGE_RATE_PER_USER";
pub const ENV_BURST_PER_USER: &str = "BOXOFFICE_EDGE_BURST_PER_USER";
/// JoinQueue calls per second per client address (the burst is ten times
/// it); 0 turns the limit off.
pub const ENV_JOINS_PER_ADDRESS: &str = "BOXOFFICE_EDGE_JOINS_PER_ADDRESS";
/// JoinQueue calls per second per account (the burst is five times it).
pub const ENV_JOINS_PER_USER: &str = "BOXOFFICE_EDGE_JOINS_PER_USER";
pub const ENV_MAX_CONCURRENT_PER_UPSTREAM: &str = "BOXOFFICE_EDGE_MAX_CONCURRENT_PER_UPSTREAM";
pub const ENV_ACCESS_LOG: &str = "BOXOFFICE_EDGE_ACCESS_LOG";
/// The web app's built files; `off` serves none.
pub const ENV_WEB_DIR: &str = "BOXOFFICE_WEB_DIR";
/// Served when it holds a build and `BOXOFFICE_WEB_DIR` is unset (relative
/// to the working directory: `scripts/up` runs from the checkout).
pub const DEFAULT_WEB_DIR: &str = "web/dist";
/// `BOXOFFICE_EDGE_UPSTREAM_<CLUSTER>=host:port,host:port`, e.g.
/// `BOXOFFICE_EDGE_UPSTREAM_CATALOG`.
pub const ENV_RESOLVE_INTERVAL_MS: &str = "BOXOFFICE_EDGE_RESOLVE_INTERVAL_MS";
pub const ENV_DNS_SERVER: &str = "BOXOFFICE_EDGE_DNS_SERVER";
pub const ENV_UPSTREAM_PREFIX: &str = "BOXOFFICE_EDGE_UPSTREAM_";

/// The upstream clusters the built-in route table refers to.
pub const CLUSTERS: &[&str] = &["catalog", "inventory", "checkout", "accounts"];

/// A token bucket: `per_second` refill, `burst` capacity; 0 turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl RateLimit {
    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port` of every instance.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// The `grpc.health.v1` service name to watch; "" is the whole server.
    #[serde(default)]
    pub health_service: String,
    /// Overrides the edge-wide cap on concurrent requests to this cluster.
    #[serde(default)]
    pub max_concurrent_requests: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct EdgeConfig {
    pub listen: SocketAddr,
    /// Prometheus `/metrics`; `None` turns the admin listener off.
    pub admin_listen: Option<SocketAddr>,
    /// Browser origins allowed by CORS (exact match, e.g. `https://boxoffice.dev`).
    pub cors_origins: Vec<String>,
    /// Applied to unary calls that send no `grpc-timeout`.
    pub default_timeout: Duration,
    /// No call may ask for more than this (streams included).
    pub max_timeout: Duration,
    pub max_message_bytes: usize,
    pub rate_per_address: RateLimit,
    pub rate_per_user: RateLimit,
    /// JoinQueue alone, on top of the general limits: a place in line costs
    /// the waiting room a Redis call, and a bot that joins in a loop gains
    /// nothing (joining again keeps the place) but load.
    pub joins_per_address: RateLimit,
    pub joins_per_user: RateLimit,
    pub max_concurrent_per_upstream: usize,
    pub access_log: bool,
    pub clusters: BTreeMap<String, ClusterConfig>,
    pub routes: Vec<RouteConfig>,
    pub shutdown_grace: Duration,
    /// The web app's built files, served for GET/HEAD on the public
    /// listener; `None` serves none.
    pub web_dir: Option<PathBuf>,
    /// How upstream names become instances.
    pub discovery: DiscoveryConfig,
}

/// Upstreams named by DNS (`inventory:8080`, a headless Service) are
/// resolved again every `interval` and after a connection failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub interval: Duration,
    /// Ask this DNS server directly instead of the system resolver.
    pub dns_server: Option<SocketAddr>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            dns_server: None,
        }
    }
}

/// The TOML file: every key optional, overriding the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    admin_listen: Option<String>,
    cors_origins: Option<Vec<String>>,
    default_timeout_ms: Option<u64>,
    max_timeout_ms: Option<u64>,
    max_message_bytes: Option<usize>,
    rate_per_address: Option<RateLimit>,
    rate_per_user: Option<RateLimit>,
    joins_per_address: Option<RateLimit>,
    joins_per_user: Option<RateLimit>,
    max_concurrent_per_upstream: Option<usize>,
    access_log: Option<bool>,
    shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    clusters: BTreeMap<String, ClusterConfig>,
    /// Replaces the built-in route table when present.
    routes: Option<Vec<RouteConfig>>,
}

impl EdgeConfig {
    /// Defaults for a developer machine: every cluster empty (point them at
    /// instances with [`EdgeConfig::with_upstream_everywhere`], a file or env).
    pub fn defaults(listen: SocketAddr) -> Self {
        Self {
            listen,
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9901))),
            cors_origins: vec![
                "http://localhost:3000".to_owned(),
                "http://127.0.0.1:3000".to_owned(),
                "http://localhost:5173".to_owned(),
            ],
            default_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(300),
            max_message_bytes: 4 * 1024 * 1024,
            rate_per_address: RateLimit {
                per_second: 1000.0,
                burst: 2000.0,
            },
            rate_per_user: RateLimit {
                per_second: 200.0,
                burst: 400.0,
            },
            // Many people can share an address (a venue's or a carrier's
            // NAT), so per address is looser than per account.
            joins_per_address: RateLimit {
                per_second: 20.0,
                burst: 200.0,
            },
            joins_per_user: RateLimit {
                per_second: 1.0,
                burst: 5.0,
            },
            max_concurrent_per_upstream: 1024,
            access_log: true,
            clusters: CLUSTERS
                .iter()
                .map(|name| {
                    (
                        (*name).to_owned(),
                        ClusterConfig {
                            endpoints: Vec::new(),
                            health_service: String::new(),
                            max_concurrent_requests: None,
                        },
                    )
                })
                .collect(),
            routes: default_routes(),
            shutdown_grace: Duration::from_secs(10),
            web_dir: None,
            discovery: DiscoveryConfig::default(),
        }
    }

    /// Points every cluster at one address (`boxoffice up`: the in-process
    /// services behind one internal listener).
    pub fn with_upstream_everywhere(mut self, upstream: SocketAddr) -> Self {
        for cluster in self.clusters.values_mut() {
            cluster.endpoints = vec![upstream.to_string()];
        }
        self
    }

    /// Defaults, then the file named by `BOXOFFICE_EDGE_CONFIG`, then env.
    pub fn from_env(listen: SocketAddr) -> Result<Self, ConfigError> {
        Self::from_vars(listen, &std::env::vars().collect())
    }

    pub fn from_vars(
        listen: SocketAddr,
        vars: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::defaults(listen);
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(path) = get(ENV_CONFIG_FILE) {
            let text = std::fs::read_to_string(Path::new(&path)).map_err(|error| ConfigError {
                variable: ENV_CONFIG_FILE,
                problem: format!("cannot read '{path}': {error}"),
            })?;
            config.apply_toml(&text).map_err(|problem| ConfigError {
                variable: ENV_CONFIG_FILE,
                problem,
            })?;
        }
        config.apply_env(&get, vars)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies a TOML document (tests and the file loader).
    pub fn apply_toml(&mut self, text: &str) -> Result<(), String> {
        let file: FileConfig = toml::from_str(text).map_err(|error| error.message().to_owned())?;
        if let Some(listen) = file.listen {
            self.listen = listen;
        }
        if let Some(admin) = file.admin_listen {
            self.admin_listen = parse_optional_addr(&admin)
                .ok_or(format!("admin_listen '{admin}' is not an address"))?;
        }
        if let Some(origins) = file.cors_origins {
            self.cors_origins = origins;
        }
        if let Some(ms) = file.default_timeout_ms {
            self.default_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = file.max_timeout_ms {
            self.max_timeout = Duration::from_millis(ms);
        }
        if let Some(bytes) = file.max_message_bytes {
            self.max_message_bytes = bytes;
        }
        if let Some(limit) = file.rate_per_address {
            self.rate_per_address = limit;
        }
        if let Some(limit) = file.rate_per_user {
            self.rate_per_user = limit;
        }
        if let Some(limit) = file.joins_per_address {
            self.joins_per_address = limit;
        }
        if let Some(limit) = file.joins_per_user {
            self.joins_per_user = limit;
        }
        if let Some(cap) = file.max_concurrent_per_upstream {
            self.max_concurrent_per_upstream = cap;
        }
        if let Some(enabled) = file.access_log {
            self.access_log = enabled;
        }
        if let Some(secs) = file.shutdown_grace_secs {
            self.shutdown_grace = Duration::from_secs(secs);
        }
        for (name, cluster) in file.clusters {
            self.clusters.insert(name, cluster);
        }
        if let Some(routes) = file.routes {
            self.routes = routes;
        }
        Ok(())
    }

    fn apply_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
        vars: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        if let Some(raw) = get(ENV_LISTEN) {
            self.listen = raw
                .parse()
                .map_err(|_| bad(ENV_LISTEN, format!("'{raw}' is not an address")))?;
        }
        if let Some(raw) = get(ENV_ADMIN_LISTEN) {
            self.admin_listen = parse_optional_addr(&raw).ok_or_else(|| {
                bad(
                    ENV_ADMIN_LISTEN,
                    format!("'{raw}' is neither an address nor 'off'"),
                )
            })?;
        }
        if let Some(raw) = get(ENV_CORS_ORIGINS) {
            self.cors_origins = raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(ms) = number(get, ENV_DEFAULT_TIMEOUT_MS, 1, 3_600_000)? {
            self.default_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number(get, ENV_MAX_TIMEOUT_MS, 1, 86_400_000)? {
            self.max_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = number(get, ENV_RESOLVE_INTERVAL_MS, 10, 3_600_000)? {
            self.discovery.interval = Duration::from_millis(ms);
        }
        if let Some(raw) = get(ENV_DNS_SERVER) {
            self.discovery.dns_server = Some(raw.parse().map_err(|_| {
                bad(
                    ENV_DNS_SERVER,
                    format!("'{raw}' is not an ip:port like 10.96.0.10:53"),
                )
            })?);
        }
        if let Some(bytes) = number(get, ENV_MAX_MESSAGE_BYTES, 1024, 64 * 1024 * 1024)? {
            self.max_message_bytes = bytes as usize;
        }
        if let Some(rate) = number(get, ENV_RATE_PER_ADDRESS, 0, 10_000_000)? {
            self.rate_per_address = RateLimit {
                per_second: rate as f64,
                burst: (rate * 2) as f64,
            };
        }
        if let Some(burst) = number(get, ENV_BURST_PER_ADDRESS, 1, 100_000_000)? {
            self.rate_per_address.burst = burst as f64;
        }
        if let Some(rate) = number(get, ENV_RATE_PER_USER, 0, 10_000_000)? {
            self.rate_per_user = RateLimit {
                per_second: rate as f64,
                burst: (rate * 2) as f64,
            };
        }
        if let Some(burst) = number(get, ENV_BURST_PER_USER, 1, 100_000_000)? {
            self.rate_per_user.burst = burst as f64;
        }
        if let Some(rate) = number(get, ENV_JOINS_PER_ADDRESS, 0, 1_000_000)? {
            self.joins_per_address = RateLimit {
                per_second: rate as f64,
                burst: (rate * 10) as f64,
            };
        }
        if let Some(rate) = number(get, ENV_JOINS_PER_USER, 0, 1_000_000)? {
            self.joins_per_user = RateLimit {
                per_second: rate as f64,
                burst: (rate * 5) as f64,
            };
        }
        if let Some(cap) = number(get, ENV_MAX_CONCURRENT_PER_UPSTREAM, 1, 1_000_000)? {
            self.max_concurrent_per_upstream = cap as usize;
        }
        if let Some(raw) = get(ENV_ACCESS_LOG) {
            self.access_log = match raw.as_str() {
                "true" | "1" | "on" => true,
                "false" | "0" | "off" => false,
                _ => {
                    return Err(bad(
                        ENV_ACCESS_LOG,
                        format!("'{raw}' is neither true nor false"),
                    ));
                }
            };
        }
        self.web_dir = match get(ENV_WEB_DIR) {
            Some(raw) if raw == "off" => None,
            Some(raw) => {
                let dir = PathBuf::from(&raw);
                if !dir.join("index.html").is_file() {
                    return Err(bad(
                        ENV_WEB_DIR,
                        format!(
                            "'{raw}' holds no index.html (build the app: npm run build in web/)"
                        ),
                    ));
                }
                Some(dir)
            }
            None => Path::new(DEFAULT_WEB_DIR)
                .join("index.html")
                .is_file()
                .then(|| PathBuf::from(DEFAULT_WEB_DIR)),
        };
        for (name, value) in vars {
            let Some(cluster) = name.strip_prefix(ENV_UPSTREAM_PREFIX) else {
                continue;
            };
            let cluster = cluster.to_ascii_lowercase();
            let endpoints: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            self.clusters
                .entry(cluster)
                .or_insert_with(|| ClusterConfig {
                    endpoints: Vec::new(),
                    health_service: String::new(),
                    max_concurrent_requests: None,
                })
                .endpoints = endpoints;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.default_timeout > self.max_timeout {
            return Err(bad(
                ENV_DEFAULT_TIMEOUT_MS,
                "must not exceed the maximum timeout".into(),
            ));
        }
        if self.rate_per_address.burst < 1.0 && !self.rate_per_address.is_off() {
            return Err(bad(ENV_BURST_PER_ADDRESS, "must be at least 1".into()));
        }
        if self.rate_per_user.burst < 1.0 && !self.rate_per_user.is_off() {
            return Err(bad(ENV_BURST_PER_USER, "must be at least 1".into()));
        }
        if self.joins_per_address.burst < 1.0 && !self.joins_per_address.is_off() {
            return Err(bad(
                ENV_JOINS_PER_ADDRESS,
                "burst must be at least 1".into(),
            ));
        }
        if self.joins_per_user.burst < 1.0 && !self.joins_per_user.is_off() {
            return Err(bad(ENV_JOINS_PER_USER, "burst must be at least 1".into()));
        }
        for origin in &self.cors_origins {
            if origin.parse::<http::HeaderValue>().is_err()
                || !(origin.starts_with("http://") || origin.starts_with("https://"))
            {
                return Err(bad(
                    ENV_CORS_ORIGINS,
                    format!("'{origin}' is not an origin like https://example.com"),
                ));
            }
        }
        for (name, cluster) in &self.clusters {
            for endpoint in &cluster.endpoints {
                if endpoint.parse::<http::uri::Authority>().is_err() || !endpoint.contains(':') {
                    return Err(bad(
                        ENV_UPSTREAM_PREFIX,
                        format!("cluster {name}: '{endpoint}' is not host:port"),
                    ));
                }
            }
        }
        for route in &self.routes {
            if !self.clusters.contains_key(&route.cluster) {
                return Err(bad(
                    ENV_CONFIG_FILE,
                    format!(
                        "route {} names unknown cluster '{}'",
                        route.service, route.cluster
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn parse_optional_addr(raw: &str) -> Option<Option<SocketAddr>> {
    match raw {
        "off" | "none" | "" => Some(None),
        other => other.parse().ok().map(Some),
    }
}

fn number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    let Some(raw) = get(variable) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
        _ => Err(bad(
            variable,
            format!("'{raw}' is not a whole number from {min} to {max}"),
        )),
    }
}

fn bad(variable: &'static str, problem: String) -> ConfigError {
    ConfigError { variable, problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let config = EdgeConfig::from_vars(listen(), &BTreeMap::new()).unwrap();
        assert_eq!(config.listen, listen());
        assert!(config.clusters.contains_key("catalog"));
        assert!(!config.routes.is_empty());
    }

    #[test]
    fn env_overrides_and_upstreams() {
        let config = EdgeConfig::from_vars(
            listen(),
            &vars(&[
                (
                    "BOXOFFICE_EDGE_UPSTREAM_CATALOG",
                    "10.0.0.1:50051, 10.0.0.2:50051",
                ),
                (ENV_RATE_PER_USER, "5"),
                (ENV_ADMIN_LISTEN, "off"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.clusters["catalog"].endpoints,
            vec!["10.0.0.1:50051", "10.0.0.2:50051"]
        );
        assert_eq!(config.rate_per_user.per_second, 5.0);
        assert_eq!(config.admin_listen, None);
        let err =
            EdgeConfig::from_vars(listen(), &vars(&[(ENV_MAX_TIMEOUT_MS, "soon")])).unwrap_err();
        assert_eq!(err.variable, ENV_MAX_TIMEOUT_MS);
    }

    #[test]
    fn a_file_can_replace_the_route_table() {
        let mut config = EdgeConfig::defaults(listen());
        config
            .apply_toml(
                r#"
                default_timeout_ms = 2000
                [clusters.echo]
                endpoints = ["127.0.0.1:9000"]
                [[routes]]
                service = "boxoffice.testing.v1.EchoService"
                cluster = "echo"
                default_access = "public"
                "#,
            )
            .unwrap();
        assert_eq!(config.default_timeout, Duration::from_secs(2));
        assert_eq!(config.routes.len(), 1);
        assert!(config.apply_toml("no_such_key = 1").is_err());
    }
}
