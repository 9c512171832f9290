//! Assembling checkout: migrations, the payment provider, the webhook
//! listener, the reconciler, and the tonic service with its limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use boxoffice_contracts::checkout::v1::checkout_service_server::CheckoutServiceServer;
use boxoffice_contracts::checkout::v1::door_service_server::DoorServiceServer;
use boxoffice_runtime::Shutdown;
use boxoffice_runtime::server::{GrpcServer, MAX_ENCODING_MESSAGE_SIZE};
use boxoffice_runtime::transport::{self, Transport};
use deadpool_postgres::Pool;
use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use crate::config::CheckoutConfig;
use crate::domain::ticket_code::TicketSigner;
use crate::door_grpc::DoorGrpc;
use crate::grpc::CheckoutGrpc;
use crate::payment::gateways::Gateways;
use crate::payment::paypal::PaypalProvider;
use crate::payment::stripe::StripeProvider;
use crate::payment::{PaymentProvider, ProviderError, ProviderPayment, SimulatedProvider};
use crate::reconciler::{self, ReconcileReport};
use crate::service::Checkout;
use crate::store::{CheckoutStore, MIGRATIONS, SCHEMA};
use crate::upstream::Upstream;
use crate::webhook::WebhookServer;

/// Largest checkout request (see [`boxoffice_runtime::limits`], where the
/// edge reads it too).
pub const MAX_REQUEST_BYTES: usize = boxoffice_runtime::limits::CHECKOUT_MAX_REQUEST_BYTES;

/// The running checkout: its service plus the webhook listener and the
/// reconciler.
pub struct CheckoutComponent {
    pub checkout: Arc<Checkout>,
    /// The in-process simulated provider, when no card gateway URL is
    /// configured.
    pub simulated: Option<Arc<SimulatedProvider>>,
    /// The card gateway over HTTP (`BOXOFFICE_PAYMENTS_URL`).
    pub gateway: Option<Arc<StripeProvider>>,
    /// PayPal (`BOXOFFICE_PAYPAL_URL`).
    pub paypal: Option<Arc<PaypalProvider>>,
    pub webhook_addr: SocketAddr,
    pub webhook: JoinHandle<()>,
    pub reconciler: JoinHandle<()>,
    signer: TicketSigner,
    inventory: Transport,
}

