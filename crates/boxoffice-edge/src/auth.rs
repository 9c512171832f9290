//! Bearer-token authentication with a bounded cache of verified tokens.
//!
//! An on-sale rush sends every buyer's token thousands of times; verifying
//! the HMAC and parsing the claims each time costs more than the rest of
//! the edge's per-request work. A token that verified once stays valid
//! until its `exp` (its signature, issuer, audience and `nbf` cannot change),
//! so successful verifications are cached, keyed by the full token string,
//! with the identity headers the upstream needs already rendered. Every hit
//! still checks `exp` against the clock, with the verifier's own leeway.
//! Failures are never cached: a bad token costs a verification every time,
//! exactly as before, and cannot push good ones out.
//!
//! The cache is an approximate LRU in two generations per shard: lookups
//! hit the young generation or promote from the old one; when the young one
//! is full it becomes the old one and the previous old one is dropped. So
//! at most `capacity` tokens are held, recently used ones survive, and every
//! operation is O(1).
//!
//! A cached token still has to pass the revocation check (see
//! [`crate::revocation`]): its session may have ended since it verified. A hit in the young generation (the steady state:
//! a buyer's token used again within the generation) takes only the
//! shard's read lock, so many requests carrying one token never wait on
//! each other; inserts and promotions take the write lock briefly.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use boxoffice_accounts::token::{LEEWAY_SECS, TokenError, TokenVerifier, VerifiedToken};
use http::HeaderValue;
use uuid::Uuid;

use crate::revocation::Revocations;

/// Verified tokens kept, edge-wide (a few hundred bytes each).
pub(crate) const TOKEN_CACHE_CAPACITY: usize = 32 * 1024;
const SHARDS: usize = 16;

/// A verified caller, as the proxy needs it.
#[derive(Debug)]
pub(crate) struct Identity {
    pub user_id: Uuid,
    pub is_admin: bool,
    /// Unix seconds.
    pub expires_at: u64,
    /// `x-boxoffice-user-id`, rendered once.
    pub user_header: Option<HeaderValue>,
    /// `x-boxoffice-roles` (comma-separated), rendered once.
    pub roles_header: Option<HeaderValue>,
    /// The token's session (`sid`), if it has one.
    pub session_id: Option<Uuid>,
    /// `x-boxoffice-session-id`, rendered once.
    pub session_header: Option<HeaderValue>,
    /// The revocation epoch at which this token was last found not revoked.
    checked_epoch: AtomicU64,
}

impl Identity {
    fn new(verified: VerifiedToken) -> Self {
        let mut text = Uuid::encode_buffer();
        let user = verified.user_id.hyphenated().encode_lower(&mut text);
        Self {
            user_id: verified.user_id,
            is_admin: verified
                .roles
                .iter()
                .any(|role| role == boxoffice_contracts::role::ADMIN),
            expires_at: verified.expires_at,
            user_header: HeaderValue::from_str(user).ok(),
            roles_header: HeaderValue::from_str(&verified.roles.join(",")).ok(),
            session_id: verified.session_id,
            session_header: verified
                .session_id
                .and_then(|session| HeaderValue::from_str(&session.to_string()).ok()),
            checked_epoch: AtomicU64::new(0),
        }
    }

    /// Whether the token has expired by `now` (unix seconds), with the same
    /// leeway the verifier grants.
    pub(crate) fn is_expired(&self, now: u64) -> bool {
        self.expires_at.saturating_add(LEEWAY_SECS) < now
    }
}

#[derive(Default)]
struct Shard {
    young: HashMap<Box<str>, Arc<Identity>>,
    old: HashMap<Box<str>, Arc<Identity>>,
}

pub(crate) struct Authenticator {
    verifier: TokenVerifier,
    shards: Box<[RwLock<Shard>]>,
    generation_size: usize,
    hasher: RandomState,
    revocations: Option<Arc<Revocations>>,
}

impl Authenticator {
    pub(crate) fn new(verifier: TokenVerifier) -> Self {
        Self::with_capacity(verifier, TOKEN_CACHE_CAPACITY)
    }

    pub(crate) fn with_capacity(verifier: TokenVerifier, capacity: usize) -> Self {
        Self {
            verifier,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            // Two generations per shard share the capacity.
            generation_size: (capacity / SHARDS / 2).max(1),
            hasher: RandomState::new(),
            revocations: None,
        }
    }

    /// Refuses tokens whose session is in `revocations`.
    pub(crate) fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    pub(crate) fn disable_revocations(&mut self) {
        self.revocations = None;
    }

    pub(crate) fn revocations(&self) -> Option<&Arc<Revocations>> {
        self.revocations.as_ref()
    }

    /// Whether the identity's session is revoked; looks in the set only
    /// when it changed since this identity was last checked.
    fn check_revocation(&self, identity: &Identity) -> Result<(), TokenError> {
        let (Some(revocations), Some(session)) = (&self.revocations, identity.session_id) else {
            return Ok(());
        };
        // Read before looking: a revocation inserts, then moves the epoch.
        let epoch = revocations.epoch();
        if identity.checked_epoch.load(Ordering::Relaxed) == epoch {
            return Ok(());
        }
        if revocations.is_revoked(&session) {
            return Err(TokenError::Revoked);
        }
        identity.checked_epoch.store(epoch, Ordering::Relaxed);
        Ok(())
    }

