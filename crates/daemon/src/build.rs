//! `POST /build`: the classic builder (crate `berth-builder`) over this daemon's images and
//! containers. RUN steps are real containers (same isolation, networks and limits as `docker run`);
//! COPY/ADD/WORKDIR work on a scratch snapshot mounted for the step.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_api::container::{Config, CreateRequest};
use berth_api::image::ImageConfig;
use berth_api::progress::JsonMessage;
pub use berth_builder::BuildOptions;
use berth_builder::{Backend, BaseImage, Context, Dockerfile, EditFn, Output, RunSpec};
use berth_distribution::auth::AuthConfig;
pub use berth_image::CachePruneOptions;
use berth_image::{CacheEntry, LayerInfo};
use berth_types::{new_id, short_id, Digest, Error, Reference, Result};
use serde_json::Value;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::container::{AttachOptions, WaitCondition};
use crate::images::pull::PullOptions;
use crate::{ContainerService, ImageService};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

/// A step's changes as a layer tar in the image store's temp folder; `None` when nothing changed.
pub struct DiffTar(Option<PathBuf>);

impl Drop for DiffTar {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub struct BuildService {
    containers: Arc<ContainerService>,
    images: Arc<ImageService>,
}

/// A build whose context is unpacked and whose Dockerfile parsed: ready to stream.
pub struct Prepared {
    ctx: Arc<Context>,
    df: Dockerfile,
    opts: BuildOptions,
}

impl BuildService {
    pub fn new(containers: Arc<ContainerService>, images: Arc<ImageService>) -> BuildService {
        BuildService { containers, images }
    }

    /// Unpacks the context stream and parses the Dockerfile: errors here answer the request itself.
    pub async fn prepare(&self, body: impl AsyncRead + Send + Unpin + 'static, opts: BuildOptions) -> Result<Prepared> {
        let dir = self.images.store().layout().tmp().join(format!("context-{}", new_id()));
        prepare_with(opts, move || Context::extract(SyncIoBridge::new(body), dir)).await
    }

    /// Like `prepare`, over a context folder that is already there (BuildKit's kept contexts);
    /// the build removes it when it ends.
    pub async fn prepare_dir(&self, dir: PathBuf, mut opts: BuildOptions) -> Result<Prepared> {
        let known = std::mem::take(&mut opts.context_digests);
        prepare_with(opts, move || Context::adopt(dir, known)).await
    }

    /// Runs a prepared build; its output stream ends when the build does. Dropping the receiver
    /// cancels the build at the next step (and kills a running RUN).
    pub fn run(self: &Arc<Self>, p: Prepared) -> mpsc::UnboundedReceiver<JsonMessage> {
        let (out, rx) = Output::new(p.opts.quiet);
        let build = new_id();
        let backend =
            DaemonBackend { containers: self.containers.clone(), images: self.images.clone(), build: build.clone() };
        tokio::spawn(async move {
            let Prepared { ctx, df, opts } = p;
            if let Err(e) = berth_builder::build(&backend, &ctx, &df, &opts, &out).await {
                tracing::info!("build failed: {e}");
                // dockerd's reasons: a cancelled build, or a step that failed.
                build_failed(if e.message.contains("cancel") {
                    "build_canceled"
                } else {
                    "error_processing_commands_error"
                });
            }
            // Its images are the client's now (a failed build's steps stay as cache, as Docker's).
            let store = backend.images.store();
            if let Err(e) = blocking(move || store.build_finished(&build)).await {
                tracing::warn!("build bookkeeping: {e}");
            }
            // The context folder goes with the last reference.
            drop(ctx);
        });
        rx
    }

    /// `docker system df`'s build cache.
    pub async fn cache(&self) -> Result<Vec<CacheEntry>> {
        let store = self.images.store();
        let usage = self.images.usage();
        blocking(move || store.cache_list(&*usage)).await
    }

