//! The `dockerfile.v0` frontend: reads the Dockerfile and the build context from the client's
//! session (the context already filtered by `.dockerignore` on the client's side, as BuildKit
//! asks for it), maps the frontend's attributes onto the builder's options, runs the build and
//! reports it as vertexes.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;

use berth_types::Error;
use tonic::Status;

use crate::control::status_of;
use crate::filesync::{self, Request};
use crate::progress::{Reporter, Translator};
use crate::session::Session;
use crate::{BuildKit, BuildOptions};

const DOCKERFILE_MAX: u64 = 16 << 20;
/// The context's bound: the classic `POST /build` has none beyond the disk either; this only
/// stops a runaway client.
const CONTEXT_MAX: u64 = 64 << 30;

/// Runs the build; the image id, or the build's error as the client shows it.
pub(crate) async fn dockerfile(
    bk: &BuildKit,
    session: &Session,
    attrs: &HashMap<String, String>,
    rep: &Reporter,
) -> Result<String, Status> {
    let mut opts = options(attrs).map_err(status_of)?;
    let (filename, df_dir) = dockerfile_local(attrs);
    let ctx_dir = attrs.get("contextkey").cloned().unwrap_or_else(|| "context".into());

    let v = rep.start("load-dockerfile", &format!("[internal] load build definition from {filename}"));
    let ignore_name = format!("{filename}.dockerignore");
    let files = fetch_small(session, &df_dir, &[filename.clone(), ignore_name.clone()])
        .await
        .inspect_err(|e| rep.fail(&v, &e.message))
        .map_err(status_of)?;
    let text = files
        .get(filename.trim_start_matches("./"))
        .or_else(|| (filename == "Dockerfile").then(|| files.get("dockerfile")).flatten())
        .ok_or_else(|| {
            let msg = format!("failed to read dockerfile: open {filename}: no such file or directory");
            rep.fail(&v, &msg);
            Status::invalid_argument(msg)
        })?;
    let text =
        String::from_utf8(text.clone()).map_err(|_| Status::invalid_argument("the Dockerfile is not valid UTF-8"))?;
    rep.log(&v, 1, format!("transferring dockerfile: {}B done\n", text.len()));
    rep.complete(&v);
    if let Some(img) = syntax_directive(&text) {
        rep.warn(&v, &format!("# syntax={img} is not run: berthd builds with its own Dockerfile frontend"));
    }

    let v = rep.start("load-dockerignore", "[internal] load .dockerignore");
    let ignore = match files.get(ignore_name.trim_start_matches("./")) {
        Some(t) => t.clone(),
        None => fetch_small(session, &ctx_dir, &[".dockerignore".into()])
            .await
            .inspect_err(|e| rep.fail(&v, &e.message))
            .map_err(status_of)?
            .remove(".dockerignore")
            .unwrap_or_default(),
    };
    let exclude = ignore_patterns(&String::from_utf8_lossy(&ignore));
    rep.log(&v, 1, format!("transferring context: {}B done\n", ignore.len()));
    rep.complete(&v);

    opts.dockerfile = filename;
    opts.dockerfile_text = Some(text);
    opts.context_filtered = true;
    opts.run_mounts = true;
    opts.auths = registry_auths(session, opts.dockerfile_text.as_deref().unwrap_or_default()).await;
    opts.secrets = Some(berth_builder::SecretSource(Arc::new(session.clone())));
    opts.ssh = Some(berth_builder::SshSource(Arc::new(session.clone())));
    // Folders given as named contexts become images for this build (removed after it).
    let imported = named_locals(bk, session, attrs, &mut opts, rep).await?;
    let res = run(bk, session, ctx_dir, exclude, opts, rep).await;
    for image in imported {
        if let Err(e) = bk.engine.remove_image(image.clone()).await {
            tracing::debug!("named context image {image}: {e}");
        }
    }
    res
}

/// `context:NAME=local:LOCAL` attributes: each folder comes from the session as a tar and is
/// imported as an image that NAME then stands for. Returns the images made.
async fn named_locals(
    bk: &BuildKit,
    session: &Session,
    attrs: &HashMap<String, String>,
    opts: &mut BuildOptions,
    rep: &Reporter,
) -> Result<Vec<String>, Status> {
    let mut made = Vec::new();
    for (k, v) in attrs {
        let (Some(name), Some(local)) = (k.strip_prefix("context:"), v.strip_prefix("local:")) else { continue };
        let vx = rep.start(&format!("named-{name}"), &format!("[context {name}] load from client"));
        let req = Request { dir: local.to_string(), max_bytes: CONTEXT_MAX, ..Default::default() };
        let (mut wr, rd) = tokio::io::duplex(1 << 20);
        let send = async {
            let res = filesync::receive(session, &req, &mut wr).await;
            drop(wr);
            res
        };
        let (sent, image) = tokio::join!(send, bk.engine.import_rootfs(Box::pin(rd)));
        match sent.and(image) {
            Ok(id) => {
                rep.complete(&vx);
                opts.named_contexts.insert(name.to_ascii_lowercase(), id.clone());
                made.push(id);
            }
            Err(e) => {
                rep.fail(&vx, &e.message);
                return Err(status_of(e));
            }
        }
    }
    Ok(made)
}

