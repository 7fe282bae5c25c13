//! `berth build`: the classic builder's client side, as the docker CLI does it without buildx: the
//! context folder as a tar (`.dockerignore` applied here, the Dockerfile and .dockerignore always
//! sent), a Dockerfile outside the context added under a private name, `POST /build`, and the
//! output stream printed as it comes.

use berth_api::progress::JsonMessage;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_dockerfile::pattern::Ignore;
use hyper::Method;
use serde_json::Value;

use crate::client::{enc, reader_body, Client};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildArgs {
    /// The build context folder (its id must not clash with the global --context)
    #[arg(id = "path", value_name = "PATH")]
    pub context: String,
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    /// Remove intermediate containers after a successful build
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub rm: bool,
    /// Always remove intermediate containers
    #[arg(long = "force-rm")]
    pub force_rm: bool,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Add a custom host-to-IP mapping ("host:ip")
    #[arg(long = "add-host")]
    pub add_hosts: Vec<String>,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
}

fn add_tree(tar: &mut tar::Builder<std::fs::File>, root: &Path, rel: &Path, ig: &Ignore, keep: &[&str]) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))?.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let r = rel.join(e.file_name());
        let rs = r.to_string_lossy().to_string();
        let kept = keep.contains(&rs.as_str());
        let ft = e.file_type()?;
        if ig.excludes(&rs) && !kept && !(ft.is_dir() && ig.has_exclusions()) {
            continue;
        }
        if ft.is_dir() {
            if !ig.excludes(&rs) {
                tar.append_path_with_name(e.path(), &r)?;
            }
            add_tree(tar, root, &r, ig, keep)?;
        } else if !ig.excludes(&rs) || kept {
            tar.append_path_with_name(e.path(), &r).with_context(|| format!("add {rs}"))?;
        }
    }
    Ok(())
}

/// Writes the context tar into a temporary file; returns it and the Dockerfile's name in it.
fn context_tar(a: &BuildArgs) -> Result<(PathBuf, String)> {
    let root = Path::new(&a.context);
    if !root.is_dir() {
        bail!("unable to prepare context: path {:?} not found", a.context);
    }
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap_or_default();
    let ig = Ignore::parse(&ignore);
    // -f is relative to the current directory; inside the context it is sent as a context path,
    // outside (or from stdin) it is added under a private name.
    let (dockerfile, extra): (String, Option<Vec<u8>>) = match a.file.as_deref() {
        None => ("Dockerfile".into(), None),
        Some("-") => {
            let mut text = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)?;
            (format!(".dockerfile.{}", random_hex()), Some(text))
        }
        Some(f) => {
            let abs = std::fs::canonicalize(f).with_context(|| format!("unable to prepare context: {f}"))?;
            let root_abs = std::fs::canonicalize(root)?;
            match abs.strip_prefix(&root_abs) {
                Ok(rel) => (rel.to_string_lossy().into_owned(), None),
                Err(_) => (format!(".dockerfile.{}", random_hex()), Some(std::fs::read(&abs)?)),
            }
        }
    };
    let tmp = std::env::temp_dir().join(format!("berth-context-{}.tar", random_hex()));
    let mut tar = tar::Builder::new(std::fs::File::create(&tmp)?);
    tar.follow_symlinks(false);
    let res = (|| -> Result<()> {
        add_tree(&mut tar, root, Path::new(""), &ig, &[dockerfile.as_str(), ".dockerignore"])?;
        if let Some(text) = extra {
            let mut h = tar::Header::new_gnu();
            h.set_size(text.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, &dockerfile, &text[..])?;
        }
        tar.into_inner()?.flush()?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((tmp, dockerfile))
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// `KEY=VALUE` pairs, or `KEY` taking the value from the environment (null when unset), as docker.
fn build_args_json(list: &[String]) -> String {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    for a in list {
        match a.split_once('=') {
            Some((k, v)) => m.insert(k.to_string(), Value::String(v.to_string())),
            None => m.insert(a.clone(), std::env::var(a).map(Value::String).unwrap_or(Value::Null)),
        };
    }
    serde_json::to_string(&m).unwrap_or_default()
}

/// Runs a build and prints its output; returns the exit code (a failed RUN's own code, as docker).
pub async fn build(c: &Client, a: &BuildArgs) -> Result<i32> {
    let (tar, dockerfile) = tokio::task::spawn_blocking({
        let a = a.clone();
        move || context_tar(&a)
    })
    .await??;
    let mut q = vec![format!("dockerfile={}", enc(&dockerfile))];
    q.extend(a.tags.iter().map(|t| format!("t={}", enc(t))));
    q.push(format!("buildargs={}", enc(&build_args_json(&a.build_args))));
    let labels: BTreeMap<&str, &str> = a.labels.iter().map(|l| l.split_once('=').unwrap_or((l, ""))).collect();
    q.push(format!("labels={}", enc(&serde_json::to_string(&labels)?)));
    q.push(format!("cachefrom={}", enc(&serde_json::to_string(&a.cache_from)?)));
    for (k, on) in [("nocache", a.no_cache), ("pull", a.pull), ("q", a.quiet), ("forcerm", a.force_rm)] {
        if on {
            q.push(format!("{k}=1"));
        }
    }
    q.push(format!("rm={}", u8::from(a.rm)));
    if let Some(t) = &a.target {
        q.push(format!("target={}", enc(t)));
    }
    if let Some(n) = &a.network {
        q.push(format!("networkmode={}", enc(n)));
    }
    if !a.add_hosts.is_empty() {
        q.push(format!("extrahosts={}", enc(&a.add_hosts.join(","))));
    }
    if let Some(p) = &a.platform {
        q.push(format!("platform={}", enc(p)));
    }
    q.push("version=1".into());
    let path = format!("/build?{}", q.join("&"));
    let file = tokio::fs::File::open(&tar).await?;
    let size = file.metadata().await?.len();
    if !a.quiet {
        eprintln!("Sending build context to Berth daemon  {}", human(size));
    }
    let sent = c.send(Method::POST, &path, reader_body(file), Some("application/x-tar")).await;
    let _ = std::fs::remove_file(&tar);
    let resp = Client::check(sent?).await?;
    let mut id = None;
    let mut out = std::io::stdout();
    let failed = crate::client::read_json_lines(resp, |v: JsonMessage| {
        if let Some(e) = &v.error {
            eprintln!("{}", e.trim_end());
            let code = v.error_detail.as_ref().and_then(|d| d.code).filter(|c| *c != 0);
            return Ok(Some(code.unwrap_or(1) as i32));
        }
        if !a.quiet {
            match &v.stream {
                Some(s) => {
                    let _ = out.write_all(s.as_bytes());
                    let _ = out.flush();
                }
                None => crate::client::print_status(&v),
            }
        }
        if let Some(i) = v.aux.as_ref().and_then(|a| a["ID"].as_str()) {
            id = Some(i.to_string());
        }
        Ok(None)
    })
    .await?;
    if let Some(code) = failed {
        return Ok(code);
    }
    if a.quiet {
        match id {
            Some(i) => println!("{i}"),
            None => bail!("the daemon did not report the image id"),
        }
    }
    Ok(0)
}

fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.3}{}", units[u]).replace(".000", "")
    }
}
