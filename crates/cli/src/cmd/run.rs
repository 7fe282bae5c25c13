//! The commands that join a terminal to a container: `run`, `create`, `start -a`, `attach`, `exec`.
//! Their order of calls follows the docker CLI (create → wait → attach → start → resize), so exit
//! codes, `--rm` and detach keys behave the same.

use anyhow::{bail, Context, Result};
use berth_api::container::{ContainerInspect, CreateRequest, CreateResponse, ExecInspect, IdResponse, WaitResponse};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::json;

use super::opts::ContainerOpts;
use crate::client::{empty, enc, ApiError, Client};
use crate::tty::{self, StdinEnd};

#[derive(Args, Debug, Clone)]
#[command(override_usage = "berth run [OPTIONS] IMAGE [COMMAND] [ARG...]")]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help (`-h` is --hostname, as in docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub opts: ContainerOpts,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "berth create [OPTIONS] IMAGE [COMMAND] [ARG...]")]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help (`-h` is --hostname, as in docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    #[command(flatten)]
    pub opts: ContainerOpts,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "berth start [OPTIONS] CONTAINER [CONTAINER...]")]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long = "attach")]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "berth attach [OPTIONS] CONTAINER")]
pub struct AttachArgs {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    pub container: String,
}

#[derive(Args, Debug, Clone)]
#[command(override_usage = "berth exec [OPTIONS] CONTAINER COMMAND [ARG...]")]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long = "privileged")]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub cmd: Vec<String>,
}

/// `docker run`'s exit code for a failed start: 127 not found, 126 not executable, else 125.
pub fn start_failure_code(msg: &str) -> i32 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        125
    }
}

/// The detach sequence for the escape proxy: the flag, else `detachKeys` in config.json, else ctrl-p,ctrl-q.
fn detach_keys(flag: &Option<String>) -> Result<(Vec<u8>, Option<String>)> {
    let spec = flag
        .clone()
        .or_else(|| crate::registry::read_config().ok().and_then(|c| c["detachKeys"].as_str().map(String::from)));
    let keys = berth_api::detach::parse(spec.as_deref().unwrap_or("")).map_err(|e| anyhow::anyhow!(e))?;
    Ok((keys, spec))
}

fn is_no_such_image(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>().is_some_and(|a| a.status == 404 && a.message.contains("No such image"))
}

/// POST /containers/create, pulling the image first when `--pull` says so (docker prints the pull to stderr).
async fn create(c: &Client, o: &ContainerOpts, detach: bool) -> Result<(String, CreateRequest)> {
    // The flags' JSON goes through the wire type: a member of the wrong type fails here, not
    // at the daemon, and what is sent is exactly what the contract holds.
    let req: CreateRequest = serde_json::from_value(o.to_body(detach)?).context("container options")?;
    let body = serde_json::to_value(&req)?;
    let mut path = "/containers/create?".to_string();
    if let Some(n) = &o.name {
        path.push_str(&format!("name={}&", enc(n)));
    }
    if let Some(p) = &o.platform {
        path.push_str(&format!("platform={}", enc(p)));
    }
    let tagged = o.image.contains('@') || o.image.rsplit('/').next().is_some_and(|last| last.contains(':'));
    let image = if tagged { o.image.clone() } else { format!("{}:latest", o.image) };
    let pull = |quiet: bool| crate::registry::pull_to(c, &image, false, o.platform.as_deref(), quiet, true);
    match o.pull.as_str() {
        "always" => pull(o.quiet).await?,
        "missing" | "never" => {}
        p => bail!("invalid pull option: '{p}': must be one of \"always\", \"missing\" or \"never\""),
    }
    let created: CreateResponse = match c.call_as(Method::POST, &path, Some(&body)).await {
        Err(e) if is_no_such_image(&e) && o.pull == "missing" => {
            eprintln!("Unable to find image '{image}' locally");
            pull(o.quiet).await?;
            c.call_as(Method::POST, &path, Some(&body)).await?
        }
        r => r?,
    };
    for w in &created.warnings {
        eprintln!("WARNING: {w}");
    }
    if let Some(f) = &o.cidfile {
        std::fs::write(f, &created.id)?;
    }
    Ok((created.id, req))
}

/// A failure of `run`/`create` itself (not of the container): docker's message, hint and 125.
fn run_failure(cmd: &str, e: &anyhow::Error) -> i32 {
    eprintln!("berth: {e:#}\n\nRun 'berth {cmd} --help' for more information");
    125
}

pub async fn create_cmd(c: &Client, a: CreateArgs) -> Result<i32> {
    match create(c, &a.opts, true).await {
        Ok((id, _)) => {
            println!("{id}");
            Ok(0)
        }
        Err(e) => Ok(run_failure("create", &e)),
    }
}

