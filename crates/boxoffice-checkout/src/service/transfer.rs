//! Ticket transfers: the holder offers a ticket to an email, the user
//! signed in with that email accepts it (the ticket gets a new code and a
//! new holder; the old code is refused at the door), the sender may cancel
//! before. The recipient is matched at acceptance: checkout asks accounts
//! for the accepting caller's email (`GetMe`, as that caller), so an offer
//! to an address with no account waits until someone registers it.

use boxoffice_runtime::Caller;
use uuid::Uuid;

use super::{Checkout, Result, upstream_error};
use crate::domain::door::TicketRef;
use crate::error::CheckoutError;
use crate::store::door::{HeldTicket, TransferRecord, TransferRefusal};

/// Most tickets and transfers one listing answers.
pub const MAX_LISTED: i64 = 1000;

fn refusal(refusal: TransferRefusal, not_found: CheckoutError) -> CheckoutError {
    match refusal {
        TransferRefusal::NotFound => not_found,
        TransferRefusal::NotTransferable => CheckoutError::TicketNotTransferable,
        TransferRefusal::AlreadyUsed => CheckoutError::TicketAlreadyUsed,
        TransferRefusal::Pending => CheckoutError::TransferPending,
        TransferRefusal::NotPending(state) => CheckoutError::TransferNotPending(state.as_str()),
    }
}

impl Checkout {
    async fn email_of(&self, user: Uuid) -> Result<Option<String>> {
        self.upstream.email_of(user).await.map_err(upstream_error)
    }

    /// The tickets the caller holds now.
    pub async fn held_tickets(&self, caller: &Caller) -> Result<Vec<HeldTicket>> {
        let user = Self::user(caller)?;
        Ok(self.store.held_tickets(user, MAX_LISTED).await?)
    }

    pub async fn create_transfer(
        &self,
        caller: &Caller,
        ticket: TicketRef,
        email: String,
    ) -> Result<TransferRecord> {
        let user = Self::user(caller)?;
        if self.email_of(user).await?.as_deref() == Some(email.as_str()) {
            return Err(CheckoutError::TransferToSelf);
        }
        self.store
            .create_transfer(Uuid::now_v7(), ticket, user, &email)
            .await?
            .map_err(|why| refusal(why, CheckoutError::TicketNotFound(ticket.name())))
    }

    pub async fn accept_transfer(&self, caller: &Caller, id: Uuid) -> Result<TransferRecord> {
        let user = Self::user(caller)?;
        let email = self.email_of(user).await?;
        self.store
            .accept_transfer(id, user, email.as_deref(), Uuid::new_v4())
            .await?
            .map_err(|why| refusal(why, CheckoutError::TransferNotFound(id)))
    }

    pub async fn cancel_transfer(&self, caller: &Caller, id: Uuid) -> Result<TransferRecord> {
        let user = Self::user(caller)?;
        self.store
            .cancel_transfer(id, user)
            .await?
            .map_err(|why| refusal(why, CheckoutError::TransferNotFound(id)))
    }

    /// Transfers the caller sent or that are addressed to their email.
    pub async fn transfers(&self, caller: &Caller) -> Result<Vec<TransferRecord>> {
        let user = Self::user(caller)?;
        let email = self.email_of(user).await?;
        Ok(self
            .store
            .transfers_of(user, email.as_deref(), MAX_LISTED)
            .await?)
    }
}
