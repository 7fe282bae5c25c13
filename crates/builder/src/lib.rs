//! The legacy (classic) Docker builder: runs a parsed Dockerfile over a [`Backend`] that owns images
//! and containers, with Docker's output stream and step cache.
//!
//! Each step turns the current image into the next one. The cache key of a step is the parent image
//! id, the step's history line (`created_by`), the runtime config it leaves and, for COPY/ADD, a
//! checksum of the sources' content and metadata, so an unchanged rebuild reuses every step.

mod context;
mod copy;
mod dispatch;
mod fetch;
mod runmount;
mod stages;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};

use berth_api::container::HostConfig;
use berth_api::image::ImageConfig;
use berth_api::progress::JsonMessage;
use berth_types::{Digest, Error, Reference, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub use berth_dockerfile::Dockerfile;
pub use context::Context;
pub use runmount::{AgentConn, BindRoot, RunMount, SecretSource, Secrets, Sharing, SshAgents, SshSource};

/// An image as the builder sees it: `id` is `None` for `scratch`.
#[derive(Debug, Clone, Default)]
pub struct BaseImage {
    pub id: Option<Digest>,
    pub config: ImageConfig,
}

/// What RUN asks the backend to execute.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub workdir: String,
    /// Resources, network mode, extra hosts, shm size, ulimits from the build request.
    pub host: HostConfig,
    /// Remove the container after a successful step (`rm`), and after a failed one too (`forcerm`).
    pub rm: bool,
    pub force_rm: bool,
    /// `RUN --mount`s (BuildKit builds only).
    pub mounts: Vec<RunMount>,
}

/// Work on a mounted root: the destination root, and the root of `--from`'s image when there is one.
pub type EditFn = Box<dyn FnOnce(&Path, Option<&Path>) -> Result<()> + Send>;

/// The services a build needs; the daemon implements it over its image and container services.
pub trait Backend: Send + Sync + 'static {
    /// A finished layer: the backend's handle to a diff it can commit.
    type Layer: Send + 'static;

    /// A local image, or pulled (always when `pull`, else only when missing); progress goes to `out`.
    fn base_image(
        &self,
        name: &str,
        pull: bool,
        auth: &Value,
        out: &Output,
    ) -> impl Future<Output = Result<BaseImage>> + Send;

    /// Runs `spec` in a fresh container on `parent`, streaming its output; its changes become the layer.
    /// A non-zero exit is `Err(Error::Build{code})`.
    fn run(&self, parent: &BaseImage, spec: RunSpec, out: &Output) -> impl Future<Output = Result<Self::Layer>> + Send;

    /// Mounts a writable root over `parent` (and `from`'s root read-only), runs `f` on a blocking
    /// thread, and keeps what it changed as the layer.
    fn edit(
        &self,
        parent: &BaseImage,
        from: Option<&BaseImage>,
        f: EditFn,
    ) -> impl Future<Output = Result<Self::Layer>> + Send;

    /// A new image: `parent`'s layers plus `layer`, with `config`. The last history entry is this
    /// step's; an empty layer is marked `empty_layer` and not added.
    fn commit(
        &self,
        parent: &BaseImage,
        layer: Option<Self::Layer>,
        config: ImageConfig,
    ) -> impl Future<Output = Result<BaseImage>> + Send;

    /// Like `commit`, with a layer already in the store (named by diff id on top of `parent`'s):
    /// `None` when that layer is not there.
    fn commit_existing(
        &self,
        parent: &BaseImage,
        diff: Option<Digest>,
        config: ImageConfig,
    ) -> impl Future<Output = Result<Option<BaseImage>>> + Send;

    /// A local image, never pulled (`--cache-from` sources).
    fn local_image(&self, name: &str) -> impl Future<Output = Option<BaseImage>> + Send;

    fn cache_get(&self, key: &Digest) -> impl Future<Output = Option<BaseImage>> + Send;
    fn cache_put(&self, key: &Digest, image: &Digest, created_by: &str) -> impl Future<Output = ()> + Send;

    fn tag(&self, image: &Digest, tags: &[Reference]) -> impl Future<Output = Result<()>> + Send;
}

/// The build's output stream: one JSON message per line, as `POST /build` answers.
#[derive(Clone)]
pub struct Output {
    tx: mpsc::UnboundedSender<JsonMessage>,
    quiet: bool,
    /// The client's stream when this is one stage's buffer.
    parent: Option<mpsc::UnboundedSender<JsonMessage>>,
}

