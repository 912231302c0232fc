//! Bearer JWTs: HS256 (shared secret) and RS256 (public key), with issuer, audience and expiry
//! checked, and the `scope` claim read into [`Scopes`]. Tokens are never logged or echoed.

pub mod scope;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::AuthSettings;
pub use scope::Scopes;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The JWT `sub`: the client, for rate limits, idempotency scopes and logs.
    pub subject: String,
    pub scopes: Scopes,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("ingest.auth.enabled is true but neither hs256_secret nor an RS256 public key is set")]
    NoKey,
    #[error("ingest.auth.issuer and ingest.auth.audience must be set when auth is enabled")]
    NoIssuerOrAudience,
    #[error("cannot read the RS256 public key file {path}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the RS256 public key is not a PEM RSA public key: {0}")]
    BadKey(#[source] jsonwebtoken::errors::Error),
}

/// Why a request is not authenticated (answered 401). Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("this endpoint needs the header `Authorization: Bearer <token>`")]
    Missing,
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: ScopeClaim,
}

/// `scope` as the usual space-separated string, or as an array of strings.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    #[default]
    Absent,
    Text(String),
    List(Vec<String>),
}

/// Verifies bearer tokens against the configured keys.
pub struct Authenticator {
    hs256: Option<(DecodingKey, Validation)>,
    rs256: Option<(DecodingKey, Validation)>,
}

impl Authenticator {
    /// `None` when auth is switched off; an error when it is on but cannot work.
    pub fn from_settings(settings: &AuthSettings) -> Result<Option<Self>, AuthConfigError> {
        if !settings.enabled {
            return Ok(None);
        }
        if settings.issuer.is_empty() || settings.audience.is_empty() {
            return Err(AuthConfigError::NoIssuerOrAudience);
        }
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.validate_nbf = true;
            validation.leeway = settings.leeway.as_secs();
            validation
        };
        let hs256 = (!settings.hs256_secret.is_empty()).then(|| {
            (DecodingKey::from_secret(settings.hs256_secret.expose().as_bytes()), validation(Algorithm::HS256))
        });
        let pem = match &settings.rs256_public_key_file {
            Some(path) if settings.rs256_public_key.is_empty() => std::fs::read_to_string(path)
                .map_err(|source| AuthConfigError::KeyFile { path: path.display().to_string(), source })?,
            _ => settings.rs256_public_key.clone(),
        };
        let rs256 = if pem.trim().is_empty() {
            None
        } else {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(AuthConfigError::BadKey)?;
            Some((key, validation(Algorithm::RS256)))
        };
        if hs256.is_none() && rs256.is_none() {
            return Err(AuthConfigError::NoKey);
        }
        Ok(Some(Self { hs256, rs256 }))
    }

    /// Checks the `Authorization` header's value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let token = authorization
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("the bearer token is not a well-formed JWT".into()))?;
        let (key, validation) = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| AuthError::Invalid(format!("tokens signed with {:?} are not accepted", header.alg)))?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| AuthError::Invalid(reason(e.kind())))?;
        let Claims { sub, scope } = data.claims;
        let Some(sub) = sub.filter(|s| !s.is_empty()) else {
            return Err(AuthError::Invalid("the token has no `sub` claim naming the client".into()));
        };
        let scopes = match &scope {
            ScopeClaim::Absent => Scopes::default(),
            ScopeClaim::Text(text) => Scopes::parse(text.split_whitespace()),
            ScopeClaim::List(words) => Scopes::parse(words.iter().map(String::as_str)),
        };
        Ok(Principal { subject: sub, scopes })
    }
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not this service".into(),
        ErrorKind::InvalidSignature => "the token's signature is not valid".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's `{claim}` claim has the wrong type"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not match the key".into(),
        _ => "the bearer token is not a valid JWT".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_common::config::Secret;

    fn enabled() -> AuthSettings {
        AuthSettings { enabled: true, ..AuthSettings::default() }
    }

    #[test]
    fn switched_off_means_no_authenticator() {
        assert!(Authenticator::from_settings(&AuthSettings::default()).unwrap().is_none());
    }

    #[test]
    fn switched_on_it_needs_a_key_issuer_and_audience_and_a_valid_pem() {
        assert!(matches!(Authenticator::from_settings(&enabled()), Err(AuthConfigError::NoKey)));
        let no_audience = AuthSettings { hs256_secret: Secret::new("s"), audience: String::new(), ..enabled() };
        assert!(matches!(Authenticator::from_settings(&no_audience), Err(AuthConfigError::NoIssuerOrAudience)));
        let bad_pem = AuthSettings { rs256_public_key: "-----BEGIN PUBLIC KEY-----\nnope\n".into(), ..enabled() };
        assert!(matches!(Authenticator::from_settings(&bad_pem), Err(AuthConfigError::BadKey(_))));
        let missing_file = AuthSettings { rs256_public_key_file: Some("/nonexistent/key.pem".into()), ..enabled() };
        assert!(matches!(Authenticator::from_settings(&missing_file), Err(AuthConfigError::KeyFile { .. })));
        let secret = AuthSettings { hs256_secret: Secret::new("s"), ..enabled() };
        assert!(Authenticator::from_settings(&secret).unwrap().is_some());
    }

    #[test]
    fn a_missing_or_non_bearer_header_is_missing() {
        let auth = Authenticator::from_settings(&AuthSettings { hs256_secret: Secret::new("s"), ..enabled() })
            .unwrap()
            .unwrap();
        for header in [None, Some(""), Some("Bearer"), Some("Bearer  "), Some("Basic abc")] {
            assert_eq!(auth.authenticate(header), Err(AuthError::Missing), "{header:?}");
        }
    }
}
