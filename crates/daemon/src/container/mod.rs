//! The container service: records in the store, one `Entry` in memory per container, and one
//! supervisor task per running container (see `start.rs`).
//!
//! Lifecycle: `create` merges the image config, prepares the writable layer and persists the record
//! (status `created`). `start` mounts the root, makes the network namespace and writes the bundle,
//! spawns a shim, connects, then sends START; the supervisor task relays output to attached clients
//! until the shim reports EXITED, then unmounts, records the exit and wakes waiters. `remove` deletes
//! the writable layer and every file of the container. A berthd restart re-connects to live shims.

mod archive;
mod attach;
mod create;
mod dns;
mod exec;
mod health;
mod inspect;
mod journal;
mod links;
mod list_filter;
mod logdriver;
mod logs;
mod mounts;
mod network;
mod ops;
pub mod record;
mod recovery;
mod restart;
mod start;
pub mod state;
mod stats;
mod supervise;
mod update;
mod userns;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_image::Usage;
use berth_runtime::shim::ShimWriter;
use berth_store::{Store, Table};
use berth_types::{Digest, Error, Result};
use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};

pub use archive::{go_file_mode, path_stat, CommitRequest};
pub use attach::{AttachOptions, AttachStream, StdinMsg};
pub use exec::{ExecConfig, ExecStream};
pub use logs::LogOptions;
pub(crate) use mounts::stage_subpath as stage_confined;
pub use ops::WaitCondition;
use record::ContainerRecord;
pub use state::{Event, Status, WaitState};
pub use update::UpdateConfig;

use crate::config::DaemonConfig;
use crate::events::EventBus;
use crate::images::{ImageService, UsageFn};
use crate::networks::NetworkService;
use crate::volumes::{VolumeService, VolumeUsageFn};

const CONTAINERS: Table = Table::new("containers");

/// A piece of output: (stdcopy stream number, bytes).
pub type Chunk = (u8, Bytes);

/// The output end a hijacked connection reads: an attach's or exec's bounded queue, or a fixed
/// message.
pub enum Output {
    Stream(mpsc::Receiver<Chunk>),
    Fixed(Vec<Chunk>),
}

impl Output {
    pub async fn recv(&mut self) -> Option<Chunk> {
        match self {
            Output::Stream(rx) => rx.recv().await,
            Output::Fixed(v) => (!v.is_empty()).then(|| v.remove(0)),
        }
    }
}

/// How long a shim may take, after reporting the exit, to delete its container's cgroups and
/// runtime state before a start or removal of the container goes on without it.
const SHIM_CLEANUP: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Entry {
    record: Mutex<ContainerRecord>,
    subscribers: Mutex<Vec<attach::Subscriber>>,
    shim: Arc<tokio::sync::Mutex<Option<ShimWriter>>>,
    shim_ready: Arc<Notify>,
    stdin: mpsc::UnboundedSender<StdinMsg>,
    wait: watch::Sender<WaitState>,
    exec_routes: exec::ExecRoutes,
    /// The pending PAUSE/RESUME request, answered by the shim's ACK or ERROR.
    control: Mutex<Option<tokio::sync::oneshot::Sender<Result<()>>>>,
    backoff: Mutex<std::time::Duration>,
    /// Serialises lifecycle operations (start, stop, remove) on one container.
    op: tokio::sync::Mutex<()>,
    /// Serialises pause and resume exchanges with the shim: `control` holds one pending answer,
    /// and kill, stop and rm thaw a paused container without the lifecycle lock.
    pause_op: tokio::sync::Mutex<()>,
    /// The embedded DNS server while the container runs on a user-defined network.
    dns: Mutex<Option<berth_network::dns::DnsHandle>>,
    /// False from the moment a shim is supervised until its connection closes. A shim reports the
    /// exit first and only then deletes the container's runtime state and cgroups, so a waiter
    /// learns the exit without waiting for that; a new start and a removal wait for it instead.
    shim_gone: watch::Sender<bool>,
}

