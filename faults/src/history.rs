//! The history: every operation a client invoked, with when it was invoked
//! and completed and how it ended (ok, fail: known not to have happened, or
//! unknown: it may or may not have), and every fault the nemesis injected.
//! It is what the checker judges, and it is written out as JSON lines.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Refused: known not to have taken effect.
    Fail,
    /// Timed out, connection lost, internal error: it may have taken effect.
    Unknown,
}

/// How a gRPC status ends an operation. Refusals the service decided on are
/// failures; anything that could have been cut short after the work was
/// done is unknown.
pub fn outcome_of(code: tonic::Code) -> Outcome {
    use tonic::Code;
    match code {
        Code::Ok => Outcome::Ok,
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unauthenticated
        | Code::ResourceExhausted
        | Code::Unimplemented => Outcome::Fail,
        Code::Cancelled
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => Outcome::Unknown,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Hold,
    CreateBooking,
    ConfirmBooking,
    CancelBooking,
    GetBooking,
    Register,
    Login,
}

/// One operation, invocation to completion.
#[derive(Clone, Debug, Serialize)]
pub struct Op {
    /// Who invoked it: `buyer-3`, `holder-1`, `rival-1`.
    pub process: String,
    pub kind: OpKind,
    /// Milliseconds since the run started.
    pub invoke_ms: u64,
    pub complete_ms: u64,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub booking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Seats asked for (explicit holds) or answered (holds, bookings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub seats: Vec<u32>,
    /// The booking's state in the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_minor: Option<i64>,
    /// A hold's expiry (Unix milliseconds) as the answer gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_unix_ms: Option<i64>,
    /// When it was invoked, in Unix milliseconds (to compare with expiries).
    pub invoke_unix_ms: i64,
    /// 1 for a first try, 2.. for retries with the same idempotency key.
    pub attempt: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    RedisKill,
    RedisPause,
    PostgresStopImmediate,
    PostgresKillPostmaster,
    PostgresPause,
    BoxofficeKill,
    BoxofficePause,
    PaysimKill,
    PaysimPause,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::RedisKill,
        FaultKind::PostgresStopImmediate,
        FaultKind::BoxofficeKill,
        FaultKind::PaysimKill,
        FaultKind::RedisPause,
        FaultKind::PostgresKillPostmaster,
        FaultKind::BoxofficePause,
        FaultKind::PaysimPause,
        FaultKind::PostgresPause,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FaultKind::RedisKill => "redis kill -9 + restart (empty)",
            FaultKind::RedisPause => "redis SIGSTOP/SIGCONT",
            FaultKind::PostgresStopImmediate => "postgres pg_ctl stop -m immediate",
            FaultKind::PostgresKillPostmaster => "postgres kill -9 postmaster",
            FaultKind::PostgresPause => "postgres SIGSTOP/SIGCONT (all)",
            FaultKind::BoxofficeKill => "boxoffice kill -9 + restart",
            FaultKind::BoxofficePause => "boxoffice SIGSTOP/SIGCONT",
            FaultKind::PaysimKill => "paysim kill -9 + restart (ledger kept)",
            FaultKind::PaysimPause => "paysim SIGSTOP/SIGCONT",
        }
    }

    /// The kind named by its short name (`redis-kill`, `box-pause`, …).
    pub fn from_short(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.short() == name)
    }

    pub fn short(self) -> &'static str {
        match self {
            FaultKind::RedisKill => "redis-kill",
            FaultKind::RedisPause => "redis-pause",
            FaultKind::PostgresStopImmediate => "pg-stop-imm",
            FaultKind::PostgresKillPostmaster => "pg-kill",
            FaultKind::PostgresPause => "pg-pause",
            FaultKind::BoxofficeKill => "box-kill",
            FaultKind::BoxofficePause => "box-pause",
            FaultKind::PaysimKill => "paysim-kill",
            FaultKind::PaysimPause => "paysim-pause",
        }
    }
}

/// One fault: when it began, when it was healed, and when the system
/// answered again.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub kind: FaultKind,
    pub start_ms: u64,
    pub heal_ms: u64,
    /// The first operation invoked after the heal that succeeded, if any
    /// did before the recovery deadline.
    pub first_ok_ms: Option<u64>,
    pub first_confirm_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Something the run noticed that is neither an operation nor a fault
/// (a process that exited by itself).
#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub at_ms: u64,
    pub text: String,
}

#[derive(Default)]
struct Inner {
    ops: Vec<Op>,
    faults: Vec<Fault>,
    notices: Vec<Notice>,
}

/// Shared by every client and the nemesis.
#[derive(Clone)]
pub struct Recorder {
    started: Instant,
    started_unix_ms: i64,
    inner: Arc<Mutex<Inner>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_unix_ms: chrono::Utc::now().timestamp_millis(),
            inner: Arc::default(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn unix_ms(&self, ms: u64) -> i64 {
        self.started_unix_ms + ms as i64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A client that panicked while recording poisons nothing we read:
        // every push is one statement.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn record(&self, op: Op) {
        self.lock().ops.push(op);
    }

    pub fn fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn notice(&self, text: String) {
        let at_ms = self.now_ms();
        self.lock().notices.push(Notice { at_ms, text });
    }

    /// The completion time of the first successful operation invoked at or
    /// after `since_ms` (of `kind`, if given).
    pub fn first_ok_after(&self, since_ms: u64, kind: Option<OpKind>) -> Option<u64> {
        self.lock()
            .ops
            .iter()
            .filter(|op| {
                op.invoke_ms >= since_ms
                    && op.outcome == Outcome::Ok
                    && kind.is_none_or(|kind| op.kind == kind)
            })
            .map(|op| op.complete_ms)
            .min()
    }

    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.lock().ops.clone();
        ops.sort_by_key(|op| (op.invoke_ms, op.complete_ms));
        ops
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    pub fn notices(&self) -> Vec<Notice> {
        self.lock().notices.clone()
    }

    /// `history.jsonl` (one operation a line, in invocation order),
    /// `faults.json` and `notices.json` in `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("history.jsonl"))?);
        for op in self.ops() {
            serde_json::to_writer(&mut out, &op)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        std::fs::write(
            dir.join("faults.json"),
            serde_json::to_vec_pretty(&self.faults())?,
        )?;
        std::fs::write(
            dir.join("notices.json"),
            serde_json::to_vec_pretty(&self.notices())?,
        )?;
        Ok(())
    }
}
