//! Customer questions in the `notify` schema: a user's question about an
//! event or one of their bookings, admins' answers, and the mail of each
//! answer, recorded in the answer's transaction (so an answer is mailed
//! once, by the sender, like every other message).

use boxoffice_runtime::postgres::{DbContext as _, DbResult};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::message::Facts;

pub(crate) const MAX_SUBJECT_CHARS: usize = 200;
pub(crate) const MAX_TEXT_CHARS: usize = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AnswerRecord {
    pub(crate) text: String,
    pub(crate) created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QuestionRecord {
    pub(crate) id: Uuid,
    pub(crate) user_id: Uuid,
    pub(crate) event_id: Option<Uuid>,
    pub(crate) booking_id: Option<Uuid>,
    pub(crate) subject: String,
    pub(crate) text: String,
    /// `open`, `answered` or `closed`.
    pub(crate) state: String,
    pub(crate) answers: Vec<AnswerRecord>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

/// What answering found.
pub(crate) enum Answered {
    Done(QuestionRecord),
    NotFound,
    Closed,
}

fn question(row: &tokio_postgres::Row) -> QuestionRecord {
    QuestionRecord {
        id: row.get("id"),
        user_id: row.get("user_id"),
        event_id: row.get("event_id"),
        booking_id: row.get("booking_id"),
        subject: row.get("subject"),
        text: row.get("body"),
        state: row.get("state"),
        answers: Vec::new(),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

#[derive(Clone)]
pub(crate) struct Questions {
    pool: Pool,
}

impl Questions {
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn with_answers(
        client: &(impl tokio_postgres::GenericClient + Sync),
        mut questions: Vec<QuestionRecord>,
    ) -> DbResult<Vec<QuestionRecord>> {
        let ids: Vec<Uuid> = questions.iter().map(|q| q.id).collect();
        let rows = client
            .query(
                "SELECT question_id, body, created_at FROM notify.answers
                  WHERE question_id = ANY($1) ORDER BY created_at, id",
                &[&ids],
            )
            .await
            .db_context("reading answers")?;
        for row in rows {
            let id: Uuid = row.get(0);
            if let Some(question) = questions.iter_mut().find(|q| q.id == id) {
                question.answers.push(AnswerRecord {
                    text: row.get(1),
                    created_at: row.get(2),
                });
            }
        }
        Ok(questions)
    }

    pub(crate) async fn open(
        &self,
        user_id: Uuid,
        event_id: Option<Uuid>,
        booking_id: Option<Uuid>,
        subject: &str,
        text: &str,
    ) -> DbResult<QuestionRecord> {
        let client = self.pool.get().await.db_context("connecting")?;
        let row = client
            .query_one(
                "INSERT INTO notify.questions (id, user_id, event_id, booking_id, subject, body)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
                &[
                    &Uuid::now_v7(),
                    &user_id,
                    &event_id,
                    &booking_id,
                    &subject,
                    &text,
                ],
            )
            .await
            .db_context("opening a question")?;
        Ok(question(&row))
    }

    pub(crate) async fn get(&self, id: Uuid) -> DbResult<Option<QuestionRecord>> {
        let client = self.pool.get().await.db_context("connecting")?;
        let row = client
            .query_opt("SELECT * FROM notify.questions WHERE id = $1", &[&id])
            .await
            .db_context("reading a question")?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Self::with_answers(&**client, vec![question(&row)])
                .await?
                .pop()),
        }
    }

    /// A page, newest first: `user`'s questions, or everyone's (`None`),
    /// optionally in one `state`.
    pub(crate) async fn list(
        &self,
        user: Option<Uuid>,
        state: Option<&str>,
        limit: i64,
        after: Option<(DateTime<Utc>, Uuid)>,
    ) -> DbResult<Vec<QuestionRecord>> {
        let client = self.pool.get().await.db_context("connecting")?;
        let (after_time, after_id) = after.map_or((None, None), |(t, i)| (Some(t), Some(i)));
        let rows = client
            .query(
                "SELECT * FROM notify.questions
                  WHERE ($1::uuid IS NULL OR user_id = $1)
                    AND ($2::text IS NULL OR state = $2)
                    AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                  ORDER BY created_at DESC, id DESC
                  LIMIT $5",
                &[&user, &state, &after_time, &after_id, &limit],
            )
            .await
            .db_context("listing questions")?;
        Self::with_answers(&**client, rows.iter().map(question).collect()).await
    }

    /// Adds `admin`'s answer and records its mail, in one transaction.
    pub(crate) async fn answer(&self, id: Uuid, admin: Uuid, text: &str) -> DbResult<Answered> {
        let mut client = self.pool.get().await.db_context("connecting")?;
        let transaction = client.transaction().await.db_context("beginning")?;
        let Some(row) = transaction
            .query_opt(
                "SELECT * FROM notify.questions WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .db_context("reading a question")?
        else {
            return Ok(Answered::NotFound);
        };
        let found = question(&row);
        if found.state == "closed" {
            return Ok(Answered::Closed);
        }
        let answer_id = Uuid::now_v7();
        transaction
            .execute(
                "INSERT INTO notify.answers (id, question_id, admin_id, body) VALUES ($1, $2, $3, $4)",
                &[&answer_id, &id, &admin, &text],
            )
            .await
            .db_context("recording an answer")?;
        let row = transaction
            .query_one(
                "UPDATE notify.questions SET state = 'answered', updated_at = now()
                  WHERE id = $1 RETURNING *",
                &[&id],
            )
            .await
            .db_context("marking a question answered")?;
        let facts = Facts::QuestionAnswered {
            question_id: id,
            subject: found.subject.clone(),
            answer: text.to_owned(),
        };
        crate::store::insert_message(&transaction, answer_id, found.user_id, &facts).await?;
        let answered = Self::with_answers(&*transaction, vec![question(&row)])
            .await?
            .pop();
        transaction
            .commit()
            .await
            .db_context("committing an answer")?;
        Ok(answered.map_or(Answered::NotFound, Answered::Done))
    }

    pub(crate) async fn close(&self, id: Uuid) -> DbResult<Option<QuestionRecord>> {
        let client = self.pool.get().await.db_context("connecting")?;
        let row = client
            .query_opt(
                "UPDATE notify.questions SET state = 'closed', updated_at = now()
                  WHERE id = $1 RETURNING *",
                &[&id],
            )
            .await
            .db_context("closing a question")?;
        match row {
            None => Ok(None),
            Some(row) => Ok(Self::with_answers(&**client, vec![question(&row)])
                .await?
                .pop()),
        }
    }
}