    /// `POST /build/prune`.
    pub async fn prune(&self, opts: CachePruneOptions) -> Result<(Vec<String>, u64)> {
        let store = self.images.store();
        let usage = self.images.usage();
        blocking(move || store.cache_prune(&*usage, &opts)).await
    }
}

/// Makes the context (blocking) and parses the Dockerfile: errors here answer the request.
async fn prepare_with(
    opts: BuildOptions,
    context: impl FnOnce() -> Result<Context> + Send + 'static,
) -> Result<Prepared> {
    crate::metrics::get().builds_triggered.inc();
    let (ctx, df, opts) = blocking(move || {
        let ctx = context()?;
        let df = berth_builder::prepare(&ctx, &opts)?;
        Ok((ctx, df, opts))
    })
    .await
    .inspect_err(|_| build_failed("dockerfile_syntax_error"))?;
    Ok(Prepared { ctx: Arc::new(ctx), df, opts })
}

fn build_failed(reason: &str) {
    crate::metrics::get().builds_failed.get_or_create(&crate::metrics::Reason { reason: reason.into() }).inc();
}

struct DaemonBackend {
    containers: Arc<ContainerService>,
    images: Arc<ImageService>,
    /// Recorded with every image the build makes, until it ends: see `collect_interrupted_builds`.
    build: String,
}

/// The X-Registry-Config entry for a reference's registry.
fn auth_for(auths: &Value, r: &Reference) -> AuthConfig {
    let domain = r.domain();
    let keys: Vec<String> = if domain == "docker.io" {
        vec!["https://index.docker.io/v1/".into(), "index.docker.io".into(), "docker.io".into()]
    } else {
        vec![domain.to_string(), format!("https://{domain}"), format!("http://{domain}")]
    };
    keys.iter().find_map(|k| auths.get(k)).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
}

impl DaemonBackend {
    async fn pull(&self, r: &Reference, auths: &Value, out: &Output) -> Result<()> {
        let opts = PullOptions { reference: r.clone(), platform: None, auth: auth_for(auths, r) };
        let mut rx = self.images.pull(opts).await?;
        let mut failed = None;
        while let Some(line) = rx.recv().await {
            let Ok(v) = serde_json::from_slice::<JsonMessage>(&line) else { continue };
            if let Some(e) = &v.error {
                failed = Some(e.clone());
            }
            out.message(v, false);
        }
        match failed {
            Some(e) => Err(Error::invalid(e)),
            None => Ok(()),
        }
    }

    async fn remove(&self, id: &str) {
        if let Err(e) = self.containers.remove(id, true, true).await {
            tracing::warn!("removing build container {id}: {e}");
        }
    }
}

impl Backend for DaemonBackend {
    type Layer = DiffTar;

    async fn base_image(&self, name: &str, pull: bool, auths: &Value, out: &Output) -> Result<BaseImage> {
        if !pull {
            if let Ok(img) = self.images.resolve(name).await {
                return Ok(BaseImage { id: Some(img.id), config: img.config });
            }
        }
        let r = Reference::parse_tagged(name)
            .map_err(|e| Error::invalid(format!("invalid reference format: {name}: {}", e.message)))?;
        if let Err(e) = self.pull(&r, auths, out).await {
            // Offline or unknown to the registry: a local image of that name still serves.
            match self.images.resolve(name).await {
                Ok(img) if pull => return Ok(BaseImage { id: Some(img.id), config: img.config }),
                _ => return Err(e),
            }
        }
        let img = self.images.resolve(&r.to_string()).await?;
        Ok(BaseImage { id: Some(img.id), config: img.config })
    }