    /// The caller a bearer token proves, from the cache when it verified
    /// before. `now` is unix seconds.
    pub(crate) fn authenticate(&self, token: &str, now: u64) -> Result<Arc<Identity>, TokenError> {
        let shard = &self.shards[(self.hasher.hash_one(token) as usize) % SHARDS];
        let young = shard
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .young
            .get(token)
            .cloned();
        let cached = match young {
            Some(identity) => Some(identity),
            None => {
                let mut shard = shard
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match shard.young.get(token).cloned() {
                    Some(identity) => Some(identity),
                    None => match shard.old.remove_entry(token) {
                        Some((key, identity)) => {
                            self.insert(&mut shard, key, identity.clone());
                            Some(identity)
                        }
                        None => None,
                    },
                }
            }
        };
        if let Some(identity) = cached {
            if identity.is_expired(now) {
                shard
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .young
                    .remove(token);
                return Err(TokenError::Expired);
            }
            self.check_revocation(&identity)?;
            return Ok(identity);
        }
        // Verified outside the lock: HMAC and JSON take microseconds.
        let identity = Arc::new(Identity::new(self.verifier.verify(token)?));
        if identity.is_expired(now) {
            return Err(TokenError::Expired);
        }
        self.check_revocation(&identity)?;
        let mut shard = shard
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.insert(&mut shard, token.into(), identity.clone());
        Ok(identity)
    }

    fn insert(&self, shard: &mut Shard, token: Box<str>, identity: Arc<Identity>) {
        if shard.young.len() >= self.generation_size {
            shard.old = std::mem::take(&mut shard.young);
            shard.young.reserve(self.generation_size);
        }
        shard.young.insert(token, identity);
    }

    /// Tokens held (tests).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                shard.young.len() + shard.old.len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use boxoffice_accounts::TokenConfig;
    use boxoffice_accounts::token::{AccessClaims, TokenIssuer, unix_now};

    use super::*;

    fn claims(config: &TokenConfig, exp: u64, roles: &[&str]) -> AccessClaims {
        let now = unix_now();
        AccessClaims {
            sub: Uuid::new_v4().to_string(),
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
            iat: now,
            nbf: now,
            exp,
            jti: Uuid::new_v4().to_string(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            sid: Some(Uuid::new_v4().to_string()),
        }
    }

    #[test]
    fn a_verified_token_is_served_from_the_cache_until_it_expires() {
        let config = TokenConfig::ephemeral();
        let issuer = TokenIssuer::new(&config);
        let auth = Authenticator::new(TokenVerifier::new(&config));
        let now = unix_now();
        let token = issuer
            .sign_claims(&claims(&config, now + 60, &["customer", "admin"]))
            .unwrap();
        let first = auth.authenticate(&token, now).unwrap();
        assert!(first.is_admin);
        assert_eq!(first.roles_header.as_ref().unwrap(), "customer,admin");
        assert_eq!(
            first.user_header.as_ref().unwrap(),
            first.user_id.to_string().as_str()
        );
        let second = auth.authenticate(&token, now).unwrap();
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second call is a cache hit"
        );
        // Past exp (and the leeway), the cached entry no longer counts.
        assert!(matches!(
            auth.authenticate(&token, now + 60 + LEEWAY_SECS + 1),
            Err(TokenError::Expired)
        ));
        assert_eq!(auth.cached(), 0);
    }

    #[test]
    fn failures_are_not_cached_and_a_tampered_token_never_hits() {
        let config = TokenConfig::ephemeral();
        let issuer = TokenIssuer::new(&config);
        let auth = Authenticator::new(TokenVerifier::new(&config));
        let now = unix_now();
        let token = issuer
            .sign_claims(&claims(&config, now + 60, &["customer"]))
            .unwrap();
        auth.authenticate(&token, now).unwrap();
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            auth.authenticate(&tampered, now),
            Err(TokenError::Invalid)
        ));
        let foreign = TokenIssuer::new(&TokenConfig::ephemeral())
            .sign_claims(&claims(&config, now + 60, &["admin"]))
            .unwrap();
        assert!(auth.authenticate(&foreign, now).is_err());
        assert_eq!(auth.cached(), 1);
    }

    #[test]
    fn a_revoked_session_is_refused_even_from_the_cache() {
        let config = TokenConfig::ephemeral();
        let issuer = TokenIssuer::new(&config);
        let revocations = Arc::new(Revocations::new());
        let auth =
            Authenticator::new(TokenVerifier::new(&config)).with_revocations(revocations.clone());
        let now = unix_now();
        let session = Uuid::new_v4();
        let (token, _) = issuer.issue(Uuid::new_v4(), session, &[]).unwrap();
        let (other, _) = issuer.issue(Uuid::new_v4(), Uuid::new_v4(), &[]).unwrap();
        auth.authenticate(&token, now).unwrap();
        auth.authenticate(&other, now).unwrap();
        revocations.revoke(session, now + 600);
        assert!(matches!(
            auth.authenticate(&token, now),
            Err(TokenError::Revoked)
        ));
        auth.authenticate(&other, now).unwrap();
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_recent_tokens() {
        let config = TokenConfig::ephemeral();
        let issuer = TokenIssuer::new(&config);
        let capacity = 64;
        let auth = Authenticator::with_capacity(TokenVerifier::new(&config), capacity);
        let now = unix_now();
        let hot = issuer
            .sign_claims(&claims(&config, now + 600, &["customer"]))
            .unwrap();
        let hot_identity = auth.authenticate(&hot, now).unwrap();
        for _ in 0..10 * capacity {
            let token = issuer
                .sign_claims(&claims(&config, now + 600, &["customer"]))
                .unwrap();
            auth.authenticate(&token, now).unwrap();
            // The hot token keeps being used, so it is never evicted.
            assert!(Arc::ptr_eq(
                &auth.authenticate(&hot, now).unwrap(),
                &hot_identity
            ));
        }
        assert!(auth.cached() <= capacity, "{} cached", auth.cached());
    }
}
