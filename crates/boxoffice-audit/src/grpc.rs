//! `boxoffice.audit.v1.AuditService`: the admins' list and the edge's
//! write-ahead records of admin calls.

use boxoffice_contracts::audit::v1 as pb;
use boxoffice_contracts::audit::v1::audit_service_server::AuditService;
use boxoffice_runtime::Caller;
use boxoffice_runtime::field::FieldError;
use boxoffice_runtime::postgres::DbError;
use boxoffice_runtime::status;
use chrono::{DateTime, Utc};
use tonic::{Code, Request, Response, Status};

use crate::store::{AdminAction, AuditStore, Filter, Record};

/// Most actions or outcomes in one `RecordAdminActions`.
pub(crate) const MAX_RECORDS_PER_CALL: usize = 256;
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;
/// Longest actor, action or request id kept.
const MAX_TEXT: usize = 256;

pub(crate) struct AuditGrpc {
    store: AuditStore,
}

impl AuditGrpc {
    pub(crate) fn new(store: AuditStore) -> Self {
        Self { store }
    }
}

fn db_status(error: DbError) -> Status {
    match error {
        DbError::Unavailable(cause) => status::unavailable(&cause),
        DbError::Internal(cause) => status::internal(&cause),
    }
}

fn time(
    timestamp: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    timestamp
        .map(|t| {
            DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
                .ok_or_else(|| FieldError::new(field, "is not a valid time"))
        })
        .transpose()
}

fn text(field: &str, value: &str) -> Result<Option<String>, FieldError> {
    match value.trim() {
        "" => Ok(None),
        value if value.chars().count() > MAX_TEXT => Err(FieldError::new(
            field,
            format!("must be at most {MAX_TEXT} characters"),
        )),
        value => Ok(Some(value.to_owned())),
    }
}

fn filter(request: &pb::ListAuditRecordsRequest) -> Result<(Filter, i64), FieldError> {
    let page_size = match i64::from(request.page_size) {
        0 => DEFAULT_PAGE,
        size @ 1..=MAX_PAGE => size,
        _ => {
            return Err(FieldError::new(
                "page_size",
                format!("must be 0 to {MAX_PAGE}"),
            ));
        }
    };
    let before = match request.page_token.as_str() {
        "" => None,
        token => Some(
            token
                .parse::<i64>()
                .map_err(|_| FieldError::new("page_token", "is not a token this service made"))?,
        ),
    };
    let kind = text("kind", &request.kind)?;
    if let Some(kind) = &kind
        && kind != "admin"
        && kind != "payment"
    {
        return Err(FieldError::new("kind", "must be admin or payment"));
    }
    let action = text("action", &request.action)?;
    let action_prefix = action
        .as_deref()
        .is_some_and(|action| action.ends_with('*'));
    let (from, to) = (
        time(request.start_time.as_ref(), "start_time")?,
        time(request.end_time.as_ref(), "end_time")?,
    );
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(FieldError::new("end_time", "must be after start_time"));
    }
    Ok((
        Filter {
            actor: text("actor", &request.actor)?,
            action: action.map(|action| action.trim_end_matches('*').to_owned()),
            action_prefix,
            kind,
            request_id: text("request_id", &request.request_id)?,
            from,
            to,
            before,
        },
        page_size,
    ))
}

fn record_to_wire(record: Record) -> pb::AuditRecord {
    pb::AuditRecord {
        id: record.id.to_string(),
        record_time: Some(prost_types::Timestamp {
            seconds: record.at.timestamp(),
            nanos: record.at.timestamp_subsec_nanos() as i32,
        }),
        kind: record.kind,
        actor: record.actor,
        action: record.action,
        request_id: record.request_id,
        target: record.target,
        outcome: record
            .outcome
            .unwrap_or_else(|| "UNKNOWN_OUTCOME".to_owned()),
        amount_minor: record.amount_minor,
        currency_code: record.currency_code,
    }
}

/// The name of a gRPC status code, as the audit log writes outcomes.
fn code_name(code: i32) -> String {
    let name = format!("{:?}", Code::from_i32(code));
    // `Code`'s Debug is CamelCase: write it as gRPC spells it.
    let mut out = String::with_capacity(name.len() + 4);
    for (index, letter) in name.chars().enumerate() {
        if letter.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(letter.to_ascii_uppercase());
    }
    out
}

fn limited(field: &str, value: &str) -> Result<String, FieldError> {
    if value.len() > MAX_TEXT {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_TEXT} bytes"),
        ));
    }
    Ok(value.to_owned())
}

#[tonic::async_trait]
impl AuditService for AuditGrpc {
    #[tracing::instrument(skip_all)]
    async fn list_audit_records(
        &self,
        request: Request<pb::ListAuditRecordsRequest>,
    ) -> Result<Response<pb::ListAuditRecordsResponse>, Status> {
        if !Caller::of(&request).is_admin() {
            return Err(status::with_reason(
                Code::PermissionDenied,
                boxoffice_contracts::reason::ADMIN_REQUIRED,
                "this call needs the admin role",
            ));
        }
        let (filter, page_size) = filter(request.get_ref())?;
        let mut records = self
            .store
            .list(&filter, page_size + 1)
            .await
            .map_err(db_status)?;
        let more = records.len() as i64 > page_size;
        records.truncate(page_size as usize);
        let next_page_token = match (more, records.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditRecordsResponse {
            records: records.into_iter().map(record_to_wire).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn record_admin_actions(
        &self,
        request: Request<pb::RecordAdminActionsRequest>,
    ) -> Result<Response<pb::RecordAdminActionsResponse>, Status> {
        if !Caller::of(&request).has_role(Caller::SERVICE) {
            return Err(status::permission_denied("service-to-service only"));
        }
        let request = request.into_inner();
        if request.actions.len() > MAX_RECORDS_PER_CALL {
            return Err(FieldError::new("actions", "at most 256 a call").into());
        }
        if request.outcomes.len() > MAX_RECORDS_PER_CALL {
            return Err(FieldError::new("outcomes", "at most 256 a call").into());
        }
        let actions = request
            .actions
            .iter()
            .map(|action| {
                Ok(AdminAction {
                    actor: limited("actions.actor", &action.actor)?,
                    action: limited("actions.action", &action.action)?,
                    request_id: limited("actions.request_id", &action.request_id)?,
                })
            })
            .collect::<Result<Vec<_>, FieldError>>()?;
        let outcomes = request
            .outcomes
            .iter()
            .map(|outcome| {
                let id = outcome
                    .record_id
                    .parse::<i64>()
                    .map_err(|_| FieldError::new("outcomes.record_id", "is not a record id"))?;
                Ok((id, code_name(outcome.code)))
            })
            .collect::<Result<Vec<_>, FieldError>>()?;
        self.store
            .record_outcomes(&outcomes)
            .await
            .map_err(db_status)?;
        let ids = self.store.record_admin(&actions).await.map_err(db_status)?;
        Ok(Response::new(pb::RecordAdminActionsResponse {
            record_ids: ids.into_iter().map(|id| id.to_string()).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(3), "INVALID_ARGUMENT");
        assert_eq!(code_name(7), "PERMISSION_DENIED");
        assert_eq!(code_name(4), "DEADLINE_EXCEEDED");
    }
}
