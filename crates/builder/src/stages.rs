//! The build driver: which stages the target needs, step numbering, FROM, ONBUILD triggers, tags.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::watch;

use berth_api::image::{ImageConfig, RootFs};
use berth_dockerfile::{shell, Dockerfile, Instruction, Kind};
use berth_types::{Error, Result};

use crate::dispatch::StageState;
use crate::{Backend, BaseImage, BuildOptions, Built, Context, Output};

/// Args every build knows without an ARG line; used by RUN, kept out of history and cache keys.
pub(crate) const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What every stage of one build shares. Stages run concurrently (each as a [`Cx`]); a stage that
/// needs another waits for its result.
const SIBLING_FAILED: &str = "stopped: another stage of the build failed";

pub(crate) struct Build<'a, B: Backend> {
    pub backend: &'a B,
    pub ctx: &'a Context,
    pub opts: &'a BuildOptions,
    pub df: &'a Dockerfile,
    /// Values of the ARGs declared before the first FROM.
    pub meta: Vec<(String, Option<String>)>,
    results: Mutex<Vec<Option<std::result::Result<BaseImage, String>>>>,
    finished: watch::Sender<()>,
    pub consumed: Mutex<BTreeSet<String>>,
    /// Set when a stage failed: the others stop at their next step.
    failed: AtomicBool,
    pub total: usize,
    /// `--cache-from` images found locally.
    pub cache_from: Vec<BaseImage>,
}

/// One stage being built: its own output (replayed in stage order) and step counter.
pub(crate) struct Cx<'b, 'a, B: Backend> {
    pub b: &'b Build<'a, B>,
    pub out: Output,
    pub step: usize,
    /// Index of the stage in the Dockerfile.
    pub stage: usize,
}

fn platform_args() -> Vec<(String, Option<String>)> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let p = format!("linux/{arch}");
    [
        ("TARGETPLATFORM", p.clone()),
        ("TARGETOS", "linux".into()),
        ("TARGETARCH", arch.into()),
        ("TARGETVARIANT", String::new()),
        ("BUILDPLATFORM", p),
        ("BUILDOS", "linux".into()),
        ("BUILDARCH", arch.into()),
        ("BUILDVARIANT", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v)))
    .collect()
}

pub(crate) fn lookup(vars: &[(String, Option<String>)], name: &str) -> Option<String> {
    vars.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.clone())
}

/// A stage's dependencies on earlier stages: its base and each `COPY --from`.
fn deps(
    df: &Dockerfile,
    idx: usize,
    meta: &[(String, Option<String>)],
    named: &BTreeMap<String, String>,
) -> Vec<usize> {
    let env = |n: &str| lookup(meta, n);
    let stage_ref = |name: &str| -> Option<usize> {
        let name = shell::expand_word(name, df.escape, &env).unwrap_or_else(|_| name.to_string());
        if named.contains_key(&name.to_ascii_lowercase()) {
            return None;
        }
        df.stage_index(&name).filter(|&i| i < idx)
    };
    let s = &df.stages[idx];
    let mut out: Vec<usize> = stage_ref(&s.base).into_iter().collect();
    for ins in &s.instructions {
        if let (Kind::Copy(_), Some(from)) = (&ins.kind, ins.flag("from")) {
            out.extend(stage_ref(from));
        }
        // `RUN --mount=from=<stage>` waits for that stage too.
        if let Kind::Run { .. } = &ins.kind {
            for (_, v) in ins.flags.iter().filter(|(k, _)| k == "mount") {
                let from = v.as_deref().unwrap_or("").split(',').find_map(|f| f.trim().strip_prefix("from="));
                out.extend(from.and_then(stage_ref));
            }
        }
    }
    out
}

