//! `RUN --mount=...` (BuildKit's Dockerfile syntax): the flag's fields parsed and checked, then
//! resolved into [`RunMount`]s the backend sets up for the step's container. Only builds that came
//! through BuildKit's API take them (`BuildOptions::run_mounts`); the classic builder refuses them,
//! as Docker's does.

use std::fmt;
use std::sync::Arc;

use berth_types::{Error, Result};
use futures_util::future::BoxFuture;

use berth_dockerfile::Instruction;

use crate::dispatch::ensure_abs;
use crate::dispatch::StageState;
use crate::stages::Cx;
use crate::{Backend, BaseImage};

/// Where a bind mount's source lives.
#[derive(Debug, Clone)]
pub enum BindRoot {
    /// The build context (a host folder the builder owns).
    Context(std::path::PathBuf),
    /// A stage's result or an image: its root is mounted read-only for the step.
    Image(Box<BaseImage>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One mount of a RUN step, as the backend sets it up. Sources are resolved inside their root by
/// the backend (confined: a symlink in the context cannot lead out of it).
#[derive(Debug, Clone)]
pub enum RunMount {
    Bind {
        target: String,
        root: BindRoot,
        source: String,
        rw: bool,
    },
    /// A folder that outlives builds, by `id`, not part of the image.
    Cache {
        target: String,
        id: String,
        sharing: Sharing,
        mode: u32,
        uid: u32,
        gid: u32,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// A secret from the client's session, as a read-only file at `target`.
    Secret {
        target: String,
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// The client's SSH agent `id`, as a socket at `target`: each connection is forwarded.
    Ssh {
        target: String,
        id: String,
        mode: u32,
        uid: u32,
        gid: u32,
        agents: SshSource,
    },
}

impl RunMount {
    pub fn target(&self) -> &str {
        match self {
            RunMount::Bind { target, .. }
            | RunMount::Cache { target, .. }
            | RunMount::Tmpfs { target, .. }
            | RunMount::Secret { target, .. }
            | RunMount::Ssh { target, .. } => target,
        }
    }
}

/// The client's secrets (BuildKit's session).
pub trait Secrets: Send + Sync {
    /// `None` when the client has no secret by that id.
    fn get(&self, id: &str) -> BoxFuture<'_, Result<Option<Vec<u8>>>>;
}

/// A handle on the client's secrets, carried in the build's options.
#[derive(Clone)]
pub struct SecretSource(pub Arc<dyn Secrets>);

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretSource")
    }
}

/// A connection to the client's SSH agent.
pub trait AgentConn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> AgentConn for T {}

/// The client's SSH agents (BuildKit's session, `docker build --ssh`).
pub trait SshAgents: Send + Sync {
    /// Whether the client forwards an agent by that id.
    fn check(&self, id: &str) -> BoxFuture<'_, Result<bool>>;
    /// A new connection to agent `id`.
    fn connect(&self, id: &str) -> BoxFuture<'_, Result<Box<dyn AgentConn>>>;
}

/// A handle on the client's SSH agents, carried in the build's options.
#[derive(Clone)]
pub struct SshSource(pub Arc<dyn SshAgents>);

impl fmt::Debug for SshSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SshSource")
    }
}

/// A `--mount` value's fields, before sources are resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub kind: String,
    pub target: String,
    pub source: String,
    pub from: String,
    pub id: String,
    pub sharing: Option<Sharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub readonly: Option<bool>,
    pub required: bool,
    pub size: Option<u64>,
    pub env: String,
}

fn bool_field(k: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(Error::invalid(format!("invalid value for {k}: {o}"))),
    }
}

fn num(k: &str, v: &str, radix: u32) -> Result<u32> {
    u32::from_str_radix(v, radix).map_err(|_| Error::invalid(format!("invalid value for {k}: {v}")))
}

