//! Social login's tables: logins under way (`social_login_states`, spent by
//! the first finish), identities linked to users (`social_identities`), and
//! link offers waiting for an account owner's proof (`social_link_offers`).
//! States and offers are found by the SHA-256 of their token only.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::AccountsStore;
use super::postgres::{NO_PASSWORD, NewUser, insert_user};
use crate::domain::{DisplayName, Email, Role, User};
use crate::error::AccountsError;

/// A login between start and finish.
#[derive(Debug)]
pub struct PendingLogin {
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub redirect_uri: String,
}

/// An identity waiting to be linked to `user_id`.
#[derive(Clone, Debug)]
pub struct LinkOffer {
    pub user_id: Uuid,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
}

/// A linked identity, as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    pub id: Uuid,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_login_at: DateTime<Utc>,
}

/// A provider identity that logged in.
pub struct ProviderIdentity<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: Option<&'a str>,
}

impl AccountsStore {
    /// Records a login under way (and forgets expired ones).
    pub async fn insert_login_state(
        &self,
        state_hash: &[u8],
        pending: &PendingLogin,
        expires_at: DateTime<Utc>,
    ) -> Result<(), AccountsError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM accounts.social_login_states WHERE expires_at < now()",
                &[],
            )
            .await?;
        client
            .execute(
                "INSERT INTO accounts.social_login_states
                     (state_hash, provider, nonce, pkce_verifier, redirect_uri, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &state_hash,
                    &pending.provider,
                    &pending.nonce,
                    &pending.pkce_verifier,
                    &pending.redirect_uri,
                    &expires_at,
                ],
            )
            .await?;
        Ok(())
    }

    /// Spends a login's state: the first call gets it (if unexpired), every
    /// later one `None`.
    pub async fn take_login_state(
        &self,
        state_hash: &[u8],
    ) -> Result<Option<PendingLogin>, AccountsError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "DELETE FROM accounts.social_login_states WHERE state_hash = $1
                 RETURNING provider, nonce, pkce_verifier, redirect_uri, expires_at > now() AS live",
                &[&state_hash],
            )
            .await?;
        Ok(row
            .filter(|row| row.get::<_, bool>("live"))
            .map(|row| PendingLogin {
                provider: row.get("provider"),
                nonce: row.get("nonce"),
                pkce_verifier: row.get("pkce_verifier"),
                redirect_uri: row.get("redirect_uri"),
            }))
    }

    /// The user an identity logs into, noting the login.
    pub async fn log_in_identity(
        &self,
        identity: &ProviderIdentity<'_>,
    ) -> Result<Option<Uuid>, AccountsError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "UPDATE accounts.social_identities
                    SET last_login_at = now(), email = COALESCE($3, email)
                  WHERE issuer = $1 AND subject = $2
                 RETURNING user_id",
                &[&identity.issuer, &identity.subject, &identity.email],
            )
            .await?;
        Ok(row.map(|row| row.get("user_id")))
    }

    /// A new password-less account with its first identity, in one
    /// transaction. `EmailTaken` when the email has an account by now.
    pub async fn create_social_user(
        &self,
        email: &Email,
        display_name: &DisplayName,
        email_verified: bool,
        identity: &ProviderIdentity<'_>,
    ) -> Result<User, AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let user = insert_user(
            &transaction,
            &self.outbox,
            NewUser {
                email,
                display_name,
                password_hash: NO_PASSWORD,
                roles: &[Role::Customer],
                email_verified,
            },
        )
        .await?;
        insert_identity(&transaction, user.id, identity).await?;
        transaction.commit().await?;
        Ok(user)
    }

    pub async fn insert_link_offer(
        &self,
        token_hash: &[u8],
        offer: &LinkOffer,
        expires_at: DateTime<Utc>,
    ) -> Result<(), AccountsError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM accounts.social_link_offers WHERE expires_at < now()",
                &[],
            )
            .await?;
        client
            .execute(
                "INSERT INTO accounts.social_link_offers
                     (token_hash, user_id, issuer, subject, email, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &token_hash,
                    &offer.user_id,
                    &offer.issuer,
                    &offer.subject,
                    &offer.email,
                    &expires_at,
                ],
            )
            .await?;
        Ok(())
    }

    /// A live link offer, without spending it.
    pub async fn link_offer(&self, token_hash: &[u8]) -> Result<Option<LinkOffer>, AccountsError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT user_id, issuer, subject, email FROM accounts.social_link_offers
                  WHERE token_hash = $1 AND expires_at > now()",
                &[&token_hash],
            )
            .await?;
        Ok(row.map(|row| LinkOffer {
            user_id: row.get("user_id"),
            issuer: row.get("issuer"),
            subject: row.get("subject"),
            email: row.get("email"),
        }))
    }

    /// Spends the offer and links its identity, in one transaction. False
    /// when the offer was spent meanwhile.
    pub async fn accept_link_offer(
        &self,
        token_hash: &[u8],
        offer: &LinkOffer,
    ) -> Result<bool, AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let spent = transaction
            .execute(
                "DELETE FROM accounts.social_link_offers
                  WHERE token_hash = $1 AND user_id = $2 AND expires_at > now()",
                &[&token_hash, &offer.user_id],
            )
            .await?;
        if spent == 0 {
            return Ok(false);
        }
        let identity = ProviderIdentity {
            issuer: &offer.issuer,
            subject: &offer.subject,
            email: offer.email.as_deref(),
        };
        match insert_identity(&transaction, offer.user_id, &identity).await {
            Ok(()) => {}
            Err(AccountsError::IdentityAlreadyLinked) => {
                // Linked already: fine when to this very account.
                let owner: Option<Uuid> = transaction
                    .query_opt(
                        "SELECT user_id FROM accounts.social_identities
                          WHERE issuer = $1 AND subject = $2",
                        &[&offer.issuer, &offer.subject],
                    )
                    .await?
                    .map(|row| row.get("user_id"));
                if owner != Some(offer.user_id) {
                    return Err(AccountsError::IdentityAlreadyLinked);
                }
            }
            Err(error) => return Err(error),
        }
        transaction.commit().await?;
        Ok(true)
    }

    pub async fn identities(&self, user_id: Uuid) -> Result<Vec<IdentityRecord>, AccountsError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, issuer, subject, email, created_at, last_login_at
                   FROM accounts.social_identities WHERE user_id = $1
                  ORDER BY created_at",
                &[&user_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| IdentityRecord {
                id: row.get("id"),
                issuer: row.get("issuer"),
                subject: row.get("subject"),
                email: row.get("email"),
                created_at: row.get("created_at"),
                last_login_at: row.get("last_login_at"),
            })
            .collect())
    }

    /// Unlinks one of `user_id`'s identities. `IdentityNotFound` for anyone
    /// else's; `LastLoginMethod` when it is the last way into an account
    /// without a password. The user's row is locked so two unlinks cannot
    /// both take "the other one".
    pub async fn unlink_identity(
        &self,
        user_id: Uuid,
        identity_id: Uuid,
    ) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let Some(user) = transaction
            .query_opt(
                "SELECT password_hash FROM accounts.users WHERE id = $1 FOR UPDATE",
                &[&user_id],
            )
            .await?
        else {
            return Err(AccountsError::IdentityNotFound);
        };
        let has_password = user.get::<_, String>("password_hash") != NO_PASSWORD;
        let counts = transaction
            .query_one(
                "SELECT count(*) FILTER (WHERE id = $2) AS mine, count(*) AS total
                   FROM accounts.social_identities WHERE user_id = $1",
                &[&user_id, &identity_id],
            )
            .await?;
        if counts.get::<_, i64>("mine") == 0 {
            return Err(AccountsError::IdentityNotFound);
        }
        if !has_password && counts.get::<_, i64>("total") <= 1 {
            return Err(AccountsError::LastLoginMethod);
        }
        transaction
            .execute(
                "DELETE FROM accounts.social_identities WHERE id = $1 AND user_id = $2",
                &[&identity_id, &user_id],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// Links an identity; `IdentityAlreadyLinked` when it already logs into an
/// account (this one or another). No error inside the transaction, so the
/// caller can still look.
async fn insert_identity(
    transaction: &tokio_postgres::Transaction<'_>,
    user_id: Uuid,
    identity: &ProviderIdentity<'_>,
) -> Result<(), AccountsError> {
    let inserted = transaction
        .execute(
            "INSERT INTO accounts.social_identities (id, user_id, issuer, subject, email)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (issuer, subject) DO NOTHING",
            &[
                &Uuid::now_v7(),
                &user_id,
                &identity.issuer,
                &identity.subject,
                &identity.email,
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(AccountsError::IdentityAlreadyLinked);
    }
    Ok(())
}
