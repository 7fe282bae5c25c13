//! A build's progress as BuildKit's `Status` stream: vertexes (one per Dockerfile step and per
//! internal phase), their logs and statuses. Every update is kept, so a `Status` call that comes
//! late (the client dials Solve and Status at once) still gets the whole build.
//!
//! The classic builder reports through Docker's JSON message stream (`Step N/M : ...`, ` --->
//! Using cache`, the step's output, `errorDetail`); [`Translator`] turns that stream into
//! vertexes, so both builders share one source of truth about what a step did.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::progress::JsonMessage;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use crate::proto::{StatusResponse, Timestamp, Vertex, VertexLog, VertexStatus, VertexWarning};

/// One build's status updates.
#[derive(Default)]
pub struct Progress {
    updates: Mutex<(Vec<StatusResponse>, bool)>,
    changed: Notify,
}

impl Progress {
    pub fn push(&self, u: StatusResponse) {
        self.updates.lock().unwrap().0.push(u);
        self.changed.notify_waiters();
    }

    pub fn finish(&self) {
        self.updates.lock().unwrap().1 = true;
        self.changed.notify_waiters();
    }

    /// Updates from `from` on, waiting for new ones; `None` once the build has ended and all were read.
    pub async fn next(&self, from: usize) -> Option<Vec<StatusResponse>> {
        loop {
            let notified = self.changed.notified();
            {
                let g = self.updates.lock().unwrap();
                if g.0.len() > from {
                    return Some(g.0[from..].to_vec());
                }
                if g.1 {
                    return None;
                }
            }
            notified.await;
        }
    }
}

/// Builds by ref, kept a minute after they end for a late `Status`.
#[derive(Default)]
pub struct Builds {
    by_ref: Mutex<HashMap<String, Arc<Progress>>>,
    changed: Notify,
}

impl Builds {
    pub fn start(self: &Arc<Self>, r: &str) -> Arc<Progress> {
        let p = self.by_ref.lock().unwrap().entry(r.to_string()).or_default().clone();
        self.changed.notify_waiters();
        p
    }

    pub fn end(self: &Arc<Self>, r: &str) {
        if let Some(p) = self.by_ref.lock().unwrap().get(r) {
            p.finish();
        }
        let (me, r) = (self.clone(), r.to_string());
        // (From a drop at shutdown there may be no runtime left: nothing to keep then.)
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                me.by_ref.lock().unwrap().remove(&r);
            });
        }
    }

    /// The build `r`, waiting up to `wait` for it to start.
    pub async fn get(&self, r: &str, wait: Duration) -> Option<Arc<Progress>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            if let Some(p) = self.by_ref.lock().unwrap().get(r) {
                return Some(p.clone());
            }
            tokio::time::timeout_at(deadline, notified).await.ok()?;
        }
    }
}

/// Log bytes kept per vertex, as BuildKit's default step log limit: a step that prints without
/// end cannot grow berthd's memory (every update is kept for late `Status` readers).
const LOG_LIMIT: usize = 2 << 20;
/// Log messages kept per vertex: a step writing a byte at a time is bounded too.
const LOG_MESSAGES: usize = 32 << 10;

/// Names vertexes and reports them: a vertex is started, logged to, and completed (or failed).
pub struct Reporter {
    build: String,
    progress: Arc<Progress>,
    vertexes: Mutex<HashMap<String, Vertex>>,
    /// Per vertex: log bytes and messages kept so far.
    logged: Mutex<HashMap<String, (usize, usize)>>,
}

impl Reporter {
    pub fn new(build: &str, progress: Arc<Progress>) -> Reporter {
        Reporter { build: build.to_string(), progress, vertexes: Mutex::default(), logged: Mutex::default() }
    }

