//! Prometheus counters: requests by method and status, bytes in and out, storage errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

static BYTES_IN: AtomicU64 = AtomicU64::new(0);
static BYTES_OUT: AtomicU64 = AtomicU64::new(0);
static STORAGE_ERRORS: AtomicU64 = AtomicU64::new(0);
static REQUESTS: Mutex<BTreeMap<(String, u16), u64>> = Mutex::new(BTreeMap::new());

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
    s
}
