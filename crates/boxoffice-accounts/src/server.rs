//! Assembling accounts: migrations, the token issuer, the revocation feed
//! and the tonic service with its message limits.

use std::sync::Arc;

use anyhow::Context as _;
use boxoffice_contracts::accounts::v1::accounts_service_server::AccountsServiceServer;
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::transport::Transport;
use boxoffice_runtime::{Config, Shutdown};
use deadpool_postgres::Pool;

use crate::config::{AccountsConfig, TokenConfig};
use crate::domain::Role;
use crate::grpc::AccountsGrpc;
use crate::revocations::RevocationHub;
use crate::service::Accounts;
use crate::store::{AccountsStore, MIGRATIONS, SCHEMA};
use crate::token::TokenIssuer;

/// Demo accounts `boxoffice up` creates (development only).
pub const DEMO_ADMIN_EMAIL: &str = "admin@demo.boxoffice.dev";
pub const DEMO_CUSTOMER_EMAIL: &str = "customer@demo.boxoffice.dev";
pub const DEMO_PASSWORD: &str = "boxoffice-demo";

pub struct AccountsComponent {
    pub accounts: Arc<Accounts>,
    revocations: Arc<RevocationHub>,
}

impl AccountsComponent {
    /// Migrates, and starts following revocations (for `WatchRevocations`)
    /// until `shutdown`.
    pub async fn start(
        config: &Config,
        tokens: &TokenConfig,
        accounts_config: AccountsConfig,
        pool: Pool,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the accounts schema")?;
        if accounts_config.dev_token_log {
            tracing::warn!(
                "accounts writes verification and reset tokens to the log: development only"
            );
        }
        let store = AccountsStore::new(pool);
        let revocations = RevocationHub::new(store.clone(), shutdown);
        let listen = boxoffice_runtime::postgres::parse_url(&config.database_url)?;
        tokio::spawn(revocations.clone().run(listen));
        let accounts = Arc::new(Accounts::new(
            store,
            TokenIssuer::new(tokens),
            accounts_config,
        ));
        Ok(Self {
            accounts,
            revocations,
        })
    }

    /// Where exports read the caller's bookings (checkout).
    pub fn connect_checkout(&self, checkout: Transport) {
        self.accounts.set_checkout(checkout);
    }

    pub fn register(&self, server: &mut GrpcServer) {
        server.add_service(
            AccountsServiceServer::new(AccountsGrpc::new(
                self.accounts.clone(),
                self.revocations.clone(),
            ))
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