fn lazy_channel(url: &str) -> anyhow::Result<Transport> {
    Ok(transport::over_channel(
        Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("bad upstream url {url}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect_lazy(),
    ))
}

/// The PayPal gateway, its webhook registered (or the configured one
/// used) and its deliveries taken by the webhook listener. Not fatal when
/// PayPal is down: webhooks are advisory, and a delivery that cannot be
/// verified is answered 503 until it can.
async fn start_paypal(
    config: &crate::payment::paypal::PaypalConfig,
    webhook_server: &WebhookServer,
    webhook_url: &str,
) -> anyhow::Result<Arc<PaypalProvider>> {
    let paypal = Arc::new(PaypalProvider::new(config.clone())?);
    if let Err(error) = paypal.register_webhook(webhook_url).await {
        tracing::warn!(
            error = format!("{:#}", anyhow::Error::from(error)),
            "registering the PayPal webhook failed"
        );
    }
    webhook_server.serve_paypal(paypal.clone());
    tracing::info!(gateway = paypal.base_url(), "PayPal payments available");
    Ok(paypal)
}

impl CheckoutComponent {
    /// Reads checkout's settings from the environment, then starts.
    /// `upstream` reaches inventory and catalog when they run in this
    /// process (`up`: [`GrpcServer::in_process`]); otherwise the configured
    /// URLs are used.
    pub async fn start(
        pool: Pool,
        shutdown: Shutdown,
        upstream: Option<Transport>,
    ) -> anyhow::Result<Self> {
        let checkout_config = CheckoutConfig::from_env()
            .map_err(|error| anyhow::anyhow!("bad checkout configuration: {error}"))?;
        Self::start_with(checkout_config, pool, shutdown, upstream).await
    }

    pub async fn start_with(
        checkout_config: CheckoutConfig,
        pool: Pool,
        shutdown: Shutdown,
        upstream: Option<Transport>,
    ) -> anyhow::Result<Self> {
        boxoffice_runtime::postgres::migrate(&pool, SCHEMA, MIGRATIONS)
            .await
            .context("migrating the checkout schema")?;
        // Payment operations are recorded in the audit log, in the
        // transaction of each change.
        boxoffice_audit::migrate(&pool)
            .await
            .context("migrating the audit schema")?;
        if checkout_config.uses_development_secrets() {
            tracing::warn!(
                "checkout uses development secrets for webhooks or ticket codes; set them in production"
            );
        }
        let (inventory, catalog, accounts) = match upstream {
            Some(local) => (local.clone(), local.clone(), local),
            None => (
                lazy_channel(&checkout_config.inventory_url)?,
                lazy_channel(&checkout_config.catalog_url)?,
                lazy_channel(&checkout_config.accounts_url)?,
            ),
        };
        let inventory_transport = inventory.clone();
        let store = CheckoutStore::new(pool);
        let webhook_server = WebhookServer::bind(
            checkout_config.webhook_listen,
            store.clone(),
            checkout_config.webhook_secret.expose().as_bytes(),
            checkout_config.webhook_tolerance,
        )
        .await?;
        let webhook_addr = webhook_server.local_addr();
        let webhook_url = checkout_config
            .provider
            .webhook_url
            .clone()
            .unwrap_or_else(|| webhook_server.url());
        let (provider, simulated, gateway): (Arc<dyn PaymentProvider>, _, _) =
            match &checkout_config.payments {
                Some(payments) => {
                    let gateway = Arc::new(StripeProvider::new(payments.clone())?);
                    // The provider posts voids, declines and refunds here.
                    // Not fatal: webhooks are advisory (the reconciler asks
                    // the provider itself), and checkout must start while
                    // the provider is down.
                    if let Err(error) = gateway.register_webhook(&webhook_url).await {
                        tracing::warn!(
                            error = format!("{:#}", anyhow::Error::from(error)),
                            "registering the payment webhook endpoint failed"
                        );
                    }
                    tracing::info!(
                        gateway = gateway.base_url(),
                        "payments through the card gateway"
                    );
                    (
                        gateway.clone() as Arc<dyn PaymentProvider>,
                        None,
                        Some(gateway),
                    )
                }
                None => {
                    let simulated = SimulatedProvider::new(
                        checkout_config.provider.clone(),
                        checkout_config.webhook_secret.expose().as_bytes(),
                    );
                    simulated.set_webhook_url(webhook_url);
                    (
                        simulated.clone() as Arc<dyn PaymentProvider>,
                        Some(simulated),
                        None,
                    )
                }
            };
        // PayPal posts beside the card gateway's path, on the address the
        // providers reach the listener at.
        let paypal_webhook_url = match &checkout_config.provider.webhook_url {
            Some(url) => format!(
                "{}{}",
                url.trim_end_matches(crate::payment::webhook::WEBHOOK_PATH),
                crate::payment::webhook::PAYPAL_WEBHOOK_PATH
            ),
            None => webhook_server.paypal_url(),
        };
        let paypal = match &checkout_config.paypal {
            Some(config) => Some(start_paypal(config, &webhook_server, &paypal_webhook_url).await?),
            None => None,
        };
        let provider: Arc<dyn PaymentProvider> = match &paypal {
            Some(paypal) => Arc::new(Gateways::new(provider, Some(paypal.clone()))),
            None => provider,
        };
        let signer = TicketSigner::new(checkout_config.ticket_key.expose().as_bytes());
        let interval = checkout_config.reconcile_interval;
        let checkout = Arc::new(Checkout::new(
            store,
            provider,
            Upstream::new(inventory, catalog).with_accounts(accounts),
            checkout_config,
        ));
        let webhook = tokio::spawn(webhook_server.run_until_stopped(shutdown.clone()));
        let reconciler = tokio::spawn(reconciler::run(checkout.clone(), interval, shutdown));
        tracing::info!(webhook = %webhook_addr, "checkout started");
        Ok(Self {
            checkout,
            simulated,
            gateway,
            paypal,
            webhook_addr,
            webhook,
            reconciler,
            signer,
            inventory: inventory_transport,
        })
    }

    pub fn register(&self, server: &mut GrpcServer) {
        // Payment operations are audited with the request's caller and id.
        server.add_service(crate::audit::Scoped(
            CheckoutServiceServer::new(CheckoutGrpc::new(
                self.checkout.clone(),
                self.signer.clone(),
            ))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        ));
        server.add_service(
            DoorServiceServer::new(DoorGrpc::new(self.checkout.clone(), self.signer.clone()))
                .max_decoding_message_size(boxoffice_runtime::limits::DOOR_MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_ENCODING_MESSAGE_SIZE),
        );
    }

    /// One reconciler pass over work older than `older_than` (tests run it
    /// right after a simulated crash instead of waiting for the loop).
    pub async fn reconcile_once(&self, older_than: Duration) -> anyhow::Result<ReconcileReport> {
        reconciler::reconcile_once(&self.checkout, older_than).await
    }

    /// Every payment the provider knows, whichever provider it is (tests
    /// count charges with this).
    pub async fn provider_payments(&self) -> Result<Vec<ProviderPayment>, ProviderError> {
        match (&self.simulated, &self.gateway) {
            (Some(simulated), _) => Ok(simulated.payments()),
            (None, Some(gateway)) => gateway.payments().await,
            (None, None) => Ok(Vec::new()),
        }
    }

    /// How this checkout reaches inventory (in this process, or over the
    /// network): for what runs beside it (the sales statistics).
    pub fn inventory(&self) -> Transport {
        self.inventory.clone()
    }

    /// Verifies ticket codes (what a scanner at the door does).
    pub fn ticket_signer(&self) -> &TicketSigner {
        &self.signer
    }

    /// PayPal's webhook endpoint's URL.
    pub fn paypal_webhook_url(&self) -> String {
        format!(
            "http://{}{}",
            self.webhook_addr,
            crate::payment::webhook::PAYPAL_WEBHOOK_PATH
        )
    }

    /// The webhook endpoint's URL.
    pub fn webhook_url(&self) -> String {
        format!(
            "http://{}{}",
            self.webhook_addr,
            crate::payment::webhook::WEBHOOK_PATH
        )
    }
}
