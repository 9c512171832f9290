//! One OpenID provider as accounts talks to it: its discovery document and
//! keys (fetched on first use and cached; keys fetched again, at most every
//! `jwks_min_refetch`, when a token names one they lack), the authorization
//! URL of a login, the code exchange at the token endpoint (client secret
//! over HTTP Basic, PKCE verifier), the ID token check and userinfo.
//!
//! Nothing a provider answers reaches a caller or the log beyond a status
//! code and the OAuth `error` code: no bodies, no tokens.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::id_token::{self, IdTokenError, ProviderKeys, VerifiedIdentity};
use crate::config::OidcProviderConfig;

/// The most accounts reads of any provider answer.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Scopes every login asks for.
pub const SCOPES: &str = "openid email profile";

/// Why a provider step failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused (a bad, spent or expired code, a PKCE mismatch)
    /// or answered something that must not be trusted (a bad ID token).
    #[error("provider refused the login: {0}")]
    Refused(String),
    #[error("id token refused: {0}")]
    IdToken(#[from] IdTokenError),
    /// The provider could not be reached or answered garbage.
    #[error("provider unavailable")]
    Unavailable(#[source] anyhow::Error),
}

#[derive(Clone, Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
}

struct Cached<T> {
    value: T,
    fetched_at: Instant,
}

pub struct OidcProvider {
    config: OidcProviderConfig,
    /// None when the client could not be built (see `SocialLogin::new`).
    http: Option<reqwest::Client>,
    metadata_max_age: Duration,
    jwks_min_refetch: Duration,
    metadata: Mutex<Option<Cached<Metadata>>>,
    keys: Mutex<Option<Cached<ProviderKeys>>>,
}

/// What the token endpoint gave for a code.
struct Tokens {
    id_token: String,
    access_token: Option<String>,
}

impl OidcProvider {
    pub fn new(
        config: OidcProviderConfig,
        http: Option<reqwest::Client>,
        metadata_max_age: Duration,
        jwks_min_refetch: Duration,
    ) -> Self {
        Self {
            config,
            http,
            metadata_max_age,
            jwks_min_refetch,
            metadata: Mutex::new(None),
            keys: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    fn http(&self) -> Result<&reqwest::Client, ProviderError> {
        self.http.as_ref().ok_or_else(|| {
            ProviderError::Unavailable(anyhow::anyhow!("no HTTP client (TLS failed to start)"))
        })
    }

    /// A request whose JSON answer is read, bounded.
    async fn json(
        &self,
        request: reqwest::RequestBuilder,
        what: &'static str,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), ProviderError> {
        let mut response = request
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|error| ProviderError::Unavailable(anyhow::Error::new(error).context(what)))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| ProviderError::Unavailable(anyhow::Error::new(error).context(what)))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ProviderError::Unavailable(anyhow::anyhow!(
                    "{what}: answer larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let value = serde_json::from_slice(&body).map_err(|_| {
            ProviderError::Unavailable(anyhow::anyhow!("{what}: answer is not JSON ({status})"))
        })?;
        Ok((status, value))
    }

