//! `docker logs` for the journald driver: the container's entries read back through `journalctl`
//! (the journal's own reader; its files are not ours to parse), matched by `CONTAINER_ID_FULL`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_types::{Error, Result};
use serde_json::Value;
use tokio::sync::mpsc;

use super::logs::LogOptions;
use super::record::ContainerRecord;
use super::Chunk;

/// One journal entry as the json-file line `LogOptions::render` reads.
fn as_line(v: &Value) -> Option<String> {
    // MESSAGE is a string, or an array of bytes when it is not valid UTF-8.
    let msg = match &v["MESSAGE"] {
        Value::String(s) => s.clone(),
        Value::Array(b) => {
            String::from_utf8_lossy(&b.iter().filter_map(|x| x.as_u64().map(|n| n as u8)).collect::<Vec<_>>())
                .into_owned()
        }
        _ => return None,
    };
    let stream = if v["PRIORITY"] == "3" { "stderr" } else { "stdout" };
    let micros: i64 = v["__REALTIME_TIMESTAMP"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let time = chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    // A partial entry continues in the next one: no newline of its own.
    let nl = if v["CONTAINER_PARTIAL_MESSAGE"] == "true" { "" } else { "\n" };
    Some(serde_json::json!({"log": format!("{msg}{nl}"), "stream": stream, "time": time}).to_string())
}

/// Streams the container's journal entries; with `follow`, until the container stops or the
/// receiver is dropped (journalctl is then ended).
pub(super) fn read(
    rec: ContainerRecord,
    opts: LogOptions,
    running: impl Fn() -> bool + Send + 'static,
) -> Result<(bool, mpsc::Receiver<Chunk>)> {
    let mut cmd = Command::new("journalctl");
    cmd.args(["--output=json", "--no-pager", "--all", "--quiet"]);
    if let Some(n) = opts.tail {
        cmd.arg(format!("--lines={n}"));
    }
    if let Some(s) = opts.since {
        cmd.arg(format!("--since=@{s}"));
    }
    if let Some(u) = opts.until {
        cmd.arg(format!("--until=@{u}"));
    }
    if opts.follow {
        cmd.arg("--follow");
    }
    cmd.arg(format!("CONTAINER_ID_FULL={}", rec.id));
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::invalid(format!("cannot read the journal: journalctl: {e}")))?;
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel(256);
    let pid = child.id();
    let follow = opts.follow;
    // The watcher ends a following journalctl once nobody reads or the container stopped.
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        if !follow {
            return;
        }
        loop {
            std::thread::sleep(Duration::from_millis(200));
            if tx2.is_closed() || !running() {
                // Give the last entries a moment to reach the journal before ending the read.
                std::thread::sleep(Duration::from_millis(300));
                if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
                }
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(std::result::Result::ok) {
            let Some(raw) = serde_json::from_str::<Value>(&line).ok().and_then(|v| as_line(&v)) else { continue };
            if let Some(c) = opts.render(&raw) {
                if tx.blocking_send(c).is_err() {
                    break;
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    });
    Ok((rec.config.tty, rx))
}

#[cfg(test)]
mod tests {
    #[test]
    fn journal_entries_as_log_lines() {
        let v = serde_json::json!({"MESSAGE": "hi", "PRIORITY": "3", "__REALTIME_TIMESTAMP": "1700000000000001"});
        let l: serde_json::Value = serde_json::from_str(&super::as_line(&v).unwrap()).unwrap();
        assert_eq!((l["log"].as_str(), l["stream"].as_str()), (Some("hi\n"), Some("stderr")));
        assert_eq!(l["time"], "2023-11-14T22:13:20.000001000Z");
        let v = serde_json::json!({"MESSAGE": [104, 105], "CONTAINER_PARTIAL_MESSAGE": "true"});
        let l: serde_json::Value = serde_json::from_str(&super::as_line(&v).unwrap()).unwrap();
        assert_eq!((l["log"].as_str(), l["stream"].as_str()), (Some("hi"), Some("stdout")));
    }
}