pub(crate) async fn run<B: Backend>(
    backend: &B,
    ctx: &Context,
    df: &Dockerfile,
    opts: &BuildOptions,
    out: &Output,
) -> Result<Built> {
    let mut consumed = BTreeSet::new();
    let mut meta = platform_args();
    for decl in &df.meta_args {
        let given = opts.build_args.get(&decl.name).cloned().flatten();
        if given.is_some() {
            consumed.insert(decl.name.clone());
        }
        let value = match (given, &decl.default) {
            (Some(v), _) => Some(v),
            (None, Some(d)) => Some(
                shell::expand_word(d, df.escape, &|n: &str| lookup(&meta, n))
                    .map_err(|e| Error::invalid(format!("failed to process \"{d}\": {e}")))?,
            ),
            (None, None) => None,
        };
        meta.push((decl.name.clone(), value));
    }

    let target = match &opts.target {
        Some(t) if !t.is_empty() => df
            .stage_index(t)
            .ok_or_else(|| Error::invalid(format!("failed to reach build target {t} in Dockerfile")))?,
        _ => df.stages.len() - 1,
    };
    // Only the stages the target reaches are built.
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(deps(df, i, &meta, &opts.named_contexts));
        }
    }
    let label_step = usize::from(!opts.labels.is_empty());
    let total = needed.iter().map(|&i| 1 + df.stages[i].instructions.len()).sum::<usize>() + label_step;
    // Each stage's steps are numbered as if the stages ran one after the other.
    let mut first_step = vec![0; df.stages.len()];
    let mut n = 0;
    for &i in &needed {
        first_step[i] = n;
        n += 1 + df.stages[i].instructions.len();
    }
    let b = Build {
        backend,
        ctx,
        opts,
        df,
        meta,
        results: Mutex::new(vec![None; df.stages.len()]),
        finished: watch::channel(()).0,
        consumed: Mutex::new(consumed),
        failed: AtomicBool::new(false),
        total,
        cache_from: {
            let mut v = Vec::new();
            for name in &opts.cache_from {
                v.extend(backend.local_image(name).await);
            }
            v
        },
    };
    let mut receivers = Vec::new();
    let mut stages = Vec::new();
    for &i in &needed {
        let (sout, rx) = out.child();
        receivers.push(rx);
        let mut cx = Cx { b: &b, out: sout, step: first_step[i], stage: i };
        let b = &b;
        stages.push(async move {
            let r = cx.stage(i, i == target).await;
            if r.is_err() {
                b.failed.store(true, Ordering::SeqCst);
            }
            b.results.lock().expect("results lock")[i] = Some(r.clone().map_err(|e| e.to_string()));
            b.finished.send_replace(());
            drop(cx);
            r
        });
    }
    // Output goes out in stage order: the first unfinished stage streams live, later ones buffer.
    let replay = async {
        for mut rx in receivers {
            while let Some(v) = rx.recv().await {
                out.message(v, true);
            }
        }
    };
    let (results, ()) = futures_util::future::join(futures_util::future::join_all(stages), replay).await;
    // The build's error is the first real failure in stage order, not a stage stopped because of it.
    let mut final_img = None;
    let mut first_err = None;
    for (r, &i) in results.into_iter().zip(&needed) {
        match r {
            Ok(img) if i == target => final_img = Some(img),
            Ok(_) => {}
            Err(e) if e.message == SIBLING_FAILED => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let final_img = final_img.expect("target built");
    let id = final_img.id.clone().ok_or_else(|| Error::invalid("No image was generated. Is your Dockerfile empty?"))?;
    let consumed = b.consumed.lock().expect("consumed lock").clone();
    let unused: Vec<&String> =
        opts.build_args.keys().filter(|k| !consumed.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str())).collect();
    if !unused.is_empty() {
        let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
        out.stream(format!("[Warning] One or more build-args [{}] were not consumed\n", names.join(" ")));
    }
    if !opts.tags.is_empty() {
        backend.tag(&id, &opts.tags).await?;
    }
    Ok(Built { id })
}

impl<B: Backend> Cx<'_, '_, B> {
    pub(crate) fn begin(&mut self, original: &str) -> Result<()> {
        if self.out.gone() {
            return Err(crate::cancelled());
        }
        if self.b.failed.load(Ordering::SeqCst) {
            return Err(Error::invalid(SIBLING_FAILED));
        }
        self.step += 1;
        self.out.stream(format!("Step {}/{} : {}\n", self.step, self.b.total, original));
        Ok(())
    }

