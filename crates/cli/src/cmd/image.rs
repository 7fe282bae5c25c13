//! `berth image …` (and `images`, `rmi`, `pull`, `push`, `build`, `save`, `load`, `history`, `tag`,
//! `import`): docker's flags, tables and `--format` fields.

use anyhow::Result;
use berth_api::image::{DeleteResponseItem, HistoryItem, ImageSummary};
use berth_api::progress::JsonMessage;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use super::{confirm, filters_query, inspect_format, kv_filters, prune_report, render, save_stream, FormatArg};
use crate::build::BuildArgs;
use crate::client::{enc, reader_body, ApiError, Client};
use crate::units::{ago, ellipsis, human_size_prec, short};
use http_body_util::BodyExt;

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Display detailed information on one or more images
    Inspect(ImageInspectArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// List images
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Remove unused images
    Prune(ImagePruneArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Remove one or more images
    #[command(alias = "remove", alias = "rmi")]
    Rm(RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
}

#[derive(Args, Debug)]
#[command(override_usage = "berth images [OPTIONS] [REPOSITORY[:TAG]]")]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub format: FormatArg,
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long = "message", default_value = "")]
    pub message: String,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// file|URL|- (a tarball)
    pub file: String,
    pub reference: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImageInspectArgs {
    #[command(flatten)]
    pub format: super::InspectFormat,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImagePruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth pull [OPTIONS] NAME[:TAG|@DIGEST]")]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth push [OPTIONS] NAME[:TAG]")]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short, long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth rmi [OPTIONS] IMAGE [IMAGE...]")]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
#[command(override_usage = "berth tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]")]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

pub const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

pub const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

