//! Prometheus counters: requests by method and status, bytes in and out, storage errors, storage
//! driver latency by operation, authentication failures by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static BYTES_IN: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
static STORAGE_ERRORS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: Mutex<BTreeMap<(String, u16), u64>> = Mutex::new(BTreeMap::new());
/// Per storage operation: calls and total seconds.
static STORAGE: Mutex<BTreeMap<&'static str, (u64, f64)>> = Mutex::new(BTreeMap::new());
static AUTH_FAILURES: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Times one storage driver call (recorded when dropped).
pub struct StorageTimer(&'static str, std::time::Instant);

impl StorageTimer {
    pub fn start(op: &'static str) -> StorageTimer {
        StorageTimer(op, std::time::Instant::now())
    }
}

impl Drop for StorageTimer {
    fn drop(&mut self) {
        let mut m = STORAGE.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(self.0).or_default();
        e.0 += 1;
        e.1 += self.1.elapsed().as_secs_f64();
    }
}

/// A refused login (`login`), a known caller refused an action (`denied`), a bad or missing
/// bearer token (`token`), a caller slowed down (`rate_limited`).
pub fn auth_failure(kind: &'static str) {
    *AUTH_FAILURES.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() += 1;
}

pub fn request(method: &str, status: u16) {
    let mut m = REQUESTS.lock().unwrap_or_else(|e| e.into_inner());
    *m.entry((method.to_string(), status)).or_default() += 1;
}

pub fn bytes_in(n: u64) {
    BYTES_IN.fetch_add(n, Ordering::Relaxed);
}

pub fn bytes_out(n: u64) {
    BYTES_OUT.fetch_add(n, Ordering::Relaxed);
}

pub fn storage_error() {
    STORAGE_ERRORS.fetch_add(1, Ordering::Relaxed);
}

/// The text exposition format.
pub fn render() -> String {
    let mut s = String::new();
    s.push_str("# HELP berth_registry_requests_total HTTP requests by method and status.\n");
    s.push_str("# TYPE berth_registry_requests_total counter\n");
    for ((m, st), n) in REQUESTS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        s.push_str(&format!("berth_registry_requests_total{{method=\"{m}\",status=\"{st}\"}} {n}\n"));
    }
    for (name, help, v) in [
        ("berth_registry_bytes_received_total", "Blob bytes received.", &BYTES_IN),
        ("berth_registry_bytes_sent_total", "Blob bytes sent.", &BYTES_OUT),
        ("berth_registry_storage_errors_total", "Storage driver failures.", &STORAGE_ERRORS),
    ] {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", v.load(Ordering::Relaxed)));
    }
    s.push_str("# HELP berth_registry_storage_seconds Storage driver time by operation.\n");
    s.push_str("# TYPE berth_registry_storage_seconds summary\n");
    for (op, (n, secs)) in STORAGE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        s.push_str(&format!("berth_registry_storage_seconds_sum{{op=\"{op}\"}} {secs}\n"));
        s.push_str(&format!("berth_registry_storage_seconds_count{{op=\"{op}\"}} {n}\n"));
    }
    s.push_str("# HELP berth_registry_auth_failures_total Authentication and authorisation failures.\n");
    s.push_str("# TYPE berth_registry_auth_failures_total counter\n");
    for (kind, n) in AUTH_FAILURES.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        s.push_str(&format!("berth_registry_auth_failures_total{{kind=\"{kind}\"}} {n}\n"));
    }
    s
}
