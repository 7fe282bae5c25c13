//! Contexts: named daemons to talk to, stored exactly as the docker CLI stores them
//! (`<config>/contexts/meta/<sha256(name)>/meta.json`, `currentContext` in config.json), so `docker
//! context ls` and `berth context ls` see the same list.
//!
//! Which daemon a command talks to: `-H`, else `--context`, else `$BERTH_HOST`/`$DOCKER_HOST`, else
//! `$BERTH_CONTEXT`/`$DOCKER_CONTEXT`, else the current context, else the default socket.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::client::DEFAULT_HOST;
use crate::registry::{config_dir, read_config, write_config};

pub const DEFAULT: &str = "default";

fn meta_dir(name: &str) -> PathBuf {
    let id = hex::encode(Sha256::digest(name.as_bytes()));
    config_dir().join("contexts").join("meta").join(id)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub name: String,
    pub description: String,
    pub host: String,
}

fn valid_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphanumeric()) && cs.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
}

fn env_host() -> Option<String> {
    std::env::var("BERTH_HOST").or_else(|_| std::env::var("DOCKER_HOST")).ok().filter(|h| !h.is_empty())
}

/// The context in effect when no `--context` is given.
pub fn current() -> String {
    if let Ok(c) = std::env::var("BERTH_CONTEXT").or_else(|_| std::env::var("DOCKER_CONTEXT")) {
        if !c.is_empty() {
            return c;
        }
    }
    read_config().ok().and_then(|v| v["currentContext"].as_str().map(String::from)).unwrap_or_else(|| DEFAULT.into())
}

/// The default context: the environment's host or the default socket.
fn default_ctx() -> Ctx {
    Ctx {
        name: DEFAULT.into(),
        description: "Current DOCKER_HOST based configuration".into(),
        host: env_host().unwrap_or_else(|| DEFAULT_HOST.into()),
    }
}

pub fn get(name: &str) -> Result<Ctx> {
    if name == DEFAULT {
        return Ok(default_ctx());
    }
    let p = meta_dir(name).join("meta.json");
    let raw = std::fs::read(&p).map_err(|_| anyhow::anyhow!("context \"{name}\" does not exist"))?;
    let v: Value = serde_json::from_slice(&raw).with_context(|| format!("invalid {}", p.display()))?;
    Ok(Ctx {
        name: name.into(),
        description: v["Metadata"]["Description"].as_str().unwrap_or_default().into(),
        host: v["Endpoints"]["docker"]["Host"].as_str().unwrap_or_default().into(),
    })
}

pub fn list() -> Result<Vec<Ctx>> {
    let mut out = vec![default_ctx()];
    let dir = config_dir().join("contexts").join("meta");
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Ok(raw) = std::fs::read(e.path().join("meta.json")) else { continue };
        let Ok(v) = serde_json::from_slice::<Value>(&raw) else { continue };
        if let Some(n) = v["Name"].as_str() {
            out.push(get(n)?);
        }
    }
    out[1..].sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `context create NAME --docker host=...`.
pub fn create(name: &str, docker: &str, description: &str) -> Result<()> {
    if !valid_name(name) || name == DEFAULT {
        bail!("context name {name:?} is invalid, names are validated against regexp \"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$\"");
    }
    if meta_dir(name).exists() {
        bail!("context \"{name}\" already exists");
    }
    let mut host = None;
    for kv in docker.split(',').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("host", h)) => host = Some(h.to_string()),
            Some(("skip-tls-verify", _)) | Some(("ca", _)) | Some(("cert", _)) | Some(("key", _)) => {}
            _ => bail!("unable to create docker endpoint config: unrecognized config key: {kv}"),
        }
    }
    let host = host.or_else(env_host).unwrap_or_else(|| DEFAULT_HOST.into());
    crate::client::Client::new(&host)?;
    let meta = json!({
        "Name": name,
        "Metadata": {"Description": description},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
    });
    let dir = meta_dir(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("meta.json"), serde_json::to_vec(&meta)?)?;
    Ok(())
}

pub fn remove(name: &str, force: bool) -> Result<()> {
    if name == DEFAULT {
        bail!("default: context \"default\" cannot be removed");
    }
    get(name)?;
    if current() == name && !force {
        bail!("{name}: context is in use, set -f flag to force remove");
    }
    std::fs::remove_dir_all(meta_dir(name))?;
    if current() == name {
        use_ctx(DEFAULT)?;
    }
    Ok(())
}

/// `context use NAME`: recorded in config.json, as the docker CLI does.
pub fn use_ctx(name: &str) -> Result<()> {
    get(name)?;
    let mut cfg = read_config()?;
    match cfg.as_object_mut() {
        Some(o) if name == DEFAULT => {
            o.remove("currentContext");
        }
        Some(o) => {
            o.insert("currentContext".into(), json!(name));
        }
        None => bail!("config.json is not an object"),
    }
    write_config(&cfg)
}

/// The host a command talks to, from the flags and the environment.
pub fn resolve_host(flag_host: Option<&str>, flag_context: Option<&str>) -> Result<String> {
    if let Some(h) = flag_host {
        return Ok(h.to_string());
    }
    if let Some(c) = flag_context {
        return Ok(get(c)?.host);
    }
    if let Some(h) = env_host() {
        return Ok(h);
    }
    Ok(get(&current())?.host)
}

/// `context inspect`: docker's JSON shape.
pub fn inspect_json(c: &Ctx) -> Value {
    json!({
        "Name": c.name,
        "Metadata": {"Description": c.description},
        "Endpoints": {"docker": {"Host": c.host, "SkipTLSVerify": false}},
        "TLSMaterial": {},
        "Storage": {
            "MetadataPath": if c.name == DEFAULT { "<IN MEMORY>".to_string() } else { meta_dir(&c.name).display().to_string() },
            "TLSPath": "<IN MEMORY>",
        },
    })
}
