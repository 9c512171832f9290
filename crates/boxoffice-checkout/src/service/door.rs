//! The door: scans online and offline, the scanner kit, conflicts, counts
//! and per-event door settings. Admins only (door staff, organisers). What
//! is decided once is decided by the store in one transaction
//! ([`crate::store::door`]); the code's signature is checked before, by
//! the caller (`grpc.rs`), without I/O.

use boxoffice_runtime::Caller;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Checkout, Result};
use crate::domain::door::RevokedCode;
use crate::error::CheckoutError;
use crate::store::door::{
    CheckInCounts, ConflictRecord, DoorSettings, ScanInput, ScanRecord, Scanned,
};

/// What an offline scanner downloads.
#[derive(Clone, Debug)]
pub struct ScannerKit {
    pub settings: DoorSettings,
    pub revoked: Vec<RevokedCode>,
    pub generated_at: DateTime<Utc>,
}

impl Checkout {
    fn door_staff(caller: &Caller) -> Result<()> {
        Self::user(caller)?;
        if caller.is_admin() {
            Ok(())
        } else {
            Err(CheckoutError::AdminRequired)
        }
    }

    async fn scan(&self, input: &ScanInput) -> Result<ScanRecord> {
        match self.store.scan(input).await? {
            Scanned::Answer(record) => Ok(record),
            Scanned::ScanIdReused => Err(CheckoutError::ScanIdReused),
        }
    }

    /// One online scan; the same scan id answers the same.
    pub async fn redeem_ticket(&self, caller: &Caller, input: ScanInput) -> Result<ScanRecord> {
        Self::door_staff(caller)?;
        self.scan(&input).await
    }

    /// An offline scanner's scans, judged one by one in order, and the
    /// conflicts they took part in.
    pub async fn upload_offline_scans(
        &self,
        caller: &Caller,
        scans: Vec<ScanInput>,
    ) -> Result<(Vec<ScanRecord>, Vec<ConflictRecord>)> {
        Self::door_staff(caller)?;
        let mut records = Vec::with_capacity(scans.len());
        for scan in &scans {
            records.push(self.scan(scan).await?);
        }
        let ids: Vec<String> = records
            .iter()
            .map(|record| record.scan_id.clone())
            .collect();
        let conflicts = self.store.conflicts_of(&ids).await?;
        Ok((records, conflicts))
    }

    pub async fn scanner_kit(&self, caller: &Caller, event_id: Uuid) -> Result<ScannerKit> {
        Self::door_staff(caller)?;
        let settings = self.store.door_settings(event_id).await?;
        let (revoked, generated_at) = self.store.revoked_codes(event_id).await?;
        Ok(ScannerKit {
            settings,
            revoked,
            generated_at,
        })
    }

    pub async fn scan_conflicts(
        &self,
        caller: &Caller,
        event_id: Uuid,
        after: i64,
        page_size: i64,
    ) -> Result<(Vec<ConflictRecord>, bool)> {
        Self::door_staff(caller)?;
        let mut conflicts = self.store.conflicts(event_id, after, page_size + 1).await?;
        let more = conflicts.len() as i64 > page_size;
        conflicts.truncate(page_size as usize);
        Ok((conflicts, more))
    }

    pub async fn check_in_counts(&self, caller: &Caller, event_id: Uuid) -> Result<CheckInCounts> {
        Self::door_staff(caller)?;
        Ok(self.store.check_in_counts(event_id).await?)
    }

    pub async fn update_door_settings(
        &self,
        caller: &Caller,
        event_id: Uuid,
        settings: DoorSettings,
    ) -> Result<DoorSettings> {
        Self::door_staff(caller)?;
        self.store.set_door_settings(event_id, &settings).await?;
        Ok(self.store.door_settings(event_id).await?)
    }
}
