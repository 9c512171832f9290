//! `boxoffice.notify.v1.SupportService`: customer questions. A question is
//! its asker's (anyone else but an admin gets NOT_FOUND); a booking named
//! in a question must be the asker's own (checked with checkout, as the
//! asker); answers are admins' and are mailed through the sender.

use std::sync::Arc;

use boxoffice_contracts::checkout::v1 as checkout_pb;
use boxoffice_contracts::checkout::v1::checkout_service_client::CheckoutServiceClient;
use boxoffice_contracts::notify::v1 as pb;
use boxoffice_contracts::notify::v1::support_service_server::SupportService;
use boxoffice_runtime::field::{FieldError, optional_id};
use boxoffice_runtime::identity::Caller;
use boxoffice_runtime::transport::Transport;
use chrono::{DateTime, Utc};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::NotifyError;
use crate::questions::{Answered, MAX_SUBJECT_CHARS, MAX_TEXT_CHARS, QuestionRecord, Questions};

pub(crate) struct SupportGrpc {
    questions: Questions,
    checkout: Transport,
    wake: Arc<tokio::sync::Notify>,
}

impl SupportGrpc {
    pub(crate) fn new(
        questions: Questions,
        checkout: Transport,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            questions,
            checkout,
            wake,
        }
    }

    /// The question if `caller` may see it: its asker or an admin.
    async fn visible(&self, caller: &Caller, name: &str) -> Result<QuestionRecord, NotifyError> {
        let id = parse_name(name)?;
        let user = caller.user_id.ok_or(NotifyError::LoginRequired)?;
        match self.questions.get(id).await? {
            Some(question) if question.user_id == user || caller.is_admin() => Ok(question),
            _ => Err(NotifyError::NotFound {
                what: "question",
                id: name.to_owned(),
            }),
        }
    }

    /// Checks that `booking_id` is `user`'s, asking checkout as `user`.
    async fn owns_booking(&self, user: Uuid, booking_id: Uuid) -> Result<(), NotifyError> {
        let mut client = CheckoutServiceClient::new(self.checkout.clone());
        let mut request = tonic::Request::new(checkout_pb::GetBookingRequest {
            name: format!("bookings/{booking_id}"),
        });
        Caller::user(user, &[boxoffice_contracts::role::CUSTOMER]).write_to(request.metadata_mut());
        match client.get_booking(request).await {
            Ok(booking) if booking.get_ref().user_id == user.to_string() => Ok(()),
            Ok(_) => Err(booking_not_found(booking_id)),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(booking_not_found(booking_id))
            }
            Err(status) => Err(NotifyError::DependencyUnavailable(anyhow::anyhow!(
                "reading a booking from checkout: {:?}",
                status.code()
            ))),
        }
    }
}

fn booking_not_found(booking_id: Uuid) -> NotifyError {
    NotifyError::NotFound {
        what: "booking",
        id: format!("bookings/{booking_id}"),
    }
}

fn parse_name(name: &str) -> Result<Uuid, NotifyError> {
    name.strip_prefix("questions/")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| FieldError::new("name", "must be questions/{question_id}").into())
}

fn text(field: &str, value: &str, max: usize) -> Result<String, NotifyError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(FieldError::new(field, format!("must be 1 to {max} characters")).into());
    }
    Ok(value.to_owned())
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

fn state_to_pb(state: &str) -> pb::QuestionState {
    match state {
        "open" => pb::QuestionState::Open,
        "answered" => pb::QuestionState::Answered,
        "closed" => pb::QuestionState::Closed,
        _ => pb::QuestionState::Unspecified,
    }
}

fn question_to_pb(question: &QuestionRecord) -> pb::Question {
    pb::Question {
        name: format!("questions/{}", question.id),
        user_id: question.user_id.to_string(),
        event_id: question
            .event_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        booking_id: question
            .booking_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        subject: question.subject.clone(),
        text: question.text.clone(),
        state: state_to_pb(&question.state) as i32,
        answers: question
            .answers
            .iter()
            .map(|answer| pb::Answer {
                text: answer.text.clone(),
                create_time: Some(timestamp(answer.created_at)),
            })
            .collect(),
        create_time: Some(timestamp(question.created_at)),
        update_time: Some(timestamp(question.updated_at)),
    }
}

fn parse_page_token(token: &str) -> Result<Option<(DateTime<Utc>, Uuid)>, NotifyError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        NotifyError::from(FieldError::new(
            "page_token",
            "is not a token this service gave",
        ))
    };
    let (micros, id) = token.split_once('_').ok_or_else(invalid)?;
    let time = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    Ok(Some((time, Uuid::parse_str(id).map_err(|_| invalid())?)))
}

