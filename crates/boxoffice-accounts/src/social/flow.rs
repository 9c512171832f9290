//! The social login flow, independent of the wire: start (state, nonce and
//! PKCE verifier stored server-side), finish (state spent, code exchanged,
//! ID token checked, then a session, a new account, or a link offer), the
//! owner's proof that accepts a link offer, and the caller's identities.

use std::time::Instant;

use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::provider::ProviderError;
use super::{SocialLogin, pkce_challenge, random_token};
use crate::domain::{DisplayName, Email, FieldError, NewPassword};
use crate::error::AccountsError;
use crate::password;
use crate::service::{Accounts, Session, token_hash};
use crate::store::social::ProviderIdentity;
use crate::store::{IdentityRecord, LinkOffer, PendingLogin};

/// The longest state, code or link token accepted (providers' codes are
/// far shorter; this only bounds what is hashed and sent on).
const MAX_TOKEN_LEN: usize = 2048;

/// A login begun: where to send the browser.
pub struct StartedLogin {
    pub authorization_url: String,
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

/// What finishing a login gave.
pub enum FinishedLogin {
    Session(Box<Session>),
    /// The identity's email is an existing account's: its owner must prove
    /// the account with [`Accounts::link_social_login`].
    LinkRequired {
        link_token: String,
        email: String,
        provider: String,
        expires_at: DateTime<Utc>,
    },
}

fn bounded(field: &'static str, raw: &str) -> Result<String, AccountsError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty").into());
    }
    if value.len() > MAX_TOKEN_LEN {
        return Err(
            FieldError::new(field, format!("must be at most {MAX_TOKEN_LEN} characters")).into(),
        );
    }
    Ok(value.to_owned())
}

fn provider_failure(provider: &str, error: ProviderError) -> AccountsError {
    match error {
        ProviderError::Unavailable(cause) => AccountsError::SocialProviderUnavailable(cause),
        refused => {
            tracing::info!(%provider, reason = %refused, "social login refused");
            AccountsError::SocialLoginFailed
        }
    }
}

impl Accounts {
    pub fn social(&self) -> &SocialLogin {
        &self.social
    }

    pub async fn start_social_login(
        &self,
        provider: &str,
        redirect_uri: &str,
    ) -> Result<StartedLogin, AccountsError> {
        let provider_name = provider.trim();
        if provider_name.is_empty() {
            return Err(FieldError::new("provider", "must not be empty").into());
        }
        let provider = self
            .social
            .provider(provider_name)
            .ok_or_else(|| FieldError::new("provider", "is not a configured provider"))?;
        let redirect_uri = self
            .social
            .redirect_uri(redirect_uri)
            .ok_or_else(|| FieldError::new("redirect_uri", "is not a configured redirect URI"))?
            .to_owned();
        let (state, nonce, pkce_verifier) = (random_token(), random_token(), random_token());
        let authorization_url = provider
            .authorization_url(
                &redirect_uri,
                &state,
                &nonce,
                &pkce_challenge(&pkce_verifier),
            )
            .await
            .map_err(|error| provider_failure(provider_name, error))?;
        let expires_at = Utc::now() + self.social.state_ttl;
        self.store
            .insert_login_state(
                &token_hash(&state),
                &PendingLogin {
                    provider: provider_name.to_owned(),
                    nonce,
                    pkce_verifier,
                    redirect_uri,
                },
                expires_at,
            )
            .await?;
        Ok(StartedLogin {
            authorization_url,
            state,
            expires_at,
        })
    }