impl Entry {
    fn new(record: ContainerRecord) -> Arc<Entry> {
        let (stdin, rx) = mpsc::unbounded_channel();
        let wait = WaitState::of(&record.state);
        let e = Arc::new(Entry {
            record: Mutex::new(record),
            subscribers: Mutex::new(Vec::new()),
            shim: Arc::new(tokio::sync::Mutex::new(None)),
            shim_ready: Arc::new(Notify::new()),
            stdin,
            wait: watch::channel(wait).0,
            exec_routes: Default::default(),
            control: Mutex::new(None),
            backoff: Mutex::new(std::time::Duration::from_millis(100)),
            op: tokio::sync::Mutex::new(()),
            pause_op: tokio::sync::Mutex::new(()),
            dns: Mutex::new(None),
            shim_gone: watch::channel(true).0,
        });
        attach::spawn_stdin_forwarder(&e, rx);
        e
    }

    /// Waits (bounded) until the last shim of this container has finished its clean-up and gone.
    pub(super) async fn shim_finished(&self) {
        let mut rx = self.shim_gone.subscribe();
        if tokio::time::timeout(SHIM_CLEANUP, rx.wait_for(|gone| *gone)).await.is_err() {
            tracing::warn!(container = %self.id(), "the shim did not finish its clean-up in {SHIM_CLEANUP:?}; going on");
        }
    }

    pub fn record(&self) -> ContainerRecord {
        self.record.lock().expect("record lock").clone()
    }

    pub fn id(&self) -> String {
        self.record.lock().expect("record lock").id.clone()
    }

    /// Changes fields that are not the state. The state only changes through `transition`.
    fn update(&self, f: impl FnOnce(&mut ContainerRecord)) -> ContainerRecord {
        let mut r = self.record.lock().expect("record lock");
        let before = r.state.status;
        f(&mut r);
        debug_assert_eq!(before, r.state.status, "state changed outside the state machine");
        r.clone()
    }

    /// Asks the state machine for a transition; on success the record changes and waiters are
    /// woken before the lock is released, so a waiter that subscribed earlier sees it and one that
    /// subscribes later reads the new state.
    fn transition(&self, ev: Event) -> Result<ContainerRecord> {
        self.transition_then(ev, |_| None)
    }

    /// `transition`, then the follow-up transition `next` picks from the new record, in one step
    /// (an exit and the restart the policy wants, say). A refused follow-up leaves the first.
    fn transition_then(
        &self,
        ev: Event,
        next: impl FnOnce(&ContainerRecord) -> Option<Event>,
    ) -> Result<ContainerRecord> {
        let mut r = self.record.lock().expect("record lock");
        let (id, name) = (r.id.clone(), r.name.clone());
        r.state.apply(ev, &id, &name)?;
        if let Some(ev2) = next(&r) {
            let mut s = r.state.clone();
            if s.apply(ev2, &id, &name).is_ok() {
                r.state = s;
            }
        }
        let removed = self.wait.borrow().removed;
        self.wait.send_replace(WaitState { removed, ..WaitState::of(&r.state) });
        Ok(r.clone())
    }

    /// Running and not exiting: an exit being handled drops the shim before it releases the
    /// rootfs and network and records the exit (so that waiters wake to a released container).
    async fn running_now(&self) -> bool {
        self.record().state.running() && self.shim.lock().await.is_some()
    }

    /// Sends a control message to the shim. No shim, or a shim whose socket is closing, means the
    /// container's process has exited or is exiting: Docker's "is not running" (409), never the
    /// socket's error (a pause or kill racing an exit answered 500 "Broken pipe" before).
    async fn shim_send(&self, kind: u8, payload: &[u8]) -> Result<()> {
        let mut g = self.shim.lock().await;
        let not_running = || Error::conflict(format!("Container {} is not running", self.id()));
        match g.as_mut() {
            Some(w) => w.send(kind, payload).await.map_err(|err| {
                tracing::debug!(container = %self.id(), "shim gone: {err}");
                not_running()
            }),
            None => Err(not_running()),
        }
    }

    /// Marks the container gone for `wait --condition removed`.
    fn mark_removed(&self) {
        let _r = self.record.lock().expect("record lock");
        self.wait.send_modify(|w| w.removed = true);
    }