    async fn metadata(&self) -> Result<Metadata, ProviderError> {
        let mut cached = self.metadata.lock().await;
        if let Some(cached) = cached.as_ref()
            && cached.fetched_at.elapsed() < self.metadata_max_age
        {
            return Ok(cached.value.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let (status, document) = self.json(self.http()?.get(&url), "discovery").await?;
        if !status.is_success() {
            return Err(ProviderError::Unavailable(anyhow::anyhow!(
                "discovery answered {status}"
            )));
        }
        let metadata: Metadata = serde_json::from_value(document).map_err(|_| {
            ProviderError::Unavailable(anyhow::anyhow!("discovery document lacks endpoints"))
        })?;
        // OpenID Connect Discovery 4.3: the document must be the issuer's own.
        if metadata.issuer != self.config.issuer {
            return Err(ProviderError::Unavailable(anyhow::anyhow!(
                "discovery names another issuer"
            )));
        }
        if !metadata.code_challenge_methods_supported.is_empty()
            && !metadata
                .code_challenge_methods_supported
                .iter()
                .any(|method| method == "S256")
        {
            return Err(ProviderError::Unavailable(anyhow::anyhow!(
                "provider does not support PKCE S256"
            )));
        }
        *cached = Some(Cached {
            value: metadata.clone(),
            fetched_at: Instant::now(),
        });
        Ok(metadata)
    }

    /// The provider's keys, fetched again when stale or when `kid` is not
    /// among them (at most every `jwks_min_refetch`).
    async fn keys_for(
        &self,
        metadata: &Metadata,
        kid: Option<&str>,
    ) -> Result<ProviderKeys, ProviderError> {
        let mut cached = self.keys.lock().await;
        if let Some(current) = cached.as_ref() {
            let age = current.fetched_at.elapsed();
            let fresh = age < self.metadata_max_age;
            if fresh && (current.value.knows(kid) || age < self.jwks_min_refetch) {
                return Ok(current.value.clone());
            }
        }
        let (status, document) = self
            .json(self.http()?.get(&metadata.jwks_uri), "jwks")
            .await?;
        if !status.is_success() {
            return Err(ProviderError::Unavailable(anyhow::anyhow!(
                "jwks answered {status}"
            )));
        }
        let keys = ProviderKeys::from_jwks(&document);
        tracing::info!(provider = %self.config.name, keys = keys.len(), "fetched provider keys");
        *cached = Some(Cached {
            value: keys.clone(),
            fetched_at: Instant::now(),
        });
        Ok(keys)
    }

    /// The URL that starts a login at the provider.
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, ProviderError> {
        let metadata = self.metadata().await?;
        let mut url = Url::parse(&metadata.authorization_endpoint).map_err(|_| {
            ProviderError::Unavailable(anyhow::anyhow!("authorization endpoint is not a URL"))
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", SCOPES)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    /// Trades `code` for tokens, checks the ID token against `nonce`, and
    /// fills a missing email from userinfo.
    pub async fn finish(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedIdentity, ProviderError> {
        let metadata = self.metadata().await?;
        let tokens = self
            .exchange(&metadata, code, redirect_uri, pkce_verifier)
            .await?;
        let kid = id_token::key_id(&tokens.id_token)?;
        let keys = self.keys_for(&metadata, kid.as_deref()).await?;
        let mut identity = id_token::verify(
            &tokens.id_token,
            &keys,
            &self.config.issuer,
            &self.config.client_id,
            nonce,
            crate::token::unix_now(),
        )?;
        if identity.email.is_none()
            && let (Some(endpoint), Some(access_token)) =
                (&metadata.userinfo_endpoint, &tokens.access_token)
        {
            let (status, userinfo) = self
                .json(
                    self.http()?.get(endpoint).bearer_auth(access_token),
                    "userinfo",
                )
                .await?;
            if !status.is_success() {
                return Err(ProviderError::Unavailable(anyhow::anyhow!(
                    "userinfo answered {status}"
                )));
            }
            id_token::merge_userinfo(&mut identity, &userinfo)?;
        }
        Ok(identity)
    }

    async fn exchange(
        &self,
        metadata: &Metadata,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: &str,
    ) -> Result<Tokens, ProviderError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", pkce_verifier),
        ];
        let methods = &metadata.token_endpoint_auth_methods_supported;
        // client_secret_basic is the default (RFC 8414); _post only when
        // the provider lists it and not basic.
        let post = !methods.is_empty()
            && !methods.iter().any(|m| m == "client_secret_basic")
            && methods.iter().any(|m| m == "client_secret_post");
        let mut request = self.http()?.post(&metadata.token_endpoint);
        if post {
            form.push(("client_id", self.config.client_id.as_str()));
            form.push(("client_secret", self.config.client_secret.expose()));
        } else {
            // RFC 6749 2.3.1: both parts form-encoded before Basic.
            let encode =
                |raw: &str| form_urlencoded::byte_serialize(raw.as_bytes()).collect::<String>();
            let credentials = format!(
                "{}:{}",
                encode(&self.config.client_id),
                encode(self.config.client_secret.expose())
            );
            request = request.header(
                "authorization",
                format!("Basic {}", STANDARD.encode(credentials)),
            );
        }
        let (status, answer) = self.json(request.form(&form), "token endpoint").await?;
        if status.is_client_error() {
            // The OAuth error code only (invalid_grant, ...): descriptions
            // can echo what was sent.
            let code = answer
                .get("error")
                .and_then(|error| error.as_str())
                .unwrap_or("unknown")
                .chars()
                .take(64)
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>();
            return Err(ProviderError::Refused(format!("token endpoint: {code}")));
        }
        if !status.is_success() {
            return Err(ProviderError::Unavailable(anyhow::anyhow!(
                "token endpoint answered {status}"
            )));
        }
        let text = |name: &str| {
            answer
                .get(name)
                .and_then(|value| value.as_str())
                .map(str::to_owned)
        };
        let id_token = text("id_token").ok_or_else(|| {
            ProviderError::Refused("token endpoint answered without an id_token".into())
        })?;
        Ok(Tokens {
            id_token,
            access_token: text("access_token"),
        })
    }
}
