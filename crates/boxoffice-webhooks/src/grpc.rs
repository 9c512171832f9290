//! `boxoffice.webhooks.v1.WebhookService`: endpoints (secrets shown once),
//! their deliveries with every attempt, redelivery by hand, and what admins
//! were told. Admin only, here as at the edge.

use std::sync::Arc;

use boxoffice_contracts::webhooks::v1 as pb;
use boxoffice_contracts::webhooks::v1::webhook_service_server::WebhookService;
use boxoffice_runtime::Caller;
use boxoffice_runtime::field::{FieldError, parse_id};
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::address::check_url;
use crate::config::WebhooksConfig;
use crate::error::WebhookError;
use crate::event_types::is_known;
use crate::store::{Delivery, Endpoint, EndpointChanges, Notification, Redelivery, WebhookStore};

type Result<T, E = WebhookError> = std::result::Result<T, E>;

const MAX_EVENT_TYPES: usize = 50;
const MAX_DESCRIPTION_CHARS: usize = 500;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 100;

pub(crate) struct WebhookGrpc {
    store: WebhookStore,
    config: WebhooksConfig,
    wake: Arc<tokio::sync::Notify>,
}

impl WebhookGrpc {
    pub(crate) fn new(
        store: WebhookStore,
        config: WebhooksConfig,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            store,
            config,
            wake,
        }
    }
}

fn admin<T>(request: &Request<T>) -> Result<Caller> {
    let caller = Caller::of(request);
    if caller.is_admin() {
        Ok(caller)
    } else {
        Err(WebhookError::AdminRequired)
    }
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A new signing secret: 32 random bytes, hex, with Stripe's prefix.
fn new_secret() -> String {
    use rand::Rng as _;
    let bytes: [u8; 32] = rand::rng().random();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("whsec_{hex}")
}

fn event_types(names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        return Err(
            FieldError::new("event_types", "name at least one event type (or \"*\")").into(),
        );
    }
    if names.len() > MAX_EVENT_TYPES {
        return Err(FieldError::new("event_types", "at most 50 event types").into());
    }
    let mut known = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let name = name.trim();
        if !is_known(name) {
            return Err(WebhookError::UnknownEventType {
                field: format!("event_types[{index}]"),
                name: name.chars().take(64).collect(),
            });
        }
        if !known.iter().any(|seen: &String| seen == name) {
            known.push(name.to_owned());
        }
    }
    Ok(known)
}

fn description(text: &str) -> Result<String> {
    if text.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(FieldError::new("description", "at most 500 characters").into());
    }
    Ok(text.trim().to_owned())
}

fn page_size(size: i32) -> Result<i64> {
    match i64::from(size) {
        0 => Ok(DEFAULT_PAGE),
        size @ 1..=MAX_PAGE => Ok(size),
        _ => Err(FieldError::new("page_size", "must be 0 to 100").into()),
    }
}

/// `<unix micros>_<uuid>`: the position after the last item of a page.
fn time_token(time: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{id}", time.timestamp_micros())
}

fn parse_time_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || FieldError::new("page_token", "is not a token this service made");
    let (micros, id) = token.split_once('_').ok_or_else(bad)?;
    let time = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    Ok(Some((time, Uuid::parse_str(id).map_err(|_| bad())?)))
}

fn endpoint_to_wire(endpoint: Endpoint) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: endpoint.id.to_string(),
        url: endpoint.url,
        event_types: endpoint.event_types,
        enabled: endpoint.enabled,
        disabled_reason: endpoint.disabled_reason,
        disable_time: endpoint.disabled_at.map(timestamp),
        create_time: Some(timestamp(endpoint.created_at)),
        consecutive_failures: u32::try_from(endpoint.consecutive_failures).unwrap_or(0),
        description: endpoint.description,
    }
}

