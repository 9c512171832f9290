//! What accounts does, independent of the wire: register, log in (with the
//! throttle and constant-time misses), and look up the caller.

use std::time::Instant;

use boxoffice_runtime::Caller;

use crate::domain::{DisplayName, Email, FieldError, NewPassword, Role, User};
use crate::error::AccountsError;
use crate::password;
use crate::store::AccountsStore;
use crate::throttle::LoginThrottle;
use crate::token::TokenIssuer;

/// A successful login.
pub struct Session {
    pub user: User,
    pub access_token: String,
    /// Unix seconds.
    pub expires_at: u64,
}

pub struct Accounts {
    store: AccountsStore,
    issuer: TokenIssuer,
    throttle: LoginThrottle,
}

impl Accounts {
    pub fn new(store: AccountsStore, issuer: TokenIssuer) -> Self {
        Self {
            store,
            issuer,
            throttle: LoginThrottle::new(),
        }
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
        let (access_token, expires_at) = self.issuer.issue(user.id, &user.role_names())?;
        tracing::info!(user_id = %user.id, "logged in");
        Ok(Session {
            user,
            access_token,
            expires_at,
        })
    }

    pub async fn me(&self, caller: &Caller) -> Result<User, AccountsError> {
        let user_id = caller.user_id.ok_or(AccountsError::LoginRequired)?;
        self.store
            .by_id(user_id)
            .await?
            .ok_or(AccountsError::UserNotFound)
    }
}
