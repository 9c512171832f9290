//! Social login with OpenID Connect: the configured providers and what a
//! login needs from them (authorization code flow, PKCE S256, nonce). The
//! flow itself (state in PostgreSQL, accounts and links) is in [`flow`].

pub mod flow;
pub mod id_token;
pub mod provider;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::config::SocialLoginConfig;
use provider::OidcProvider;

/// The providers of this deployment, by name.
pub struct SocialLogin {
    providers: BTreeMap<String, Arc<OidcProvider>>,
    redirect_uris: Vec<String>,
    pub(crate) state_ttl: Duration,
    pub(crate) link_ttl: Duration,
}

impl SocialLogin {
    pub fn new(config: &SocialLoginConfig) -> Self {
        // Providers answer within seconds or not at all; a redirect from
        // one of their endpoints is not followed anywhere.
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(http) => Some(http),
            // The TLS backend or the system's root certificates failed to
            // load: every login then reports its provider unavailable.
            Err(error) => {
                tracing::error!(error = %error, "building the OpenID providers' HTTP client");
                None
            }
        };
        let providers = config
            .providers
            .iter()
            .map(|provider| {
                (
                    provider.name.clone(),
                    Arc::new(OidcProvider::new(
                        provider.clone(),
                        http.clone(),
                        config.metadata_max_age,
                        config.jwks_min_refetch,
                    )),
                )
            })
            .collect();
        Self {
            providers,
            redirect_uris: config.redirect_uris.clone(),
            state_ttl: config.state_ttl,
            link_ttl: config.link_ttl,
        }
    }

    pub fn provider_names(&self) -> Vec<String> {
        self.providers.keys().cloned().collect()
    }

    pub fn provider(&self, name: &str) -> Option<&Arc<OidcProvider>> {
        self.providers.get(name)
    }

    /// The configured name of an issuer, if it is still configured.
    pub fn name_of_issuer(&self, issuer: &str) -> Option<&str> {
        self.providers
            .values()
            .find(|provider| provider.issuer() == issuer)
            .map(|provider| provider.name())
    }

    /// The redirect URI a login uses: `requested` when it is configured,
    /// the first configured one when empty.
    pub fn redirect_uri(&self, requested: &str) -> Option<&str> {
        let requested = requested.trim();
        if requested.is_empty() {
            return self.redirect_uris.first().map(String::as_str);
        }
        self.redirect_uris
            .iter()
            .find(|uri| uri.as_str() == requested)
            .map(String::as_str)
    }
}

/// 32 random bytes, base64url: states, nonces, PKCE verifiers (43
/// characters, as RFC 7636 asks) and link tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The S256 code challenge of a PKCE verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(random_token().len(), 43);
    }

    #[test]
    fn only_configured_redirect_uris_are_used() {
        let social = SocialLogin::new(&SocialLoginConfig {
            redirect_uris: vec!["https://a.example/cb".into(), "https://b.example/cb".into()],
            ..SocialLoginConfig::default()
        });
        assert_eq!(social.redirect_uri(""), Some("https://a.example/cb"));
        assert_eq!(
            social.redirect_uri("https://b.example/cb"),
            Some("https://b.example/cb")
        );
        for other in [
            "https://a.example/cb/",
            "https://a.example/cb?x=1",
            "https://evil.example/cb",
        ] {
            assert_eq!(social.redirect_uri(other), None, "{other}");
        }
    }
}
