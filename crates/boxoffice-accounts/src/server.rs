//! Assembling accounts: migrations, the token issuer and the tonic service
//! with its message limits.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::accounts::v1::accounts_service_server::AccountsServiceServer;
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use deadpool_postgres::Pool;

use crate::config::TokenConfig;
use crate::domain::Role;
use crate::grpc::AccountsGrpc;
use crate::service::Accounts;
use crate::store::{AccountsStore, MIGRATIONS, SCHEMA};
use crate::token::TokenIssuer;

/// Demo accounts `boxoffice up` creates (development only).
pub const DEMO_ADMIN_EMAIL: &str = "admin@demo.boxoffice.dev";
pub const DEMO_CUSTOMER_EMAIL: &str = "customer@demo.boxoffice.dev";
pub const DEMO_PASSWORD: &str = "boxoffice-demo";

pub struct AccountsComponent {
    pub accounts: Arc<Accounts>,
}

impl AccountsComponent {
    pub async fn start(tokens: &TokenConfig, pool: Pool) -> anyhow::Result<Self> {
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the accounts schema")?;
        let accounts = Arc::new(Accounts::new(
            AccountsStore::new(pool),
            TokenIssuer::new(tokens),
        ));
        Ok(Self { accounts })
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            AccountsServiceServer::new(AccountsGrpc::new(self.accounts.clone()))
                .max_decoding_message_size(boxoffice_runtime::limits::ACCOUNTS_MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }

    /// Creates the demo admin and customer when they do not exist yet.
    pub async fn ensure_demo_users(&self) -> anyhow::Result<()> {
        self.accounts
            .ensure_user(
                DEMO_ADMIN_EMAIL,
                DEMO_PASSWORD,
                "Demo Admin",
                &[Role::Customer, Role::Admin],
            )
            .await
            .context("creating the demo admin")?;
        self.accounts
            .ensure_user(
                DEMO_CUSTOMER_EMAIL,
                DEMO_PASSWORD,
                "Demo Customer",
                &[Role::Customer],
            )
            .await
            .context("creating the demo customer")?;
        Ok(())
    }
}
