//! Settings: a TOML file, then `BERTH_REGISTRY_<SECTION>_<KEY>` environment variables, then flags.

use std::path::PathBuf;

use serde::Deserialize;

use crate::storage::S3Config;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    /// Filesystem storage folder.
    pub root: PathBuf,
    pub read_only: bool,
    pub delete_enabled: bool,
    pub log_level: String,
    pub tls: Tls,
    pub storage: Storage,
    pub auth: Auth,
    pub gc: Gc,
    pub proxy: Proxy,
}

/// Pull-through cache mode: `remote_url` is the registry served (and cached) from here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Proxy {
    pub remote_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tls {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Storage {
    /// `filesystem` or `s3`.
    pub driver: String,
    pub s3: Option<S3Config>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// `none`, `htpasswd` or `token`.
    pub mode: String,
    pub htpasswd: Option<PathBuf>,
    pub realm: String,
    /// Token mode: the URL clients fetch tokens from (default: this server's `/token`).
    pub token_realm: Option<String>,
    pub service: String,
    pub issuer: String,
    /// Token mode: the HMAC secret every replica shares (default: random per process).
    pub secret: Option<String>,
    pub anonymous_pull: bool,
    pub token_lifetime_secs: u64,
    /// The access policy file (see `policy.rs`); none: any authenticated user may do anything.
    pub policy: Option<PathBuf>,
    /// Token signing: `HS256` (the shared `secret`), or `RS256`/`ES256` with a PEM key pair (the
    /// public key is served at `/.well-known/jwks.json`).
    pub token_algorithm: String,
    pub token_private_key: Option<PathBuf>,
    pub token_public_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gc {
    /// 0 disables the background collector.
    pub interval_secs: u64,
    pub grace_secs: u64,
    pub upload_grace_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".into(),
            root: "/var/lib/berth-registry".into(),
            read_only: false,
            delete_enabled: true,
            log_level: "info".into(),
            tls: Tls::default(),
            storage: Storage::default(),
            auth: Auth::default(),
            gc: Gc::default(),
            proxy: Proxy::default(),
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage { driver: "filesystem".into(), s3: None }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            mode: "none".into(),
            htpasswd: None,
            realm: "berth-registry".into(),
            token_realm: None,
            service: "berth-registry".into(),
            issuer: "berth-registry".into(),
            secret: None,
            anonymous_pull: false,
            token_lifetime_secs: 300,
            policy: None,
            token_algorithm: "HS256".into(),
            token_private_key: None,
            token_public_key: None,
        }
    }
}

impl Default for Gc {
    fn default() -> Self {
        Gc { interval_secs: 3600, grace_secs: 3600, upload_grace_secs: 24 * 3600 }
    }
}

/// Reads the file (if any) and applies `BERTH_REGISTRY_*` overrides from `env`.
pub fn load(file: Option<&std::path::Path>, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<Config> {
    let text = match file {
        Some(p) => std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("read {}: {e}", p.display()))?,
        None => String::new(),
    };
    let mut doc: toml::Table = text.parse().map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    // Keys known per section, so `AUTH_TOKEN_REALM` splits as auth.token_realm, not auth.token.realm.
    let sections = ["tls", "storage", "auth", "gc", "proxy"];
    for (k, v) in env {
        let Some(key) = k.strip_prefix("BERTH_REGISTRY_") else { continue };
        let key = key.to_lowercase();
        let (table, field) = match sections.iter().find(|s| key.starts_with(&format!("{s}_"))) {
            Some(s) if key.starts_with("storage_s3_") => {
                let st = doc.entry("storage").or_insert(toml::Value::Table(Default::default()));
                let t = st.as_table_mut().ok_or_else(|| anyhow::anyhow!("storage is not a table"))?;
                let _ = s;
                (
                    t.entry("s3").or_insert(toml::Value::Table(Default::default())),
                    key["storage_s3_".len()..].to_string(),
                )
            }
            Some(s) => {
                (doc.entry(*s).or_insert(toml::Value::Table(Default::default())), key[s.len() + 1..].to_string())
            }
            None => {
                set(&mut doc, &key, &v);
                continue;
            }
        };
        let t = table.as_table_mut().ok_or_else(|| anyhow::anyhow!("{k}: not a table"))?;
        set(t, &field, &v);
    }
    let cfg: Config = toml::Value::Table(doc).try_into().map_err(|e| anyhow::anyhow!("invalid config: {e}"))?;
    Ok(cfg)
}

/// Environment values are strings; booleans and numbers are recognised.
fn set(t: &mut toml::Table, k: &str, v: &str) {
    let val = match v {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            n.parse().map(toml::Value::Integer).unwrap_or_else(|_| toml::Value::String(v.into()))
        }
        _ => toml::Value::String(v.into()),
    };
    t.insert(k.to_string(), val);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(&f, "listen = \"0.0.0.0:1\"\n[auth]\nmode = \"htpasswd\"\n").unwrap();
        let env = vec![
            ("BERTH_REGISTRY_LISTEN".to_string(), "127.0.0.1:9".to_string()),
            ("BERTH_REGISTRY_AUTH_TOKEN_REALM".to_string(), "http://x/token".to_string()),
            ("BERTH_REGISTRY_GC_GRACE_SECS".to_string(), "5".to_string()),
            ("BERTH_REGISTRY_READ_ONLY".to_string(), "true".to_string()),
            ("BERTH_REGISTRY_STORAGE_S3_BUCKET".to_string(), "b".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = load(Some(&f), env.into_iter()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9");
        assert_eq!(c.auth.mode, "htpasswd");
        assert_eq!(c.auth.token_realm.as_deref(), Some("http://x/token"));
        assert_eq!(c.gc.grace_secs, 5);
        assert!(c.read_only);
        assert_eq!(c.storage.s3.unwrap().bucket, "b");
        assert!(load(None, vec![("BERTH_REGISTRY_NOPE".into(), "1".into())].into_iter()).is_err());
    }
}
