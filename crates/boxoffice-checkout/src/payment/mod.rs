//! The payment provider interface checkout talks to, and the simulated
//! provider that implements it for development, tests and benchmarks.
//!
//! Every call carries a provider idempotency key, so checkout and its
//! reconciler may repeat any call after a crash without moving money twice.
//! The provider reports changes asynchronously through signed webhooks
//! (see [`webhook`]).

pub mod gateways;
pub mod paypal;
pub mod simulated;
pub mod stripe;
pub mod webhook;

pub use simulated::SimulatedProvider;

/// What a PayPal payment carries as its payment method (no card token may
/// spell it; see `grpc.rs`).
pub const PAYPAL_METHOD: &str = "paypal";

/// What an authorization request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizeRequest {
    /// The provider idempotency key; checkout uses the payment's id, which
    /// is also how it later finds the authorization again.
    pub idempotency_key: String,
    /// What the payment is for (checkout: the booking id); authorizations
    /// can be searched by it, as Stripe searches by metadata.
    pub reference: String,
    /// Metadata kept with the payment (checkout: the caller's
    /// ConfirmBooking idempotency key), so the payment can be recorded
    /// exactly as its request would have been.
    pub client_key: String,
    pub amount_minor: i64,
    pub currency_code: String,
    /// A token from the provider's client library, e.g. `tok_visa`, or
    /// [`PAYPAL_METHOD`].
    pub payment_method: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthorizeOutcome {
    Authorized {
        provider_ref: String,
    },
    Declined {
        decline_code: String,
    },
    /// The buyer must act at `url` first (3-D Secure, PayPal approval); the same authorization called again afterwards answers how
    /// it ended.
    ActionRequired {
        provider_ref: String,
        url: String,
    },
}

/// Where a payment stands at the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderStatus {
    Authorized,
    Captured,
    Voided,
    Declined,
    Refunded,
}

impl ProviderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Declined => "declined",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "authorized" => Self::Authorized,
            "captured" => Self::Captured,
            "voided" => Self::Voided,
            "declined" => Self::Declined,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }

    /// Later states rank higher; a webhook reporting a lower rank than what
    /// is recorded arrived late and changes nothing.
    pub fn rank(self) -> i16 {
        match self {
            Self::Authorized => 1,
            Self::Captured | Self::Voided | Self::Declined => 2,
            Self::Refunded => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderPayment {
    pub provider_ref: String,
    /// The idempotency key of its authorization (checkout's payment id).
    pub idempotency_key: String,
    /// [`AuthorizeRequest::reference`].
    pub reference: String,
    /// [`AuthorizeRequest::client_key`].
    pub client_key: String,
    pub payment_method: String,
    pub status: ProviderStatus,
    pub amount_minor: i64,
    pub currency_code: String,
    pub refunded_minor: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider could not be reached or failed; the call may be retried
    /// with the same idempotency key.
    #[error("payment provider unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The provider refused the operation for the payment's state, e.g.
    /// capturing a voided authorization, or an idempotency key sent again
    /// with different parameters (as real providers refuse it).
    #[error("payment provider refused: {0}")]
    Refused(String),
    /// The idempotency key was used before with different parameters
    /// (Stripe: `idempotency_error`); nothing was done.
    #[error("payment provider refused a reused idempotency key")]
    KeyReused,
}

#[async_trait::async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Whether payments with this method can be made here (PayPal needs
    /// its gateway configured).
    fn supports(&self, payment_method: &str) -> bool {
        payment_method != PAYPAL_METHOD
    }
    async fn authorize(&self, request: AuthorizeRequest)
    -> Result<AuthorizeOutcome, ProviderError>;
    async fn capture(&self, provider_ref: &str, idempotency_key: &str)
    -> Result<(), ProviderError>;
    async fn void(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), ProviderError>;
    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), ProviderError>;
    /// The payment an authorization with this idempotency key created, if
    /// any (how the reconciler learns what a crashed process did).
    async fn lookup(&self, idempotency_key: &str)
    -> Result<Option<ProviderPayment>, ProviderError>;
    /// Every payment authorized for `reference` (declined ones are not
    /// payments), however it ended.
    async fn search(&self, reference: &str) -> Result<Vec<ProviderPayment>, ProviderError>;
}
