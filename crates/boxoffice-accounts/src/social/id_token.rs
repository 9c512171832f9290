//! Checking an OpenID Connect ID token: the signature by one of the
//! provider's published keys (asymmetric algorithms only, pinned per key),
//! `iss`, `aud` (and `azp` with several audiences), `exp`, `iat` and the
//! login's `nonce`. No I/O: the keys are given.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Clock skew tolerated between accounts and a provider.
pub const LEEWAY_SECS: u64 = 60;
/// An ID token issued longer ago than this is refused (the token endpoint
/// answers with a fresh one).
pub const MAX_AGE_SECS: u64 = 600;

/// What a provider's ID token says about who logged in, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// Why an ID token is refused. Never shown to callers (they get one
/// answer); logged by kind.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("id token is malformed")]
    Malformed,
    #[error("id token uses an algorithm that is not accepted")]
    Algorithm,
    #[error("id token names a key the provider does not publish")]
    UnknownKey,
    #[error("id token signature or claims are invalid ({0})")]
    Invalid(String),
    #[error("id token is expired")]
    Expired,
    #[error("id token was issued at an unacceptable time")]
    IssuedAt,
    #[error("id token nonce does not match the login")]
    Nonce,
}

/// Asymmetric signatures only: an `HS*` token would be signed with the
/// client secret, which accounts shares with nobody but the provider, and
/// `none` is no signature.
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One published verification key.
#[derive(Clone)]
pub struct ProviderKey {
    pub kid: Option<String>,
    /// The key's `alg` when the JWK names one (then it is the only one).
    pub algorithm: Option<Algorithm>,
    key: DecodingKey,
}

/// A provider's published keys (its JWKS), by key id.
#[derive(Clone, Default)]
pub struct ProviderKeys {
    keys: Vec<ProviderKey>,
}

impl ProviderKeys {
    /// Reads a JWKS document, keeping the signature keys boxoffice can use
    /// (RSA, EC and OKP public keys; symmetric and encryption keys are
    /// skipped, as are ones it cannot parse).
    pub fn from_jwks(document: &serde_json::Value) -> Self {
        let mut keys = Vec::new();
        let Some(entries) = document.get("keys").and_then(|keys| keys.as_array()) else {
            return Self { keys };
        };
        for entry in entries {
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            if matches!(
                jwk.algorithm,
                AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
            ) {
                continue;
            }
            if entry
                .get("use")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u != "sig")
            {
                continue;
            }
            let algorithm = match jwk.common.key_algorithm {
                None => None,
                Some(named) => match key_algorithm(named) {
                    Some(algorithm) => Some(algorithm),
                    None => continue,
                },
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(ProviderKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        Self { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token's header names: by `kid`, or the only key when the
    /// header has none.
    fn find(&self, kid: Option<&str>) -> Option<&ProviderKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }

    /// Whether a token's key id is among these keys.
    pub fn knows(&self, kid: Option<&str>) -> bool {
        self.find(kid).is_some()
    }
}

fn key_algorithm(named: KeyAlgorithm) -> Option<Algorithm> {
    let algorithm = Algorithm::try_from(named).ok()?;
    ACCEPTED.contains(&algorithm).then_some(algorithm)
}

/// The key id a token's header names (to decide whether to fetch keys).
pub fn key_id(token: &str) -> Result<Option<String>, IdTokenError> {
    Ok(jsonwebtoken::decode_header(token)
        .map_err(|_| IdTokenError::Malformed)?
        .kid)
}

/// `email_verified` is a boolean by the spec; some providers send "true".
fn truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(value) => *value,
        serde_json::Value::String(value) => value.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    azp: Option<String>,
    iat: u64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
}

/// Checks `token` as an ID token of `issuer` for `client_id`, from the login
/// that sent `nonce`, at `now` (unix seconds).
pub fn verify(
    token: &str,
    keys: &ProviderKeys,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: u64,
) -> Result<VerifiedIdentity, IdTokenError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| IdTokenError::Malformed)?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(IdTokenError::Algorithm);
    }
    let key = keys
        .find(header.kid.as_deref())
        .ok_or(IdTokenError::UnknownKey)?;
    if key.algorithm.is_some_and(|pinned| pinned != header.alg) {
        return Err(IdTokenError::Algorithm);
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|error| {
        use jsonwebtoken::errors::ErrorKind;
        // Named by kind only: parse errors can quote claim values.
        let what = match error.kind() {
            ErrorKind::ExpiredSignature => return IdTokenError::Expired,
            ErrorKind::InvalidSignature => "signature".to_owned(),
            ErrorKind::InvalidIssuer => "iss".to_owned(),
            ErrorKind::InvalidAudience => "aud".to_owned(),
            ErrorKind::ImmatureSignature => "nbf".to_owned(),
            ErrorKind::InvalidAlgorithm => "algorithm".to_owned(),
            ErrorKind::MissingRequiredClaim(claim) => format!("missing {claim}"),
            _ => "malformed".to_owned(),
        };
        IdTokenError::Invalid(what)
    })?;
    let claims = data.claims;
    if claims.iat > now + LEEWAY_SECS || claims.iat + MAX_AGE_SECS + LEEWAY_SECS < now {
        return Err(IdTokenError::IssuedAt);
    }
    // With several audiences the token must say it was issued to us.
    if claims.aud.as_array().is_some_and(|aud| aud.len() > 1)
        && claims.azp.as_deref() != Some(client_id)
    {
        return Err(IdTokenError::Invalid("azp".into()));
    }
    if claims.azp.as_deref().is_some_and(|azp| azp != client_id) {
        return Err(IdTokenError::Invalid("azp".into()));
    }
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(IdTokenError::Nonce);
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(IdTokenError::Invalid("sub".into()));
    }
    Ok(VerifiedIdentity {
        subject: claims.sub,
        email: claims.email.filter(|email| !email.is_empty()),
        email_verified: truthy(&claims.email_verified),
        name: claims.name.filter(|name| !name.is_empty()),
    })
}