    fn digest(&self, key: &str) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(format!("{}\0{key}", self.build))))
    }

    fn send_vertex(&self, v: Vertex) {
        self.progress.push(StatusResponse { vertexes: vec![v], ..Default::default() });
    }

    /// Starts the vertex `key` named `name`; returns its digest.
    pub fn start(&self, key: &str, name: &str) -> String {
        let digest = self.digest(key);
        let v = Vertex {
            digest: digest.clone(),
            name: name.to_string(),
            started: Some(Timestamp::now()),
            ..Default::default()
        };
        self.vertexes.lock().unwrap().insert(digest.clone(), v.clone());
        self.send_vertex(v);
        digest
    }

    fn update(&self, digest: &str, f: impl FnOnce(&mut Vertex)) {
        let v = {
            let mut g = self.vertexes.lock().unwrap();
            let Some(v) = g.get_mut(digest) else { return };
            if v.completed.is_some() {
                return;
            }
            f(v);
            v.clone()
        };
        self.send_vertex(v);
    }

    pub fn cached(&self, digest: &str) {
        self.update(digest, |v| v.cached = true);
    }

    pub fn complete(&self, digest: &str) {
        self.update(digest, |v| v.completed = Some(Timestamp::now()));
    }

    pub fn fail(&self, digest: &str, error: &str) {
        self.update(digest, |v| {
            v.error = error.to_string();
            v.completed = Some(Timestamp::now());
        });
    }

    pub fn log(&self, digest: &str, stream: i64, msg: impl Into<Vec<u8>>) {
        let mut msg = msg.into();
        {
            let mut logged = self.logged.lock().unwrap();
            // Past a limit the byte count says so (LIMIT + 1): the note is written once.
            let (bytes, count) = logged.entry(digest.to_string()).or_default();
            if *bytes > LOG_LIMIT {
                return;
            }
            *count += 1;
            if *bytes + msg.len() > LOG_LIMIT || *count >= LOG_MESSAGES {
                msg.truncate(LOG_LIMIT.saturating_sub(*bytes));
                msg.extend_from_slice(b"\n[output clipped, log limit 2MiB reached]\n");
                *bytes = LOG_LIMIT + 1;
            } else {
                *bytes += msg.len();
            }
        }
        let l = VertexLog { vertex: digest.to_string(), timestamp: Some(Timestamp::now()), stream, msg };
        self.progress.push(StatusResponse { logs: vec![l], ..Default::default() });
    }

    /// A byte counter under a vertex (`transferring context: 2.1MB`).
    pub fn status(&self, digest: &str, id: &str, current: i64, done: bool) {
        let now = Timestamp::now();
        let s = VertexStatus {
            id: id.to_string(),
            vertex: digest.to_string(),
            current,
            timestamp: Some(now.clone()),
            completed: done.then_some(now),
            ..Default::default()
        };
        self.progress.push(StatusResponse { statuses: vec![s], ..Default::default() });
    }

    pub fn warn(&self, digest: &str, short: &str) {
        let w = VertexWarning { vertex: digest.to_string(), level: 1, short: short.as_bytes().to_vec() };
        self.progress.push(StatusResponse { warnings: vec![w], ..Default::default() });
    }
}

/// What a classic build stream ended with.
#[derive(Debug, Default)]
pub struct Outcome {
    pub image: Option<String>,
    pub error: Option<String>,
}

/// Turns the classic builder's JSON messages into vertexes, in stream order.
pub struct Translator<'a> {
    r: &'a Reporter,
    current: Option<String>,
    steps: usize,
    outcome: Outcome,
}

