//! `boxoffice.notify.v1.NotificationService`: the caller's own marketing
//! preference, and unsubscribing by a mail's signed token.

use boxoffice_contracts::notify::v1 as pb;
use boxoffice_contracts::notify::v1::notification_service_server::NotificationService;
use boxoffice_runtime::field::FieldError;
use boxoffice_runtime::identity::Caller;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::NotifyError;
use crate::store::NotifyStore;
use crate::token::{MAX_TOKEN_CHARS, UnsubscribeTokens};

pub(crate) struct NotifyGrpc {
    store: NotifyStore,
    tokens: UnsubscribeTokens,
}

impl NotifyGrpc {
    pub(crate) fn new(store: NotifyStore, tokens: UnsubscribeTokens) -> Self {
        Self { store, tokens }
    }
}

fn caller<T>(request: &Request<T>) -> Result<Uuid, NotifyError> {
    Caller::of(request)
        .user_id
        .ok_or(NotifyError::LoginRequired)
}

fn preferences(marketing: bool) -> Response<pb::NotificationPreferences> {
    Response::new(pb::NotificationPreferences { marketing })
}

#[tonic::async_trait]
impl NotificationService for NotifyGrpc {
    #[tracing::instrument(skip_all)]
    async fn get_notification_preferences(
        &self,
        request: Request<pb::GetNotificationPreferencesRequest>,
    ) -> Result<Response<pb::NotificationPreferences>, Status> {
        let user = caller(&request)?;
        let marketing = self
            .store
            .marketing(user)
            .await
            .map_err(NotifyError::from)?;
        Ok(preferences(marketing))
    }

    #[tracing::instrument(skip_all)]
    async fn update_notification_preferences(
        &self,
        request: Request<pb::UpdateNotificationPreferencesRequest>,
    ) -> Result<Response<pb::NotificationPreferences>, Status> {
        let user = caller(&request)?;
        let wanted = request
            .into_inner()
            .preferences
            .ok_or_else(|| NotifyError::from(FieldError::new("preferences", "is required")))?;
        self.store
            .set_marketing(user, wanted.marketing)
            .await
            .map_err(NotifyError::from)?;
        Ok(preferences(wanted.marketing))
    }

    #[tracing::instrument(skip_all)]
    async fn unsubscribe(
        &self,
        request: Request<pb::UnsubscribeRequest>,
    ) -> Result<Response<pb::NotificationPreferences>, Status> {
        let token = request.into_inner().token;
        if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
            return Err(NotifyError::from(FieldError::new(
                "token",
                format!("must be 1 to {MAX_TOKEN_CHARS} characters"),
            ))
            .into());
        }
        let user = self
            .tokens
            .verify(&token)
            .ok_or(NotifyError::InvalidToken)?;
        self.store
            .set_marketing(user, false)
            .await
            .map_err(NotifyError::from)?;
        tracing::info!(user_id = %user, "unsubscribed from marketing mail");
        Ok(preferences(false))
    }
}
