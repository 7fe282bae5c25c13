//! Registry credentials as clients send them: the `X-Registry-Auth` header and the `POST /auth` body.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// `X-Registry-Auth` / `POST /auth` body. Never logged: `Debug` hides the secrets.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// `base64(user:password)`, as in config.json; used when username/password are empty.
    #[serde(default)]
    pub auth: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    /// A refresh token from an earlier login (OAuth2 `refresh_token` grant).
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
    /// A bearer token to send as is.
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("password", &if self.password.is_empty() { "" } else { "<redacted>" })
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// Decodes `X-Registry-Auth`: base64url (or standard) JSON, padding optional. Empty means anonymous.
    pub fn from_header(h: &str) -> Result<AuthConfig, String> {
        let h = h.trim();
        if h.is_empty() {
            return Ok(AuthConfig::default());
        }
        let trimmed = h.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|e| format!("invalid X-Registry-Auth header: {e}"))?;
        let mut a: AuthConfig =
            serde_json::from_slice(&bytes).map_err(|e| format!("invalid X-Registry-Auth header: {e}"))?;
        a.normalise();
        Ok(a)
    }

    /// Fills username/password from `auth` when only that was given.
    pub fn normalise(&mut self) {
        if self.username.is_empty() && !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((u, p)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                self.username = u.to_string();
                self.password = p.to_string();
            }
        }
    }

    pub fn has_credentials(&self) -> bool {
        !self.username.is_empty() || !self.identity_token.is_empty() || !self.registry_token.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_auth_header_leniently() {
        let json = r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#;
        let url = base64::engine::general_purpose::URL_SAFE.encode(json);
        let nopad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let std = base64::engine::general_purpose::STANDARD.encode(json);
        for h in [url, nopad, std] {
            let a = AuthConfig::from_header(&h).unwrap();
            assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p?>"));
        }
        assert_eq!(AuthConfig::from_header("e30=").unwrap(), AuthConfig::default());
        assert_eq!(AuthConfig::from_header("e30").unwrap(), AuthConfig::default());
        assert_eq!(AuthConfig::from_header("").unwrap(), AuthConfig::default());
        assert!(AuthConfig::from_header("!!!").is_err());
        let a =
            AuthConfig::from_header(&base64::engine::general_purpose::STANDARD.encode(r#"{"auth":"dTpw"}"#)).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert!(!format!("{a:?}").contains("\"p\""));
    }
}
