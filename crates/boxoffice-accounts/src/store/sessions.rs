//! Sessions and their refresh-token families, the revocations the edges
//! follow, single-use tokens (email verification, password reset), and
//! erasure. Every revocation inserts into `accounts.revocations` in the same
//! transaction that revokes, so the feed never misses one.

use chrono::{DateTime, Utc};
use prost::Message as _;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::AccountsStore;
use crate::domain::Email;
use crate::error::AccountsError;

/// A session as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What presenting a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Spent; the new token replaces it.
    Rotated { user_id: Uuid, session_id: Uuid },
    /// Unknown, or its session is revoked or expired.
    Invalid,
    /// Already spent: the family has been revoked now.
    Reused,
}

/// What a single-use token is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPurpose {
    EmailChange,
    PasswordReset,
}

impl TokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::EmailChange => "email_change",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// Why a session ended (kept on the row for support, never shown to others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeReason {
    Logout,
    Revoked,
    Reuse,
    PasswordChanged,
    PasswordReset,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Revoked => "revoked",
            Self::Reuse => "reuse",
            Self::PasswordChanged => "password_changed",
            Self::PasswordReset => "password_reset",
        }
    }
}

const SESSION_COLUMNS: &str = "id, created_at, last_used_at, expires_at, revoked_at";

fn session_from_row(row: &tokio_postgres::Row) -> SessionRecord {
    SessionRecord {
        id: row.get("id"),
        created_at: row.get("created_at"),
        last_used_at: row.get("last_used_at"),
        expires_at: row.get("expires_at"),
        revoked_at: row.get("revoked_at"),
    }
}

/// Revokes the user's live sessions (all but `keep`) and records each
/// revocation for the feed, in the caller's transaction.
async fn revoke_sessions_of(
    transaction: &tokio_postgres::Transaction<'_>,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: RevokeReason,
    forget_at: DateTime<Utc>,
) -> Result<u64, AccountsError> {
    Ok(transaction
        .execute(
            "WITH revoked AS (
                 UPDATE accounts.sessions SET revoked_at = now(), revoked_reason = $3
                  WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2
                 RETURNING id)
             INSERT INTO accounts.revocations (session_id, forget_at)
             SELECT id, $4 FROM revoked
             ON CONFLICT (session_id) DO NOTHING",
            &[&user_id, &keep, &reason.as_str(), &forget_at],
        )
        .await?)
}

impl AccountsStore {
    /// A new session with its first refresh token.
    pub async fn create_session(
        &self,
        user_id: Uuid,
        refresh_hash: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<SessionRecord, AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let row = transaction
            .query_one(
                &format!(
                    "INSERT INTO accounts.sessions (id, user_id, expires_at) VALUES ($1, $2, $3)
                     RETURNING {SESSION_COLUMNS}"
                ),
                &[&Uuid::now_v7(), &user_id, &expires_at],
            )
            .await?;
        let session = session_from_row(&row);
        transaction
            .execute(
                "INSERT INTO accounts.refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
                &[&refresh_hash, &session.id],
            )
            .await?;
        transaction.commit().await?;
        Ok(session)
    }