/// Transfers the context and runs the build; the image id, or the build's error.
async fn run(
    bk: &BuildKit,
    session: &Session,
    ctx_dir: String,
    exclude: Vec<String>,
    opts: BuildOptions,
    rep: &Reporter,
) -> Result<String, Status> {
    let v = rep.start("load-context", "[internal] load build context");
    let req = Request { dir: ctx_dir, exclude, max_bytes: CONTEXT_MAX, ..Default::default() };
    let (sent, started) = if session.shared_key.is_empty() {
        // No key to keep the context by: it comes whole, as a tar stream into the builder.
        let (mut wr, rd) = tokio::io::duplex(1 << 20);
        let send = async {
            let res = filesync::receive(session, &req, &mut wr).await;
            drop(wr);
            res
        };
        tokio::join!(send, bk.engine.build(Box::pin(rd), opts))
    } else {
        // Only what changed since the last build of this context comes over.
        let out = bk.work.join(berth_types::new_id());
        let key = session.shared_key.clone();
        match bk.contexts.sync(session, &key, &req, out.clone()).await {
            Ok((n, digests)) => {
                bk.contexts.evict().await;
                let mut opts = opts;
                opts.context_digests = digests;
                (Ok(n), bk.engine.build_dir(out, opts).await)
            }
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(out)).await;
                (Err(e), Err(berth_types::Error::invalid("no build context")))
            }
        }
    };
    // The transfer's own error explains a context the builder then found truncated.
    let bytes = sent.inspect_err(|e| rep.fail(&v, &e.message)).map_err(status_of)?;
    rep.status(&v, "transferring context", bytes as i64, true);
    rep.log(&v, 1, format!("transferring context: {bytes}B done\n"));
    // BuildKit answers a Dockerfile that does not parse with a plain (code Unknown) error; buildx
    // prints it as is.
    let mut rx = started.inspect_err(|e| rep.fail(&v, &e.message)).map_err(|e| Status::unknown(e.message))?;
    rep.complete(&v);

    let mut t = Translator::new(rep);
    while let Some(m) = rx.recv().await {
        t.feed(&m);
    }
    let out = t.finish();
    match (out.image, out.error) {
        (_, Some(e)) => Err(Status::unknown(e)),
        (Some(id), None) => Ok(id),
        (None, None) => Err(Status::unknown("the build ended without an image")),
    }
}

/// A build subrequest (`docker build --call NAME`) berthd answers without building: the result's
/// metadata, or `None` when the request is a build. `targets` lists the Dockerfile's stages as
/// BuildKit's `frontend.targets` (version 1.0.0); the others are refused by `options`.
pub(crate) async fn subrequest(
    session: &Session,
    attrs: &HashMap<String, String>,
) -> Result<Option<HashMap<String, Vec<u8>>>, Status> {
    if attrs.get("requestid").map(String::as_str) != Some("frontend.targets") {
        return Ok(None);
    }
    let (filename, df_dir) = dockerfile_local(attrs);
    let files = fetch_small(session, &df_dir, std::slice::from_ref(&filename)).await.map_err(status_of)?;
    let text = files.get(filename.trim_start_matches("./")).ok_or_else(|| {
        Status::invalid_argument(format!("failed to read dockerfile: open {filename}: no such file or directory"))
    })?;
    let df = berth_dockerfile::parse(&String::from_utf8_lossy(text)).map_err(|e| Status::unknown(e.to_string()))?;
    let last = df.stages.len().saturating_sub(1);
    let targets: Vec<serde_json::Value> = df
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut t = serde_json::json!({
                "base": s.base,
                "location": {"ranges": [{"start": {"line": s.line}, "end": {"line": s.line}}]},
            });
            if let Some(n) = &s.name {
                t["name"] = n.clone().into();
            }
            if i == last {
                t["default"] = true.into();
            }
            if let Some(p) = &s.platform {
                t["platform"] = p.clone().into();
            }
            t
        })
        .collect();
    use base64::Engine as _;
    let list =
        serde_json::json!({"targets": targets, "sources": [base64::engine::general_purpose::STANDARD.encode(text)]});
    let json = serde_json::to_vec_pretty(&list).map_err(|e| Status::internal(e.to_string()))?;
    let mut txt = String::from("TARGET\tDESCRIPTION\n");
    for (i, s) in df.stages.iter().enumerate() {
        // As BuildKit's PrintTargets.
        let name = match (&s.name, i == last) {
            (None, true) => "(default)".to_string(),
            (Some(n), true) => format!("{n} (default)"),
            (Some(n), false) => n.clone(),
            (None, false) => String::new(),
        };
        txt.push_str(&format!("{name}\t\n"));
    }
    Ok(Some(HashMap::from([
        ("result.json".to_string(), json),
        ("result.txt".to_string(), txt.into_bytes()),
        ("version".to_string(), b"1.0.0".to_vec()),
    ])))
}

