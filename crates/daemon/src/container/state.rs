//! The container state machine: one typed table of every state a container can be in and every
//! transition between them, with Docker's error for each refused one.
//!
//! Every operation (start, stop, kill, pause, exec, rm, the restart policy, the shim's STARTED and
//! EXITED reports, berthd's recovery) asks `Entry::transition` for its transition instead of checking
//! the status on its own. The transition, the record update and the wake-up of waiters happen under
//! the record's one lock, and `Entry::subscribe_wait` reads the state under that same lock, so no exit
//! can fall between "check the state" and "subscribe" (a lost wake-up hung `docker wait` forever).

use berth_types::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where a container is in its life. Persisted as Docker's lower-case status words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started (or its only start failed).
    Created,
    /// A start is under way: the shim is being spawned and has not reported STARTED yet.
    Starting,
    /// Its init process runs.
    Running,
    /// Running, every process frozen.
    Paused,
    /// Exited; the restart policy runs it again after a backoff.
    Restarting,
    /// Its init process exited.
    Exited,
    /// `rm` is deleting it.
    Removing,
    /// Removal failed half-way; only `rm -f` may try again.
    Dead,
}

impl Status {
    /// Whether a process of the container may be alive (and its shim holds it).
    pub fn alive(self) -> bool {
        matches!(self, Status::Starting | Status::Running | Status::Paused)
    }

    /// Docker's `State.Status` word.
    pub fn docker_word(self, ever_started: bool, by_policy: bool) -> &'static str {
        match self {
            Status::Created => "created",
            // Docker does not show a start in flight: the container is still what it was
            // (restarting, for a start the restart policy made).
            Status::Starting if by_policy => "restarting",
            Status::Starting if ever_started => "exited",
            Status::Starting => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
            Status::Dead => "dead",
        }
    }
}

/// What happened, or what an operation asks for.
#[derive(Debug, Clone)]
pub enum Event {
    /// `start` (by hand, by the restart policy, or at boot).
    Start,
    /// The shim reported STARTED: the user's process runs.
    Started {
        pid: i32,
        at: String,
    },
    /// The start failed before the process ran.
    StartFailed {
        error: String,
        code: i64,
    },
    /// The shim reported the init's exit (or went away without a report).
    Exited {
        code: i64,
        at: String,
        oom: bool,
        error: String,
    },
    Pause,
    Unpause,
    /// The restart policy will run the container again after its backoff.
    RestartScheduled,
    /// A manual stop cancelled a scheduled restart.
    RestartCancelled,
    /// `rm`; with `force` the caller has already killed the process.
    Remove {
        force: bool,
    },
    /// Deleting the files failed half-way.
    RemoveFailed,
}

/// The state a container's record keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StateWire")]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    /// Exits recorded since berthd loaded the record: what `wait` counts.
    #[serde(skip)]
    pub exits: u64,
    /// The start in flight is the restart policy's (shown as `restarting`, as Docker does).
    #[serde(skip)]
    pub by_policy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::Health>,
}

/// Docker's zero time, shown for times that have not happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            oom_killed: false,
            exits: 0,
            by_policy: false,
            health: None,
        }
    }
}

/// Records written before the typed status kept `paused` and `restarting` as flags next to it.
#[derive(Deserialize)]
struct StateWire {
    status: Status,
    pid: i32,
    exit_code: i64,
    error: String,
    started_at: String,
    finished_at: String,
    oom_killed: bool,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    restarting: bool,
    #[serde(default)]
    health: Option<super::health::Health>,
}

impl From<StateWire> for State {
    fn from(w: StateWire) -> State {
        let status = match w.status {
            Status::Running if w.paused => Status::Paused,
            Status::Exited | Status::Created if w.restarting => Status::Restarting,
            s => s,
        };
        State {
            status,
            pid: w.pid,
            exit_code: w.exit_code,
            error: w.error,
            started_at: w.started_at,
            finished_at: w.finished_at,
            oom_killed: w.oom_killed,
            exits: 0,
            by_policy: false,
            health: w.health,
        }
    }
}

impl State {
    /// The init process may be alive: a shim holds it (running, paused, or a start in flight).
    pub fn running(&self) -> bool {
        matches!(self.status, Status::Running | Status::Paused)
    }

    pub fn paused(&self) -> bool {
        self.status == Status::Paused
    }

    /// Waiting out the policy's backoff, or in the start the policy made.
    pub fn restarting(&self) -> bool {
        self.status == Status::Restarting || self.status == Status::Starting && self.by_policy
    }