/// `berth run`: create, then (unless detached) wait and attach before start, as the docker CLI does.
pub async fn run(c: &Client, a: RunArgs) -> Result<i32> {
    let o = &a.opts;
    let (id, body) = match create(c, o, a.detach).await {
        Ok(x) => x,
        Err(e) => return Ok(run_failure("run", &e)),
    };
    if a.detach {
        if let Err(e) = c.call(Method::POST, &format!("/containers/{id}/start"), None).await {
            let code = start_failure_code(&e.to_string());
            run_failure("run", &e);
            return Ok(code);
        }
        println!("{id}");
        return Ok(0);
    }
    let j = Join {
        id: &id,
        tty: o.tty,
        stdin: body.config.attach_stdin,
        stdout: body.config.attach_stdout,
        stderr: body.config.attach_stderr,
        detach_keys: &a.detach_keys,
        sig_proxy: a.sig_proxy,
        condition: if o.rm { "removed" } else { "next-exit" },
        start: true,
    };
    match join_container(c, &j).await? {
        Joined::Exited(code) => Ok(code),
        Joined::Detached => Ok(0),
        Joined::StartFailed(e) => {
            let code = start_failure_code(&e.to_string());
            run_failure("run", &e);
            if o.rm {
                let _ = c.call(Method::DELETE, &format!("/containers/{id}?force=1"), None).await;
            }
            Ok(code)
        }
        Joined::WaitFailed(m) => {
            eprintln!("berth: {m}");
            Ok(125)
        }
    }
}

/// How a client joined to a container's streams (`run`, `start -a`, `attach`) should behave.
struct Join<'a> {
    id: &'a str,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    detach_keys: &'a Option<String>,
    sig_proxy: bool,
    /// The wait condition whose answer gives the exit code.
    condition: &'a str,
    /// Start the container once attached (`run`, `start -a`).
    start: bool,
}

enum Joined {
    Exited(i32),
    Detached,
    StartFailed(anyhow::Error),
    WaitFailed(String),
}

/// Docker's order: wait, attach, (raw mode), start, resize and signal proxy, pump the streams; then the
/// exit code from the wait, unless the user detached.
async fn join_container(c: &Client, j: &Join<'_>) -> Result<Joined> {
    let id = j.id;
    let (keys, spec) = detach_keys(j.detach_keys)?;
    let wait = tokio::spawn(Client::check(
        c.send(Method::POST, &format!("/containers/{id}/wait?condition={}", j.condition), empty(), None).await?,
    ));
    let stream = if j.stdin || j.stdout || j.stderr {
        let mut q = format!(
            "/containers/{id}/attach?stream=1&stdin={}&stdout={}&stderr={}",
            j.stdin as u8, j.stdout as u8, j.stderr as u8
        );
        if let Some(k) = &spec {
            q.push_str(&format!("&detachKeys={}", enc(k)));
        }
        Some(c.hijack(&q).await?)
    } else {
        None
    };
    let raw = if j.tty && j.stdin && tty::stdin_is_tty() { Some(tty::RawGuard::new()?) } else { None };
    if j.start {
        if let Err(e) = c.call(Method::POST, &format!("/containers/{id}/start"), None).await {
            return Ok(Joined::StartFailed(e));
        }
    }
    let resize = (j.tty && tty::stdout_is_tty()).then(|| tty::monitor_size(c, format!("/containers/{id}/resize")));
    let signals = (j.sig_proxy && !j.tty).then(|| tty::proxy_signals(c, id.to_string()));
    let detached = match stream {
        Some(s) => join_stream(s, j.stdin, j.tty, j.tty.then_some(keys)).await?,
        None => false,
    };
    drop(raw);
    for t in [resize, signals].into_iter().flatten() {
        t.abort();
    }
    if detached {
        return Ok(Joined::Detached);
    }
    let resp = wait.await??;
    let v: WaitResponse = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
    if let Some(m) = v.error.map(|e| e.message).filter(|m| !m.is_empty()) {
        return Ok(Joined::WaitFailed(m));
    }
    Ok(Joined::Exited(v.status_code as i32))
}

/// Exit code of a joined container for `start -a` and `attach`, whose failures are plain errors.
fn joined_code(j: Joined) -> Result<i32> {
    match j {
        Joined::Exited(code) => Ok(code),
        Joined::Detached => Ok(0),
        Joined::StartFailed(e) => Err(e),
        Joined::WaitFailed(m) => bail!(m),
    }
}