/// The Dockerfile's name and the session local it comes from (`filename`, `dockerfilekey`).
fn dockerfile_local(attrs: &HashMap<String, String>) -> (String, String) {
    let filename = attrs.get("filename").filter(|f| !f.is_empty()).cloned().unwrap_or_else(|| "Dockerfile".into());
    let dir = attrs.get("dockerfilekey").cloned().unwrap_or_else(|| "dockerfile".into());
    (filename, dir)
}

/// A few named files of a session directory (the Dockerfile and its ignore file), in memory.
async fn fetch_small(session: &Session, dir: &str, names: &[String]) -> berth_types::Result<HashMap<String, Vec<u8>>> {
    let names: Vec<String> = names.iter().map(|n| n.trim_start_matches("./").to_string()).collect();
    let req = Request {
        dir: dir.into(),
        include: names.clone(),
        follow: names.clone(),
        max_bytes: DOCKERFILE_MAX,
        ..Default::default()
    };
    let mut tar = Vec::new();
    filesync::receive(session, &req, &mut tar).await?;
    let mut out = HashMap::new();
    let mut a = tar::Archive::new(tar.as_slice());
    for e in a.entries()? {
        let mut e = e?;
        let path = e.path()?.to_string_lossy().trim_end_matches('/').to_string();
        if e.header().entry_type().is_file() && names.contains(&path) {
            let mut data = Vec::new();
            e.read_to_end(&mut data)?;
            out.insert(path, data);
        }
    }
    Ok(out)
}

/// Credentials for the registries of the images the Dockerfile names (`FROM`, `COPY --from`,
/// `RUN --mount=from=`), asked from the client's session (its `docker login`s), in the shape of
/// the classic protocol's X-Registry-Config. Names with variables are left to the pull (anonymous).
async fn registry_auths(session: &Session, text: &str) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    let Ok(df) = berth_dockerfile::parse(text) else { return out.into() };
    let stages: Vec<String> = df.stages.iter().filter_map(|s| s.name.clone()).collect();
    let mut names: Vec<String> = Vec::new();
    for s in &df.stages {
        names.push(s.base.clone());
        for ins in &s.instructions {
            for (k, v) in &ins.flags {
                let v = v.as_deref().unwrap_or_default();
                match k.as_str() {
                    "from" => names.push(v.to_string()),
                    "mount" => {
                        names.extend(v.split(',').filter_map(|f| f.trim().strip_prefix("from=")).map(String::from))
                    }
                    _ => {}
                }
            }
        }
    }
    for n in names {
        if n.contains('$') || n == "scratch" || stages.contains(&n.to_ascii_lowercase()) || n.parse::<usize>().is_ok() {
            continue;
        }
        let Ok(r) = berth_types::Reference::parse(&n) else { continue };
        let domain = r.domain().to_string();
        if out.contains_key(&domain) {
            continue;
        }
        // The CLI's auth provider knows Docker Hub by its registry host.
        let host = if domain == "docker.io" { "registry-1.docker.io" } else { domain.as_str() };
        match session.credentials(host).await {
            Ok((user, secret)) if !secret.is_empty() => {
                let auth = if user.is_empty() {
                    serde_json::json!({"identitytoken": secret})
                } else {
                    serde_json::json!({"username": user, "password": secret})
                };
                out.insert(domain, auth);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("credentials for {host}: {e}"),
        }
    }
    out.into()
}

/// `.dockerignore` lines as fsutil's exclude patterns (the client applies them).
fn ignore_patterns(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (neg, p) = l.strip_prefix('!').map(|p| ("!", p.trim())).unwrap_or(("", l));
            let p = p.trim_start_matches('/');
            format!("{neg}{}", if p.is_empty() { "." } else { p })
        })
        .collect()
}

/// The image of a `# syntax=` parser directive.
fn syntax_directive(text: &str) -> Option<String> {
    for line in text.lines() {
        let l = line.trim();
        let d = l.strip_prefix('#')?;
        if let Some((k, v)) = d.split_once('=') {
            if k.trim().eq_ignore_ascii_case("syntax") {
                return Some(v.trim().to_string());
            }
        }
    }
    None
}