    /// The status Docker shows.
    pub fn shown(&self) -> &'static str {
        self.status.docker_word(self.started_at != ZERO_TIME, self.by_policy)
    }

    /// Docker's error if the table refuses `ev` now; nothing changes either way (for operations
    /// that must ask before they act, and apply once the act succeeded).
    pub fn check(&self, ev: Event, id: &str, name: &str) -> Result<()> {
        self.clone().apply(ev, id, name)
    }

    /// Applies `ev` if the table allows it from the current status; otherwise Docker's error for
    /// this status, and nothing changes. `id`/`name` only word the errors.
    pub fn apply(&mut self, ev: Event, id: &str, name: &str) -> Result<()> {
        use Status::*;
        let not_running = || Error::conflict(format!("Container {id} is not running"));
        let restarting =
            || Error::conflict(format!("Container {id} is restarting, wait until the container is running"));
        let from_restarting = self.status == Restarting;
        match (self.status, ev) {
            (Running | Starting, Event::Start) => return Err(Error::not_modified()),
            (Paused, Event::Start) => {
                return Err(Error::conflict("cannot start a paused container, try unpause instead"));
            }
            (Removing | Dead, Event::Start) => {
                return Err(Error::conflict(format!("container {id} is marked for removal and cannot be started")));
            }
            (Created | Exited | Restarting, Event::Start) => {
                self.status = Starting;
                self.by_policy = from_restarting;
                return Ok(());
            }

            (Starting, Event::Started { pid, at }) => {
                self.status = Running;
                self.pid = pid;
                self.started_at = at;
                self.error.clear();
                self.exit_code = 0;
                self.oom_killed = false;
            }
            (_, Event::Started { .. }) => return Err(Error::internal(format!("container {id} was not starting"))),

            (Starting, Event::StartFailed { error, code }) => {
                self.status = if self.started_at == ZERO_TIME { Created } else { Exited };
                self.pid = 0;
                self.error = error;
                self.exit_code = code;
            }
            // The exit was recorded first (the process died as it started): keep that record.
            (_, Event::StartFailed { .. }) => {}

            (Starting | Running | Paused, Event::Exited { code, at, oom, error }) => {
                self.status = Exited;
                self.pid = 0;
                self.exit_code = code;
                self.finished_at = at;
                self.oom_killed = oom;
                self.error = error;
                self.exits += 1;
            }
            (_, Event::Exited { .. }) => return Err(Error::internal(format!("container {id} was not running"))),

            (Running, Event::Pause) => self.status = Paused,
            (Paused, Event::Pause) => return Err(Error::conflict(format!("Container {id} is already paused"))),
            (Restarting, Event::Pause) => return Err(restarting()),
            (_, Event::Pause) => return Err(not_running()),
            (Paused, Event::Unpause) => self.status = Running,
            (Running, Event::Unpause) => return Err(Error::conflict(format!("Container {id} is not paused"))),
            (_, Event::Unpause) => return Err(not_running()),

            (Exited, Event::RestartScheduled) => self.status = Restarting,
            (_, Event::RestartScheduled) => return Err(Error::conflict(format!("Container {id} is not stopped"))),
            (Restarting, Event::RestartCancelled) => self.status = Exited,
            (_, Event::RestartCancelled) => {}

            (Removing, Event::Remove { .. }) => {
                return Err(Error::conflict(format!("removal of container {id} is already in progress")));
            }
            (Running | Starting, Event::Remove { force: false }) => {
                return Err(Error::conflict(format!(
                    "cannot remove container \"/{name}\": container is running: stop the container before removing or force remove"
                )));
            }
            (Paused, Event::Remove { force: false }) => {
                return Err(Error::conflict(format!(
                    "cannot remove container \"/{name}\": container is paused and must be unpaused first"
                )));
            }
            (Restarting, Event::Remove { force: false }) => {
                return Err(Error::conflict(format!(
                    "You cannot remove a restarting container {id}. Stop the container before attempting removal or force remove"
                )));
            }
            // A forced remove killed the process first; one still alive means the kill did not land.
            (Running | Starting | Paused, Event::Remove { force: true }) => {
                return Err(Error::conflict(format!("cannot remove container \"/{name}\": could not kill it")));
            }
            (Created | Exited | Restarting | Dead, Event::Remove { .. }) => self.status = Removing,
            (Removing, Event::RemoveFailed) => self.status = Dead,
            (_, Event::RemoveFailed) => {}
        }
        self.by_policy = false;
        Ok(())
    }
}

