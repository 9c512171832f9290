//! The waiting room's rules: a room's settings, admission tokens and the
//! arithmetic of a place in line. A token is the claims (user, event, expiry) plus an HMAC-SHA256 over
//! them, so any inventory instance holding the key checks it without asking
//! Redis who was let through. The signature is checked here, without a
//! clock; the expiry is compared with Redis server time by `hold.lua`.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Format version, first in every token.
const VERSION: &str = "wr1";

/// Highest admission rate an admin may set (people per second).
pub const MAX_ADMISSION_RATE: u32 = 100_000;

/// A room's settings, valid by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomSettings {
    pub enabled: bool,
    /// 1..=MAX_ADMISSION_RATE when enabled.
    pub rate: u32,
    /// 0: admission starts when the room is turned on.
    pub opens_ms: i64,
    /// Most admitted shoppers at once (admitted, not yet done: bought,
    /// released or expired); 0 for no cap.
    pub max_active: u32,
}

/// Highest cap on active shoppers an admin may set.
pub const MAX_ACTIVE_SHOPPERS: u32 = 1_000_000;

/// How fast the line moves, in admissions per 1,000 seconds: the measured
/// pace once there is one (the cap and departures, not only the rate, set
/// it), the configured rate before.
pub fn pace_per_kilosecond(rate: u64, measured_per_kilosecond: u64) -> u64 {
    if measured_per_kilosecond > 0 {
        measured_per_kilosecond
    } else {
        rate.saturating_mul(1_000)
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionRefusal {
    /// No token at all.
    Missing,
    /// Garbled, forged, or issued to another user or for another event.
    Invalid,
    Expired,
    /// A genuine, unexpired token whose admission is over: its holder
    /// bought, released, or let the admission run out (one hold sequence
    /// per admission).
    Used,
}

/// What a hold request's token proves once its signature is checked: the
/// room (if on) still has to compare `Until` with its own clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionClaim {
    Missing,
    Invalid,
    /// A genuine token for this user and event, good until this Redis time.
    Until(i64),
}

impl AdmissionClaim {
    /// Why a hold is refused while the room is on, at `now_ms`.
    pub fn refusal(self, now_ms: i64) -> Option<AdmissionRefusal> {
        match self {
            Self::Missing => Some(AdmissionRefusal::Missing),
            Self::Invalid => Some(AdmissionRefusal::Invalid),
            Self::Until(expires_ms) if expires_ms <= now_ms => Some(AdmissionRefusal::Expired),
            Self::Until(_) => None,
        }
    }
}

/// Signs and checks admission tokens with one key.
#[derive(Clone)]
pub struct AdmissionSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for AdmissionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionSigner(***)")
    }
}

fn payload(user_id: Uuid, event_id: Uuid, expires_ms: i64) -> String {
    format!(
        "{VERSION}.{}.{}.{expires_ms}",
        user_id.simple(),
        event_id.simple()
    )
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

impl AdmissionSigner {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self) -> HmacSha256 {
        match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("hmac takes keys of any length"),
        }
    }

    /// `wr1.{user}.{event}.{expires_ms}.{hex signature}`.
    pub fn sign(&self, user_id: Uuid, event_id: Uuid, expires_ms: i64) -> String {
        let payload = payload(user_id, event_id, expires_ms);
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        format!("{payload}.{}", hex(&mac.finalize().into_bytes()))
    }

    /// Checks the signature, user and event of a hold's token (an empty
    /// token is `Missing`); the expiry is left to whoever has the clock.
    pub fn claim(&self, token: &str, user_id: Uuid, event_id: Uuid) -> AdmissionClaim {
        if token.is_empty() {
            return AdmissionClaim::Missing;
        }
        match self.expiry_of(token, user_id, event_id) {
            Some(expires_ms) => AdmissionClaim::Until(expires_ms),
            None => AdmissionClaim::Invalid,
        }
    }

    fn expiry_of(&self, token: &str, user_id: Uuid, event_id: Uuid) -> Option<i64> {
        let (signed, signature) = token.rsplit_once('.')?;
        let signature = unhex(signature)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature).ok()?;
        let expires_ms: i64 = signed
            .rsplit_once('.')
            .and_then(|(_, expiry)| expiry.parse().ok())?;
        (signed == payload(user_id, event_id, expires_ms)).then_some(expires_ms)
    }

    /// Accepts a genuine token for exactly this user and event that has not
    /// expired by `now_ms` (the Redis server's clock).
    pub fn verify(
        &self,
        token: &str,
        user_id: Uuid,
        event_id: Uuid,
        now_ms: i64,
    ) -> Result<(), AdmissionRefusal> {
        match self.claim(token, user_id, event_id).refusal(now_ms) {
            // An empty token is simply not a valid one here.
            Some(AdmissionRefusal::Missing) => Err(AdmissionRefusal::Invalid),
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }
}