/// The frontend's attributes as the builder's options; what berthd cannot do is refused.
fn options(attrs: &HashMap<String, String>) -> berth_types::Result<BuildOptions> {
    let mut o = BuildOptions { rm: true, ..Default::default() };
    let mut args = BTreeMap::new();
    let mut labels = BTreeMap::new();
    for (k, v) in attrs {
        if let Some(name) = k.strip_prefix("build-arg:") {
            args.insert(name.to_string(), Some(v.clone()));
        } else if let Some(name) = k.strip_prefix("label:") {
            labels.insert(name.to_string(), v.clone());
        } else if let Some(name) = k.strip_prefix("context:") {
            let name = name.to_ascii_lowercase();
            if let Some(image) = v.strip_prefix("docker-image://") {
                o.named_contexts.insert(name, image.to_string());
            } else if !v.starts_with("local:") {
                // (`local:` folders are imported from the session before the build: `named_locals`.)
                return Err(Error::not_implemented(format!(
                    "named build context {name}={v} is not supported by berthd: use a folder or docker-image://"
                )));
            }
        } else if k.starts_with("input:") {
            return Err(Error::not_implemented(format!("build inputs ({k}) are not supported by berthd")));
        }
    }
    o.build_args = args;
    o.labels = labels;
    o.target = attrs.get("target").filter(|t| !t.is_empty()).cloned();
    // BuildKit's `no-cache` names stages, or none for all: berthd skips the cache for all.
    o.no_cache = attrs.contains_key("no-cache");
    o.pull = attrs.get("image-resolve-mode").is_some_and(|m| m == "pull");
    if let Some(p) = attrs.get("platform").filter(|p| !p.is_empty()) {
        if p.contains(',') {
            return Err(Error::not_implemented(format!(
                "multi-platform build ({p}) is not supported by berthd: build one platform at a time"
            )));
        }
        if !p.starts_with("linux") {
            return Err(Error::invalid(format!("unsupported platform {p}: only linux images can be built")));
        }
        o.platform = Some(p.clone());
    }
    if let Some(id) = attrs.get("requestid").filter(|r| r.starts_with("frontend.")) {
        return Err(Error::not_implemented(format!(
            "build subrequest {id} (--call/--check) is not supported by berthd"
        )));
    }
    if let Some(hosts) = attrs.get("add-hosts").filter(|h| !h.is_empty()) {
        // BuildKit writes `host=ip`; the builder takes Docker's `host:ip`.
        let list: Vec<String> =
            hosts.split(',').map(|h| h.trim().replacen('=', ":", 1)).filter(|h| !h.is_empty()).collect();
        o.host.extra_hosts = Some(list);
    }
    if let Some(m) = attrs.get("force-network-mode").filter(|m| !m.is_empty()) {
        match m.as_str() {
            "host" | "none" => o.host.network_mode = m.clone(),
            "sandbox" | "default" => {}
            other => return Err(Error::invalid(format!("network mode {other:?} is not supported"))),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_map_onto_the_builder() {
        let attrs: HashMap<String, String> = [
            ("build-arg:A", "1"),
            ("label:l", "v"),
            ("target", "t"),
            ("no-cache", ""),
            ("image-resolve-mode", "pull"),
            ("add-hosts", "h=1.2.3.4"),
            ("force-network-mode", "host"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let o = options(&attrs).unwrap();
        assert_eq!(o.build_args.get("A"), Some(&Some("1".into())));
        assert_eq!(o.labels.get("l").map(String::as_str), Some("v"));
        assert_eq!(o.target.as_deref(), Some("t"));
        assert!(o.no_cache && o.pull);
        assert_eq!(o.host.network_mode, "host");
        assert_eq!(o.host.extra_hosts, Some(vec!["h:1.2.3.4".to_string()]));
    }

    #[test]
    fn what_berthd_cannot_do_is_refused() {
        for (k, v) in [
            ("context:base", "https://example.com/repo.git"),
            ("platform", "linux/amd64,linux/arm64"),
            ("requestid", "frontend.outline"),
        ] {
            let attrs = HashMap::from([(k.to_string(), v.to_string())]);
            assert!(options(&attrs).is_err(), "{k}");
        }
    }

    #[test]
    fn ignore_files_become_exclude_patterns() {
        assert_eq!(ignore_patterns("# c\n\n/node_modules\n!keep\n*.log \n"), vec!["node_modules", "!keep", "*.log"]);
        assert_eq!(syntax_directive("# syntax=docker/dockerfile:1\nFROM a"), Some("docker/dockerfile:1".into()));
        assert_eq!(syntax_directive("FROM a\n# syntax=x"), None);
    }
}