/// Parses one `--mount` value (`type=cache,target=/root/.cache,sharing=locked`), as BuildKit's
/// Dockerfile frontend reads it.
pub fn parse(value: &str) -> Result<Spec> {
    let mut s = Spec { kind: "bind".into(), ..Default::default() };
    for field in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.to_ascii_lowercase(), None),
        };
        let val = || v.ok_or_else(|| Error::invalid(format!("invalid field '{field}' must be a key=value pair")));
        match k.as_str() {
            "type" => s.kind = val()?.to_string(),
            "target" | "dst" | "destination" => s.target = val()?.to_string(),
            "source" | "src" => s.source = val()?.to_string(),
            "from" => s.from = val()?.to_string(),
            "id" => s.id = val()?.to_string(),
            "env" => s.env = val()?.to_string(),
            "readonly" | "ro" => s.readonly = Some(bool_field(&k, v)?),
            "readwrite" | "rw" => s.readonly = Some(!bool_field(&k, v)?),
            "required" => s.required = bool_field(&k, v)?,
            "sharing" => {
                s.sharing = Some(match val()? {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    o => return Err(Error::invalid(format!("unsupported sharing value \"{o}\""))),
                })
            }
            "mode" => s.mode = Some(num(&k, val()?, 8)?),
            "uid" => s.uid = Some(num(&k, val()?, 10)?),
            "gid" => s.gid = Some(num(&k, val()?, 10)?),
            "size" => {
                s.size =
                    Some(parse_size(val()?).ok_or_else(|| Error::invalid(format!("invalid value for size: {field}")))?)
            }
            _ => return Err(Error::invalid(format!("unexpected key '{k}' in '{field}'"))),
        }
    }
    match s.kind.as_str() {
        "bind" | "cache" | "tmpfs" => {
            if s.target.is_empty() {
                return Err(Error::invalid("mount destination (target) is required"));
            }
        }
        "secret" => {
            if s.id.is_empty() && s.target.is_empty() {
                return Err(Error::invalid("secret mount needs an id or a target"));
            }
        }
        "ssh" => {}
        o => return Err(Error::invalid(format!("unsupported mount type \"{o}\""))),
    }
    if s.kind == "cache" && !s.from.is_empty() {
        return Err(Error::not_implemented("RUN --mount=type=cache,from=... is not supported by berthd yet"));
    }
    Ok(s)
}

/// `64m`, `1g`, `1024` (bytes), as BuildKit's tmpfs size.
fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (n, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1u64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    n.trim().parse::<u64>().ok()?.checked_mul(mult)
}

/// What a RUN step's mounts add: the mounts, their part of the cache key, and environment
/// variables (secrets with `env=`) for the step's process only.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub mounts: Vec<RunMount>,
    pub key: String,
    pub env: Vec<String>,
}

