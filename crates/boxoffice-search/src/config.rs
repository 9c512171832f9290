//! Which engine to use, from `BOXOFFICE_*` variables. Every search variable
//! name lives here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Switches search to Meilisearch, e.g. `http://127.0.0.1:7700`.
pub const ENV_MEILISEARCH_URL: &str = "BOXOFFICE_MEILISEARCH_URL";
/// Meilisearch API key (the master key or one allowed to manage the index).
pub const ENV_MEILISEARCH_KEY: &str = "BOXOFFICE_MEILISEARCH_KEY";
/// Meilisearch index uid; default `events`.
pub const ENV_MEILISEARCH_INDEX: &str = "BOXOFFICE_MEILISEARCH_INDEX";
/// Embedded engine only: keep the index in this directory across restarts.
/// Unset: the index lives in memory and is rebuilt from PostgreSQL at start.
pub const ENV_SEARCH_DIR: &str = "BOXOFFICE_SEARCH_DIR";

pub const DEFAULT_INDEX_UID: &str = "events";

/// A key that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchEngineConfig {
    /// tantivy in process: in memory, or in a directory.
    Embedded { dir: Option<PathBuf> },
    Meilisearch {
        url: String,
        key: Option<ApiKey>,
        index_uid: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchConfig {
    pub engine: SearchEngineConfig,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}: {problem}")]
pub struct SearchConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl SearchConfig {
    /// The embedded engine, in memory: what tests and `boxoffice up` use
    /// without configuration.
    pub fn in_memory() -> Self {
        Self {
            engine: SearchEngineConfig::Embedded { dir: None },
        }
    }

    pub fn from_env() -> Result<Self, SearchConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, SearchConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(|value| value.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(url) = get(ENV_MEILISEARCH_URL) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SearchConfigError {
                    variable: ENV_MEILISEARCH_URL,
                    problem: "must be an http:// URL such as http://127.0.0.1:7700".into(),
                });
            }
            if url.starts_with("https://") {
                return Err(SearchConfigError {
                    variable: ENV_MEILISEARCH_URL,
                    problem: "https is not built in; reach Meilisearch over http (a sidecar or mesh adds TLS)".into(),
                });
            }
            let index_uid =
                get(ENV_MEILISEARCH_INDEX).unwrap_or_else(|| DEFAULT_INDEX_UID.to_owned());
            if index_uid.len() > 400
                || !index_uid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(SearchConfigError {
                    variable: ENV_MEILISEARCH_INDEX,
                    problem: "must be letters, digits, - and _ only".into(),
                });
            }
            return Ok(Self {
                engine: SearchEngineConfig::Meilisearch {
                    url: url.trim_end_matches('/').to_owned(),
                    key: get(ENV_MEILISEARCH_KEY).map(ApiKey::new),
                    index_uid,
                },
            });
        }
        Ok(Self {
            engine: SearchEngineConfig::Embedded {
                dir: get(ENV_SEARCH_DIR).map(PathBuf::from),
            },
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
    fn embedded_in_memory_by_default() {
        assert_eq!(
            SearchConfig::from_vars(&vars(&[])).unwrap(),
            SearchConfig::in_memory()
        );
        let config =
            SearchConfig::from_vars(&vars(&[(ENV_SEARCH_DIR, "/var/lib/boxoffice/search")]))
                .unwrap();
        assert_eq!(
            config.engine,
            SearchEngineConfig::Embedded {
                dir: Some(PathBuf::from("/var/lib/boxoffice/search"))
            }
        );
    }

    #[test]
    fn meilisearch_when_a_url_is_given_and_the_key_never_prints() {
        let config = SearchConfig::from_vars(&vars(&[
            (ENV_MEILISEARCH_URL, "http://127.0.0.1:7700/"),
            (ENV_MEILISEARCH_KEY, "s3cret"),
        ]))
        .unwrap();
        let SearchEngineConfig::Meilisearch {
            url,
            key,
            index_uid,
        } = &config.engine
        else {
            panic!("expected meilisearch, got {config:?}");
        };
        assert_eq!(url, "http://127.0.0.1:7700");
        assert_eq!(index_uid, DEFAULT_INDEX_UID);
        assert_eq!(key.as_ref().map(ApiKey::expose), Some("s3cret"));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error =
            SearchConfig::from_vars(&vars(&[(ENV_MEILISEARCH_URL, "localhost:7700")])).unwrap_err();
        assert_eq!(error.variable, ENV_MEILISEARCH_URL);
        let error = SearchConfig::from_vars(&vars(&[
            (ENV_MEILISEARCH_URL, "http://h:7700"),
            (ENV_MEILISEARCH_INDEX, "no spaces"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, ENV_MEILISEARCH_INDEX);
    }
}
