//! The `accounts.users` table; a registration also publishes its
//! `UserRegistered` event (`boxoffice.events.v1`) in the same transaction.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::domain::{DisplayName, Email, Role, User};
use crate::error::AccountsError;

#[derive(Clone)]
pub struct AccountsStore {
    pub(crate) pool: Pool,
    pub(crate) outbox: boxoffice_events::Outbox,
}

/// A user plus the password hash that never leaves the service.
pub struct StoredUser {
    pub user: User,
    pub password_hash: String,
}

/// The password hash of an account made by a social login: no password
/// matches it (it is no PHC string), until one is set by a reset.
pub(crate) const NO_PASSWORD: &str = "!social-login";

impl StoredUser {
    pub fn has_password(&self) -> bool {
        self.password_hash != NO_PASSWORD
    }
}

/// A new account's fields.
pub(crate) struct NewUser<'a> {
    pub email: &'a Email,
    pub display_name: &'a DisplayName,
    pub password_hash: &'a str,
    pub roles: &'a [Role],
    pub email_verified: bool,
}

/// Inserts a user and its `UserRegistered` event in `transaction`;
/// `EmailTaken` when the email already has an account.
pub(crate) async fn insert_user(
    transaction: &deadpool_postgres::Transaction<'_>,
    outbox: &boxoffice_events::Outbox,
    new: NewUser<'_>,
) -> Result<User, AccountsError> {
    let roles: Vec<&str> = new.roles.iter().map(|role| role.as_str()).collect();
    let row = transaction
        .query_one(
            "INSERT INTO accounts.users
                 (id, email, email_key, display_name, password_hash, roles, email_verified)
             VALUES ($1, $2, $2, $3, $4, $5, $6)
             RETURNING id, email, display_name, roles, created_at, password_hash,
                       email_verified, NULL::text AS pending_email",
            &[
                &Uuid::now_v7(),
                &new.email.as_str(),
                &new.display_name.as_str(),
                &new.password_hash,
                &roles,
                &new.email_verified,
            ],
        )
        .await
        .map_err(|error| {
            if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                AccountsError::EmailTaken
            } else {
                error.into()
            }
        })?;
    let user = user_from_row(&row).user;
    let registered = boxoffice_events::NewEvent::new(
        "user",
        user.id,
        boxoffice_events::Payload::UserRegistered(
            boxoffice_contracts::events::v1::UserRegistered {
                user_id: user.id.to_string(),
                email: user.email.clone(),
                display_name: user.display_name.clone(),
            },
        ),
    );
    outbox
        .append(transaction, vec![registered])
        .await
        .map_err(|error| AccountsError::Internal(error.context("publishing UserRegistered")))?;
    Ok(user)
}

const COLUMNS: &str = "id, email, display_name, roles, created_at, password_hash, email_verified,
     (SELECT t.new_email FROM accounts.user_tokens t
       WHERE t.user_id = users.id AND t.purpose = 'email_change'
         AND t.spent_at IS NULL AND t.expires_at > now()
       ORDER BY t.created_at DESC LIMIT 1) AS pending_email";

fn user_from_row(row: &Row) -> StoredUser {
    let roles: Vec<String> = row.get("roles");
    StoredUser {
        user: User {
            id: row.get("id"),
            email: row.get("email"),
            display_name: row.get("display_name"),
            // The table's CHECK admits only known roles.
            roles: roles.iter().filter_map(|role| Role::parse(role)).collect(),
            created_at: row.get::<_, DateTime<Utc>>("created_at"),
            pending_email: row.get("pending_email"),
            email_verified: row.get("email_verified"),
        },
        password_hash: row.get("password_hash"),
    }
}

impl AccountsStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            outbox: boxoffice_events::Outbox::new(super::SCHEMA),
        }
    }

    /// Inserts a user; `EmailTaken` when the email already has an account.
    pub async fn insert(
        &self,
        email: &Email,
        display_name: &DisplayName,
        password_hash: &str,
        roles: &[Role],
    ) -> Result<User, AccountsError> {
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let user = insert_user(
            &transaction,
            &self.outbox,
            NewUser {
                email,
                display_name,
                password_hash,
                roles,
                email_verified: false,
            },
        )
        .await?;
        transaction.commit().await?;
        Ok(user)
    }

    pub async fn by_email(&self, email: &Email) -> Result<Option<StoredUser>, AccountsError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM accounts.users WHERE email_key = $1"),
                &[&email.as_str()],
            )
            .await?;
        Ok(row.as_ref().map(user_from_row))
    }

    /// A user with the password hash (re-authentication).
    pub async fn stored_by_id(&self, id: Uuid) -> Result<Option<StoredUser>, AccountsError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM accounts.users WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(user_from_row))
    }

    pub async fn by_id(&self, id: Uuid) -> Result<Option<User>, AccountsError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM accounts.users WHERE id = $1"),
                &[&id],
            )
            .await?;
        Ok(row.as_ref().map(|row| user_from_row(row).user))
    }
}