impl Output {
    pub fn new(quiet: bool) -> (Output, mpsc::UnboundedReceiver<JsonMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Output { tx, quiet, parent: None }, rx)
    }

    /// A stage's own stream, replayed into this one in order; it notices the client leaving.
    pub(crate) fn child(&self) -> (Output, mpsc::UnboundedReceiver<JsonMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Output { tx, quiet: self.quiet, parent: Some(self.parent.clone().unwrap_or_else(|| self.tx.clone())) }, rx)
    }

    /// A `{"stream": ...}` line, dropped in quiet mode.
    pub fn stream(&self, s: impl Into<String>) {
        if !self.quiet {
            let _ = self.tx.send(JsonMessage::stream(s));
        }
    }

    /// A raw message (pull progress, aux), dropped in quiet mode unless `always`.
    pub fn message(&self, v: JsonMessage, always: bool) {
        if always || !self.quiet {
            let _ = self.tx.send(v);
        }
    }

    /// True once the client went away: the build stops at the next step.
    pub fn gone(&self) -> bool {
        self.tx.is_closed() || self.parent.as_ref().is_some_and(|p| p.is_closed())
    }
}

/// `POST /build`'s parameters, decoded.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Path of the Dockerfile inside the context.
    pub dockerfile: String,
    pub tags: Vec<Reference>,
    pub build_args: BTreeMap<String, Option<String>>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    pub quiet: bool,
    pub host: HostConfig,
    pub rm: bool,
    pub force_rm: bool,
    /// X-Registry-Config: registry host to auth config.
    pub auths: Value,
    pub platform: Option<String>,
    /// Images whose build history may serve as cache (`--cache-from`).
    pub cache_from: Vec<String>,
    /// The Dockerfile itself, when it did not come in the context (BuildKit's session sends it
    /// on its own); `dockerfile` is then only its name.
    pub dockerfile_text: Option<String>,
    /// The client applied `.dockerignore` already (BuildKit's file sync does, from the patterns
    /// berthd sent), so it is not applied again.
    pub context_filtered: bool,
    /// `RUN --mount` is BuildKit syntax: builds that came through BuildKit's API allow it.
    pub run_mounts: bool,
    /// The client's secrets (`RUN --mount=type=secret`), when its session offers them.
    pub secrets: Option<SecretSource>,
    /// The client's SSH agents (`RUN --mount=type=ssh`), when its session forwards any.
    pub ssh: Option<SshSource>,
    /// Named contexts (`--build-context NAME=...`), lower-cased name to the image that stands for
    /// it wherever `FROM NAME`, `COPY --from=NAME` or `--mount=from=NAME` says NAME (a stage of
    /// that name included, as BuildKit).
    pub named_contexts: BTreeMap<String, String>,
    /// Content digests of context files known beforehand (BuildKit's kept contexts), by path
    /// under the context folder: the cache key does not read them again.
    pub context_digests: std::collections::HashMap<PathBuf, [u8; 32]>,
}

/// The outcome of a whole build.
#[derive(Debug, Clone)]
pub struct Built {
    pub id: Digest,
}

/// Reads and parses the Dockerfile and applies `.dockerignore`: failures here are the request's
/// (an HTTP error), not the build's. Blocking.
pub fn prepare(ctx: &Context, opts: &BuildOptions) -> Result<Dockerfile> {
    let text = match &opts.dockerfile_text {
        Some(t) => t.clone(),
        None => ctx.dockerfile(&opts.dockerfile)?,
    };
    if !opts.context_filtered {
        ctx.apply_dockerignore()?;
    }
    let df = berth_dockerfile::parse(&text).map_err(|e| Error::invalid(e.to_string()))?;
    if let Some(t) = opts.target.as_deref().filter(|t| !t.is_empty()) {
        if df.stage_index(t).is_none() {
            return Err(Error::invalid(format!("failed to reach build target {t} in Dockerfile")));
        }
    }
    Ok(df)
}

/// Runs a whole build; progress and errors are also written to `out` in Docker's format.
pub async fn build<B: Backend>(
    backend: &B,
    ctx: &Context,
    df: &Dockerfile,
    opts: &BuildOptions,
    out: &Output,
) -> Result<Built> {
    let res = stages::run(backend, ctx, df, opts, out).await;
    match &res {
        Ok(b) => {
            out.message(JsonMessage::aux(json!({"ID": b.id.as_str()})), true);
            if opts.quiet {
                out.message(JsonMessage::stream(format!("{}\n", b.id)), true);
            }
            out.stream(format!("Successfully built {}\n", berth_types::short_id(b.id.hex())));
            for t in &opts.tags {
                out.stream(format!("Successfully tagged {}\n", t.familiar()));
            }
        }
        Err(e) => {
            out.message(JsonMessage::error(e.to_string(), e.exit_code()), true);
        }
    }
    res
}

pub(crate) fn cancelled() -> Error {
    Error::invalid("build cancelled: the client went away")
}
