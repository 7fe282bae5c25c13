//! Docker's event stream: publish once, fan out to every `GET /events` and keep a bounded history.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use berth_api::events::{Actor, Event};
use berth_api::filters::Filters;
use tokio::sync::broadcast;

const HISTORY: usize = 1024;

pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        EventBus { tx: broadcast::channel(4096).0, history: Mutex::new(VecDeque::with_capacity(HISTORY)) }
    }

    /// Publishes an event of `kind` (`container`, `image`, ...) about `id`.
    pub fn publish(&self, kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        crate::metrics::get().events.inc();
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or(0);
        let legacy = kind == "container" || kind == "image";
        let ev = Event {
            status: if legacy { action.to_string() } else { String::new() },
            id: if legacy { id.to_string() } else { String::new() },
            from: if kind == "container" {
                attributes.get("image").cloned().unwrap_or_default()
            } else {
                String::new()
            },
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor { id: id.to_string(), attributes },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        };
        let mut h = self.history.lock().expect("event history lock");
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(ev.clone());
        // Sent under the lock so a subscriber never sees an event both in history and live.
        let _ = self.tx.send(ev);
    }

    /// Clients following the stream now.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Past events with `time_nano >= since_nanos` and a live receiver for what follows.
    pub fn subscribe(&self, since_nanos: Option<i64>) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().expect("event history lock");
        let past = match since_nanos {
            Some(s) => h.iter().filter(|e| e.time_nano >= s).cloned().collect(),
            None => Vec::new(),
        };
        (past, self.tx.subscribe())
    }
}

/// Docker's event filters: type, event/action, container, image, network, volume, daemon, scope,
/// label. Each key narrows to its own type (`network=x` matches only network x's events).
pub fn matches(ev: &Event, f: &Filters) -> bool {
    let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
        let v = f.get(key);
        v.is_empty() || v.iter().any(|x| pred(x))
    };
    let attr = |k: &str| ev.actor.attributes.get(k).map(String::as_str).unwrap_or("");
    any("type", &|t| t == ev.kind)
        && any("event", &|a| a == ev.action || ev.action.starts_with(&format!("{a}:")))
        && any("container", &|c| ev.kind == "container" && (ev.actor.id.starts_with(c) || attr("name") == c))
        && any("image", &|i| (ev.kind == "image" && (ev.actor.id == i || attr("name") == i)) || attr("image") == i)
        && any("network", &|n| ev.kind == "network" && (ev.actor.id.starts_with(n) || attr("name") == n))
        && any("volume", &|v| ev.kind == "volume" && ev.actor.id == v)
        && any("daemon", &|d| ev.kind == "daemon" && (ev.actor.id == d || attr("name") == d))
        // Every event of a standalone engine is local.
        && any("scope", &|s| s == "local")
        // Swarm and plugin objects have no events here: asking for one matches nothing.
        && ["node", "service", "config", "secret", "plugin"].iter().all(|k| f.get(k).is_empty())
        && f.match_labels(&ev.actor.attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_and_filters() {
        let bus = EventBus::new();
        let mut a = BTreeMap::new();
        a.insert("name".to_string(), "web".to_string());
        a.insert("image".to_string(), "bb".to_string());
        bus.publish("container", "create", "abc", a.clone());
        bus.publish("image", "delete", "sha256:1", BTreeMap::new());
        let (past, _rx) = bus.subscribe(Some(0));
        assert_eq!(past.len(), 2);
        assert_eq!(past[0].status, "create");
        let f = Filters::parse(r#"{"type":["container"],"container":["web"]}"#).unwrap();
        assert!(matches(&past[0], &f));
        assert!(!matches(&past[1], &f));
        let f = Filters::parse(r#"{"event":["delete"]}"#).unwrap();
        assert!(matches(&past[1], &f));
        let mut n = BTreeMap::new();
        n.insert("name".to_string(), "app".to_string());
        bus.publish("network", "create", "netid1", n);
        bus.publish("volume", "create", "data", BTreeMap::new());
        let (past, _rx) = bus.subscribe(Some(0));
        let hits = |json: &str| {
            let f = Filters::parse(json).unwrap();
            past.iter().filter(|e| matches(e, &f)).map(|e| e.kind.clone()).collect::<Vec<_>>()
        };
        assert_eq!(hits(r#"{"network":["app"]}"#), ["network"]);
        assert_eq!(hits(r#"{"network":["netid"]}"#), ["network"]);
        assert_eq!(hits(r#"{"volume":["data"]}"#), ["volume"]);
        assert_eq!(hits(r#"{"volume":["other"]}"#), Vec::<String>::new());
        assert_eq!(hits(r#"{"scope":["swarm"]}"#), Vec::<String>::new());
        assert_eq!(hits(r#"{"scope":["local"]}"#).len(), 4);
        assert_eq!(hits(r#"{"daemon":["x"]}"#), Vec::<String>::new());
    }
}
