//! The edge's half of the audit log: every admin-only RPC that changes
//! something is recorded *before* it is forwarded, and its answer's status
//! after.
//!
//! The record before is write-ahead: the call waits until the audit service
//! has committed it (calls arriving together share one RPC and one commit,
//! through a group-commit batcher), and a call whose record cannot be
//! written is refused `UNAVAILABLE` (`AUDIT_UNAVAILABLE`) without reaching
//! its service. So no admin change happens unrecorded. The outcome after is
//! best effort: queued without waiting, sent in batches, retried a few
//! times; one that cannot be written (audit service down for long, queue
//! full, edge killed) leaves its record listed as `UNKNOWN_OUTCOME`, and is
//! counted (`boxoffice_edge_audit_outcomes_lost_total`) and logged.
//! Customer calls never touch any of this.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use boxoffice_contracts::audit::v1 as pb;
use boxoffice_contracts::audit::v1::audit_service_client::AuditServiceClient;
use boxoffice_runtime::Caller;
use boxoffice_runtime::batch::Batcher;
use boxoffice_runtime::transport::Transport;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The audit service the edge records admin calls with.
pub(crate) const AUDIT_SERVICE: &str = "boxoffice.audit.v1.AuditService";
/// Most actions or outcomes in one call (the service's limit).
const MAX_BATCH: usize = 256;
/// Outcomes waiting to be sent, at most.
const OUTCOME_QUEUE: usize = 16_384;
/// How long one record may take before the admin call is refused.
const RECORD_TIMEOUT: Duration = Duration::from_secs(5);

/// An admin call about to be forwarded.
pub(crate) struct Action {
    pub(crate) actor: Uuid,
    pub(crate) path: String,
    pub(crate) request_id: String,
}

pub(crate) struct AuditTrail {
    actions: Batcher<Action, String>,
    outcomes: mpsc::Sender<(String, i32)>,
    lost: Arc<AtomicU64>,
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    Caller::user(Uuid::nil(), &[Caller::SERVICE]).write_to(request.metadata_mut());
    request.set_timeout(RECORD_TIMEOUT);
    request
}

async fn record_actions(service: Transport, actions: Vec<Action>) -> Vec<anyhow::Result<String>> {
    let count = actions.len();
    let message = pb::RecordAdminActionsRequest {
        actions: actions
            .into_iter()
            .map(|action| pb::AdminAction {
                actor: action.actor.to_string(),
                action: action.path,
                request_id: action.request_id,
            })
            .collect(),
        outcomes: Vec::new(),
    };
    let answer = AuditServiceClient::new(service)
        .record_admin_actions(request(message))
        .await;
    match answer {
        Ok(answer) if answer.get_ref().record_ids.len() == count => {
            answer.into_inner().record_ids.into_iter().map(Ok).collect()
        }
        Ok(_) => (0..count)
            .map(|_| {
                Err(anyhow::anyhow!(
                    "the audit service answered another number of records"
                ))
            })
            .collect(),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "the audit service refused admin actions");
            (0..count)
                .map(|_| Err(anyhow::anyhow!("audit service: {:?}", status.code())))
                .collect()
        }
    }
}

/// Sends queued outcomes in batches until the queue closes.
async fn send_outcomes(
    service: Transport,
    mut queue: mpsc::Receiver<(String, i32)>,
    lost: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let message = pb::RecordAdminActionsRequest {
            actions: Vec::new(),
            outcomes: batch
                .drain(..)
                .map(|(record_id, code)| pb::AdminOutcome { record_id, code })
                .collect(),
        };
        let mut wait = Duration::from_millis(100);
        let mut sent = false;
        for _ in 0..5 {
            let client = AuditServiceClient::new(service.clone());
            if client
                .clone()
                .record_admin_actions(request(message.clone()))
                .await
                .is_ok()
            {
                sent = true;
                break;
            }
            tokio::time::sleep(wait).await;
            wait *= 4;
        }
        if !sent {
            lost.fetch_add(message.outcomes.len() as u64, Ordering::Relaxed);
            tracing::error!(
                outcomes = message.outcomes.len(),
                "admin call outcomes could not be recorded; their records show UNKNOWN_OUTCOME"
            );
        }
    }
}

impl AuditTrail {
    /// Starts the batcher and the outcome sender (inside a runtime).
    pub(crate) fn start(service: Transport, lost: Arc<AtomicU64>) -> Self {
        let writer = service.clone();
        let actions = Batcher::spawn_lingering(MAX_BATCH, Duration::ZERO, move |items| {
            record_actions(writer.clone(), items)
        });
        let (outcomes, queue) = mpsc::channel(OUTCOME_QUEUE);
        tokio::spawn(send_outcomes(service, queue, lost.clone()));
        Self {
            actions,
            outcomes,
            lost,
        }
    }

    /// Records an admin call before it is forwarded; answers the record's
    /// id, or an error when it could not be recorded (refuse the call).
    pub(crate) async fn record(&self, action: Action) -> anyhow::Result<String> {
        tokio::time::timeout(RECORD_TIMEOUT, self.actions.submit(action))
            .await
            .map_err(|_| anyhow::anyhow!("recording an admin action timed out"))?
    }

    /// Queues the answer of a recorded call (never waits).
    pub(crate) fn outcome(&self, record_id: String, code: i32) {
        if self.outcomes.try_send((record_id, code)).is_err() {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!("the admin outcome queue is full; an outcome is lost");
        }
    }
}