    /// The wait state now and a receiver of every later change, read under the record's lock.
    fn subscribe_wait(&self) -> (WaitState, watch::Receiver<WaitState>) {
        let _r = self.record.lock().expect("record lock");
        let rx = self.wait.subscribe();
        let now = rx.borrow().clone();
        (now, rx)
    }
}

pub struct ContainerService {
    cfg: Arc<DaemonConfig>,
    store: Arc<Store>,
    images: Arc<ImageService>,
    volumes: Arc<VolumeService>,
    networks: Arc<NetworkService>,
    events: Arc<EventBus>,
    entries: Mutex<BTreeMap<String, Arc<Entry>>>,
    /// Container names (without the slash) to ids: the one place a name is reserved, so two
    /// creates or renames can never both win one.
    names: Mutex<std::collections::HashMap<String, String>>,
    /// Addresses picked for starts and connects not yet recorded in their containers' records
    /// (the veths are being made): taken like recorded ones. The lock serialises the picking.
    ipam_lock: Mutex<Vec<network::PendingAddress>>,
    proxies: Mutex<std::collections::HashMap<String, Vec<berth_network::proxy::Proxy>>>,
    execs: Mutex<std::collections::HashMap<String, Arc<exec::ExecEntry>>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::internal(format!("blocking task: {e}")))?
}

impl ContainerService {
    pub(crate) async fn open(
        cfg: Arc<DaemonConfig>,
        store: Arc<Store>,
        images: Arc<ImageService>,
        volumes: Arc<VolumeService>,
        networks: Arc<NetworkService>,
        events: Arc<EventBus>,
    ) -> Result<Arc<ContainerService>> {
        let st = store.clone();
        let (records, unreadable) = blocking(move || st.list_decodable::<ContainerRecord>(CONTAINERS)).await?;
        // As dockerd with a container whose config it cannot read: said, left where it is (a
        // newer or repaired berthd may read it), and the others load.
        for (id, err) in unreadable {
            tracing::error!(container = %id, "could not load the container's record, skipped: {}", err.message);
        }
        let svc = Arc::new(ContainerService {
            cfg,
            store,
            images,
            volumes,
            networks,
            events,
            entries: Mutex::new(BTreeMap::new()),
            names: Mutex::new(records.iter().map(|(id, r)| (r.name.clone(), id.clone())).collect()),
            ipam_lock: Mutex::new(Vec::new()),
            proxies: Default::default(),
            execs: Default::default(),
        });
        // Volumes mounted for containers that kept running stay mounted until those exit.
        let live_volumes: Vec<String> = records
            .iter()
            .filter(|(_, r)| r.state.status.alive())
            .flat_map(|(_, r)| r.mounts.iter().filter(|m| m.kind == "volume").map(|m| m.name.clone()))
            .collect();
        svc.volumes.store().restore_users(&live_volumes);
        for (id, rec) in records {
            let running = rec.state.status.alive();
            let e = Entry::new(rec);
            svc.entries.lock().expect("entries lock").insert(id, e.clone());
            if running {
                svc.clone().reconnect(e).await;
            }
        }
        svc.recover().await;
        svc.restart_on_boot();
        Ok(svc)
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_root.join("containers").join(id)
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("containers").join(id)
    }

    /// Kept short: UNIX socket paths are limited to 108 bytes.
    fn shim_socket(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("s").join(format!("{}.sock", &id[..16]))
    }

    /// Where volume subpaths are bound before the runtime mounts them (root-only, outside the
    /// bundle, which a start removes and recreates).
    fn staging_dir(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("subpaths").join(id)
    }

    fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.exec_root.join("netns").join(&id[..16])
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// The container's cgroup: `<parent>/<id>`, the parent being its own `--cgroup-parent` (as
    /// cri-dockerd sets a pod's) or the daemon's. Cleaned lexically, as Docker's `filepath.Join`:
    /// `..` never climbs above the hierarchy's root.
    fn cgroups_path(&self, rec: &ContainerRecord) -> String {
        cgroups_path_of(&self.cfg.cgroup_parent, &rec.host_config.resources.cgroup_parent, &rec.id)
    }