fn delivery_to_wire(delivery: Delivery) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: delivery.id.to_string(),
        endpoint_id: delivery.endpoint_id.to_string(),
        event_id: delivery.event_id.to_string(),
        event_type: delivery.event_type,
        next_attempt_time: (delivery.status == "pending")
            .then(|| timestamp(delivery.next_attempt_at)),
        status: delivery.status,
        create_time: Some(timestamp(delivery.created_at)),
        deliver_time: delivery.delivered_at.map(timestamp),
        attempts: delivery
            .attempts
            .into_iter()
            .map(|attempt| pb::WebhookAttempt {
                number: u32::try_from(attempt.number).unwrap_or(0),
                attempt_time: Some(timestamp(attempt.at)),
                status_code: u32::try_from(attempt.status_code).unwrap_or(0),
                duration_ms: u32::try_from(attempt.duration_ms).unwrap_or(0),
                error: attempt.error,
                response_excerpt: attempt.response_excerpt,
                manual: attempt.manual,
            })
            .collect(),
    }
}

fn notification_to_wire(notification: Notification) -> pb::WebhookNotification {
    pb::WebhookNotification {
        id: notification.id.to_string(),
        endpoint_id: notification.endpoint_id.to_string(),
        kind: notification.kind,
        message: notification.message,
        create_time: Some(timestamp(notification.created_at)),
        admin_user_id: notification
            .admin_user_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
    }
}

fn endpoint_not_found(id: Uuid) -> WebhookError {
    WebhookError::NotFound {
        what: "webhook endpoint",
        id: id.to_string(),
    }
}

impl WebhookGrpc {
    fn url(&self, text: &str) -> Result<String> {
        check_url(text, self.config.allow_private)
            .map(|url| url.to_string())
            .map_err(WebhookError::UrlNotAllowed)
    }

    async fn create(
        &self,
        caller: &Caller,
        request: pb::CreateWebhookEndpointRequest,
    ) -> Result<pb::CreateWebhookEndpointResponse> {
        let url = self.url(&request.url)?;
        let types = event_types(&request.event_types)?;
        let description = description(&request.description)?;
        let secret = new_secret();
        let endpoint = self
            .store
            .create_endpoint(
                Uuid::now_v7(),
                &url,
                &types,
                &description,
                &secret,
                caller.user_id,
            )
            .await?;
        tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint registered");
        Ok(pb::CreateWebhookEndpointResponse {
            endpoint: Some(endpoint_to_wire(endpoint)),
            secret,
        })
    }

    async fn update(&self, request: pb::UpdateWebhookEndpointRequest) -> Result<Endpoint> {
        let id = parse_id("id", &request.id)?;
        let mut changes = EndpointChanges::default();
        if request.update_mask.is_empty() {
            return Err(FieldError::new("update_mask", "name the fields to change").into());
        }
        for path in &request.update_mask {
            match path.as_str() {
                "url" => changes.url = Some(self.url(&request.url)?),
                "event_types" => changes.event_types = Some(event_types(&request.event_types)?),
                "enabled" => changes.enabled = Some(request.enabled),
                "description" => changes.description = Some(description(&request.description)?),
                _ => {
                    return Err(
                        FieldError::new("update_mask", format!("cannot change {path:?}")).into(),
                    );
                }
            }
        }
        let endpoint = self
            .store
            .update_endpoint(id, &changes)
            .await?
            .ok_or_else(|| endpoint_not_found(id))?;
        if changes.enabled == Some(true) {
            self.wake.notify_one();
        }
        Ok(endpoint)
    }