    async fn run(&self, parent: &BaseImage, spec: RunSpec, out: &Output) -> Result<DiffTar> {
        let image =
            parent.id.as_ref().ok_or_else(|| Error::invalid("RUN needs a base image: FROM scratch has no shell"))?;
        let display = spec.argv.join(" ");
        let mut host = spec.host;
        // The step's --mounts (BuildKit builds): held until its container is gone.
        let step_mounts = match spec.mounts.is_empty() {
            true => None,
            false => {
                let m = crate::build_mounts::prepare(self.images.store(), spec.mounts).await?;
                host.mounts.extend(m.api.iter().cloned());
                Some(m)
            }
        };
        let config = Config {
            image: image.to_string(),
            entrypoint: Some(spec.argv),
            cmd: Some(vec![]),
            env: spec.env,
            user: spec.user,
            working_dir: spec.workdir,
            attach_stdout: true,
            attach_stderr: true,
            // The image's healthcheck is not a build step's business.
            healthcheck: Some(berth_api::container::HealthConfig::none()),
            ..Default::default()
        };
        let req = CreateRequest { config, host_config: host, networking_config: None };
        let id = self.containers.create_build_step(req).await?;
        out.stream(format!(" ---> Running in {}\n", short_id(&id)));
        let result = self.run_container(&id, out).await;
        let code = match result {
            Ok(c) => c,
            Err(e) => {
                self.remove(&id).await;
                return Err(e);
            }
        };
        if code != 0 {
            if spec.force_rm {
                self.remove(&id).await;
            }
            return Err(Error::exited(format!("The command '{display}' returned a non-zero code: {code}"), code));
        }
        if let Some(m) = &step_mounts {
            if let Err(e) = self.containers.remove_mount_stubs(&id, m.targets.clone()).await {
                self.remove(&id).await;
                return Err(e);
            }
        }
        let diff = self.containers.diff_tar(&id).await;
        if spec.rm || diff.is_err() {
            self.remove(&id).await;
            out.stream(format!(" ---> Removed intermediate container {}\n", short_id(&id)));
        } else {
            // `--rm=false` keeps it: from now on it is the user's, not the build's.
            self.containers.adopt_build_step(&id).await?;
        }
        Ok(DiffTar(diff?))
    }

    async fn edit(&self, parent: &BaseImage, from: Option<&BaseImage>, f: EditFn) -> Result<DiffTar> {
        let store = self.images.store();
        let (parent, from) = (parent.id.clone(), from.map(|b| b.id.clone()));
        blocking(move || {
            let key = format!("build-{}", new_id());
            let from_key = format!("{key}-from");
            let cleanup = |k: &str| {
                if let Ok(s) = store.snapshot_mounts(k) {
                    if berth_sys::mount::is_mountpoint(&s.target) {
                        let _ = berth_sys::mount::unmount(&s.target);
                    }
                    let _ = store.remove_snapshot(k);
                }
            };
            let res = (|| -> Result<DiffTar> {
                let snap = store.prepare_snapshot_over(&key, parent.as_ref())?;
                snap.overlay.mount(&snap.target)?;
                let src = match &from {
                    Some(img) => {
                        let s = store.prepare_snapshot_over(&from_key, img.as_ref())?;
                        s.overlay.mount(&s.target)?;
                        Some(s.target)
                    }
                    None => None,
                };
                f(&snap.target, src.as_deref())?;
                berth_sys::mount::unmount(&snap.target)?;
                if std::fs::read_dir(&snap.overlay.upper)?.next().is_none() {
                    return Ok(DiffTar(None));
                }
                let tmp = store.layout().tmp().join(format!("step-{}", new_id()));
                let layer = DiffTar(Some(tmp.clone()));
                // Synced when it becomes the layer's tar: its disk writes start as it is written.
                let mut w =
                    std::io::BufWriter::new(berth_sys::writeback::WritebackFile::new(std::fs::File::create(&tmp)?));
                let dir = berth_image::tree::open_dir(&snap.overlay.upper)?;
                berth_image::tree::write_dir(
                    &dir,
                    std::path::Path::new(""),
                    berth_image::tree::TreeMode::OverlayUpper,
                    &mut w,
                )?;
                std::io::Write::flush(&mut w)?;
                Ok(layer)
            })();
            cleanup(&key);
            if from.is_some() {
                cleanup(&from_key);
            }
            res
        })
        .await
    }

    async fn commit(&self, parent: &BaseImage, layer: Option<DiffTar>, mut config: ImageConfig) -> Result<BaseImage> {
        let store = self.images.store();
        let parent_id = parent.id.clone();
        let build = self.build.clone();
        let layer = layer.and_then(|mut l| l.0.take().map(|p| DiffTar(Some(p))));
        let id = blocking(move || {
            let mut layers: Vec<LayerInfo> = match &parent_id {
                Some(p) => store.layers_of(p)?,
                None => Vec::new(),
            };
            let top = layers.last().map(|l| l.chain_id.clone());
            // Leased until the image exists: a parallel stage's cleanup runs gc meanwhile.
            let (made, _lease) = match &layer {
                Some(DiffTar(Some(p))) => {
                    // The step's tar is ours and plain: hard-linked as the layer's tar, not copied.
                    let (l, lease) = store.ingest_layer_file_leased(p, top.as_ref())?;
                    (Some(l), Some(lease))
                }
                _ => (None, None),
            };
            if let Some(h) = config.history.last_mut() {
                h.empty_layer = made.is_none();
            }
            config.rootfs.kind = "layers".into();
            config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
            if let Some(l) = made {
                config.rootfs.diff_ids.push(l.diff_id.to_string());
                layers.push(l);
            }
            config.docker_version = Some(berth_api::ENGINE_VERSION.into());
            let bytes = serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?;
            let id = store.create_child(&bytes, &layers, &[], parent_id.as_ref(), Some(&build))?;
            Ok((id, config))
        })
        .await?;
        Ok(BaseImage { id: Some(id.0), config: id.1 })
    }

