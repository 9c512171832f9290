//! The tonic face of the door (`boxoffice.checkout.v1.DoorService`): gate,
//! event and scan fields parsed into domain values, each code's signature
//! checked here (no I/O) before the store judges the scan, and scans,
//! conflicts and counts turned back into messages.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use boxoffice_contracts::checkout::v1 as pb;
use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::domain::FieldError;
use crate::domain::door::{self, Direction, Gate, Refusal};
use crate::domain::ticket_code::{KEY_ALGORITHM, TicketSigner};
use crate::grpc::timestamp;
use crate::service::Checkout;
use crate::store::door::{
    ConflictRecord, DoorSettings, ScanInput, ScanOutcome, ScanRecord, ScanSide,
};

const DEFAULT_PAGE_SIZE: i32 = 50;
const MAX_PAGE_SIZE: i32 = 200;

#[derive(Clone)]
pub struct DoorGrpc {
    checkout: Arc<Checkout>,
    signer: TicketSigner,
}

impl DoorGrpc {
    pub fn new(checkout: Arc<Checkout>, signer: TicketSigner) -> Self {
        Self { checkout, signer }
    }

    /// A scan as the store takes it: fields checked, the code's signature
    /// verified (a forged code is an answer, not an error).
    fn scan_input(
        &self,
        field: &str,
        gate: &Gate,
        scan_id: &str,
        code: &str,
        direction: i32,
        offline_time: Option<DateTime<Utc>>,
    ) -> Result<ScanInput, FieldError> {
        let scan_id = door::parse_scan_id(&format!("{field}scan_id"), scan_id)?;
        let code = door::parse_code(&format!("{field}code"), code)?;
        let direction = match pb::ScanDirection::try_from(direction) {
            Ok(pb::ScanDirection::Unspecified | pb::ScanDirection::Entry) => Direction::Entry,
            Ok(pb::ScanDirection::Exit) => Direction::Exit,
            Err(_) => {
                return Err(FieldError::new(
                    format!("{field}direction"),
                    "must be ENTRY or EXIT",
                ));
            }
        };
        Ok(ScanInput {
            scan_id,
            gate: gate.clone(),
            code_sha256: Sha256::digest(code.as_bytes()).to_vec(),
            direction,
            offline_time,
            claims: self.signer.verify(&code),
        })
    }
}

fn time_of(
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    value
        .map(|value| {
            DateTime::from_timestamp(value.seconds, value.nanos.max(0) as u32)
                .ok_or_else(|| FieldError::new(field, "is not a valid time"))
        })
        .transpose()
}

fn scan_to_pb(record: &ScanRecord) -> pb::Scan {
    let (result, refusal) = match record.outcome {
        ScanOutcome::Admitted => (pb::ScanResult::Admitted, None),
        ScanOutcome::Exited => (pb::ScanResult::Exited, None),
        ScanOutcome::Conflict => (pb::ScanResult::Conflict, None),
        ScanOutcome::Refused(refusal) => (pb::ScanResult::Refused, Some(refusal)),
    };
    pb::Scan {
        scan_id: record.scan_id.clone(),
        gate: record.gate.name(),
        result: result as i32,
        refusal_reason: refusal.map(Refusal::as_str).unwrap_or_default().to_owned(),
        ticket: record
            .ticket
            .map(|ticket| ticket.name())
            .unwrap_or_default(),
        used_gate: record
            .used_gate
            .as_deref()
            .map(|gate| door::gate_name(record.gate.event_id, gate))
            .unwrap_or_default(),
        used_time: record.used_time.map(timestamp),
        scan_time: Some(timestamp(record.scan_time)),
        offline: record.offline,
    }
}

fn side_to_pb(side: &ScanSide) -> pb::ScanRef {
    pb::ScanRef {
        scan_id: side.scan_id.clone(),
        gate: side.gate.name(),
        scan_time: Some(timestamp(side.scan_time)),
        offline: side.offline,
    }
}

fn conflict_to_pb(conflict: &ConflictRecord) -> pb::ScanConflict {
    pb::ScanConflict {
        ticket: conflict.ticket.name(),
        winner: Some(side_to_pb(&conflict.winner)),
        loser: Some(side_to_pb(&conflict.loser)),
        detect_time: Some(timestamp(conflict.detected_at)),
    }
}

fn settings_to_pb(event_id: uuid::Uuid, settings: &DoorSettings) -> pb::DoorSettings {
    pb::DoorSettings {
        event: door::event_name(event_id),
        reentry_allowed: settings.reentry_allowed,
        doors_open_time: settings.doors_open_time.map(timestamp),
    }
}

fn decode_page_token(token: &str) -> Result<i64, FieldError> {
    if token.is_empty() {
        return Ok(0);
    }
    let bad = || FieldError::new("page_token", "is not a token this service issued");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    String::from_utf8(raw)
        .ok()
        .and_then(|raw| raw.strip_prefix("c:").and_then(|id| id.parse().ok()))
        .ok_or_else(bad)
}

