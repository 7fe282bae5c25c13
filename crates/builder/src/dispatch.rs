//! One instruction: its effect on the image config, its history line, its cache key, and (RUN,
//! COPY, ADD, WORKDIR) the layer it makes.

use std::collections::BTreeMap;

use berth_api::container::HealthConfig;
use berth_api::image::History;
use berth_dockerfile::{shell, Command, CopySpec, Heredoc, Instruction, Kind};
use berth_types::{Digest, Error, Result};
use serde_json::json;

use crate::copy::{Job, Source};
use crate::stages::{lookup, Cx, PREDEFINED_ARGS};
use crate::{Backend, BaseImage, RunSpec};

/// `(name, value)` pairs in order.
type Vars = Vec<(String, String)>;

pub(crate) struct StageState {
    pub image: BaseImage,
    /// ARGs declared in this stage, with their values.
    pub args: Vec<(String, Option<String>)>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

impl StageState {
    pub fn new(image: BaseImage) -> StageState {
        StageState { image, args: Vec::new(), cmd_set: false }
    }

    pub fn short_id(&self) -> String {
        self.image.id.as_ref().map(|d| berth_types::short_id(d.hex()).to_string()).unwrap_or_default()
    }

    fn env_get(&self, name: &str) -> Option<String> {
        let env = &self.image.config.config.env;
        env.iter().rev().find_map(|e| match e.split_once('=') {
            Some((k, v)) if k == name => Some(v.to_string()),
            None if e == name => Some(String::new()),
            _ => None,
        })
    }

    /// Variables for expansion: ENV wins over ARG, as Docker documents.
    fn lookup(&self, name: &str) -> Option<String> {
        self.env_get(name).or_else(|| lookup(&self.args, name))
    }

    fn shell(&self) -> Vec<String> {
        match &self.image.config.config.shell {
            Some(s) if !s.is_empty() => s.clone(),
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let env = &mut self.image.config.config.env;
        let kv = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split_once('=').map(|x| x.0).unwrap_or(e) == key) {
            Some(e) => *e = kv,
            None => env.push(kv),
        }
    }

    /// `argv` of a CMD/ENTRYPOINT/RUN: the shell form goes through SHELL.
    fn argv(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut v = self.shell();
                v.push(s.clone());
                v
            }
        }
    }
}

fn expand_ports(words: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for w in words {
        let (port, proto) = w.split_once('/').unwrap_or((w, "tcp"));
        let proto = proto.to_ascii_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(Error::invalid(format!("invalid proto: {proto}")));
        }
        let (lo, hi) = port.split_once('-').unwrap_or((port, port));
        let parse = |p: &str| p.parse::<u16>().map_err(|_| Error::invalid(format!("invalid containerPort: {port}")));
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if hi < lo {
            return Err(Error::invalid(format!("invalid range specified for container port: {port}")));
        }
        for p in lo..=hi {
            out.push(format!("{p}/{proto}"));
        }
    }
    Ok(out)
}

pub(crate) fn ensure_abs(path: &str, workdir: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let base = if workdir.is_empty() { "/" } else { workdir };
    format!("{}/{}", base.trim_end_matches('/'), path)
}

impl<B: Backend> Cx<'_, '_, B> {
    pub(crate) fn expand(&self, st: &StageState, word: &str) -> Result<String> {
        shell::expand_word(word, self.b.df.escape, &|n: &str| st.lookup(n))
            .map_err(|e| Error::invalid(format!("failed to process \"{word}\": {e}")))
    }

    fn expand_words(&self, st: &StageState, word: &str) -> Result<Vec<String>> {
        shell::expand_words(word, self.b.df.escape, &|n: &str| st.lookup(n))
            .map_err(|e| Error::invalid(format!("failed to process \"{word}\": {e}")))
    }

    /// Build args RUN sees: declared ones with a value, plus the predefined proxy args given.
    fn run_args(&self, st: &StageState) -> (Vars, Vars) {
        let mut declared: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &st.args {
            if let Some(v) = v {
                if st.env_get(k).is_none() {
                    declared.insert(k.clone(), v.clone());
                }
            }
        }
        let mut proxies = Vec::new();
        for p in PREDEFINED_ARGS {
            if let Some(Some(v)) = self.b.opts.build_args.get(*p) {
                if !declared.contains_key(*p) && st.env_get(p).is_none() {
                    proxies.push((p.to_string(), v.clone()));
                }
            }
        }
        (declared.into_iter().collect(), proxies)
    }

