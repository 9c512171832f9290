//! Delivering single-use tokens (email verification, password reset) to
//! their owner. Until notifications land there is no mail: in development
//! the token is logged and the last few are kept in memory (tests read
//! them); in production nothing about the token is ever logged.

use std::collections::VecDeque;
use std::sync::Mutex;

use uuid::Uuid;

use crate::store::TokenPurpose;

/// Tokens kept in memory in development.
const KEPT: usize = 256;

/// A token as it would have been mailed (development only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeliveredToken {
    pub user_id: Uuid,
    pub purpose: TokenPurpose,
    pub token: String,
}

pub struct TokenDelivery {
    development: bool,
    kept: Mutex<VecDeque<DeliveredToken>>,
}

impl TokenDelivery {
    pub fn new(development: bool) -> Self {
        Self {
            development,
            kept: Mutex::new(VecDeque::new()),
        }
    }

    pub fn deliver(&self, user_id: Uuid, purpose: TokenPurpose, token: String) {
        if !self.development {
            // No channel to the user yet; the token is not logged.
            tracing::info!(%user_id, ?purpose, "single-use token issued");
            return;
        }
        tracing::info!(%user_id, ?purpose, %token, "development only: single-use token");
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(DeliveredToken {
            user_id,
            purpose,
            token,
        });
    }

    /// The newest token delivered to `user_id` for `purpose` (development
    /// only: tests play the user reading their mail).
    pub fn last_delivered(&self, user_id: Uuid, purpose: TokenPurpose) -> Option<String> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .rev()
            .find(|token| token.user_id == user_id && token.purpose == purpose)
            .map(|token| token.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_development_keeps_tokens() {
        let user = Uuid::new_v4();
        let production = TokenDelivery::new(false);
        production.deliver(user, TokenPurpose::PasswordReset, "secret".into());
        assert_eq!(
            production.last_delivered(user, TokenPurpose::PasswordReset),
            None
        );
        let development = TokenDelivery::new(true);
        development.deliver(user, TokenPurpose::PasswordReset, "first".into());
        development.deliver(user, TokenPurpose::PasswordReset, "second".into());
        development.deliver(Uuid::new_v4(), TokenPurpose::PasswordReset, "other".into());
        assert_eq!(
            development.last_delivered(user, TokenPurpose::PasswordReset),
            Some("second".into())
        );
        assert_eq!(
            development.last_delivered(user, TokenPurpose::EmailChange),
            None
        );
    }
}
