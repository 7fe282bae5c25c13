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
use crate::transport::{Endpoint, Tls};

pub const DEFAULT: &str = "default";

fn ctx_id(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

fn meta_dir(name: &str) -> PathBuf {
    config_dir().join("contexts").join("meta").join(ctx_id(name))
}

/// Where docker keeps a context's TLS files: `contexts/tls/<id>/docker/{ca,cert,key}.pem`.
fn tls_dir(name: &str) -> PathBuf {
    config_dir().join("contexts").join("tls").join(ctx_id(name)).join("docker")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ctx {
    pub name: String,
    pub description: String,
    pub host: String,
    pub skip_tls_verify: bool,
    /// TLS material stored with the context (docker's layout), if any.
    pub tls: Option<Tls>,
}

/// The global TLS flags (`--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`).
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    pub tls: bool,
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFlags {
    /// TLS for a `-H`/`$DOCKER_HOST` endpoint, as the docker CLI decides it: `--tlsverify` or
    /// `$DOCKER_TLS_VERIFY` verify; `--tls` only encrypts; files default to `$DOCKER_CERT_PATH` (or the
    /// config folder) `{ca,cert,key}.pem`.
    pub fn resolve(&self) -> Option<Tls> {
        let env_verify = std::env::var("BERTH_TLS_VERIFY")
            .or_else(|_| std::env::var("DOCKER_TLS_VERIFY"))
            .is_ok_and(|v| !v.is_empty());
        let verify = self.verify || env_verify;
        let explicit = self.ca.is_some() || self.cert.is_some() || self.key.is_some();
        if !(self.tls || verify || explicit) {
            return None;
        }
        let dir = std::env::var_os("BERTH_CERT_PATH")
            .or_else(|| std::env::var_os("DOCKER_CERT_PATH"))
            .map(PathBuf::from)
            .unwrap_or_else(config_dir);
        let pick =
            |flag: &Option<PathBuf>, file: &str| flag.clone().or_else(|| Some(dir.join(file)).filter(|p| p.exists()));
        Some(Tls {
            ca: pick(&self.ca, "ca.pem"),
            cert: pick(&self.cert, "cert.pem"),
            key: pick(&self.key, "key.pem"),
            verify,
        })
    }
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
        skip_tls_verify: false,
        tls: None,
    }
}

pub fn get(name: &str) -> Result<Ctx> {
    if name == DEFAULT {
        return Ok(default_ctx());
    }
    let p = meta_dir(name).join("meta.json");
    let raw = std::fs::read(&p).map_err(|_| anyhow::anyhow!("context \"{name}\" does not exist"))?;
    let v: Value = serde_json::from_slice(&raw).with_context(|| format!("invalid {}", p.display()))?;
    let skip = v["Endpoints"]["docker"]["SkipTLSVerify"].as_bool().unwrap_or(false);
    let dir = tls_dir(name);
    let file = |f: &str| Some(dir.join(f)).filter(|p| p.exists());
    let tls =
        dir.exists().then(|| Tls { ca: file("ca.pem"), cert: file("cert.pem"), key: file("key.pem"), verify: !skip });
    Ok(Ctx {
        name: name.into(),
        description: v["Metadata"]["Description"].as_str().unwrap_or_default().into(),
        host: v["Endpoints"]["docker"]["Host"].as_str().unwrap_or_default().into(),
        skip_tls_verify: skip,
        tls,
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

/// An endpoint from `--docker host=…,ca=…,cert=…,key=…,skip-tls-verify=…`, TLS files read up front
/// so a bad path leaves nothing half-written.
struct EndpointSpec {
    host: String,
    skip: bool,
    material: Vec<(&'static str, Vec<u8>)>,
}

fn parse_endpoint(docker: &str) -> Result<EndpointSpec> {
    let mut host = None;
    let mut skip = false;
    let mut files: Vec<(&'static str, PathBuf)> = Vec::new();
    for kv in docker.split(',').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("host", h)) => host = Some(h.to_string()),
            Some(("skip-tls-verify", v)) => {
                skip = v.parse().map_err(|_| anyhow::anyhow!("invalid skip-tls-verify {v:?}"))?
            }
            Some(("ca", p)) => files.push(("ca.pem", PathBuf::from(p))),
            Some(("cert", p)) => files.push(("cert.pem", PathBuf::from(p))),
            Some(("key", p)) => files.push(("key.pem", PathBuf::from(p))),
            _ => bail!("unable to create docker endpoint config: unrecognized config key: {kv}"),
        }
    }
    let host = host.or_else(env_host).unwrap_or_else(|| DEFAULT_HOST.into());
    crate::client::Client::new(&host)?;
    let mut material = Vec::new();
    for (dst, src) in files {
        material.push((dst, std::fs::read(&src).with_context(|| format!("unable to read {}", src.display()))?));
    }
    Ok(EndpointSpec { host, skip, material })
}

/// Writes a context's meta.json and (replacing any earlier) TLS material, in docker's layout.
fn write_ctx(name: &str, description: &str, ep: &EndpointSpec) -> Result<()> {
    let meta = json!({
        "Name": name,
        "Metadata": {"Description": description},
        "Endpoints": {"docker": {"Host": ep.host, "SkipTLSVerify": ep.skip}},
    });
    let tdir = tls_dir(name);
    let _ = std::fs::remove_dir_all(&tdir);
    if !ep.material.is_empty() {
        std::fs::create_dir_all(&tdir)?;
        for (dst, data) in &ep.material {
            std::fs::write(tdir.join(dst), data)?;
            if *dst == "key.pem" {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(tdir.join(dst), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    let dir = meta_dir(name);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("meta.json"), serde_json::to_vec(&meta)?)?;
    Ok(())
}

/// `context create NAME --docker host=...`.
pub fn create(name: &str, docker: &str, description: &str) -> Result<()> {
    if !valid_name(name) || name == DEFAULT {
        bail!("context name {name:?} is invalid, names are validated against regexp \"^[a-zA-Z0-9][a-zA-Z0-9_.+-]+$\"");
    }
    if meta_dir(name).exists() {
        bail!("context \"{name}\" already exists");
    }
    write_ctx(name, description, &parse_endpoint(docker)?)
}

/// `context update NAME [--docker ...] [--description ...]`: what is given replaces what was there.
pub fn update(name: &str, docker: Option<&str>, description: Option<&str>) -> Result<()> {
    if name == DEFAULT {
        bail!("context \"default\" cannot be updated");
    }
    let cur = get(name)?;
    let ep = match docker {
        Some(d) => parse_endpoint(d)?,
        None => {
            let dir = tls_dir(name);
            let mut material = Vec::new();
            for f in ["ca.pem", "cert.pem", "key.pem"] {
                if let Ok(data) = std::fs::read(dir.join(f)) {
                    material.push((f, data));
                }
            }
            EndpointSpec { host: cur.host.clone(), skip: cur.skip_tls_verify, material }
        }
    };
    write_ctx(name, description.unwrap_or(&cur.description), &ep)
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
    let _ = std::fs::remove_dir_all(tls_dir(name).parent().expect("tls dir has a parent"));
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

/// The daemon a command talks to, from the flags and the environment.
pub fn resolve(flag_host: Option<&str>, flag_context: Option<&str>, tls: &TlsFlags) -> Result<Endpoint> {
    if let Some(h) = flag_host {
        return Ok(Endpoint { host: h.to_string(), tls: tls.resolve() });
    }
    if let Some(c) = flag_context {
        let c = get(c)?;
        return Ok(Endpoint { host: c.host, tls: c.tls });
    }
    if let Some(h) = env_host() {
        return Ok(Endpoint { host: h, tls: tls.resolve() });
    }
    let c = get(&current())?;
    let tls = if c.name == DEFAULT { tls.resolve() } else { c.tls };
    Ok(Endpoint { host: c.host, tls })
}

/// `context inspect`: docker's JSON shape.
pub fn inspect_json(c: &Ctx) -> Value {
    json!({
        "Name": c.name,
        "Metadata": {"Description": c.description},
        "Endpoints": {"docker": {"Host": c.host, "SkipTLSVerify": c.skip_tls_verify}},
        "TLSMaterial": match &c.tls {
            Some(t) => {
                let files: Vec<&str> = [(&t.ca, "ca.pem"), (&t.cert, "cert.pem"), (&t.key, "key.pem")]
                    .into_iter()
                    .filter_map(|(p, n)| p.as_ref().map(|_| n))
                    .collect();
                json!({ "docker": files })
            }
            None => json!({}),
        },
        "Storage": {
            "MetadataPath": if c.name == DEFAULT { "<IN MEMORY>".to_string() } else { meta_dir(&c.name).display().to_string() },
            "TLSPath": if c.name == DEFAULT { "<IN MEMORY>".to_string() } else { tls_dir(&c.name).parent().expect("parent").display().to_string() },
        },
    })
}
