//! Log drivers: what each wrote, read by the receiving end the test runs (a syslog listener on
//! loopback or a unix socket, a journal socket stand-in), and `docker logs` where Docker reads back.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use berth_e2e::*;
use serde_json::Value;

fn daemon() -> Berthd {
    let d = Berthd::start();
    d.import_busybox("busybox");
    d
}

/// Parses one native-protocol journal datagram into its fields.
fn journal_fields(mut b: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !b.is_empty() {
        let nl = b.iter().position(|c| *c == b'\n').expect("field end");
        let line = &b[..nl];
        match line.iter().position(|c| *c == b'=') {
            Some(eq) => {
                out.insert(
                    String::from_utf8_lossy(&line[..eq]).into(),
                    String::from_utf8_lossy(&line[eq + 1..]).into(),
                );
                b = &b[nl + 1..];
            }
            None => {
                let len = u64::from_le_bytes(b[nl + 1..nl + 9].try_into().unwrap()) as usize;
                let v = &b[nl + 9..nl + 9 + len];
                out.insert(String::from_utf8_lossy(line).into(), String::from_utf8_lossy(v).into());
                b = &b[nl + 9 + len + 1..];
            }
        }
    }
    out
}

#[test]
fn syslog_over_udp_tcp_and_unix() {
    let d = daemon();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let udp_addr = format!("udp://{}", udp.local_addr().unwrap());
    // RFC 5424 over UDP, with a tag template and a facility; stderr is severity err.
    d.ok(&[
        "run",
        "--rm",
        "--name",
        "sl",
        "--log-driver",
        "syslog",
        "--log-opt",
        &format!("syslog-address={udp_addr}"),
        "--log-opt",
        "syslog-format=rfc5424",
        "--log-opt",
        "tag={{.Name}}/{{.ID}}",
        "--log-opt",
        "syslog-facility=local3",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for _ in 0..2 {
        let n = udp.recv(&mut buf).expect("a syslog datagram");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got.sort();
    // local3 = 19: 19*8+6 = 158 (info), 19*8+3 = 155 (err).
    let out = got.iter().find(|m| m.ends_with(" - out")).unwrap_or_else(|| panic!("{got:?}"));
    let err = got.iter().find(|m| m.ends_with(" - err")).unwrap_or_else(|| panic!("{got:?}"));
    assert!(out.starts_with("<158>1 ") && err.starts_with("<155>1 "), "{got:?}");
    let parts: Vec<&str> = out.splitn(8, ' ').collect();
    assert!(parts[1].contains('T'), "an RFC 3339 time: {out}");
    assert!(
        parts[3].starts_with("sl/") && parts[3].len() == 15 && parts[5] == parts[3],
        "app name and msgid are the tag: {out}"
    );

    // TCP: newline-framed messages, the default format (RFC 3164 style).
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_addr = format!("tcp://{}", tcp.local_addr().unwrap());
    let id = d.ok(&[
        "run",
        "-d",
        "--log-driver",
        "syslog",
        "--log-opt",
        &format!("syslog-address={tcp_addr}"),
        "--log-opt",
        "tag=web",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two; sleep 300",
    ]);
    let (conn, _) = tcp.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut lines = BufReader::new(conn).lines();
    let one = lines.next().unwrap().unwrap();
    let two = lines.next().unwrap().unwrap();
    assert!(one.starts_with("<30>") && one.contains(" web[") && one.ends_with("]: one"), "{one}");
    assert!(two.ends_with("]: two"), "{two}");
    // No reading back, as dockerd.
    let o = d.docker(&["logs", &id]);
    assert!(
        !o.status.success() && err_text(&o).contains("configured logging driver does not support reading"),
        "{}",
        err_text(&o)
    );
    d.ok(&["rm", "-f", &id]);

    // A unix datagram socket (the local syslog daemon's kind).
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let sock = dir.path().join("log");
    let gram = UnixDatagram::bind(&sock).unwrap();
    gram.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    d.ok(&[
        "run",
        "--rm",
        "--log-driver",
        "syslog",
        "--log-opt",
        &format!("syslog-address=unixgram://{}", sock.display()),
        "--log-opt",
        "syslog-format=rfc3164",
        "busybox",
        "echo",
        "local",
    ]);
    let n = gram.recv(&mut buf).unwrap();
    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(m.starts_with("<30>") && m.ends_with("]: local"), "{m}");
    // Options are checked at create, per driver.
    let o = d.docker(&["run", "--rm", "--log-driver", "syslog", "--log-opt", "max-size=1m", "busybox", "true"]);
    assert!(err_text(&o).contains("unknown log opt 'max-size' for syslog log driver"), "{}", err_text(&o));
    let o =
        d.docker(&["run", "--rm", "--log-driver", "syslog", "--log-opt", "syslog-address=http://x", "busybox", "true"]);
    assert!(err_text(&o).contains("invalid value for log opt 'syslog-address'"), "{}", err_text(&o));
}

fn err_text(o: &std::process::Output) -> String {
    err(o)
}

#[test]
fn journald_fields_and_reading_back() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let sock = dir.path().join("journal.sock");
    let journal = UnixDatagram::bind(&sock).unwrap();
    journal.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // `docker logs` reads through journalctl: a stand-in that answers with what the test recorded
    // (and notes how it was asked) sits first on the daemon's PATH.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let record = dir.path().join("entries.json");
    let args = dir.path().join("args");
    std::fs::write(
        bin.join("journalctl"),
        format!("#!/bin/sh\necho \"$@\" > {}\ncat {}\n", args.display(), record.display()),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("journalctl"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let d = Berthd::start_with_env(&[], &[("BERTH_JOURNAL_SOCKET", sock.to_str().unwrap()), ("PATH", &path)]);
    d.import_busybox("busybox");
    let id = d.ok(&[
        "run",
        "-d",
        "--name",
        "jd",
        "--log-driver",
        "journald",
        "--label",
        "com.example.team=core",
        "--log-opt",
        "labels=com.example.team",
        "-e",
        "STAGE=prod",
        "--log-opt",
        "env=STAGE",
        "busybox",
        "sh",
        "-c",
        "echo hello; echo oops >&2; sleep 300",
    ]);
    let mut entries = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..2 {
        let n = journal.recv(&mut buf).expect("a journal datagram");
        entries.push(journal_fields(&buf[..n]));
    }
    let hello = entries.iter().find(|e| e["MESSAGE"] == "hello").unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(hello["CONTAINER_ID"], &id[..12]);
    assert_eq!(hello["CONTAINER_ID_FULL"], id);
    assert_eq!(hello["CONTAINER_NAME"], "jd");
    assert_eq!(hello["CONTAINER_TAG"], &id[..12]);
    assert_eq!(hello["SYSLOG_IDENTIFIER"], &id[..12]);
    assert_eq!(hello["IMAGE_NAME"], "busybox");
    assert_eq!(hello["PRIORITY"], "6");
    assert_eq!(hello["COM_EXAMPLE_TEAM"], "core");
    assert_eq!(hello["STAGE"], "prod");
    let oops = entries.iter().find(|e| e["MESSAGE"] == "oops").unwrap();
    assert_eq!(oops["PRIORITY"], "3");
    // Reading back: what the journal holds, by stream, asked by the container's full id.
    let lines: Vec<String> = entries
        .iter()
        .map(|e| {
            serde_json::json!({"MESSAGE": e["MESSAGE"], "PRIORITY": e["PRIORITY"], "__REALTIME_TIMESTAMP": "1700000000000000"})
                .to_string()
        })
        .collect();
    std::fs::write(&record, lines.join("\n") + "\n").unwrap();
    let o = d.docker(&["logs", "--tail", "5", &id]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!((out(&o), err(&o)), ("hello\n".to_string(), "oops\n".to_string()));
    let asked = std::fs::read_to_string(&args).unwrap();
    assert!(asked.contains(&format!("CONTAINER_ID_FULL={id}")) && asked.contains("--lines=5"), "{asked}");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn json_file_attrs_rotation_compression_and_local() {
    let d = daemon();
    let id = d.ok(&[
        "run",
        "-d",
        "--label",
        "team=core",
        "-e",
        "STAGE=prod",
        "--log-opt",
        "labels=team",
        "--log-opt",
        "env=STAGE",
        "--log-opt",
        "tag={{.Name}}",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "--log-opt",
        "compress=true",
        "--name",
        "rot",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 200 ]; do echo line$i; i=$((i+1)); done; sleep 300",
    ]);
    let logdir = d.data_root().join("containers").join(&id);
    eventually("a compressed rotation", || logdir.join(format!("{id}-json.log.1.gz")).exists());
    eventually("all 200 lines written", || d.ok(&["logs", "--tail", "1", &id]) == "line199");
    // The current file's entries carry the attributes.
    let current = std::fs::read_to_string(logdir.join(format!("{id}-json.log"))).unwrap();
    let entry: Value = serde_json::from_str(current.lines().next().unwrap()).unwrap();
    assert_eq!(entry["attrs"], serde_json::json!({"team": "core", "STAGE": "prod", "tag": "rot"}));
    // Everything still kept reads back in order, the compressed file included; tails reach into it.
    let all = d.ok(&["logs", &id]);
    let nums: Vec<u32> = all.lines().map(|l| l.trim_start_matches("line").parse().unwrap()).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1) && *nums.last().unwrap() == 199, "{nums:?}");
    let kept = nums.len();
    assert!(kept < 200, "3 files of 2k cannot hold all 200 entries");
    let current_lines = current.lines().count();
    let tail = d.ok(&["logs", "--tail", &(current_lines + 3).to_string(), &id]);
    assert_eq!(tail.lines().count(), current_lines + 3);
    d.ok(&["rm", "-f", &id]);
    let o = d.docker(&["run", "--rm", "--log-opt", "compress=true", "--log-opt", "max-file=1", "busybox", "true"]);
    assert!(err(&o).contains("compress cannot be true when max-file is less than 2"), "{}", err(&o));

    // local: Docker's default choice (rotated, compressed) read back like json-file.
    let id = d.ok(&["run", "-d", "--log-driver", "local", "busybox", "sh", "-c", "echo from-local; sleep 300"]);
    eventually("the local log", || d.ok(&["logs", &id]) == "from-local");
    let o = d.docker(&["run", "--rm", "--log-driver", "local", "--log-opt", "labels=x", "busybox", "true"]);
    assert!(err(&o).contains("unknown log opt 'labels' for local log driver"), "{}", err(&o));
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn daemon_default_driver() {
    let d = Berthd::start_with(&["--log-driver", "local"]);
    d.import_busybox("busybox");
    let id = d.ok(&["create", "busybox", "true"]);
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", &id]), "local");
    d.ok(&["start", "-a", &id]);
    let id = d.ok(&["create", "--log-driver", "none", "busybox", "echo", "x"]);
    d.ok(&["start", "-a", &id]);
    let o = d.docker(&["logs", &id]);
    assert!(err(&o).contains("configured logging driver does not support reading"), "{}", err(&o));
}

/// TCP with TLS: the server authenticated by `syslog-tls-ca-cert`, RFC 5424 messages framed by
/// octet counting (RFC 5425). The listener is `openssl s_server`, an independent TLS stack.
#[test]
fn syslog_over_tls() {
    let d = daemon();
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    make_certs(dir.path());
    let port = free_port();
    // Killed however the test ends (a panic included): the listener is this test's to end.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "s_server",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "server-cert.pem",
            "-key",
            "server-key.pem",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut server = KillOnDrop(server);
    eventually("the TLS listener", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let ca = dir.path().join("ca.pem");
    let id = d.ok(&[
        "run",
        "-d",
        "--log-driver",
        "syslog",
        "--log-opt",
        &format!("syslog-address=tcp+tls://127.0.0.1:{port}"),
        "--log-opt",
        &format!("syslog-tls-ca-cert={}", ca.display()),
        "--log-opt",
        "syslog-format=rfc5424",
        "--log-opt",
        "tag=secure",
        "busybox",
        "sh",
        "-c",
        "echo over-tls; sleep 300",
    ]);
    // s_server prints what it receives; read until the framed message is there.
    let mut stdout = server.0.stdout.take().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g2 = got.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 1024];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut b) {
            if n == 0 {
                break;
            }
            g2.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
    eventually("a message over TLS", || String::from_utf8_lossy(&got.lock().unwrap()).contains("over-tls"));
    let text = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    let (len, msg) = text.split_once(' ').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "octet counting: {text:?}");
    assert!(msg.starts_with("<30>1 ") && msg.contains(" secure ") && msg.ends_with(" - over-tls"), "{msg}");
    d.ok(&["rm", "-f", &id]);
}