pub async fn run(c: &Client, cmd: ImageCmd) -> Result<i32> {
    match cmd {
        ImageCmd::Build(a) => crate::build::build(c, &a).await,
        ImageCmd::History(a) => {
            let list: Vec<HistoryItem> = c.get(&format!("/images/{}/history", a.image)).await?;
            let trunc = !a.no_trunc;
            let rows: Vec<Value> = list
                .iter()
                .map(|h| {
                    let id = if h.id.is_empty() { "<missing>" } else { h.id.as_str() };
                    let by = h.created_by.replace('\t', " ");
                    let created = h.created;
                    let size = h.size as f64;
                    json!({
                        "ID": if id == "<missing>" || !trunc { id.to_string() } else { short(id) },
                        "CreatedSince": if a.human { ago(created) } else { created.to_string() },
                        "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|d| d.to_rfc3339()).unwrap_or_default(),
                        "CreatedBy": if trunc { ellipsis(&by, 45) } else { by },
                        "Size": if a.human { human_size_prec(size, 3) } else { (size as i64).to_string() },
                        "Comment": h.comment,
                    })
                })
                .collect();
            if a.quiet {
                rows.iter().for_each(|r| println!("{}", r["ID"].as_str().unwrap_or("")));
                return Ok(0);
            }
            let default = "table {{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedBy}}\\t{{.Size}}\\t{{.Comment}}";
            print!("{}", render(&rows, &a.format, HISTORY_HEADERS, default)?);
            Ok(0)
        }
        ImageCmd::Import(a) => {
            print!("{}", import(c, &a.file, a.reference.as_deref(), &a.change, &a.message).await?);
            Ok(0)
        }
        ImageCmd::Inspect(a) => {
            let paths: Vec<String> = a.images.iter().map(|n| format!("/images/{n}/json")).collect();
            inspect_format(c, &paths, &a.images, a.format.format.as_deref(), "image").await
        }
        ImageCmd::Load(a) => {
            let body = match &a.input {
                Some(f) => reader_body(tokio::fs::File::open(f).await.map_err(|e| anyhow::anyhow!("open {f}: {e}"))?),
                None => {
                    if crate::tty::stdin_is_tty() {
                        anyhow::bail!("requested load from stdin, but stdin is empty");
                    }
                    reader_body(tokio::io::stdin())
                }
            };
            let resp = Client::check(
                c.send(Method::POST, &format!("/images/load?quiet={}", a.quiet as u8), body, Some("application/x-tar"))
                    .await?,
            )
            .await?;
            let mut p = crate::progress::Progress::new(a.quiet, false);
            let r = crate::client::read_json_lines(resp, |v: JsonMessage| -> Result<Option<()>> {
                if let Some(e) = &v.error {
                    anyhow::bail!(ApiError { status: hyper::StatusCode::OK, message: e.to_string() });
                }
                if let Some(s) = &v.stream {
                    print!("{s}");
                } else {
                    p.show(&v);
                }
                Ok(None)
            })
            .await;
            p.finish();
            r?;
            Ok(0)
        }
        ImageCmd::Ls(a) => {
            print!("{}", images(c, &a).await?);
            Ok(0)
        }
        ImageCmd::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all images without at least one container associated to them."
            } else {
                "WARNING! This will remove all dangling images."
            };
            if !a.force && !confirm(warning)? {
                return Ok(0);
            }
            let mut f = a.filter.clone();
            f.push(format!("dangling={}", !a.all));
            let v = c.call(Method::POST, &format!("/images/prune?{}", filters_query(&f)), None).await?;
            print!("{}", prune_report(&v, "ImagesDeleted", "Deleted Images:"));
            Ok(0)
        }
        ImageCmd::Pull(a) => {
            crate::registry::pull(c, &a.image, a.all_tags, a.platform.as_deref(), a.quiet).await?;
            Ok(0)
        }
        ImageCmd::Push(a) => {
            crate::registry::push(c, &a.image, a.all_tags, a.quiet).await?;
            Ok(0)
        }
        ImageCmd::Rm(a) => {
            let mut code = 0;
            for i in &a.images {
                let q = format!("force={}&noprune={}", a.force as u8, a.no_prune as u8);
                match c.call(Method::DELETE, &format!("/images/{i}?{q}"), None).await {
                    Ok(v) => {
                        let items: Vec<DeleteResponseItem> = serde_json::from_value(v).unwrap_or_default();
                        for it in items {
                            if let Some(t) = it.untagged {
                                println!("Untagged: {t}");
                            }
                            if let Some(d) = it.deleted {
                                println!("Deleted: {d}");
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("{e:#}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        ImageCmd::Save(a) => {
            let q: Vec<String> = a.images.iter().map(|i| format!("names={}", enc(i))).collect();
            save_stream(c, Method::GET, &format!("/images/get?{}", q.join("&")), a.output.as_deref()).await?;
            Ok(0)
        }
        ImageCmd::Tag(a) => {
            let (repo, tag) = super::split_tag(&a.target);
            c.call(Method::POST, &format!("/images/{}/tag?repo={}&tag={}", a.source, enc(&repo), enc(&tag)), None)
                .await?;
            Ok(0)
        }
    }
}

pub async fn images(c: &Client, a: &ImagesArgs) -> Result<String> {
    let mut f = a.filter.clone();
    if let Some(r) = &a.reference {
        f.push(format!("reference={r}"));
    }
    let list: Vec<ImageSummary> =
        c.get(&format!("/images/json?all={}&filters={}", a.all as u8, enc(&kv_filters(&f).to_string()))).await?;
    let trunc = !a.no_trunc;
    let mut rows = Vec::new();
    for i in &list {
        let id = if trunc { short(&i.id) } else { i.id.clone() };
        let (tags, digests) = (&i.repo_tags, &i.repo_digests);
        let created = i.created;
        let size = human_size_prec(i.size as f64, 3);
        let mut row = |repo: &str, tag: &str, digest: &str| {
            rows.push(json!({
                "ID": id,
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": ago(created),
                "CreatedAt": chrono::DateTime::from_timestamp(created, 0).map(|d| d.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()).unwrap_or_default(),
                "Size": size,
                "Containers": match i.containers { n if n >= 0 => n.to_string(), _ => "N/A".into() },
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "VirtualSize": size,
            }));
        };
        let digest_of = |repo: &str| {
            digests
                .iter()
                .find_map(|d| d.split_once('@').filter(|(r, _)| *r == repo).map(|(_, d)| d.to_string()))
                .unwrap_or_else(|| "<none>".into())
        };
        if tags.is_empty() {
            match digests.first().and_then(|d| d.split_once('@')) {
                Some((r, d)) => row(r, "<none>", d),
                None => row("<none>", "<none>", "<none>"),
            }
        }
        for t in tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((t, "<none>"));
            row(repo, tag, &digest_of(repo));
        }
    }
    if a.quiet && a.format.format.is_none() {
        return Ok(rows.iter().map(|r| format!("{}\n", r["ID"].as_str().unwrap_or(""))).collect());
    }
    let default = if a.digests {
        "table {{.Repository}}\\t{{.Tag}}\\t{{.Digest}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
    } else {
        "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}"
    };
    render(&rows, &a.format, IMAGE_HEADERS, default)
}

/// `docker import`: the tarball streamed to `/images/create?fromSrc=-`, the new id printed.
pub async fn import(
    c: &Client,
    file: &str,
    reference: Option<&str>,
    changes: &[String],
    message: &str,
) -> Result<String> {
    let mut path = "/images/create?fromSrc=-".to_string();
    if let Some(r) = reference {
        path.push_str(&format!("&repo={}", enc(r)));
    }
    for ch in changes {
        path.push_str(&format!("&changes={}", enc(ch)));
    }
    if !message.is_empty() {
        path.push_str(&format!("&message={}", enc(message)));
    }
    let body = if file == "-" {
        reader_body(tokio::io::stdin())
    } else {
        reader_body(tokio::fs::File::open(file).await.map_err(|e| anyhow::anyhow!("open {file}: {e}"))?)
    };
    let resp = Client::check(c.send(Method::POST, &path, body, Some("application/x-tar")).await?).await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    let mut out = String::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: JsonMessage = serde_json::from_slice(line)?;
        if let Some(e) = &v.error {
            anyhow::bail!(ApiError { status: hyper::StatusCode::OK, message: e.to_string() });
        }
        if let Some(s) = &v.status {
            out.push_str(s);
            out.push('\n');
        }
    }
    Ok(out)
}