/// What `wait` watches: published under the record's lock by every transition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaitState {
    pub exits: u64,
    pub exit_code: i64,
    pub running: bool,
    pub removed: bool,
    pub error: Option<String>,
}

impl WaitState {
    pub fn of(s: &State) -> WaitState {
        WaitState { exits: s.exits, exit_code: s.exit_code, running: s.status.alive(), removed: false, error: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::ErrorKind;

    fn exited() -> Event {
        Event::Exited { code: 0, at: "t".into(), oom: false, error: String::new() }
    }

    fn st(status: Status) -> State {
        State { status, ..Default::default() }
    }

    #[test]
    fn life_cycle() {
        let mut s = State::default();
        s.apply(Event::Start, "c", "n").unwrap();
        assert_eq!(s.status, Status::Starting);
        assert_eq!(s.apply(Event::Start, "c", "n").unwrap_err().kind, ErrorKind::NotModified);
        s.apply(Event::Started { pid: 7, at: "t0".into() }, "c", "n").unwrap();
        assert!(s.running());
        s.apply(Event::Pause, "c", "n").unwrap();
        assert_eq!(s.shown(), "paused");
        s.apply(Event::Unpause, "c", "n").unwrap();
        s.apply(exited(), "c", "n").unwrap();
        assert_eq!((s.status, s.exits, s.pid), (Status::Exited, 1, 0));
        // A second exit report for the same run is refused, never counted twice.
        assert!(s.apply(exited(), "c", "n").is_err());
        assert_eq!(s.exits, 1);
        s.apply(Event::RestartScheduled, "c", "n").unwrap();
        assert_eq!(s.shown(), "restarting");
        s.apply(Event::Start, "c", "n").unwrap();
        // The policy's start still shows as restarting until the process runs (or fails).
        assert_eq!(s.shown(), "restarting");
        s.apply(Event::StartFailed { error: "boom".into(), code: 127 }, "c", "n").unwrap();
        assert_eq!((s.status, s.exit_code), (Status::Exited, 127));
        s.apply(Event::Remove { force: false }, "c", "n").unwrap();
        assert_eq!(s.status, Status::Removing);
        let e = s.apply(Event::Remove { force: true }, "c", "n").unwrap_err();
        assert!(e.message.contains("already in progress"), "{e}");
    }

    #[test]
    fn refusals_in_dockers_words() {
        let msg = |status, ev| st(status).apply(ev, "abc", "web").unwrap_err();
        let e = msg(Status::Restarting, Event::Remove { force: false });
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.message.starts_with("You cannot remove a restarting container abc."), "{e}");
        assert!(msg(Status::Running, Event::Remove { force: false }).message.contains("container is running"));
        assert!(msg(Status::Paused, Event::Remove { force: false }).message.contains("unpaused first"));
        assert_eq!(msg(Status::Exited, Event::Pause).message, "Container abc is not running");
        assert_eq!(msg(Status::Paused, Event::Pause).message, "Container abc is already paused");
        assert_eq!(msg(Status::Running, Event::Unpause).message, "Container abc is not paused");
        assert!(msg(Status::Dead, Event::Start).message.contains("marked for removal"));
        assert!(msg(Status::Paused, Event::Start).message.contains("try unpause"));
        // A restarting container may be removed by force, a created one without.
        st(Status::Restarting).apply(Event::Remove { force: true }, "abc", "web").unwrap();
        st(Status::Created).apply(Event::Remove { force: false }, "abc", "web").unwrap();
    }

    #[test]
    fn a_failed_first_start_leaves_it_created() {
        let mut s = State::default();
        s.apply(Event::Start, "c", "n").unwrap();
        assert_eq!(s.shown(), "created");
        s.apply(Event::StartFailed { error: "no such file".into(), code: 127 }, "c", "n").unwrap();
        assert_eq!((s.status, s.exits), (Status::Created, 0));
        assert!(!WaitState::of(&s).running);
    }

    #[test]
    fn old_records_load() {
        let old = serde_json::json!({"status": "running", "pid": 3, "exit_code": 0, "error": "", "started_at": "t",
            "finished_at": ZERO_TIME, "oom_killed": false, "paused": true, "restarting": false});
        let s: State = serde_json::from_value(old).unwrap();
        assert_eq!(s.status, Status::Paused);
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back["status"], "paused");
        assert!(back.get("exits").is_none());
    }
}
