//! Access tokens: HS256 JWTs with issuer, audience, `iat`/`nbf`/`exp`, the
//! user id as `sub`, the roles and the session id as `sid` (what the edge
//! checks against the revocation feed). The algorithm is pinned on both sides, so
//! `alg: none` or an algorithm swap is refused before any claim is read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::TokenConfig;

/// The only algorithm boxoffice signs or accepts.
pub const ALGORITHM: Algorithm = Algorithm::HS256;

/// Clock skew tolerated between accounts and the edge.
pub const LEEWAY_SECS: u64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    /// A unique id per token, for logs and future revocation lists.
    pub jti: String,
    pub roles: Vec<String>,
    /// The session (login) this token belongs to. Tokens from before
    /// sessions existed have none and cannot be revoked; they expire
    /// within the access-token lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// A token's verified holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub user_id: Uuid,
    pub roles: Vec<String>,
    pub expires_at: u64,
    pub session_id: Option<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is expired")]
    Expired,
    #[error("token is invalid")]
    Invalid,
    /// Its session was ended (logout, revocation, password change,
    /// erasure); the edge learns this from the revocation feed.
    #[error("token's session is revoked")]
    Revoked,
}

/// Signs access tokens (accounts only).
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl TokenIssuer {
    pub fn new(config: &TokenConfig) -> Self {
        Self {
            key: EncodingKey::from_secret(config.secret.expose().as_bytes()),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl: config.access_token_ttl,
        }
    }

    /// Returns the token and its expiry (unix seconds).
    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        roles: &[String],
    ) -> anyhow::Result<(String, u64)> {
        let now = unix_now();
        let claims = AccessClaims {
            sub: user_id.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now + self.ttl.as_secs(),
            jti: Uuid::new_v4().to_string(),
            roles: roles.to_vec(),
            sid: Some(session_id.to_string()),
        };
        let token = jsonwebtoken::encode(&Header::new(ALGORITHM), &claims, &self.key)?;
        Ok((token, claims.exp))
    }

    /// How long an access token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs arbitrary claims with the real key (tests of the verifier).
    pub fn sign_claims(&self, claims: &AccessClaims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(ALGORITHM),
            claims,
            &self.key,
        )?)
    }
}

/// Checks access tokens (the edge).
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(config: &TokenConfig) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self {
            key: DecodingKey::from_secret(config.secret.expose().as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.key, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        let user_id = Uuid::parse_str(&data.claims.sub).map_err(|_| TokenError::Invalid)?;
        let session_id = match &data.claims.sid {
            None => None,
            Some(sid) => Some(Uuid::parse_str(sid).map_err(|_| TokenError::Invalid)?),
        };
        Ok(VerifiedToken {
            user_id,
            roles: data.claims.roles,
            expires_at: data.claims.exp,
            session_id,
        })
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn claims(config: &TokenConfig, exp_offset: i64) -> AccessClaims {
        let now = unix_now();
        AccessClaims {
            sub: Uuid::new_v4().to_string(),
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            iat: now,
            nbf: now,
            exp: (now as i64 + exp_offset) as u64,
            jti: "t".into(),
            roles: vec!["customer".into()],
            sid: None,
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let config = TokenConfig::ephemeral();
        let user = Uuid::new_v4();
        let session = Uuid::new_v4();
        let (token, _) = TokenIssuer::new(&config)
            .issue(user, session, &["admin".to_owned()])
            .unwrap();
        let verified = TokenVerifier::new(&config).verify(&token).unwrap();
        assert_eq!(verified.user_id, user);
        assert_eq!(verified.session_id, Some(session));
        assert_eq!(verified.roles, vec!["admin".to_owned()]);
    }

    #[test]
    fn expired_foreign_and_unsigned_tokens_are_refused() {
        let config = TokenConfig::ephemeral();
        let verifier = TokenVerifier::new(&config);
        let expired = TokenIssuer::new(&config)
            .sign_claims(&claims(&config, -60))
            .unwrap();
        assert!(matches!(
            verifier.verify(&expired),
            Err(TokenError::Expired)
        ));

        let other = TokenIssuer::new(&TokenConfig::ephemeral())
            .sign_claims(&claims(&config, 60))
            .unwrap();
        assert!(matches!(verifier.verify(&other), Err(TokenError::Invalid)));

        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json_like(&claims(&config, 60)));
        assert!(matches!(
            verifier.verify(&format!("{header}.{body}.")),
            Err(TokenError::Invalid)
        ));

        let mut wrong_audience = claims(&config, 60);
        wrong_audience.aud = "someone-else".into();
        let token = TokenIssuer::new(&config)
            .sign_claims(&wrong_audience)
            .unwrap();
        assert!(matches!(verifier.verify(&token), Err(TokenError::Invalid)));
    }

    fn serde_json_like(claims: &AccessClaims) -> String {
        format!(
            r#"{{"sub":"{}","iss":"{}","aud":"{}","iat":{},"nbf":{},"exp":{},"jti":"x","roles":["admin"]}}"#,
            claims.sub, claims.iss, claims.aud, claims.iat, claims.nbf, claims.exp
        )
    }
}