impl<'a> Translator<'a> {
    pub fn new(r: &'a Reporter) -> Translator<'a> {
        Translator { r, current: None, steps: 0, outcome: Outcome::default() }
    }

    pub fn feed(&mut self, m: &JsonMessage) {
        if let Some(id) = m.aux.as_ref().and_then(|a| a.get("ID")).and_then(Value::as_str) {
            self.outcome.image = Some(id.to_string());
            return;
        }
        if let Some(e) = &m.error {
            if let Some(d) = &self.current {
                self.r.fail(d, e);
            }
            self.outcome.error = Some(e.clone());
            return;
        }
        if let Some(s) = &m.stream {
            self.stream(s);
        } else if let (Some(status), id) = (&m.status, m.id.as_deref()) {
            // Pull progress of a FROM: the per-layer lines, without the byte bars.
            if m.progress_detail.as_ref().and_then(|p| p.current).is_none() {
                if let Some(d) = &self.current {
                    let line = match id {
                        Some(id) => format!("{id}: {status}\n"),
                        None => format!("{status}\n"),
                    };
                    self.r.log(d, 1, line);
                }
            }
        }
    }

    fn stream(&mut self, s: &str) {
        if let Some(rest) = s.strip_prefix("Step ") {
            if let Some((count, text)) = rest.split_once(" : ") {
                if let Some(d) = self.current.take() {
                    self.r.complete(&d);
                }
                self.steps += 1;
                let name = format!("[{}] {}", count.trim(), text.trim_end());
                self.current = Some(self.r.start(&format!("step {} {name}", self.steps), &name));
                return;
            }
        }
        let Some(d) = self.current.clone() else { return };
        let line = s.trim_end();
        if line == " ---> Using cache" {
            self.r.cached(&d);
        } else if line.starts_with(" ---> Running in ")
            || line.starts_with(" ---> ")
            || line.starts_with("Removing intermediate container")
            || line.starts_with("Successfully built ")
            || line.starts_with("Successfully tagged ")
        {
            // The classic builder's own bookkeeping: BuildKit's display has no such lines.
        } else if let Some(w) = line.strip_prefix("[Warning] ") {
            self.r.warn(&d, w);
        } else {
            self.r.log(&d, 1, s.as_bytes().to_vec());
        }
    }

    pub fn finish(mut self) -> Outcome {
        if let Some(d) = self.current.take() {
            if self.outcome.error.is_none() {
                self.r.complete(&d);
            }
        }
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn step_logs_are_clipped_at_the_limit() {
        let p = Arc::new(Progress::default());
        let r = Reporter::new("b", p.clone());
        let d = r.start("s", "[1/1] RUN yes");
        for _ in 0..100 {
            r.log(&d, 1, vec![b'y'; 64 << 10]);
        }
        p.finish();
        let logs: Vec<u8> = p.next(0).await.unwrap().iter().flat_map(|u| &u.logs).flat_map(|l| l.msg.clone()).collect();
        assert!(logs.len() < LOG_LIMIT + 100, "{}", logs.len());
        assert!(logs.ends_with(b"[output clipped, log limit 2MiB reached]\n"));
        // A byte at a time: bounded by the message count.
        let d = r.start("t", "[1/1] RUN slow");
        for _ in 0..100_000 {
            r.log(&d, 1, b"y".to_vec());
        }
        let n = p.updates.lock().unwrap().0.iter().filter(|u| u.logs.iter().any(|l| l.vertex == d)).count();
        assert_eq!(n, LOG_MESSAGES);
    }

    #[tokio::test]
    async fn classic_steps_become_vertexes() {
        let p = Arc::new(Progress::default());
        let r = Reporter::new("b1", p.clone());
        let mut t = Translator::new(&r);
        for m in [
            json!({"stream": "Step 1/3 : FROM busybox\n"}),
            json!({"stream": " ---> 0123456789ab\n"}),
            json!({"stream": "Step 2/3 : RUN echo hi\n"}),
            json!({"stream": " ---> Using cache\n"}),
            json!({"stream": "Step 3/3 : RUN false\n"}),
            json!({"stream": " ---> Running in abc\n"}),
            json!({"stream": "oops\n"}),
            json!({"error": "The command '/bin/sh -c false' returned a non-zero code: 1", "errorDetail": {}}),
        ] {
            t.feed(&serde_json::from_value(m).unwrap());
        }
        let o = t.finish();
        assert_eq!(o.error.as_deref(), Some("The command '/bin/sh -c false' returned a non-zero code: 1"));
        p.finish();
        let all = p.next(0).await.unwrap();
        let vs: Vec<&Vertex> = all.iter().flat_map(|u| &u.vertexes).collect();
        let last = |name: &str| vs.iter().rev().find(|v| v.name == name).unwrap();
        assert!(last("[1/3] FROM busybox").completed.is_some());
        assert!(last("[2/3] RUN echo hi").cached);
        assert!(last("[3/3] RUN false").error.contains("non-zero code: 1"));
        let logs: Vec<&[u8]> = all.iter().flat_map(|u| &u.logs).map(|l| l.msg.as_slice()).collect();
        assert_eq!(logs, vec![b"oops\n".as_slice()]);
        assert!(p.next(all.len()).await.is_none());
    }
}