/// Pumps stdin (if attached) into the stream and the stream to stdout/stderr until the output
/// ends; returns true when the user typed the detach keys.
async fn join_stream(
    s: hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>,
    stdin: bool,
    tty_stream: bool,
    keys: Option<Vec<u8>>,
) -> Result<bool> {
    let (rd, wr) = tokio::io::split(s);
    let (detach_tx, mut detach_rx) = tokio::sync::oneshot::channel();
    let pump = stdin.then(|| {
        tokio::spawn(async move {
            let end = tty::pump_stdin(wr, keys).await;
            let _ = detach_tx.send(end == StdinEnd::Detached);
        })
    });
    let out = tty::copy_output(rd, tty_stream);
    tokio::pin!(out);
    let detached = tokio::select! {
        r = &mut out => { r?; false }
        d = &mut detach_rx, if pump.is_some() => d.unwrap_or(false) || { out.await?; false },
    };
    if let Some(p) = pump {
        p.abort();
    }
    Ok(detached)
}

/// `berth start [-a] [-i] CONTAINER...`
pub async fn start(c: &Client, a: StartArgs) -> Result<i32> {
    if !(a.attach || a.interactive) {
        return Ok(super::each(&a.containers, |n| {
            let c = c.clone();
            async move { c.call(Method::POST, &format!("/containers/{}/start", enc(&n)), None).await.map(|_| ()) }
        })
        .await);
    }
    if a.containers.len() > 1 {
        bail!("you cannot start and attach multiple containers at once");
    }
    let name = &a.containers[0];
    let info: ContainerInspect = c.get(&format!("/containers/{}/json", enc(name))).await?;
    let id = info.id;
    let tty_ctr = info.config.tty;
    let stdin = a.interactive && info.config.open_stdin;
    let j = Join {
        id: &id,
        tty: tty_ctr,
        stdin,
        stdout: true,
        stderr: true,
        detach_keys: &a.detach_keys,
        sig_proxy: !tty_ctr,
        condition: "next-exit",
        start: true,
    };
    joined_code(join_container(c, &j).await?)
}

/// `berth attach CONTAINER`: joins a running container; exits with its code when it ends.
pub async fn attach(c: &Client, a: AttachArgs) -> Result<i32> {
    let info: ContainerInspect = c.get(&format!("/containers/{}/json", enc(&a.container))).await?;
    let id = info.id;
    if !info.state.running {
        bail!(ApiError {
            status: hyper::StatusCode::CONFLICT,
            message: "You cannot attach to a stopped container, start it first".into()
        });
    }
    if info.state.paused {
        bail!("You cannot attach to a paused container, unpause it first");
    }
    let tty_ctr = info.config.tty;
    let stdin = !a.no_stdin && info.config.open_stdin;
    let j = Join {
        id: &id,
        tty: tty_ctr,
        stdin,
        stdout: true,
        stderr: true,
        detach_keys: &a.detach_keys,
        sig_proxy: a.sig_proxy,
        condition: "not-running",
        start: false,
    };
    joined_code(join_container(c, &j).await?)
}

/// `berth exec [-d] [-it] [-e] [-u] [-w] [--privileged] CONTAINER CMD...`
pub async fn exec(c: &Client, a: ExecArgs) -> Result<i32> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("open {f}: {e}"))?;
        env.extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
    }
    env.extend(a.env.iter().cloned());
    let (keys, spec) = detach_keys(&a.detach_keys)?;
    let body = json!({
        "User": a.user.clone().unwrap_or_default(),
        "Privileged": a.privileged,
        "Tty": a.tty,
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "DetachKeys": spec.clone().unwrap_or_default(),
        "Env": env,
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Cmd": a.cmd,
    });
    let created: IdResponse =
        c.call_as(Method::POST, &format!("/containers/{}/exec", enc(&a.container)), Some(&body)).await?;
    let eid = created.id;
    if a.detach {
        c.call(Method::POST, &format!("/exec/{eid}/start"), Some(&json!({"Detach": true, "Tty": a.tty}))).await?;
        return Ok(0);
    }
    let stream = c.hijack_with(&format!("/exec/{eid}/start"), Some(&json!({"Detach": false, "Tty": a.tty}))).await?;
    let raw = if a.tty && a.interactive && tty::stdin_is_tty() { Some(tty::RawGuard::new()?) } else { None };
    let resize = (a.tty && tty::stdout_is_tty()).then(|| tty::monitor_size(c, format!("/exec/{eid}/resize")));
    let detached = join_stream(stream, a.interactive, a.tty, a.tty.then_some(keys)).await?;
    drop(raw);
    if let Some(t) = resize {
        t.abort();
    }
    if detached {
        return Ok(0);
    }
    let info: ExecInspect = c.get(&format!("/exec/{eid}/json")).await?;
    Ok(info.exit_code.unwrap_or(126) as i32)
}
