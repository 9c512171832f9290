//! Unsubscribe tokens: the user's id and an HMAC-SHA256 over it, so the
//! link in a marketing mail opts exactly that user out without a login,
//! and nobody can make a link for someone else.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Domain separation from any other use of the key.
const CONTEXT: &[u8] = b"boxoffice.notify.unsubscribe.v1:";
/// Longest token accepted (a real one is about 60 characters).
pub const MAX_TOKEN_CHARS: usize = 512;

#[derive(Clone)]
pub struct UnsubscribeTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for UnsubscribeTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("UnsubscribeTokens(..)")
    }
}

impl UnsubscribeTokens {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, user_id: Uuid) -> HmacSha256 {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(CONTEXT);
        mac.update(user_id.as_bytes());
        mac
    }

    pub fn token(&self, user_id: Uuid) -> String {
        let signature = self.mac(user_id).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(user_id.as_bytes()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// The user a token was made for; `None` for anything not made with
    /// this key.
    pub fn verify(&self, token: &str) -> Option<Uuid> {
        if token.len() > MAX_TOKEN_CHARS {
            return None;
        }
        let (user, signature) = token.split_once('.')?;
        let user_id = Uuid::from_slice(&URL_SAFE_NO_PAD.decode(user).ok()?).ok()?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        self.mac(user_id).verify_slice(&signature).ok()?;
        Some(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_key_and_this_user() {
        let tokens = UnsubscribeTokens::new(b"a key of sixteen chars");
        let user = Uuid::now_v7();
        let token = tokens.token(user);
        assert_eq!(tokens.verify(&token), Some(user));
        assert_eq!(
            UnsubscribeTokens::new(b"another key!!!!!!").verify(&token),
            None
        );
        // Someone else's id with this token's signature.
        let (_, signature) = token.split_once('.').expect("two parts");
        let forged = format!(
            "{}.{signature}",
            URL_SAFE_NO_PAD.encode(Uuid::now_v7().as_bytes())
        );
        assert_eq!(tokens.verify(&forged), None);
        assert_eq!(tokens.verify("garbage"), None);
        assert_eq!(tokens.verify(&"a.".repeat(400)), None);
    }
}