#[tonic::async_trait]
impl SupportService for SupportGrpc {
    #[tracing::instrument(skip_all)]
    async fn open_question(
        &self,
        request: Request<pb::OpenQuestionRequest>,
    ) -> Result<Response<pb::Question>, Status> {
        let user = Caller::of(&request)
            .user_id
            .ok_or(NotifyError::LoginRequired)?;
        let request = request.into_inner();
        let event_id = optional_id("event_id", &request.event_id).map_err(NotifyError::from)?;
        let booking_id = optional_id("booking", request.booking.trim_start_matches("bookings/"))
            .map_err(NotifyError::from)?;
        let subject = text("subject", &request.subject, MAX_SUBJECT_CHARS)?;
        let body = text("text", &request.text, MAX_TEXT_CHARS)?;
        if let Some(booking_id) = booking_id {
            self.owns_booking(user, booking_id).await?;
        }
        let question = self
            .questions
            .open(user, event_id, booking_id, &subject, &body)
            .await
            .map_err(NotifyError::from)?;
        Ok(Response::new(question_to_pb(&question)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_question(
        &self,
        request: Request<pb::GetQuestionRequest>,
    ) -> Result<Response<pb::Question>, Status> {
        let caller = Caller::of(&request);
        let question = self.visible(&caller, &request.get_ref().name).await?;
        Ok(Response::new(question_to_pb(&question)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_questions(
        &self,
        request: Request<pb::ListQuestionsRequest>,
    ) -> Result<Response<pb::ListQuestionsResponse>, Status> {
        let caller = Caller::of(&request);
        let user = caller.user_id.ok_or(NotifyError::LoginRequired)?;
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => 20,
            size @ 1..=100 => i64::from(size),
            _ => {
                return Err(NotifyError::from(FieldError::new(
                    "page_size",
                    "must be 1 to 100 (0 means 20)",
                ))
                .into());
            }
        };
        let state = match pb::QuestionState::try_from(request.state) {
            Ok(pb::QuestionState::Open) => Some("open"),
            Ok(pb::QuestionState::Answered) => Some("answered"),
            Ok(pb::QuestionState::Closed) => Some("closed"),
            _ => None,
        };
        let after = parse_page_token(&request.page_token)?;
        // Admins see everyone's; anyone else their own.
        let owner = if caller.is_admin() { None } else { Some(user) };
        let mut questions = self
            .questions
            .list(owner, state, page_size + 1, after)
            .await
            .map_err(NotifyError::from)?;
        let next_page_token = if questions.len() as i64 > page_size {
            questions.truncate(page_size as usize);
            questions
                .last()
                .map(|last| {
                    format!(
                        "{}_{}",
                        last.created_at.timestamp_micros(),
                        last.id.simple()
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListQuestionsResponse {
            questions: questions.iter().map(question_to_pb).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn answer_question(
        &self,
        request: Request<pb::AnswerQuestionRequest>,
    ) -> Result<Response<pb::Question>, Status> {
        let caller = Caller::of(&request);
        let admin = caller.user_id.ok_or(NotifyError::LoginRequired)?;
        if !caller.is_admin() {
            return Err(NotifyError::AdminRequired.into());
        }
        let request = request.into_inner();
        let id = parse_name(&request.name)?;
        let answer = text("text", &request.text, MAX_TEXT_CHARS)?;
        match self
            .questions
            .answer(id, admin, &answer)
            .await
            .map_err(NotifyError::from)?
        {
            Answered::Done(question) => {
                self.wake.notify_one();
                Ok(Response::new(question_to_pb(&question)))
            }
            Answered::Closed => Err(NotifyError::QuestionClosed.into()),
            Answered::NotFound => Err(NotifyError::NotFound {
                what: "question",
                id: request.name,
            }
            .into()),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn close_question(
        &self,
        request: Request<pb::CloseQuestionRequest>,
    ) -> Result<Response<pb::Question>, Status> {
        let caller = Caller::of(&request);
        let name = request.into_inner().name;
        let question = self.visible(&caller, &name).await?;
        let closed = self
            .questions
            .close(question.id)
            .await
            .map_err(NotifyError::from)?
            .ok_or(NotifyError::NotFound {
                what: "question",
                id: name,
            })?;
        Ok(Response::new(question_to_pb(&closed)))
    }
}