    async fn commit_existing(
        &self,
        parent: &BaseImage,
        diff: Option<Digest>,
        mut config: ImageConfig,
    ) -> Result<Option<BaseImage>> {
        let store = self.images.store();
        let parent_id = parent.id.clone();
        let build = self.build.clone();
        blocking(move || {
            let mut layers: Vec<LayerInfo> = match &parent_id {
                Some(p) => store.layers_of(p)?,
                None => Vec::new(),
            };
            if let Some(d) = &diff {
                let chain = berth_image::chain_id(layers.last().map(|l| &l.chain_id), d);
                match store.layer_info(&chain)? {
                    Some(l) => layers.push(l),
                    None => return Ok(None),
                }
            }
            config.rootfs.kind = "layers".into();
            config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.to_string()).collect();
            let bytes = serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?;
            let id = store.create_child(&bytes, &layers, &[], parent_id.as_ref(), Some(&build))?;
            Ok(Some(BaseImage { id: Some(id), config }))
        })
        .await
    }

    async fn local_image(&self, name: &str) -> Option<BaseImage> {
        let img = self.images.resolve(name).await.ok()?;
        Some(BaseImage { id: Some(img.id), config: img.config })
    }

    async fn cache_get(&self, key: &Digest) -> Option<BaseImage> {
        let store = self.images.store();
        let key = key.clone();
        let img = blocking(move || store.cache_get(&key)).await.ok().flatten()?;
        Some(BaseImage { id: Some(img.id), config: img.config })
    }

    async fn cache_put(&self, key: &Digest, image: &Digest, created_by: &str) {
        let store = self.images.store();
        let (key, image, created_by) = (key.clone(), image.clone(), created_by.to_string());
        if let Err(e) = blocking(move || store.cache_put(&key, &image, &created_by)).await {
            tracing::warn!("build cache: {e}");
        }
    }

    async fn tag(&self, image: &Digest, tags: &[Reference]) -> Result<()> {
        for t in tags {
            let repo = t.familiar_repository();
            self.images.tag(image.as_str(), &repo, t.tag().unwrap_or("latest")).await?;
        }
        Ok(())
    }
}

impl DaemonBackend {
    /// Starts a created build container, forwards its output, and returns its exit code.
    async fn run_container(&self, id: &str, out: &Output) -> Result<i64> {
        let opts = AttachOptions { stdout: true, stderr: true, stream: true, ..Default::default() };
        let mut att = self.containers.attach(id, opts).await?;
        let wait = self.containers.wait(id, WaitCondition::NextExit)?;
        self.containers.start(id).await?;
        tokio::pin!(wait);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut open = true;
        loop {
            tokio::select! {
                c = att.output.recv(), if open => match c {
                    Some((_, data)) => out.stream(String::from_utf8_lossy(&data).into_owned()),
                    None => open = false,
                },
                ws = &mut wait => {
                    // Output may still be in flight behind the exit: read until the stream ends.
                    let drain = async {
                        while let Some((_, data)) = att.output.recv().await {
                            out.stream(String::from_utf8_lossy(&data).into_owned());
                        }
                    };
                    if open {
                        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
                    }
                    if let Some(e) = ws.error {
                        return Err(Error::invalid(e));
                    }
                    return Ok(ws.exit_code);
                }
                _ = tick.tick() => {
                    if out.gone() {
                        let _ = self.containers.kill(id, "SIGKILL").await;
                        return Err(Error::invalid("build cancelled: the client went away"));
                    }
                }
            }
        }
    }
}
