//! What accounts does, independent of the wire: register, log in (with the
//! throttle and constant-time misses), sessions with rotating refresh
//! tokens, profile and credentials, export and erasure. Social login's
//! flow is in [`crate::social::flow`].

use std::sync::OnceLock;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_runtime::Caller;
use boxoffice_runtime::transport::Transport;
use chrono::{DateTime, Utc};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::config::AccountsConfig;
use crate::delivery::TokenDelivery;
use crate::domain::{DisplayName, Email, FieldError, NewPassword, Role, User};
use crate::error::AccountsError;
use crate::password;
use crate::social::SocialLogin;
use crate::store::{
    AccountsStore, RefreshOutcome, RevokeReason, SessionRecord, StoredUser, TokenPurpose,
};
use crate::throttle::LoginThrottle;
use crate::token::{LEEWAY_SECS, TokenIssuer};

/// A successful login or refresh.
pub struct Session {
    pub user: User,
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: u64,
    pub session_id: Uuid,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
}

pub struct Accounts {
    pub(crate) store: AccountsStore,
    issuer: TokenIssuer,
    pub(crate) throttle: LoginThrottle,
    config: AccountsConfig,
    delivery: TokenDelivery,
    /// The OpenID providers of social login ([`crate::social::flow`]).
    pub(crate) social: SocialLogin,
    /// Checkout, for exports (set once the process's services exist).
    checkout: OnceLock<Transport>,
}