    async fn base(&mut self, idx: usize) -> Result<BaseImage> {
        let s = &self.b.df.stages[idx];
        let meta = self.b.meta.clone();
        let name = shell::expand_word(&s.base, self.b.df.escape, &|n: &str| lookup(&meta, n))
            .map_err(|e| Error::invalid(format!("failed to process \"{}\": {e}", s.base)))?;
        if name.is_empty() {
            return Err(Error::invalid(format!("base name ({}) should not be blank", s.base)));
        }
        if let Some(p) = &s.platform {
            let p = shell::expand_word(p, self.b.df.escape, &|n: &str| lookup(&meta, n)).unwrap_or_default();
            if !p.is_empty() && !p.starts_with("linux") {
                return Err(Error::invalid(format!("unsupported platform {p}: only linux images can be built")));
            }
        }
        if name.eq_ignore_ascii_case("scratch") {
            return Ok(BaseImage {
                id: None,
                config: ImageConfig {
                    architecture: platform_args()[2].1.clone().unwrap_or_default(),
                    os: "linux".into(),
                    rootfs: RootFs { kind: "layers".into(), diff_ids: vec![] },
                    ..Default::default()
                },
            });
        }
        if let Some(image) = self.b.opts.named_contexts.get(&name.to_ascii_lowercase()) {
            return self.b.backend.base_image(image, self.b.opts.pull, &self.b.opts.auths, &self.out).await;
        }
        if let Some(i) = self.b.df.stage_index(&name).filter(|&i| i < idx) {
            return self.b.stage_result(i).await;
        }
        self.b.backend.base_image(&name, self.b.opts.pull, &self.b.opts.auths, &self.out).await
    }

    async fn stage(&mut self, idx: usize, is_target: bool) -> Result<BaseImage> {
        let s = &self.b.df.stages[idx];
        self.begin(&s.original)?;
        let base = self.base(idx).await?;
        let mut st = StageState::new(base);
        self.out.stream(format!(" ---> {}\n", st.short_id()));
        let triggers = st.image.config.config.on_build.take().unwrap_or_default();
        if !triggers.is_empty() {
            let n = triggers.len();
            self.out.stream(format!("# Executing {n} build trigger{}\n", if n == 1 { "" } else { "s" }));
            for t in triggers {
                let ins = berth_dockerfile::parse_instruction(&t, self.b.df.escape)
                    .map_err(|e| Error::invalid(format!("failed to process ONBUILD trigger {t:?}: {}", e.message)))?;
                self.dispatch(&mut st, &ins).await?;
            }
        }
        for ins in &s.instructions {
            self.begin(&ins.original)?;
            self.dispatch(&mut st, ins).await?;
        }
        if is_target && !self.b.opts.labels.is_empty() {
            let line = self.b.opts.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" ");
            let ins = Instruction {
                line: 0,
                original: format!("LABEL {line}"),
                flags: vec![],
                kind: Kind::Label(self.b.opts.labels.iter().map(|(k, v)| (quote(k), quote(v))).collect()),
            };
            self.begin(&ins.original)?;
            self.dispatch(&mut st, &ins).await?;
        }
        Ok(st.image)
    }
}

impl<B: Backend> Build<'_, B> {
    /// The image an earlier stage made, waiting for it when it is still being built.
    pub(crate) async fn stage_result(&self, i: usize) -> Result<BaseImage> {
        let mut rx = self.finished.subscribe();
        loop {
            if let Some(r) = self.results.lock().expect("results lock")[i].clone() {
                return r.map_err(|_| Error::invalid(SIBLING_FAILED));
            }
            if rx.changed().await.is_err() {
                return Err(Error::internal("build ended before the stage finished"));
            }
        }
    }
}

/// Quotes a build-request label so expansion leaves it as given.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