    async fn deliveries(
        &self,
        request: pb::ListWebhookDeliveriesRequest,
    ) -> Result<pb::ListWebhookDeliveriesResponse> {
        let endpoint_id = parse_id("endpoint_id", &request.endpoint_id)?;
        let size = page_size(request.page_size)?;
        let before = parse_time_token(&request.page_token)?;
        if self.store.endpoint(endpoint_id).await?.is_none() {
            return Err(endpoint_not_found(endpoint_id));
        }
        let mut deliveries = self.store.deliveries(endpoint_id, before, size + 1).await?;
        let more = deliveries.len() as i64 > size;
        deliveries.truncate(size as usize);
        let next_page_token = match (more, deliveries.last()) {
            (true, Some(last)) => time_token(last.created_at, last.id),
            _ => String::new(),
        };
        Ok(pb::ListWebhookDeliveriesResponse {
            deliveries: deliveries.into_iter().map(delivery_to_wire).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl WebhookService for WebhookGrpc {
    #[tracing::instrument(skip_all)]
    async fn create_webhook_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::CreateWebhookEndpointResponse>, Status> {
        let caller = admin(&request)?;
        Ok(Response::new(
            self.create(&caller, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn get_webhook_endpoint(
        &self,
        request: Request<pb::GetWebhookEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        admin(&request)?;
        let id = parse_id("id", &request.get_ref().id).map_err(WebhookError::from)?;
        let endpoint = self
            .store
            .endpoint(id)
            .await
            .map_err(WebhookError::from)?
            .ok_or_else(|| endpoint_not_found(id))?;
        Ok(Response::new(endpoint_to_wire(endpoint)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_webhook_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        admin(&request)?;
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(Uuid::parse_str(token).map_err(|_| {
                WebhookError::from(FieldError::new(
                    "page_token",
                    "is not a token this service made",
                ))
            })?),
        };
        let mut endpoints = self
            .store
            .endpoints(after, size + 1)
            .await
            .map_err(WebhookError::from)?;
        let more = endpoints.len() as i64 > size;
        endpoints.truncate(size as usize);
        let next_page_token = match (more, endpoints.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListWebhookEndpointsResponse {
            endpoints: endpoints.into_iter().map(endpoint_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_webhook_endpoint(
        &self,
        request: Request<pb::UpdateWebhookEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        admin(&request)?;
        Ok(Response::new(endpoint_to_wire(
            self.update(request.into_inner()).await?,
        )))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_webhook_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<pb::DeleteWebhookEndpointResponse>, Status> {
        admin(&request)?;
        let id = parse_id("id", &request.get_ref().id).map_err(WebhookError::from)?;
        if !self
            .store
            .delete_endpoint(id)
            .await
            .map_err(WebhookError::from)?
        {
            return Err(endpoint_not_found(id).into());
        }
        Ok(Response::new(pb::DeleteWebhookEndpointResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::RotateWebhookSecretResponse>, Status> {
        admin(&request)?;
        let id = parse_id("id", &request.get_ref().id).map_err(WebhookError::from)?;
        let secret = new_secret();
        if !self
            .store
            .rotate_secret(id, &secret)
            .await
            .map_err(WebhookError::from)?
        {
            return Err(endpoint_not_found(id).into());
        }
        Ok(Response::new(pb::RotateWebhookSecretResponse { secret }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        admin(&request)?;
        Ok(Response::new(self.deliveries(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn redeliver_webhook(
        &self,
        request: Request<pb::RedeliverWebhookRequest>,
    ) -> Result<Response<pb::WebhookDelivery>, Status> {
        admin(&request)?;
        let id = parse_id("id", &request.get_ref().id).map_err(WebhookError::from)?;
        match self
            .store
            .redeliver(id, self.config.retry_window)
            .await
            .map_err(WebhookError::from)?
        {
            Redelivery::Queued(delivery) => {
                self.wake.notify_one();
                Ok(Response::new(delivery_to_wire(*delivery)))
            }
            Redelivery::NotFound => Err(WebhookError::NotFound {
                what: "webhook delivery",
                id: id.to_string(),
            }
            .into()),
            Redelivery::EndpointDisabled => Err(WebhookError::EndpointDisabled.into()),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn list_webhook_notifications(
        &self,
        request: Request<pb::ListWebhookNotificationsRequest>,
    ) -> Result<Response<pb::ListWebhookNotificationsResponse>, Status> {
        admin(&request)?;
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let before = parse_time_token(&request.page_token)?;
        let mut notifications = self
            .store
            .notifications(before, size + 1)
            .await
            .map_err(WebhookError::from)?;
        let more = notifications.len() as i64 > size;
        notifications.truncate(size as usize);
        let next_page_token = match (more, notifications.last()) {
            (true, Some(last)) => time_token(last.created_at, last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListWebhookNotificationsResponse {
            notifications: notifications
                .into_iter()
                .map(notification_to_wire)
                .collect(),
            next_page_token,
        }))
    }
}