    /// A step's cache key: parent, history line, resulting config, and any content checksum.
    fn key(&self, st: &StageState, created_by: &str, extra: &str) -> Digest {
        let parent = st.image.id.as_ref().map(|d| d.as_str().to_string()).unwrap_or_else(|| "scratch".into());
        let c = &st.image.config;
        let doc = json!(["berth-build-v1", parent, created_by, c.config, c.author, extra]);
        Digest::of(doc.to_string().as_bytes())
    }

    /// Ends a step: from the cache when allowed, else `make` builds the layer (if any) and the image
    /// is committed and remembered under `key`.
    async fn finish<F, Fut>(&mut self, st: &mut StageState, created_by: String, extra: &str, make: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<B::Layer>>>,
    {
        let key = self.key(st, &created_by, extra);
        if !self.b.opts.no_cache {
            if let Some(hit) = self.b.backend.cache_get(&key).await {
                self.out.stream(" ---> Using cache\n");
                st.image = hit;
                self.out.stream(format!(" ---> {}\n", st.short_id()));
                return Ok(());
            }
            if let Some(img) = self.reuse_cache_source(st, &created_by).await? {
                self.out.stream(" ---> Using cache\n");
                self.b.backend.cache_put(&key, img.id.as_ref().expect("committed"), &created_by).await;
                st.image = img;
                self.out.stream(format!(" ---> {}\n", st.short_id()));
                return Ok(());
            }
        }
        let layer = make().await?;
        let mut config = st.image.config.clone();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        config.created = Some(now.clone());
        config.history.push(History {
            created: Some(now),
            created_by: Some(created_by.clone()),
            empty_layer: layer.is_none(),
            ..Default::default()
        });
        let img = self.b.backend.commit(&st.image, layer, config).await?;
        if let Some(id) = &img.id {
            self.b.backend.cache_put(&key, id, &created_by).await;
        }
        st.image = img;
        self.out.stream(format!(" ---> {}\n", st.short_id()));
        Ok(())
    }

    /// `--cache-from`: an image whose history continues this stage's with the same step reuses that
    /// step's layer, as the classic builder's image cache does (history and layers must agree).
    async fn reuse_cache_source(&self, st: &StageState, created_by: &str) -> Result<Option<BaseImage>> {
        let parent = &st.image.config;
        let n = parent.history.len();
        let layers = parent.rootfs.diff_ids.len();
        for c in &self.b.cache_from {
            let h = &c.config.history;
            let same_history = h.len() > n
                && h[..n]
                    .iter()
                    .zip(&parent.history)
                    .all(|(a, b)| a.created_by == b.created_by && a.empty_layer == b.empty_layer);
            let d = &c.config.rootfs.diff_ids;
            if !same_history
                || h[n].created_by.as_deref() != Some(created_by)
                || !d.starts_with(&parent.rootfs.diff_ids)
            {
                continue;
            }
            let diff = match h[n].empty_layer {
                true => None,
                false => match d.get(layers).and_then(|x| x.parse().ok()) {
                    Some(x) => Some(x),
                    None => continue,
                },
            };
            let mut config = st.image.config.clone();
            config.created = h[n].created.clone();
            config.history.push(h[n].clone());
            if let Some(img) = self.b.backend.commit_existing(&st.image, diff, config).await? {
                return Ok(Some(img));
            }
        }
        Ok(None)
    }

    fn nop(&self, text: &str) -> String {
        format!("/bin/sh -c #(nop)  {text}")
    }

    pub(crate) async fn dispatch(&mut self, st: &mut StageState, ins: &Instruction) -> Result<()> {
        match &ins.kind {
            Kind::Env(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((self.expand(st, k)?, self.expand(st, v)?));
                }
                for (k, v) in &expanded {
                    st.set_env(k, v);
                }
                let text: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.finish(st, self.nop(&format!("ENV {}", text.join(" "))), "", || async { Ok(None) }).await
            }
            Kind::Label(pairs) => {
                let mut text = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (self.expand(st, k)?, self.expand(st, v)?);
                    text.push(format!("{k}={v}"));
                    st.image.config.config.labels.insert(k, v);
                }
                self.finish(st, self.nop(&format!("LABEL {}", text.join(" "))), "", || async { Ok(None) }).await
            }
            Kind::Arg(decls) => {
                let mut text = Vec::new();
                for d in decls {
                    let given = self.b.opts.build_args.get(&d.name).cloned().flatten();
                    if given.is_some() {
                        self.b.consumed.lock().expect("consumed lock").insert(d.name.clone());
                    }
                    let value = match (given, &d.default) {
                        (Some(v), _) => Some(v),
                        (None, Some(def)) => Some(self.expand(st, def)?),
                        (None, None) => lookup(&self.b.meta, &d.name),
                    };
                    text.push(match &d.default {
                        Some(def) => format!("{}={def}", d.name),
                        None => d.name.clone(),
                    });
                    st.args.retain(|(k, _)| *k != d.name);
                    st.args.push((d.name.clone(), value));
                }
                self.finish(st, self.nop(&format!("ARG {}", text.join(" "))), "", || async { Ok(None) }).await
            }
            Kind::Expose(words) => {
                let mut ws = Vec::new();
                for w in words {
                    ws.extend(self.expand_words(st, w)?);
                }
                let ports = expand_ports(&ws)?;
                let map = st.image.config.config.exposed_ports.get_or_insert_with(Default::default);
                for p in &ports {
                    map.insert(p.clone(), json!({}));
                }
                self.finish(st, self.nop(&format!("EXPOSE {}", ports.join(" "))), "", || async { Ok(None) }).await
            }
            Kind::User(u) => {
                let u = self.expand(st, u.trim())?;
                st.image.config.config.user = u.clone();
                self.finish(st, self.nop(&format!("USER {u}")), "", || async { Ok(None) }).await
            }
            Kind::Stopsignal(s) => {
                let s = self.expand(st, s)?;
                st.image.config.config.stop_signal = Some(s.clone());
                self.finish(st, self.nop(&format!("STOPSIGNAL {s}")), "", || async { Ok(None) }).await
            }
            Kind::Maintainer(m) => {
                st.image.config.author = Some(m.clone());
                self.finish(st, self.nop(&format!("MAINTAINER {m}")), "", || async { Ok(None) }).await
            }
            Kind::Volume { paths, json: is_json } => {
                let mut vols = Vec::new();
                for p in paths {
                    if *is_json {
                        vols.push(self.expand(st, p)?);
                    } else {
                        vols.extend(self.expand_words(st, p)?);
                    }
                }
                let map = st.image.config.config.volumes.get_or_insert_with(Default::default);
                for v in &vols {
                    map.insert(v.clone(), json!({}));
                }
                self.finish(st, self.nop(&format!("VOLUME {vols:?}")), "", || async { Ok(None) }).await
            }
            Kind::Shell(v) => {
                st.image.config.config.shell = Some(v.clone());
                self.finish(st, self.nop(&format!("SHELL {v:?}")), "", || async { Ok(None) }).await
            }
            Kind::Onbuild(t) => {
                let (word, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
                let trigger = format!("{} {}", word.to_ascii_uppercase(), rest.trim_start());
                st.image.config.config.on_build.get_or_insert_with(Vec::new).push(trigger.clone());
                self.finish(st, self.nop(&format!("ONBUILD {trigger}")), "", || async { Ok(None) }).await
            }
            Kind::Cmd(c) => {
                let argv = st.argv(c);
                st.image.config.config.cmd = Some(argv.clone());
                st.cmd_set = true;
                self.finish(st, self.nop(&format!("CMD {}", json!(argv))), "", || async { Ok(None) }).await
            }
            Kind::Entrypoint(c) => {
                let argv = st.argv(c);
                st.image.config.config.entrypoint = Some(argv.clone());
                if !st.cmd_set {
                    st.image.config.config.cmd = None;
                }
                self.finish(st, self.nop(&format!("ENTRYPOINT {}", json!(argv))), "", || async { Ok(None) }).await
            }
            Kind::Healthcheck(h) => {
                let value = match h {
                    None => HealthConfig::none(),
                    Some(h) => {
                        let test: Vec<String> = match &h.test {
                            Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
                            Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                        };
                        let flag =
                            |name: &str| h.flags.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.clone());
                        let duration = |name: &str| -> Result<i64> {
                            let Some(d) = flag(name) else { return Ok(0) };
                            berth_dockerfile::duration::parse(&d).map_err(Error::invalid)
                        };
                        let retries = match flag("retries") {
                            None => 0,
                            Some(r) => r.parse().map_err(|_| Error::invalid(format!("invalid retries: {r}")))?,
                        };
                        HealthConfig {
                            test: Some(test),
                            interval: duration("interval")?,
                            timeout: duration("timeout")?,
                            start_period: duration("start-period")?,
                            start_interval: duration("start-interval")?,
                            retries,
                        }
                    }
                };
                // History and cache key: the JSON object with sorted keys, as before it was typed.
                let text = serde_json::to_value(&value).map_err(|e| Error::internal(e.to_string()))?;
                st.image.config.config.healthcheck = Some(value);
                self.finish(st, self.nop(&format!("HEALTHCHECK &{text}")), "", || async { Ok(None) }).await
            }
            Kind::Workdir(w) => {
                let w = self.expand(st, w)?;
                let abs = ensure_abs(&w, &st.image.config.config.working_dir.clone());
                let clean = format!("/{}", berth_dockerfile::pattern::clean(&abs).trim_start_matches('.'));
                let clean = if clean == "/" || clean == "//" { "/".to_string() } else { clean };
                st.image.config.config.working_dir = clean.clone();
                let parent = st.image.clone();
                let backend = self.b.backend;
                let dir = clean.clone();
                self.finish(st, self.nop(&format!("WORKDIR {clean}")), "", || async move {
                    let f: crate::EditFn = Box::new(move |root, _| {
                        berth_sys::root::Root::open(root)?.mkdir(std::path::Path::new(&dir), 0o755)
                    });
                    Ok(Some(backend.edit(&parent, None, f).await?))
                })
                .await
            }
            Kind::Run { cmd, heredocs } => self.run(st, ins, cmd, heredocs).await,
            Kind::Copy(spec) => self.copy(st, ins, spec, false).await,
            Kind::Add(spec) => self.copy(st, ins, spec, true).await,
        }
    }

    async fn run(&mut self, st: &mut StageState, ins: &Instruction, cmd: &Command, heredocs: &[Heredoc]) -> Result<()> {
        let mounts = self.run_mounts(st, ins).await?;
        let argv = match (cmd, heredocs) {
            // `RUN <<EOF` alone: the body is the script.
            (Command::Shell(s), [h]) if s.trim() == format!("<<{}", h.name) || s.trim() == format!("<<-{}", h.name) => {
                let mut v = st.shell();
                v.push(h.content.clone());
                v
            }
            (Command::Shell(s), hs) if !hs.is_empty() => {
                // The shell reads the heredocs itself: hand it the whole text.
                let mut script = s.clone();
                for h in hs {
                    script.push('\n');
                    script.push_str(&h.content);
                    script.push_str(&h.name);
                }
                let mut v = st.shell();
                v.push(script);
                v
            }
            (c, _) => st.argv(c),
        };
        let (declared, proxies) = self.run_args(st);
        let mut created_by = argv.join(" ");
        if !declared.is_empty() {
            let kv: Vec<String> = declared.iter().map(|(k, v)| format!("{k}={v}")).collect();
            created_by = format!("|{} {} {created_by}", kv.len(), kv.join(" "));
        }
        let config = &st.image.config.config;
        let mut env = config.env.clone();
        env.extend(declared.iter().chain(proxies.iter()).map(|(k, v)| format!("{k}={v}")));
        env.extend(mounts.env);
        let mut host = self.b.opts.host.clone();
        match ins.flag("network") {
            None | Some("default") => {}
            Some(n @ ("none" | "host")) => host.network_mode = n.to_string(),
            Some(other) => return Err(Error::invalid(format!("unsupported RUN --network={other}"))),
        }
        let spec = RunSpec {
            argv,
            env,
            user: config.user.clone(),
            workdir: if config.working_dir.is_empty() { "/".into() } else { config.working_dir.clone() },
            host,
            rm: self.b.opts.rm,
            force_rm: self.b.opts.force_rm,
            mounts: mounts.mounts,
        };
        let parent = st.image.clone();
        let (backend, out) = (self.b.backend, self.out.clone());
        self.finish(st, created_by, &mounts.key, || async move { Ok(Some(backend.run(&parent, spec, &out).await?)) })
            .await
    }

    async fn copy(&mut self, st: &mut StageState, ins: &Instruction, spec: &CopySpec, add: bool) -> Result<()> {
        let what = if add { "ADD" } else { "COPY" };
        for f in ["parents", "exclude", "keep-git-dir"] {
            if ins.has_flag(f) {
                return Err(Error::invalid(format!("{what} --{f} is not supported by the classic builder")));
            }
        }
        let dest_raw = if spec.json { spec.dest.clone() } else { self.expand(st, &spec.dest)? };
        let dest = ensure_abs(&dest_raw, &st.image.config.config.working_dir.clone());
        let dest = if dest_raw.ends_with('/') && !dest.ends_with('/') { format!("{dest}/") } else { dest };
        let chown = ins.flag("chown").map(|c| self.expand(st, c)).transpose()?.filter(|c| !c.is_empty());
        let chmod = match ins.flag("chmod") {
            Some(m) => {
                let m = self.expand(st, m)?;
                Some(u32::from_str_radix(&m, 8).ok().filter(|v| *v <= 0o7777).ok_or_else(|| {
                    Error::invalid(format!("invalid chmod parameter: {m}: only octal modes are supported"))
                })?)
            }
            None => None,
        };
        let mut inline = Vec::new();
        let mut paths = Vec::new();
        let mut urls = Vec::new();
        for s in &spec.sources {
            if let Some(name) = s.strip_prefix("<<") {
                let h = spec.heredocs.iter().find(|h| h.name == name).expect("parser pairs heredocs");
                let data = if h.expand { self.expand_heredoc(st, &h.content)? } else { h.content.clone() };
                inline.push(Source::Inline { name: h.name.clone(), data: data.into_bytes(), mode: 0o644, mtime: 0 });
                continue;
            }
            let s = if spec.json { s.clone() } else { self.expand(st, s)? };
            if add && (s.starts_with("http://") || s.starts_with("https://")) {
                urls.push(s);
            } else if add && s.starts_with("git@") {
                return Err(Error::invalid("ADD of git repositories is not supported by the classic builder"));
            } else {
                paths.push(s);
            }
        }
        for u in &urls {
            inline.push(crate::fetch::download(u, ins.flag("checksum"), &self.out).await?);
        }
        let from = match ins.flag("from") {
            Some(f) => Some(self.copy_source_image(st, f).await?),
            None => None,
        };
        // The content part of the cache key.
        let (kind, extra, resolved) = match &from {
            Some(img) => {
                let id = img.id.as_ref().map(|d| d.to_string()).unwrap_or_default();
                ("from", format!("{id} {paths:?}"), None)
            }
            None => {
                let ctx = self.b.ctx;
                let p2 = paths.clone();
                let (resolved, sum) = tokio::task::block_in_place(|| -> Result<_> {
                    let r = ctx.resolve(&p2)?;
                    let sum = ctx.checksum(&r)?;
                    Ok((r, sum))
                })?;
                let kind = if resolved.len() + inline.len() > 1 { "multi" } else { "file" };
                (kind, sum.to_string(), Some(resolved))
            }
        };
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        for i in &inline {
            if let Source::Inline { name, data, mode, .. } = i {
                sha2::Digest::update(&mut h, name.as_bytes());
                sha2::Digest::update(&mut h, data);
                sha2::Digest::update(&mut h, mode.to_le_bytes());
            }
        }
        let extra = format!("{extra} {} {chown:?} {chmod:?}", Digest::from_hasher(h));
        let sum = Digest::of(extra.as_bytes());
        let created_by = self.nop(&format!("{what} {kind}:{} in {dest} ", sum.hex()));
        let mut sources: Vec<Source> = inline;
        let parent = st.image.clone();
        let backend = self.b.backend;
        let ctx_root = self.b.ctx.path().to_path_buf();
        self.finish(st, created_by, &extra, || async move {
            let f: crate::EditFn = Box::new(move |dest_root, from_root| {
                let src = match from_root {
                    Some(r) => {
                        let root = berth_sys::root::Root::open(r)?;
                        sources.extend(crate::context::resolve_in(&root, &paths)?.into_iter().map(Source::Path));
                        root
                    }
                    None => {
                        sources.extend(resolved.unwrap_or_default().into_iter().map(Source::Path));
                        berth_sys::root::Root::open(&ctx_root)?
                    }
                };
                let job = Job { sources, dest, chown, chmod, extract: add };
                crate::copy::run(&job, Some(&src), dest_root)
            });
            Ok(Some(backend.edit(&parent, from.as_ref(), f).await?))
        })
        .await
    }

    fn expand_heredoc(&self, st: &StageState, body: &str) -> Result<String> {
        // Expansion only substitutes variables: quotes in a heredoc body are content.
        let mut out = String::new();
        for line in body.split_inclusive('\n') {
            let (text, nl) = match line.strip_suffix('\n') {
                Some(t) => (t, "\n"),
                None => (line, ""),
            };
            let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&self.expand(st, &format!("\"{escaped}\""))?);
            out.push_str(nl);
        }
        Ok(out)
    }

    /// `COPY --from`: an earlier stage by name or number, or else an image.
    pub(crate) async fn copy_source_image(&mut self, st: &StageState, f: &str) -> Result<BaseImage> {
        let name = self.expand(st, f)?;
        if let Some(image) = self.b.opts.named_contexts.get(&name.to_ascii_lowercase()) {
            return self.b.backend.base_image(image, false, &self.b.opts.auths, &self.out).await;
        }
        if let Some(i) = self.b.df.stage_index(&name) {
            if i >= self.stage {
                return Err(Error::invalid(format!(
                    "invalid from flag value {name}: refers to the current or a later stage"
                )));
            }
            return self.b.stage_result(i).await;
        }
        self.b.backend.base_image(&name, false, &self.b.opts.auths, &self.out).await
    }
}