#[tonic::async_trait]
impl pb::door_service_server::DoorService for DoorGrpc {
    #[instrument(skip_all, fields(gate = %request.get_ref().gate))]
    async fn redeem_ticket(
        &self,
        request: Request<pb::RedeemTicketRequest>,
    ) -> Result<Response<pb::Scan>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let gate = door::parse_gate("gate", &request.gate).map_err(Status::from)?;
        let input = self
            .scan_input(
                "",
                &gate,
                &request.scan_id,
                &request.code,
                request.direction,
                None,
            )
            .map_err(Status::from)?;
        let record = self.checkout.redeem_ticket(&caller, input).await?;
        Ok(Response::new(scan_to_pb(&record)))
    }

    #[instrument(skip_all, fields(event = %request.get_ref().event))]
    async fn get_scanner_kit(
        &self,
        request: Request<pb::GetScannerKitRequest>,
    ) -> Result<Response<pb::ScannerKit>, Status> {
        let caller = Caller::of(&request);
        let event_id =
            door::parse_event_name("event", &request.get_ref().event).map_err(Status::from)?;
        let kit = self.checkout.scanner_kit(&caller, event_id).await?;
        Ok(Response::new(pb::ScannerKit {
            event: door::event_name(event_id),
            key_algorithm: KEY_ALGORITHM.to_owned(),
            verification_key: self.signer.verifier().public_key().to_vec(),
            revoked: kit
                .revoked
                .iter()
                .map(|code| pb::RevokedCode {
                    ticket: code.ticket.name(),
                    nonce: code.nonce.to_string(),
                    reason: code.refusal.as_str().to_owned(),
                })
                .collect(),
            reentry_allowed: kit.settings.reentry_allowed,
            doors_open_time: kit.settings.doors_open_time.map(timestamp),
            generate_time: Some(timestamp(kit.generated_at)),
        }))
    }

    #[instrument(skip_all, fields(gate = %request.get_ref().gate, scans = request.get_ref().scans.len()))]
    async fn upload_offline_scans(
        &self,
        request: Request<pb::UploadOfflineScansRequest>,
    ) -> Result<Response<pb::UploadOfflineScansResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let gate = door::parse_gate("gate", &request.gate).map_err(Status::from)?;
        if request.scans.is_empty() || request.scans.len() > door::MAX_OFFLINE_SCANS {
            return Err(FieldError::new("scans", "must hold 1 to 500 scans").into());
        }
        let latest = Utc::now() + chrono::Duration::seconds(door::MAX_CLOCK_SKEW_SECONDS);
        let mut inputs = Vec::with_capacity(request.scans.len());
        for (index, scan) in request.scans.iter().enumerate() {
            let field = format!("scans[{index}].");
            let time_field = format!("{field}scan_time");
            let time = time_of(&time_field, scan.scan_time.as_ref())
                .map_err(Status::from)?
                .ok_or_else(|| Status::from(FieldError::new(&time_field, "is required")))?;
            if time > latest {
                return Err(FieldError::new(time_field, "is in the future").into());
            }
            inputs.push(
                self.scan_input(
                    &field,
                    &gate,
                    &scan.scan_id,
                    &scan.code,
                    scan.direction,
                    Some(time),
                )
                .map_err(Status::from)?,
            );
        }
        let (records, conflicts) = self.checkout.upload_offline_scans(&caller, inputs).await?;
        Ok(Response::new(pb::UploadOfflineScansResponse {
            scans: records.iter().map(scan_to_pb).collect(),
            conflicts: conflicts.iter().map(conflict_to_pb).collect(),
        }))
    }

    #[instrument(skip_all, fields(event = %request.get_ref().event))]
    async fn list_scan_conflicts(
        &self,
        request: Request<pb::ListScanConflictsRequest>,
    ) -> Result<Response<pb::ListScanConflictsResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let event_id = door::parse_event_name("event", &request.event).map_err(Status::from)?;
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if (1..=MAX_PAGE_SIZE).contains(&size) => size,
            _ => return Err(FieldError::new("page_size", "must be from 0 to 200").into()),
        };
        let after = decode_page_token(&request.page_token).map_err(Status::from)?;
        let (conflicts, more) = self
            .checkout
            .scan_conflicts(&caller, event_id, after, page_size as i64)
            .await?;
        let next_page_token = match (more, conflicts.last()) {
            (true, Some(last)) => URL_SAFE_NO_PAD.encode(format!("c:{}", last.id)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListScanConflictsResponse {
            conflicts: conflicts.iter().map(conflict_to_pb).collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(event = %request.get_ref().event))]
    async fn get_check_in_counts(
        &self,
        request: Request<pb::GetCheckInCountsRequest>,
    ) -> Result<Response<pb::CheckInCounts>, Status> {
        let caller = Caller::of(&request);
        let event_id =
            door::parse_event_name("event", &request.get_ref().event).map_err(Status::from)?;
        let counts = self.checkout.check_in_counts(&caller, event_id).await?;
        Ok(Response::new(pb::CheckInCounts {
            event: door::event_name(event_id),
            gates: counts
                .gates
                .iter()
                .map(|gate| pb::GateCounts {
                    gate: door::gate_name(event_id, &gate.gate_id),
                    admitted: gate.admitted,
                    exited: gate.exited,
                    refused: gate.refused,
                    conflicts: gate.conflicts,
                })
                .collect(),
            tickets_admitted: counts.tickets_admitted,
            tickets_inside: counts.tickets_inside,
            conflicts: counts.conflicts,
        }))
    }

    #[instrument(skip_all)]
    async fn update_door_settings(
        &self,
        request: Request<pb::UpdateDoorSettingsRequest>,
    ) -> Result<Response<pb::DoorSettings>, Status> {
        let caller = Caller::of(&request);
        let settings = request
            .into_inner()
            .settings
            .ok_or_else(|| Status::from(FieldError::new("settings", "is required")))?;
        let event_id =
            door::parse_event_name("settings.event", &settings.event).map_err(Status::from)?;
        let doors_open_time = time_of(
            "settings.doors_open_time",
            settings.doors_open_time.as_ref(),
        )
        .map_err(Status::from)?;
        let saved = self
            .checkout
            .update_door_settings(
                &caller,
                event_id,
                DoorSettings {
                    reentry_allowed: settings.reentry_allowed,
                    doors_open_time,
                },
            )
            .await?;
        Ok(Response::new(settings_to_pb(event_id, &saved)))
    }
}
