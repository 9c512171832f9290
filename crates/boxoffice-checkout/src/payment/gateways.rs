//! The gateways behind checkout's one [`PaymentProvider`]: the card
//! gateway (Stripe's shape, or the in-process simulator) and, when
//! configured, PayPal, chosen by the payment method of the attempt.
//!
//! A PayPal payment's provider reference is `paypal:{order id}`, so every
//! later step (capture, void, refund) goes to the gateway that made it
//! without a lookup; a card payment's reference is the card gateway's as
//! it answers it. Lookups and searches ask both (the reconciler does not
//! know how a crashed attempt paid).

use std::sync::Arc;

use super::paypal::{PAYPAL_METHOD, PaypalProvider};
use super::{AuthorizeOutcome, AuthorizeRequest, PaymentProvider, ProviderError, ProviderPayment};

const PAYPAL_PREFIX: &str = "paypal:";

pub struct Gateways {
    card: Arc<dyn PaymentProvider>,
    paypal: Option<Arc<PaypalProvider>>,
}

impl Gateways {
    pub fn new(card: Arc<dyn PaymentProvider>, paypal: Option<Arc<PaypalProvider>>) -> Self {
        Self { card, paypal }
    }

    /// The PayPal gateway and the order id, for a PayPal reference.
    fn paypal_ref<'a>(
        &self,
        provider_ref: &'a str,
    ) -> Option<Result<(&PaypalProvider, &'a str), ProviderError>> {
        let order = provider_ref.strip_prefix(PAYPAL_PREFIX)?;
        Some(match &self.paypal {
            Some(paypal) => Ok((paypal, order)),
            None => Err(ProviderError::Unavailable(anyhow::anyhow!(
                "a PayPal payment, and PayPal is not configured"
            ))),
        })
    }
}

fn prefixed(mut payment: ProviderPayment) -> ProviderPayment {
    payment.provider_ref = format!("{PAYPAL_PREFIX}{}", payment.provider_ref);
    payment
}

#[async_trait::async_trait]
impl PaymentProvider for Gateways {
    fn supports(&self, payment_method: &str) -> bool {
        payment_method != PAYPAL_METHOD || self.paypal.is_some()
    }

    async fn authorize(
        &self,
        request: AuthorizeRequest,
    ) -> Result<AuthorizeOutcome, ProviderError> {
        if request.payment_method != PAYPAL_METHOD {
            return self.card.authorize(request).await;
        }
        let Some(paypal) = &self.paypal else {
            return Err(ProviderError::Refused(
                "PayPal is not configured".to_owned(),
            ));
        };
        Ok(match paypal.authorize(request).await? {
            AuthorizeOutcome::Authorized { provider_ref } => AuthorizeOutcome::Authorized {
                provider_ref: format!("{PAYPAL_PREFIX}{provider_ref}"),
            },
            AuthorizeOutcome::ActionRequired { provider_ref, url } => {
                AuthorizeOutcome::ActionRequired {
                    provider_ref: format!("{PAYPAL_PREFIX}{provider_ref}"),
                    url,
                }
            }
            declined => declined,
        })
    }

    async fn capture(
        &self,
        provider_ref: &str,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        match self.paypal_ref(provider_ref) {
            Some(found) => {
                let (paypal, order) = found?;
                paypal.capture(order, idempotency_key).await
            }
            None => self.card.capture(provider_ref, idempotency_key).await,
        }
    }

    async fn void(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), ProviderError> {
        match self.paypal_ref(provider_ref) {
            Some(found) => {
                let (paypal, order) = found?;
                paypal.void(order, idempotency_key).await
            }
            None => self.card.void(provider_ref, idempotency_key).await,
        }
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount_minor: i64,
        idempotency_key: &str,
    ) -> Result<(), ProviderError> {
        match self.paypal_ref(provider_ref) {
            Some(found) => {
                let (paypal, order) = found?;
                paypal.refund(order, amount_minor, idempotency_key).await
            }
            None => {
                self.card
                    .refund(provider_ref, amount_minor, idempotency_key)
                    .await
            }
        }
    }

    async fn lookup(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<ProviderPayment>, ProviderError> {
        if let Some(found) = self.card.lookup(idempotency_key).await? {
            return Ok(Some(found));
        }
        match &self.paypal {
            Some(paypal) => Ok(paypal.lookup(idempotency_key).await?.map(prefixed)),
            None => Ok(None),
        }
    }

    async fn search(&self, reference: &str) -> Result<Vec<ProviderPayment>, ProviderError> {
        let mut found = self.card.search(reference).await?;
        if let Some(paypal) = &self.paypal {
            found.extend(paypal.search(reference).await?.into_iter().map(prefixed));
        }
        Ok(found)
    }
}
