use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_store::{Store, Table};
use berth_types::{Error, Result};
use serde::{Deserialize, Serialize};

const VOLUMES: Table = Table::new("volumes");

/// Docker marks volumes it made for `-v /path` and image VOLUMEs with this label.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub mountpoint: PathBuf,
}

impl Volume {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }
}

/// Docker's rule for local volume names.
pub fn validate_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
        )))
    }
}

pub struct VolumeStore {
    store: Arc<Store>,
    root: PathBuf,
    /// Live users of volumes whose options need a mount (tmpfs, device binds): mounted while > 0.
    mounts: Mutex<HashMap<String, usize>>,
}

impl VolumeStore {
    pub fn open(store: Arc<Store>, data_root: &Path) -> Result<VolumeStore> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root)?;
        Ok(VolumeStore { store, root, mounts: Mutex::new(HashMap::new()) })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates a volume, or returns the existing one of that name (as Docker does).
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        options: BTreeMap<String, String>,
        mut labels: BTreeMap<String, String>,
    ) -> Result<(Volume, bool)> {
        let driver = if driver.is_empty() { "local" } else { driver };
        if driver != "local" {
            return Err(Error::not_found(format!("plugin \"{driver}\" not found")));
        }
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                validate_name(n)?;
                n.to_string()
            }
            None => {
                labels.insert(ANONYMOUS_LABEL.into(), String::new());
                berth_types::new_id()
            }
        };
        if let Some(v) = self.get(&name)? {
            return Ok((v, false));
        }
        for k in options.keys() {
            if !matches!(k.as_str(), "type" | "o" | "device" | "size") {
                return Err(Error::invalid(format!("invalid option: {k:?}")));
            }
        }
        if options.get("o").is_some_and(|o| o.split(',').any(|x| x == "bind")) {
            let dev = options.get("device").map(String::as_str).unwrap_or("");
            if !Path::new(dev).is_absolute() || !Path::new(dev).exists() {
                return Err(Error::invalid(format!(
                    "failed to mount local volume: mount {dev}:{}: no such file or directory",
                    self.dir(&name).join("_data").display()
                )));
            }
        }
        let data = self.dir(&name).join("_data");
        std::fs::create_dir_all(&data)?;
        let v = Volume {
            name: name.clone(),
            driver: driver.into(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            labels,
            options,
            mountpoint: data,
        };
        self.store.put(VOLUMES, &name, &v)?;
        Ok((v, true))
    }

    pub fn get(&self, name: &str) -> Result<Option<Volume>> {
        self.store.get(VOLUMES, name)
    }

    pub fn inspect(&self, name: &str) -> Result<Volume> {
        self.get(name)?.ok_or_else(|| Error::not_found(format!("get {name}: no such volume")))
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        Ok(self.store.list::<Volume>(VOLUMES)?.into_iter().map(|(_, v)| v).collect())
    }

    /// Removes a volume no container refers to. `users` are the ids of containers that do.
    pub fn remove(&self, name: &str, users: &[String]) -> Result<()> {
        let v = self.inspect(name)?;
        if !users.is_empty() {
            return Err(Error::conflict(format!("remove {name}: volume is in use - [{}]", users.join(", "))));
        }
        self.release_mount(&v, true)?;
        let dir = self.dir(&v.name);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                // Content made inside containers may be odd (read-only dirs, devices): go confined.
                berth_sys::root::Root::open(&self.root)?.remove_all(Path::new(&v.name))?;
            }
            _ => {}
        }
        self.store.delete(VOLUMES, name)
    }

    /// Bytes used under a volume's folder.
    pub fn size(&self, v: &Volume) -> i64 {
        berth_sys::root::tree_size(&v.mountpoint) as i64
    }

    fn needs_mount(v: &Volume) -> bool {
        v.options.contains_key("type") || v.options.contains_key("device")
    }

    /// Makes the volume ready for one more user and returns the host path to bind.
    pub fn mount(&self, name: &str) -> Result<Volume> {
        let v = self.inspect(name)?;
        if Self::needs_mount(&v) {
            let mut m = self.mounts.lock().expect("volume mounts lock");
            let n = m.entry(v.name.clone()).or_insert(0);
            if *n == 0 && !berth_sys::mount::is_mountpoint(&v.mountpoint) {
                let kind = v.options.get("type").map(String::as_str).unwrap_or("none");
                let device = v.options.get("device").map(String::as_str).unwrap_or(kind);
                let mut opts: Vec<String> =
                    v.options.get("o").map(|o| o.split(',').map(String::from).collect()).unwrap_or_default();
                if let Some(s) = v.options.get("size") {
                    opts.push(format!("size={s}"));
                }
                berth_sys::mount::mount_fs(device, &v.mountpoint, kind, &opts)
                    .map_err(|e| e.context(format!("error while mounting volume '{}'", v.mountpoint.display())))?;
            }
            *n += 1;
        }
        Ok(v)
    }

    /// One user fewer; the last one unmounts a volume that needed a mount.
    pub fn unmount(&self, name: &str) -> Result<()> {
        let Some(v) = self.get(name)? else {
            return Ok(());
        };
        self.release_mount(&v, false)
    }

    fn release_mount(&self, v: &Volume, all: bool) -> Result<()> {
        if !Self::needs_mount(v) {
            return Ok(());
        }
        let mut m = self.mounts.lock().expect("volume mounts lock");
        let n = m.entry(v.name.clone()).or_insert(0);
        *n = if all { 0 } else { n.saturating_sub(1) };
        if *n == 0 {
            m.remove(&v.name);
            berth_sys::mount::unmount(&v.mountpoint)?;
        }
        Ok(())
    }

    /// After a restart: the users still running, so mounts are kept for them and released after.
    pub fn restore_users(&self, running_users: &[String]) {
        let mut m = self.mounts.lock().expect("volume mounts lock");
        for name in running_users {
            *m.entry(name.clone()).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, VolumeStore) {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&d.path().join("db")).unwrap());
        let v = VolumeStore::open(store, d.path()).unwrap();
        (d, v)
    }

    #[test]
    fn create_get_remove() {
        let (_d, s) = open();
        let (v, created) = s.create(Some("data"), "", BTreeMap::new(), BTreeMap::new()).unwrap();
        assert!(created);
        assert!(v.mountpoint.ends_with("volumes/data/_data"));
        assert!(v.mountpoint.is_dir());
        let (again, created) = s.create(Some("data"), "local", BTreeMap::new(), BTreeMap::new()).unwrap();
        assert!(!created);
        assert_eq!(again, v);
        let (anon, _) = s.create(None, "", BTreeMap::new(), BTreeMap::new()).unwrap();
        assert!(anon.anonymous());
        assert_eq!(anon.name.len(), 64);
        assert_eq!(s.remove("data", &["c1".into()]).unwrap_err().kind, berth_types::ErrorKind::Conflict);
        s.remove("data", &[]).unwrap();
        assert!(!v.mountpoint.exists());
        assert_eq!(s.inspect("data").unwrap_err().message, "get data: no such volume");
    }

    #[test]
    fn names_and_drivers() {
        let (_d, s) = open();
        for bad in ["a", "../x", "a/b", "-x", ".hidden", "with space"] {
            assert!(s.create(Some(bad), "", BTreeMap::new(), BTreeMap::new()).is_err(), "{bad}");
        }
        assert!(s.create(Some("ok"), "nfs-plugin", BTreeMap::new(), BTreeMap::new()).is_err());
    }

    #[test]
    #[ignore = "needs root: run with --include-ignored (CI runs as root)"]
    fn tmpfs_volume_mounts_once_per_users() {
        let (_d, s) = open();
        let mut o = BTreeMap::new();
        o.insert("type".to_string(), "tmpfs".to_string());
        o.insert("o".to_string(), "size=1m".to_string());
        s.create(Some("mem"), "", o, BTreeMap::new()).unwrap();
        let v = s.mount("mem").unwrap();
        s.mount("mem").unwrap();
        assert!(berth_sys::mount::is_mountpoint(&v.mountpoint));
        s.unmount("mem").unwrap();
        assert!(berth_sys::mount::is_mountpoint(&v.mountpoint));
        s.unmount("mem").unwrap();
        assert!(!berth_sys::mount::is_mountpoint(&v.mountpoint));
    }
}