    async fn persist(&self, rec: &ContainerRecord) -> Result<()> {
        let (store, rec) = (self.store.clone(), rec.clone());
        blocking(move || store.put(CONTAINERS, &rec.id, &rec)).await
    }

    /// Reserves `name` for `id`: Docker's conflict error if another container holds it.
    fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let mut names = self.names.lock().expect("names lock");
        match names.get(name) {
            Some(other) if other != id => Err(Error::conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            ))),
            _ => {
                names.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// Draws random names until one is free and reserves it in the same step: a generated name
    /// never fails a create (after a few draws a digit is added, as Docker does).
    fn reserve_random_name(&self, id: &str) -> String {
        let mut names = self.names.lock().expect("names lock");
        for attempt in 0.. {
            let n = crate::names::random(if attempt < 8 { 0 } else { attempt });
            if let std::collections::hash_map::Entry::Vacant(v) = names.entry(n.clone()) {
                v.insert(id.to_string());
                return n;
            }
        }
        unreachable!("an endless supply of names")
    }

    /// Frees `name` if `id` holds it.
    fn release_name(&self, name: &str, id: &str) {
        let mut names = self.names.lock().expect("names lock");
        if names.get(name).is_some_and(|held| held == id) {
            names.remove(name);
        }
    }

    /// Finds a container by full id, name, or unique id prefix.
    pub fn get(&self, name: &str) -> Result<Arc<Entry>> {
        let entries = self.entries.lock().expect("entries lock");
        if let Some(e) = entries.get(name) {
            return Ok(e.clone());
        }
        let bare = name.strip_prefix('/').unwrap_or(name);
        let by_name = self.names.lock().expect("names lock").get(bare).cloned();
        if let Some(e) = by_name.and_then(|id| entries.get(&id)) {
            return Ok(e.clone());
        }
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<_> = entries.iter().filter(|(id, _)| id.starts_with(name)).collect();
            match hits.len() {
                1 => return Ok(hits[0].1.clone()),
                0 => {}
                _ => return Err(Error::invalid(format!("multiple IDs found with provided prefix: {name}"))),
            }
        }
        Err(Error::not_found(format!("No such container: {name}")))
    }

    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.entries.lock().expect("entries lock").values().cloned().collect()
    }

    /// How many containers use each image (by image id): the image list's `Containers`.
    pub fn image_users(&self) -> std::collections::HashMap<String, usize> {
        let mut out = std::collections::HashMap::new();
        for e in self.all() {
            let id = e.record.lock().expect("record lock").image_id.to_string();
            *out.entry(id).or_default() += 1;
        }
        out
    }

    /// Counts (running, paused, stopped) for `/info`.
    pub fn counts(&self) -> (usize, usize, usize) {
        let all = self.all();
        // Paused containers are their own count (the state machine calls them running too).
        let paused = all.iter().filter(|e| e.record().state.paused()).count();
        let running = all.iter().filter(|e| e.record().state.running()).count() - paused;
        (running, paused, all.len() - running - paused)
    }

    /// Who uses which image, for image delete's conflict rules.
    pub fn usage_fn(self: &Arc<Self>) -> UsageFn {
        let weak = Arc::downgrade(self);
        Arc::new(move |image: &Digest| {
            let Some(svc) = weak.upgrade() else {
                return Vec::new();
            };
            svc.all()
                .into_iter()
                .map(|e| e.record())
                .filter(|r| r.image_id == *image)
                .map(|r| if r.state.running() { Usage::Running(r.id) } else { Usage::Stopped(r.id) })
                .collect()
        })
    }

    /// Which containers refer to which volume, for volume remove and prune.
    pub fn volume_usage_fn(self: &Arc<Self>) -> VolumeUsageFn {
        let weak = Arc::downgrade(self);
        Arc::new(move |name: &str| {
            let Some(svc) = weak.upgrade() else {
                return Vec::new();
            };
            svc.all()
                .into_iter()
                .map(|e| e.record())
                .filter(|r| r.mounts.iter().any(|m| m.kind == "volume" && m.name == name))
                .map(|r| r.id)
                .collect()
        })
    }

    fn publish(&self, action: &str, rec: &ContainerRecord, extra: &[(&str, String)]) {
        let mut attrs: BTreeMap<String, String> = rec.config.labels.clone().into_iter().collect();
        attrs.insert("image".into(), rec.config.image.clone());
        attrs.insert("name".into(), rec.name.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.events.publish("container", action, &rec.id, attrs);
    }

    /// Releases host state on daemon shutdown. Running containers stay up under their shims.
    pub async fn shutdown(&self) {
        // Bridges without running containers go; they come back at the next start.
        let busy: Vec<String> = self
            .all()
            .iter()
            .map(|e| e.record())
            .filter(|r| r.state.running())
            .flat_map(|r| r.endpoints.into_iter().map(|e| e.network_id))
            .collect();
        if let Ok(nets) = self.networks.list(&berth_api::filters::Filters::default()).await {
            for n in nets.into_iter().filter(|n| n.driver == "bridge" && !busy.contains(&n.id)) {
                let _ = blocking(move || berth_network::link::delete_link(&n.bridge)).await;
            }
        }
        let parent = self.cfg.cgroup_parent.trim_matches('/').to_string();
        let scopes = mount_scopes(&self.cfg.data_root, &self.cfg.exec_root);
        let _ = blocking(move || {
            // Kept while containers still have mounts below them (they run on without berthd).
            for d in scopes {
                if let Err(e) = berth_sys::mntscope::release_own_mount(&d) {
                    tracing::warn!("release {}: {e}", d.display());
                }
            }
            // Empty cgroup parents are ours to remove; non-empty ones still hold live containers.
            if let Ok(dirs) = std::fs::read_dir("/sys/fs/cgroup") {
                for d in dirs.flatten() {
                    let _ = std::fs::remove_dir(d.path().join(&parent));
                }
            }
            let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(&parent));
            Ok(())
        })
        .await;
    }
}