/// Merges a userinfo answer into an identity whose ID token had no email
/// (providers may keep claims for userinfo). Its `sub` must be the token's.
pub fn merge_userinfo(
    identity: &mut VerifiedIdentity,
    userinfo: &serde_json::Value,
) -> Result<(), IdTokenError> {
    let subject = userinfo.get("sub").and_then(|sub| sub.as_str());
    if subject != Some(identity.subject.as_str()) {
        return Err(IdTokenError::Invalid("userinfo sub".into()));
    }
    let text = |name: &str| {
        userinfo
            .get(name)
            .and_then(|value| value.as_str())
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    if identity.email.is_none() {
        identity.email = text("email");
        identity.email_verified = userinfo.get("email_verified").is_some_and(truthy);
    }
    if identity.name.is_none() {
        identity.name = text("name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;

    // An EC P-256 key made for these tests only.
    const PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgId1mzyaHmgGyyVYn
cQ7oGTfEVof/L6VplTVnXz81rmChRANCAASsL0VkEWgzoWPl604DEt/M3jgb8BYG
96OnCUoNLwibi90CbSkMi6osJYp3xBwi1pNRjhFSlBiBObqfYljnwRnA
-----END PRIVATE KEY-----";
    const X: &str = "rC9FZBFoM6Fj5etOAxLfzN44G_AWBvejpwlKDS8Im4s";
    const Y: &str = "3QJtKQyLqiwlinfEHCLWk1GOEVKUGIE5up9iWOfBGcA";

    fn keys(kid: &str) -> ProviderKeys {
        ProviderKeys::from_jwks(&json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": kid, "alg": "ES256", "use": "sig"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        ]}))
    }

    fn sign(claims: serde_json::Value, kid: &str) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        use base64::Engine as _;
        let body: String = PRIVATE_PEM
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let key = EncodingKey::from_ec_der(&der);
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn claims(now: u64) -> serde_json::Value {
        json!({"iss": "https://op.example", "aud": "client", "sub": "s1", "iat": now,
               "exp": now + 300, "nonce": "n1", "email": "a@b.example", "email_verified": true})
    }

    #[test]
    fn a_good_token_verifies_and_every_claim_is_checked() {
        let now = crate::token::unix_now();
        let keys = keys("k1");
        assert_eq!(keys.len(), 1, "the symmetric key is skipped");
        let check = |claims: serde_json::Value| {
            verify(
                &sign(claims, "k1"),
                &keys,
                "https://op.example",
                "client",
                "n1",
                now,
            )
        };
        let identity = check(claims(now)).unwrap();
        assert_eq!(identity.subject, "s1");
        assert!(identity.email_verified);

        let with = |name: &str, value: serde_json::Value| {
            let mut changed = claims(now);
            changed[name] = value;
            check(changed)
        };
        assert!(matches!(
            with("iss", json!("https://evil.example")),
            Err(IdTokenError::Invalid(_))
        ));
        assert!(matches!(
            with("aud", json!("other")),
            Err(IdTokenError::Invalid(_))
        ));
        assert!(matches!(
            with("aud", json!(["client", "other"])),
            Err(IdTokenError::Invalid(_))
        ));
        assert_eq!(with("exp", json!(now - 3600)), Err(IdTokenError::Expired));
        assert_eq!(with("iat", json!(now + 3600)), Err(IdTokenError::IssuedAt));
        assert_eq!(with("iat", json!(now - 7200)), Err(IdTokenError::IssuedAt));
        assert_eq!(with("nonce", json!("n2")), Err(IdTokenError::Nonce));
        assert_eq!(
            verify(
                &sign(claims(now), "k2"),
                &keys,
                "https://op.example",
                "client",
                "n1",
                now
            ),
            Err(IdTokenError::UnknownKey)
        );
    }

    #[test]
    fn symmetric_and_unsigned_tokens_are_refused() {
        let now = crate::token::unix_now();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hmac".into());
        let token =
            jsonwebtoken::encode(&header, &claims(now), &EncodingKey::from_secret(b"secret"))
                .unwrap();
        assert_eq!(
            verify(
                &token,
                &keys("k1"),
                "https://op.example",
                "client",
                "n1",
                now
            ),
            Err(IdTokenError::Algorithm)
        );
        let signed = sign(claims(now), "k1");
        let mut parts = signed.split('.');
        let _ = parts.next();
        let body = parts.next().unwrap();
        use base64::Engine as _;
        let none = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","kid":"k1"}"#);
        assert!(
            verify(
                &format!("{none}.{body}."),
                &keys("k1"),
                "https://op.example",
                "client",
                "n1",
                now
            )
            .is_err()
        );
    }

    #[test]
    fn userinfo_fills_a_missing_email_only_for_the_same_subject() {
        let mut identity = VerifiedIdentity {
            subject: "s1".into(),
            email: None,
            email_verified: false,
            name: None,
        };
        assert!(
            merge_userinfo(&mut identity, &json!({"sub": "s2", "email": "x@y.example"})).is_err()
        );
        merge_userinfo(
            &mut identity,
            &json!({"sub": "s1", "email": "x@y.example", "email_verified": "true"}),
        )
        .unwrap();
        assert_eq!(identity.email.as_deref(), Some("x@y.example"));
        assert!(identity.email_verified);
    }
}