    /// Spends `old_hash` and stores `new_hash` in its place; a token spent
    /// before revokes its whole session. Concurrent refreshes with one
    /// token queue on its row lock: the first rotates, the rest see it
    /// spent (a copied token racing its owner ends the session either way).
    pub async fn refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        expires_at: DateTime<Utc>,
        forget_at: DateTime<Utc>,
    ) -> Result<RefreshOutcome, AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let row = transaction
            .query_opt(
                "SELECT r.session_id, r.spent_at, s.user_id, s.revoked_at, s.expires_at
                   FROM accounts.refresh_tokens r
                   JOIN accounts.sessions s ON s.id = r.session_id
                  WHERE r.token_hash = $1
                  FOR UPDATE OF r, s",
                &[&old_hash],
            )
            .await?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Invalid);
        };
        let session_id: Uuid = row.get("session_id");
        let user_id: Uuid = row.get("user_id");
        let spent: Option<DateTime<Utc>> = row.get("spent_at");
        let revoked: Option<DateTime<Utc>> = row.get("revoked_at");
        let session_expires: DateTime<Utc> = row.get("expires_at");
        if spent.is_some() {
            if revoked.is_none() {
                transaction
                    .execute(
                        "UPDATE accounts.sessions SET revoked_at = now(), revoked_reason = $2
                          WHERE id = $1",
                        &[&session_id, &RevokeReason::Reuse.as_str()],
                    )
                    .await?;
                transaction
                    .execute(
                        "INSERT INTO accounts.revocations (session_id, forget_at) VALUES ($1, $2)
                         ON CONFLICT (session_id) DO NOTHING",
                        &[&session_id, &forget_at],
                    )
                    .await?;
            }
            transaction.commit().await?;
            return Ok(RefreshOutcome::Reused);
        }
        if revoked.is_some() || session_expires <= Utc::now() {
            return Ok(RefreshOutcome::Invalid);
        }
        transaction
            .execute(
                "UPDATE accounts.refresh_tokens SET spent_at = now() WHERE token_hash = $1",
                &[&old_hash],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO accounts.refresh_tokens (token_hash, session_id) VALUES ($1, $2)",
                &[&new_hash, &session_id],
            )
            .await?;
        transaction
            .execute(
                "UPDATE accounts.sessions SET last_used_at = now(), expires_at = $2 WHERE id = $1",
                &[&session_id, &expires_at],
            )
            .await?;
        transaction.commit().await?;
        Ok(RefreshOutcome::Rotated {
            user_id,
            session_id,
        })
    }

    /// Revokes one of `user_id`'s sessions; false when it has no such live
    /// session (someone else's looks exactly like a missing one).
    pub async fn revoke_session(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        reason: RevokeReason,
        forget_at: DateTime<Utc>,
    ) -> Result<bool, AccountsError> {
        let client = self.pool.get().await?;
        let revoked = client
            .execute(
                "WITH revoked AS (
                     UPDATE accounts.sessions SET revoked_at = now(), revoked_reason = $3
                      WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
                     RETURNING id)
                 INSERT INTO accounts.revocations (session_id, forget_at)
                 SELECT id, $4 FROM revoked
                 ON CONFLICT (session_id) DO NOTHING",
                &[&session_id, &user_id, &reason.as_str(), &forget_at],
            )
            .await?;
        Ok(revoked == 1)
    }

    /// The user's sessions: live ones only, or all of them (export).
    pub async fn sessions(
        &self,
        user_id: Uuid,
        include_ended: bool,
    ) -> Result<Vec<SessionRecord>, AccountsError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {SESSION_COLUMNS} FROM accounts.sessions
                      WHERE user_id = $1
                        AND ($2 OR (revoked_at IS NULL AND expires_at > now()))
                      ORDER BY created_at DESC
                      LIMIT 1000"
                ),
                &[&user_id, &include_ended],
            )
            .await?;
        Ok(rows.iter().map(session_from_row).collect())
    }

    /// Revocations whose access tokens may still be unexpired.
    pub async fn live_revocations(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, AccountsError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT session_id, forget_at FROM accounts.revocations WHERE forget_at > now()",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get("session_id"), row.get("forget_at")))
            .collect())
    }

    /// Drops revocations nobody needs any more.
    pub async fn forget_old_revocations(&self) -> Result<u64, AccountsError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM accounts.revocations WHERE forget_at < now() - interval '1 hour'",
                &[],
            )
            .await?)
    }

    pub async fn set_display_name(&self, user_id: Uuid, name: &str) -> Result<(), AccountsError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE accounts.users SET display_name = $2 WHERE id = $1",
                &[&user_id, &name],
            )
            .await?;
        Ok(())
    }

    /// Stores a single-use token; earlier unspent tokens of the same
    /// purpose stop working (one pending email change, one live reset).
    pub async fn create_user_token(
        &self,
        user_id: Uuid,
        purpose: TokenPurpose,
        new_email: Option<&Email>,
        token_hash: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "UPDATE accounts.user_tokens SET spent_at = now()
                  WHERE user_id = $1 AND purpose = $2 AND spent_at IS NULL",
                &[&user_id, &purpose.as_str()],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO accounts.user_tokens (token_hash, user_id, purpose, new_email, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &token_hash,
                    &user_id,
                    &purpose.as_str(),
                    &new_email.map(Email::as_str),
                    &expires_at,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Spends an email-change token and makes its email the account's.
    /// `None` when the token is unknown, spent or expired.
    pub async fn verify_email(&self, token_hash: &[u8]) -> Result<Option<Uuid>, AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let row = transaction
            .query_opt(
                "UPDATE accounts.user_tokens SET spent_at = now()
                  WHERE token_hash = $1 AND purpose = 'email_change'
                    AND spent_at IS NULL AND expires_at > now()
                 RETURNING user_id, new_email",
                &[&token_hash],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user_id: Uuid = row.get("user_id");
        let new_email: String = row.get("new_email");
        transaction
            .execute(
                "UPDATE accounts.users SET email = $2, email_key = $2, email_verified = true
                  WHERE id = $1",
                &[&user_id, &new_email],
            )
            .await
            .map_err(|error| {
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    AccountsError::EmailTaken
                } else {
                    error.into()
                }
            })?;
        transaction.commit().await?;
        Ok(Some(user_id))
    }

    /// Sets a new password hash and revokes the user's sessions except
    /// `keep`, in one transaction.
    pub async fn set_password(
        &self,
        user_id: Uuid,
        password_hash: &str,
        keep: Option<Uuid>,
        reason: RevokeReason,
        forget_at: DateTime<Utc>,
    ) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "UPDATE accounts.users SET password_hash = $2 WHERE id = $1",
                &[&user_id, &password_hash],
            )
            .await?;
        revoke_sessions_of(&transaction, user_id, keep, reason, forget_at).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Spends a password-reset token, sets the new hash and revokes every
    /// session. `None` when the token is unknown, spent or expired.
    pub async fn reset_password(
        &self,
        token_hash: &[u8],
        password_hash: &str,
        forget_at: DateTime<Utc>,
    ) -> Result<Option<Uuid>, AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let row = transaction
            .query_opt(
                "UPDATE accounts.user_tokens SET spent_at = now()
                  WHERE token_hash = $1 AND purpose = 'password_reset'
                    AND spent_at IS NULL AND expires_at > now()
                 RETURNING user_id",
                &[&token_hash],
            )
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user_id: Uuid = row.get("user_id");
        transaction
            .execute(
                "UPDATE accounts.users SET password_hash = $2 WHERE id = $1",
                &[&user_id, &password_hash],
            )
            .await?;
        revoke_sessions_of(
            &transaction,
            user_id,
            None,
            RevokeReason::PasswordReset,
            forget_at,
        )
        .await?;
        transaction.commit().await?;
        Ok(Some(user_id))
    }

    /// Erases the user: every session revoked (the revocations carry no
    /// user id), the user row and everything keyed by it deleted, the
    /// email and name scrubbed from the user's earlier events in the
    /// outbox, and `UserErased` published, all in one transaction.
    pub async fn erase(
        &self,
        user_id: Uuid,
        forget_at: DateTime<Utc>,
    ) -> Result<(), AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        revoke_sessions_of(
            &transaction,
            user_id,
            None,
            RevokeReason::Revoked,
            forget_at,
        )
        .await?;
        let deleted = transaction
            .execute("DELETE FROM accounts.users WHERE id = $1", &[&user_id])
            .await?;
        if deleted == 0 {
            return Err(AccountsError::UserNotFound);
        }
        let rows = transaction
            .query(
                "SELECT id, envelope FROM accounts.event_outbox
                  WHERE aggregate_type = 'user' AND aggregate_id = $1
                  FOR UPDATE",
                &[&user_id.to_string()],
            )
            .await?;
        for row in rows {
            let id: i64 = row.get("id");
            let bytes: Vec<u8> = row.get("envelope");
            let Ok(mut envelope) = boxoffice_events::Envelope::decode(bytes.as_slice()) else {
                continue;
            };
            if let Some(boxoffice_events::Payload::UserRegistered(registered)) =
                envelope.payload.as_mut()
            {
                registered.email.clear();
                registered.display_name.clear();
                transaction
                    .execute(
                        "UPDATE accounts.event_outbox SET envelope = $2 WHERE id = $1",
                        &[&id, &envelope.encode_to_vec()],
                    )
                    .await?;
            }
        }
        let erased = boxoffice_events::NewEvent::new(
            "user",
            user_id,
            boxoffice_events::Payload::UserErased(boxoffice_contracts::events::v1::UserErased {
                user_id: user_id.to_string(),
            }),
        );
        self.outbox
            .append(&transaction, vec![erased])
            .await
            .map_err(|error| AccountsError::Internal(error.context("publishing UserErased")))?;
        transaction.commit().await?;
        Ok(())
    }
}