    pub async fn finish_social_login(
        &self,
        state: &str,
        code: &str,
    ) -> Result<FinishedLogin, AccountsError> {
        let state = bounded("state", state)?;
        let code = bounded("code", code)?;
        let pending = self
            .store
            .take_login_state(&token_hash(&state))
            .await?
            .ok_or(AccountsError::SocialStateInvalid)?;
        // A provider removed from the configuration since the start.
        let provider = self
            .social
            .provider(&pending.provider)
            .ok_or(AccountsError::SocialStateInvalid)?
            .clone();
        let identity = provider
            .finish(
                &code,
                &pending.redirect_uri,
                &pending.pkce_verifier,
                &pending.nonce,
            )
            .await
            .map_err(|error| provider_failure(provider.name(), error))?;
        let email = identity
            .email
            .as_deref()
            .and_then(|email| Email::parse("email", email).ok());
        let provider_identity = ProviderIdentity {
            issuer: provider.issuer(),
            subject: &identity.subject,
            email: email.as_ref().map(Email::as_str),
        };
        if let Some(user_id) = self.store.log_in_identity(&provider_identity).await? {
            let user = self
                .store
                .by_id(user_id)
                .await?
                .ok_or(AccountsError::UserNotFound)?;
            let session = self.start_session(user).await?;
            tracing::info!(user_id = %session.user.id, session_id = %session.session_id, provider = %provider.name(), "logged in with a social identity");
            return Ok(FinishedLogin::Session(Box::new(session)));
        }
        let email = email.as_ref().ok_or(AccountsError::SocialEmailRequired)?;
        if let Some(existing) = self.store.by_email(email).await? {
            return self
                .offer_link(provider.name(), &provider_identity, existing.user)
                .await;
        }
        let display_name = identity
            .name
            .as_deref()
            .and_then(|name| DisplayName::parse("display_name", name).ok())
            .or_else(|| {
                let local: String = email
                    .as_str()
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(DisplayName::MAX_CHARS)
                    .collect();
                DisplayName::parse("display_name", &local).ok()
            })
            .map_or_else(|| DisplayName::parse("display_name", "Customer"), Ok)?;
        let user = match self
            .store
            .create_social_user(
                email,
                &display_name,
                identity.email_verified,
                &provider_identity,
            )
            .await
        {
            Ok(user) => user,
            // Someone registered the email (or the same identity finished
            // twice) meanwhile: as if it had been there first.
            Err(AccountsError::EmailTaken) => {
                let existing = self
                    .store
                    .by_email(email)
                    .await?
                    .ok_or(AccountsError::SocialLoginFailed)?;
                return self
                    .offer_link(provider.name(), &provider_identity, existing.user)
                    .await;
            }
            Err(error) => return Err(error),
        };
        tracing::info!(user_id = %user.id, provider = %provider.name(), "registered user with a social identity");
        let session = self.start_session(user).await?;
        Ok(FinishedLogin::Session(Box::new(session)))
    }

    async fn offer_link(
        &self,
        provider: &str,
        identity: &ProviderIdentity<'_>,
        user: crate::domain::User,
    ) -> Result<FinishedLogin, AccountsError> {
        let link_token = random_token();
        let expires_at = Utc::now() + self.social.link_ttl;
        self.store
            .insert_link_offer(
                &token_hash(&link_token),
                &LinkOffer {
                    user_id: user.id,
                    issuer: identity.issuer.to_owned(),
                    subject: identity.subject.to_owned(),
                    email: identity.email.map(str::to_owned),
                },
                expires_at,
            )
            .await?;
        tracing::info!(user_id = %user.id, %provider, "social identity matches an account; link offered");
        Ok(FinishedLogin::LinkRequired {
            link_token,
            email: user.email,
            provider: provider.to_owned(),
            expires_at,
        })
    }

    /// Links an offered identity once the account's owner proves the
    /// account: the call carries its access token, or its password.
    pub async fn link_social_login(
        &self,
        caller: &Caller,
        link_token: &str,
        password: &str,
    ) -> Result<Session, AccountsError> {
        let link_token = bounded("link_token", link_token)?;
        let hash = token_hash(&link_token);
        let offer = self
            .store
            .link_offer(&hash)
            .await?
            .ok_or(AccountsError::TokenInvalid("link_token"))?;
        let stored = self
            .store
            .stored_by_id(offer.user_id)
            .await?
            .ok_or(AccountsError::TokenInvalid("link_token"))?;
        if caller.user_id != Some(offer.user_id) {
            if password.is_empty() {
                return Err(AccountsError::LinkProofRequired);
            }
            // Guessing the password through link offers is throttled
            // exactly like logging in with it.
            let key = stored.user.email.to_lowercase();
            self.throttle
                .check(&key, Instant::now())
                .map_err(AccountsError::Throttled)?;
            let candidate: String = password.chars().take(NewPassword::MAX_CHARS + 1).collect();
            let stored_hash = stored.has_password().then(|| stored.password_hash.clone());
            if !password::verify(candidate, stored_hash).await? {
                self.throttle.record_failure(&key, Instant::now());
                return Err(AccountsError::WrongPassword);
            }
            self.throttle.record_success(&key);
        }
        if !self.store.accept_link_offer(&hash, &offer).await? {
            return Err(AccountsError::TokenInvalid("link_token"));
        }
        tracing::info!(user_id = %offer.user_id, "social identity linked");
        self.start_session(stored.user).await
    }

    pub async fn social_identities(
        &self,
        caller: &Caller,
    ) -> Result<Vec<IdentityRecord>, AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        self.store.identities(user_id).await
    }

    pub async fn unlink_social_identity(
        &self,
        caller: &Caller,
        identity_id: Uuid,
    ) -> Result<(), AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        self.store.unlink_identity(user_id, identity_id).await?;
        tracing::info!(%user_id, %identity_id, "social identity unlinked");
        Ok(())
    }
}
