//! The pre-queue draw: everyone who joined a waiting room before it opened
//! gets a place drawn from a seed generated at opening. The order is a pure
//! function of the seed and the set of joiners, so anyone holding the
//! published seed and the joiner list can recompute it (`draw_order` is the
//! audit), and arrival order before opening counts for nothing.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Bytes in a draw seed.
pub const SEED_LEN: usize = 32;

/// A draw's seed, fixed at opening.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DrawSeed([u8; SEED_LEN]);

impl std::fmt::Debug for DrawSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DrawSeed({})", self.to_hex())
    }
}

impl DrawSeed {
    /// A fresh seed from the operating system's generator.
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; SEED_LEN] {
        &self.0
    }

    /// Lowercase hex, as published to admins.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write as _;
        self.0
            .iter()
            .fold(String::with_capacity(SEED_LEN * 2), |mut out, byte| {
                let _ = write!(out, "{byte:02x}");
                out
            })
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != SEED_LEN * 2 || !text.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; SEED_LEN];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// A joiner's ticket in the draw: SHA-256 over the seed and the user's
    /// 16 id bytes. Lower tickets go first.
    pub fn ticket(&self, user_id: Uuid) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.0);
        hash.update(user_id.as_bytes());
        hash.finalize().into()
    }
}

/// The drawn order of the pre-queue: place 1 first. Joiners listed twice
/// count once; the order of `joiners` does not matter.
pub fn draw_order(seed: &DrawSeed, joiners: &[Uuid]) -> Vec<Uuid> {
    let mut tickets: Vec<([u8; 32], Uuid)> = joiners
        .iter()
        .map(|user_id| (seed.ticket(*user_id), *user_id))
        .collect();
    // The user id breaks a (practically impossible) tie, so the order is
    // total and the same everywhere.
    tickets.sort_unstable();
    tickets.dedup_by_key(|(_, user_id)| *user_id);
    tickets.into_iter().map(|(_, user_id)| user_id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_a_function_of_the_seed_and_the_set_of_joiners() {
        let seed = DrawSeed::generate();
        let joiners: Vec<Uuid> = (0..500).map(|_| Uuid::new_v4()).collect();
        let order = draw_order(&seed, &joiners);
        let mut reversed = joiners.clone();
        reversed.reverse();
        reversed.push(joiners[3]);
        assert_eq!(
            draw_order(&seed, &reversed),
            order,
            "arrival order must not matter"
        );
        let mut sorted_order = order.clone();
        sorted_order.sort();
        let mut sorted_joiners = joiners.clone();
        sorted_joiners.sort();
        assert_eq!(sorted_order, sorted_joiners, "a permutation of the joiners");
        let republished = DrawSeed::from_hex(&seed.to_hex()).expect("hex round trip");
        assert_eq!(draw_order(&republished, &joiners), order);
        assert_ne!(draw_order(&DrawSeed::generate(), &joiners), order);
    }

    #[test]
    fn early_arrival_buys_no_advantage() {
        // Over many draws the first joiner lands in each quarter of the line
        // about equally often (expected 1000 each; 4 sigma is about 110).
        let joiners: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
        let mut quarters = [0u32; 4];
        for _ in 0..4000 {
            let order = draw_order(&DrawSeed::generate(), &joiners);
            let place = order
                .iter()
                .position(|user| *user == joiners[0])
                .expect("the first joiner is drawn");
            quarters[place * 4 / joiners.len()] += 1;
        }
        for count in quarters {
            assert!((850..=1150).contains(&count), "{quarters:?}");
        }
    }

    #[test]
    fn seeds_parse_only_from_their_own_hex() {
        assert!(DrawSeed::from_hex("00").is_none());
        assert!(DrawSeed::from_hex(&"zz".repeat(32)).is_none());
        assert!(DrawSeed::from_hex(&"é".repeat(32)).is_none());
        let seed = DrawSeed::from_hex(&"ab".repeat(32)).expect("a seed");
        assert_eq!(seed.as_bytes(), &[0xab; 32]);
        assert_eq!(DrawSeed::from_bytes(&[1; 31]), None);
    }
}