/// Where someone stands, from their join number and the room's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    pub join_number: u64,
    /// People still to be let through before this one, themselves included;
    /// 0 once admitted.
    pub position: u64,
    pub estimated_wait_ms: i64,
}

impl Standing {
    /// `pace` is admissions per 1,000 seconds (see `pace_per_kilosecond`).
    pub fn new(join_number: u64, admitted: u64, pace: u64, opens_ms: i64, now_ms: i64) -> Self {
        let position = join_number.saturating_sub(admitted);
        let until_open = (opens_ms - now_ms).max(0);
        let queued_ms = position.saturating_mul(1_000_000) / pace.max(1);
        Self {
            join_number,
            position,
            estimated_wait_ms: if position == 0 {
                0
            } else {
                until_open.saturating_add(i64::try_from(queued_ms).unwrap_or(i64::MAX))
            },
        }
    }

    pub fn admitted(&self) -> bool {
        self.position == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_user_event_and_time() {
        let signer = AdmissionSigner::new(b"a key of sixteen bytes");
        let (user, event) = (Uuid::new_v4(), Uuid::new_v4());
        let token = signer.sign(user, event, 2_000);
        assert_eq!(signer.verify(&token, user, event, 1_000), Ok(()));
        assert_eq!(
            signer.verify(&token, user, event, 2_000),
            Err(AdmissionRefusal::Expired)
        );
        assert_eq!(
            signer.verify(&token, Uuid::new_v4(), event, 1_000),
            Err(AdmissionRefusal::Invalid)
        );
        assert_eq!(
            signer.verify(&token, user, Uuid::new_v4(), 1_000),
            Err(AdmissionRefusal::Invalid)
        );
        let other = AdmissionSigner::new(b"another key entirely");
        assert_eq!(
            other.verify(&token, user, event, 1_000),
            Err(AdmissionRefusal::Invalid)
        );
        let forged = token.replace(".2000.", ".9000.");
        assert_eq!(
            signer.verify(&forged, user, event, 1_000),
            Err(AdmissionRefusal::Invalid)
        );
        for junk in ["", "wr1", "wr1.x.y.z.zz", "é.é"] {
            assert_eq!(
                signer.verify(junk, user, event, 1_000),
                Err(AdmissionRefusal::Invalid)
            );
        }
    }

    #[test]
    fn claims_leave_the_expiry_to_the_clock_holder() {
        let signer = AdmissionSigner::new(b"a key of sixteen bytes");
        let (user, event) = (Uuid::new_v4(), Uuid::new_v4());
        let token = signer.sign(user, event, 2_000);
        assert_eq!(
            signer.claim(&token, user, event),
            AdmissionClaim::Until(2_000)
        );
        assert_eq!(signer.claim("", user, event), AdmissionClaim::Missing);
        assert_eq!(
            signer.claim(&token, user, Uuid::new_v4()),
            AdmissionClaim::Invalid
        );
        assert_eq!(AdmissionClaim::Until(2_000).refusal(1_999), None);
        assert_eq!(
            AdmissionClaim::Until(2_000).refusal(2_000),
            Some(AdmissionRefusal::Expired)
        );
        assert_eq!(
            AdmissionClaim::Missing.refusal(0),
            Some(AdmissionRefusal::Missing)
        );
    }

    #[test]
    fn standings_count_down_to_admission() {
        let waiting = Standing::new(10, 4, pace_per_kilosecond(2, 0), 0, 1_000);
        assert_eq!(waiting.position, 6);
        assert_eq!(waiting.estimated_wait_ms, 3_000);
        assert!(!waiting.admitted());
        // The cap holds the line to half a person a second: the estimate
        // follows the measured pace, not the configured rate.
        let capped = Standing::new(10, 4, pace_per_kilosecond(2, 500), 0, 1_000);
        assert_eq!(capped.estimated_wait_ms, 12_000);
        let before_opening = Standing::new(1, 0, pace_per_kilosecond(10, 0), 5_000, 1_000);
        assert_eq!(before_opening.estimated_wait_ms, 4_100);
        let through = Standing::new(3, 7, 2_000, 0, 1_000);
        assert!(through.admitted());
        assert_eq!(through.estimated_wait_ms, 0);
    }
}