impl<B: Backend> Cx<'_, '_, B> {
    /// The step's `--mount` flags, checked and resolved.
    pub(crate) async fn run_mounts(&mut self, st: &StageState, ins: &Instruction) -> Result<Resolved> {
        let values: Vec<String> =
            ins.flags.iter().filter(|(k, _)| k == "mount").filter_map(|(_, v)| v.clone()).collect();
        let mut r = Resolved::default();
        if values.is_empty() {
            return Ok(r);
        }
        if !self.b.opts.run_mounts {
            return Err(Error::invalid(format!("RUN --mount={} is not supported by the classic builder", values[0])));
        }
        let workdir = st.image.config.config.working_dir.clone();
        let mut key = Vec::new();
        for v in values {
            let s = parse(&self.expand(st, &v)?)?;
            let target = ensure_abs(&s.target, &workdir);
            match s.kind.as_str() {
                "bind" => {
                    let source = if s.source.is_empty() { ".".to_string() } else { s.source.clone() };
                    let rw = s.readonly == Some(false);
                    let (root, content) = if s.from.is_empty() {
                        // The source's content is part of the key, as COPY's is.
                        let ctx = self.b.ctx;
                        let src = source.clone();
                        let sum = tokio::task::block_in_place(|| ctx.checksum(&ctx.resolve(&[src])?))
                            .map_err(|e| Error::invalid(e.message.replacen("COPY failed", "RUN --mount failed", 1)))?;
                        (BindRoot::Context(ctx.path().to_path_buf()), sum.to_string())
                    } else {
                        let img = self.copy_source_image(st, &s.from).await?;
                        let id = img.id.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "scratch".into());
                        (BindRoot::Image(Box::new(img)), id)
                    };
                    key.push(format!("bind {target} {source} {content} rw={rw}"));
                    r.mounts.push(RunMount::Bind { target, root, source, rw });
                }
                "cache" => {
                    let id = if s.id.is_empty() { target.clone() } else { s.id.clone() };
                    // A cache's content never counts: that is what makes it a cache.
                    key.push(format!("cache {target} {id}"));
                    r.mounts.push(RunMount::Cache {
                        target,
                        id,
                        sharing: s.sharing.unwrap_or(Sharing::Shared),
                        mode: s.mode.unwrap_or(0o755),
                        uid: s.uid.unwrap_or(0),
                        gid: s.gid.unwrap_or(0),
                        readonly: s.readonly.unwrap_or(false),
                    });
                }
                "tmpfs" => {
                    key.push(format!("tmpfs {target}"));
                    r.mounts.push(RunMount::Tmpfs { target, size: s.size });
                }
                "ssh" => {
                    let id = if s.id.is_empty() { "default".to_string() } else { s.id.clone() };
                    let n = r.mounts.iter().filter(|m| matches!(m, RunMount::Ssh { .. })).count();
                    let target = if s.target.is_empty() { format!("/run/buildkit/ssh_agent.{n}") } else { target };
                    let agents = match &self.b.opts.ssh {
                        Some(a) if a.0.check(&id).await? => a.clone(),
                        _ if s.required => {
                            return Err(Error::invalid(format!(
                                "no SSH key {id:?} forwarded from the client (docker build --ssh {id})"
                            )))
                        }
                        _ => continue,
                    };
                    // As BuildKit: the first agent socket is the step's SSH_AUTH_SOCK.
                    if n == 0 {
                        r.env.push(format!("SSH_AUTH_SOCK={target}"));
                    }
                    key.push(format!("ssh {id} {target}"));
                    r.mounts.push(RunMount::Ssh {
                        target,
                        id,
                        mode: s.mode.unwrap_or(0o600),
                        uid: s.uid.unwrap_or(0),
                        gid: s.gid.unwrap_or(0),
                        agents,
                    });
                }
                _ => self.secret_mount(&s, target, &mut r, &mut key).await?,
            }
        }
        r.key = key.join("\n");
        Ok(r)
    }

    /// A `type=secret` mount: the secret's content is read from the client now and never counts
    /// for the cache (nor lands in the image).
    async fn secret_mount(&self, s: &Spec, target: String, r: &mut Resolved, key: &mut Vec<String>) -> Result<()> {
        let id = if s.id.is_empty() {
            std::path::Path::new(&target).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            s.id.clone()
        };
        let data = match &self.b.opts.secrets {
            Some(src) => src.0.get(&id).await?,
            None => None,
        };
        let Some(data) = data else {
            if s.required {
                return Err(Error::invalid(format!("secret {id}: not found")));
            }
            return Ok(());
        };
        key.push(format!("secret {id} {} env={}", s.target, s.env));
        if !s.env.is_empty() {
            r.env.push(format!("{}={}", s.env, String::from_utf8_lossy(&data)));
            if s.target.is_empty() {
                return Ok(());
            }
        }
        let target = if s.target.is_empty() { format!("/run/secrets/{id}") } else { target };
        r.mounts.push(RunMount::Secret {
            target,
            data,
            mode: s.mode.unwrap_or(0o400),
            uid: s.uid.unwrap_or(0),
            gid: s.gid.unwrap_or(0),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_as_buildkit_reads_them() {
        let s = parse("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1000,gid=1000,ro").unwrap();
        assert_eq!((s.kind.as_str(), s.target.as_str(), s.id.as_str()), ("cache", "/root/.cache", "pip"));
        assert_eq!(
            (s.sharing, s.mode, s.uid, s.gid, s.readonly),
            (Some(Sharing::Locked), Some(0o700), Some(1000), Some(1000), Some(true))
        );
        let b = parse("target=/src,source=app,rw").unwrap();
        assert_eq!((b.kind.as_str(), b.source.as_str(), b.readonly), ("bind", "app", Some(false)));
        let t = parse("type=tmpfs,dst=/t,size=64m").unwrap();
        assert_eq!(t.size, Some(64 << 20));
        let sec = parse("type=secret,id=tok,required,env=TOKEN").unwrap();
        assert!(sec.required && sec.env == "TOKEN");
    }

    #[test]
    fn bad_mounts_are_refused() {
        for bad in [
            "type=cache",
            "type=nope,target=/x",
            "target=/x,sharing=odd",
            "target=/x,mode=9z",
            "target=/x,bogus=1",
            "type=secret",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("type=cache,target=/c,from=x").unwrap_err().kind, berth_types::ErrorKind::NotImplemented);
        assert!(parse("type=ssh").is_ok());
    }
}