/// The folders every container's host mounts live under — overlay roots, the files that pin
/// network and user namespaces — each made a private mount point of its own when berthd opens
/// (`berth_sys::mntscope`), so that a shim can leave all other containers' mounts behind in one
/// detach per folder.
pub(crate) fn mount_scopes(data_root: &Path, exec_root: &Path) -> Vec<PathBuf> {
    vec![data_root.join("snapshots"), exec_root.join("netns"), exec_root.join("userns")]
}

/// Makes the folders of `mount_scopes` private mount points (at daemon open, once they exist). A
/// folder that still holds mounts of containers an earlier berthd started without scopes stays as
/// it is until a later start (shims detach only the folders that are scopes).
pub(crate) fn own_mount_scopes(data_root: &Path, exec_root: &Path) -> Result<()> {
    for d in mount_scopes(data_root, exec_root) {
        if !berth_sys::mntscope::own_private_mount(&d)? {
            tracing::warn!(
                "{}: mounts of containers started before mount scopes are below it; scoped at a later start",
                d.display()
            );
        }
    }
    Ok(())
}

/// `<parent>/<id>` with the container's parent if it names one, else the daemon's; absolute,
/// without `.`, `..` or empty components.
pub(crate) fn cgroups_path_of(daemon_parent: &str, own_parent: &str, id: &str) -> String {
    let parent = if own_parent.trim().is_empty() { daemon_parent } else { own_parent };
    format!("/{}", berth_sys::root::clean(&Path::new(parent).join(id)).display())
}

#[cfg(test)]
mod cgroup_path_tests {
    use super::cgroups_path_of as p;

    #[test]
    fn a_containers_cgroup_parent_is_its_own_or_the_daemons_and_never_climbs() {
        assert_eq!(p("/berth", "", "abc"), "/berth/abc");
        assert_eq!(p("/berth", "/kubepods/burstable/pod1", "abc"), "/kubepods/burstable/pod1/abc");
        assert_eq!(p("/berth", "kubepods", "abc"), "/kubepods/abc");
        assert_eq!(p("/berth", "/../../x/./y//", "abc"), "/x/y/abc");
        assert_eq!(p("/berth", "/..", "abc"), "/abc");
    }
}