/// A random token for the user's hands, and the hash that is stored.
fn new_secret_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Accounts {
    pub fn new(store: AccountsStore, issuer: TokenIssuer, config: AccountsConfig) -> Self {
        Self {
            store,
            issuer,
            throttle: LoginThrottle::new(),
            delivery: TokenDelivery::new(config.dev_token_log),
            social: SocialLogin::new(&config.social),
            config,
            checkout: OnceLock::new(),
        }
    }

    pub fn store(&self) -> &AccountsStore {
        &self.store
    }

    pub fn delivery(&self) -> &TokenDelivery {
        &self.delivery
    }

    /// Where exports read bookings from.
    pub fn set_checkout(&self, checkout: Transport) {
        let _ = self.checkout.set(checkout);
    }

    /// When a revocation made now can be forgotten: every access token of
    /// the session was issued before it, so expires by then.
    fn forget_at(&self) -> DateTime<Utc> {
        Utc::now() + self.issuer.ttl() + std::time::Duration::from_secs(LEEWAY_SECS + 60)
    }

    pub(crate) async fn start_session(&self, user: User) -> Result<Session, AccountsError> {
        let (refresh_token, refresh_hash) = new_secret_token();
        let refresh_expires_at = Utc::now() + self.config.refresh_ttl;
        let session = self
            .store
            .create_session(user.id, &refresh_hash, refresh_expires_at)
            .await?;
        let (access_token, expires_at) =
            self.issuer.issue(user.id, session.id, &user.role_names())?;
        Ok(Session {
            user,
            access_token,
            expires_at,
            session_id: session.id,
            refresh_token,
            refresh_expires_at,
        })
    }

    pub async fn register(
        &self,
        email: Email,
        password: NewPassword,
        display_name: DisplayName,
        roles: &[Role],
    ) -> Result<User, AccountsError> {
        let hash = password::hash(password.expose().to_owned()).await?;
        let user = self
            .store
            .insert(&email, &display_name, &hash, roles)
            .await?;
        tracing::info!(user_id = %user.id, "registered user");
        Ok(user)
    }

    /// Creates the account unless the email already has one (demo users).
    pub async fn ensure_user(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
        roles: &[Role],
    ) -> Result<(), AccountsError> {
        let email = Email::parse("email", email)?;
        if self.store.by_email(&email).await?.is_some() {
            return Ok(());
        }
        let password = NewPassword::parse("password", password)?;
        let display_name = DisplayName::parse("display_name", display_name)?;
        match self.register(email, password, display_name, roles).await {
            Ok(_) | Err(AccountsError::EmailTaken) => Ok(()),
            Err(error) => Err(error),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<Session, AccountsError> {
        if email.trim().is_empty() {
            return Err(FieldError::new("email", "must not be empty").into());
        }
        if password.is_empty() {
            return Err(FieldError::new("password", "must not be empty").into());
        }
        // A malformed email cannot have an account; answer like any miss,
        // keyed by what was sent so the throttle still applies.
        let key = email.trim().to_lowercase();
        self.throttle
            .check(&key, Instant::now())
            .map_err(AccountsError::Throttled)?;
        let stored = match Email::parse("email", email) {
            Ok(email) if password.chars().count() <= NewPassword::MAX_CHARS => {
                self.store.by_email(&email).await?
            }
            _ => None,
        };
        let (user, hash) = match stored {
            Some(stored) => (Some(stored.user), Some(stored.password_hash)),
            None => (None, None),
        };
        // Bounded so an oversized password cannot make argon2 work harder.
        let candidate: String = password.chars().take(NewPassword::MAX_CHARS + 1).collect();
        let matches = password::verify(candidate, hash).await?;
        let user = match (matches, user) {
            (true, Some(user)) => user,
            _ => {
                self.throttle.record_failure(&key, Instant::now());
                tracing::info!("login failed");
                return Err(AccountsError::BadCredentials);
            }
        };
        self.throttle.record_success(&key);
        let session = self.start_session(user).await?;
        tracing::info!(user_id = %session.user.id, session_id = %session.session_id, "logged in");
        Ok(session)
    }

    pub async fn refresh_session(&self, refresh_token: &str) -> Result<Session, AccountsError> {
        if refresh_token.is_empty() {
            return Err(FieldError::new("refresh_token", "must not be empty").into());
        }
        if refresh_token.len() > 128 {
            return Err(AccountsError::RefreshTokenInvalid);
        }
        let (new_token, new_hash) = new_secret_token();
        let refresh_expires_at = Utc::now() + self.config.refresh_ttl;
        let outcome = self
            .store
            .refresh(
                &token_hash(refresh_token),
                &new_hash,
                refresh_expires_at,
                self.forget_at(),
            )
            .await?;
        let (user_id, session_id) = match outcome {
            RefreshOutcome::Rotated {
                user_id,
                session_id,
            } => (user_id, session_id),
            RefreshOutcome::Invalid => return Err(AccountsError::RefreshTokenInvalid),
            RefreshOutcome::Reused => {
                tracing::warn!("refresh token reused; its session is revoked");
                return Err(AccountsError::RefreshTokenReused);
            }
        };
        let user = self
            .store
            .by_id(user_id)
            .await?
            .ok_or(AccountsError::RefreshTokenInvalid)?;
        let (access_token, expires_at) =
            self.issuer.issue(user.id, session_id, &user.role_names())?;
        Ok(Session {
            user,
            access_token,
            expires_at,
            session_id,
            refresh_token: new_token,
            refresh_expires_at,
        })
    }

    /// Ends the caller's current session (nothing to do for a token
    /// without one).
    pub async fn logout(
        &self,
        caller: &Caller,
        session_id: Option<Uuid>,
    ) -> Result<(), AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        if let Some(session_id) = session_id {
            self.store
                .revoke_session(user_id, session_id, RevokeReason::Logout, self.forget_at())
                .await?;
            tracing::info!(%user_id, %session_id, "logged out");
        }
        Ok(())
    }

    pub async fn list_sessions(
        &self,
        caller: &Caller,
    ) -> Result<Vec<SessionRecord>, AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        self.store.sessions(user_id, false).await
    }

    pub async fn revoke_session(
        &self,
        caller: &Caller,
        session_id: Uuid,
    ) -> Result<(), AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        if self
            .store
            .revoke_session(user_id, session_id, RevokeReason::Revoked, self.forget_at())
            .await?
        {
            tracing::info!(%user_id, %session_id, "session revoked");
            Ok(())
        } else {
            Err(AccountsError::SessionNotFound)
        }
    }

    pub async fn update_profile(
        &self,
        caller: &Caller,
        display_name: Option<DisplayName>,
        email: Option<Email>,
    ) -> Result<User, AccountsError> {
        let user = self.me(caller).await?;
        if let Some(name) = display_name {
            self.store.set_display_name(user.id, name.as_str()).await?;
        }
        if let Some(email) = email
            && email.as_str() != user.email.to_lowercase()
        {
            if self.store.by_email(&email).await?.is_some() {
                return Err(AccountsError::EmailTaken);
            }
            let (token, hash) = new_secret_token();
            self.store
                .create_user_token(
                    user.id,
                    TokenPurpose::EmailChange,
                    Some(&email),
                    &hash,
                    Utc::now() + self.config.single_use_token_ttl,
                )
                .await?;
            self.delivery
                .deliver(user.id, TokenPurpose::EmailChange, token);
        }
        self.me(caller).await
    }

    pub async fn verify_email(&self, token: &str) -> Result<User, AccountsError> {
        if token.is_empty() {
            return Err(FieldError::new("token", "must not be empty").into());
        }
        let user_id = self
            .store
            .verify_email(&token_hash(token))
            .await?
            .ok_or(AccountsError::TokenInvalid("token"))?;
        tracing::info!(%user_id, "email verified");
        self.store
            .by_id(user_id)
            .await?
            .ok_or(AccountsError::UserNotFound)
    }

    /// The caller with their hash, after checking `password` against it.
    async fn reauthenticate(
        &self,
        caller: &Caller,
        field: &'static str,
        password: &str,
    ) -> Result<StoredUser, AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        if password.is_empty() {
            return Err(FieldError::new(field, "must not be empty").into());
        }
        let stored = self
            .store
            .stored_by_id(user_id)
            .await?
            .ok_or(AccountsError::UserNotFound)?;
        let candidate: String = password.chars().take(NewPassword::MAX_CHARS + 1).collect();
        if !password::verify(candidate, Some(stored.password_hash.clone())).await? {
            return Err(AccountsError::WrongPassword);
        }
        Ok(stored)
    }

    pub async fn change_password(
        &self,
        caller: &Caller,
        session_id: Option<Uuid>,
        current: &str,
        new: NewPassword,
    ) -> Result<(), AccountsError> {
        let stored = self
            .reauthenticate(caller, "current_password", current)
            .await?;
        let hash = password::hash(new.expose().to_owned()).await?;
        self.store
            .set_password(
                stored.user.id,
                &hash,
                session_id,
                RevokeReason::PasswordChanged,
                self.forget_at(),
            )
            .await?;
        tracing::info!(user_id = %stored.user.id, "password changed; other sessions revoked");
        Ok(())
    }

    /// Issues a reset token when the email has an account; answers the
    /// same either way.
    pub async fn request_password_reset(&self, email: &str) -> Result<(), AccountsError> {
        let email = Email::parse("email", email)?;
        let Some(stored) = self.store.by_email(&email).await? else {
            return Ok(());
        };
        let (token, hash) = new_secret_token();
        self.store
            .create_user_token(
                stored.user.id,
                TokenPurpose::PasswordReset,
                None,
                &hash,
                Utc::now() + self.config.single_use_token_ttl,
            )
            .await?;
        self.delivery
            .deliver(stored.user.id, TokenPurpose::PasswordReset, token);
        Ok(())
    }

    pub async fn reset_password(&self, token: &str, new: NewPassword) -> Result<(), AccountsError> {
        if token.is_empty() {
            return Err(FieldError::new("token", "must not be empty").into());
        }
        let hash = password::hash(new.expose().to_owned()).await?;
        let user_id = self
            .store
            .reset_password(&token_hash(token), &hash, self.forget_at())
            .await?
            .ok_or(AccountsError::TokenInvalid("token"))?;
        tracing::info!(%user_id, "password reset; every session revoked");
        Ok(())
    }

    /// Everything held about the caller, as one JSON document.
    pub async fn export(&self, caller: &Caller) -> Result<String, AccountsError> {
        let user = self.me(caller).await?;
        let sessions = self.store.sessions(user.id, true).await?;
        let identities = self.store.identities(user.id).await?;
        let bookings = crate::export::bookings_of(self.checkout.get(), &user).await?;
        Ok(crate::export::document(&user, &sessions, &identities, bookings).to_string())
    }

    /// Erases the caller (the current password confirms it).
    pub async fn delete_account(
        &self,
        caller: &Caller,
        password: &str,
    ) -> Result<(), AccountsError> {
        let stored = self.reauthenticate(caller, "password", password).await?;
        self.store.erase(stored.user.id, self.forget_at()).await?;
        tracing::info!(user_id = %stored.user.id, "account erased");
        Ok(())
    }

    pub async fn me(&self, caller: &Caller) -> Result<User, AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        self.store
            .by_id(user_id)
            .await?
            .ok_or(AccountsError::UserNotFound)
    }
}
