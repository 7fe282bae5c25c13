//! What each `berth` command does, over [`Client`].

use anyhow::{bail, Result};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{enc, reader_body, ApiError, Client};

/// Prints rows as docker does (Go's tabwriter with minwidth 10, padding 3): each column as wide as
/// its widest cell plus three spaces, and at least ten.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<width$}", width = (w[i] + 3).max(10)));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

pub fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// go-units' HumanSize with decimal units, as `docker images` shows sizes.
pub fn human_size(n: f64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    let s = if s.len() > 4 { s[..4].trim_end_matches('.').to_string() } else { s };
    format!("{s}{}", units[i])
}

fn ago(unix: i64) -> String {
    let secs = chrono::Utc::now().timestamp() - unix;
    let h = match secs {
        s if s < 1 => "Less than a second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 86400 * 2 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86400),
    };
    format!("{h} ago")
}

pub async fn images(c: &Client, all: bool, quiet: bool) -> Result<String> {
    let list: Vec<Value> = c.get(&format!("/images/json?all={}", all as u8)).await?;
    if quiet {
        return Ok(list.iter().map(|i| short(i["Id"].as_str().unwrap_or("")) + "\n").collect());
    }
    let mut rows = Vec::new();
    for i in &list {
        let tags: Vec<String> = serde_json::from_value(i["RepoTags"].clone()).unwrap_or_default();
        let tags = if tags.is_empty() { vec!["<none>:<none>".to_string()] } else { tags };
        for t in tags {
            let (repo, tag) = t.rsplit_once(':').unwrap_or((&t, "<none>"));
            rows.push(vec![
                repo.to_string(),
                tag.to_string(),
                short(i["Id"].as_str().unwrap_or("")),
                ago(i["Created"].as_i64().unwrap_or(0)),
                human_size(i["Size"].as_f64().unwrap_or(0.0)),
            ]);
        }
    }
    Ok(table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows))
}

pub async fn ps(c: &Client, all: bool, quiet: bool, filters: &[String], last: Option<i64>) -> Result<String> {
    let mut f = serde_json::Map::new();
    for kv in filters {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        f.entry(k.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("object")
            .insert(v.to_string(), json!(true));
    }
    let mut path = format!("/containers/json?all={}&filters={}", all as u8, enc(&Value::Object(f).to_string()));
    if let Some(n) = last {
        path.push_str(&format!("&limit={n}"));
    }
    let list: Vec<Value> = c.get(&path).await?;
    if quiet {
        return Ok(list.iter().map(|i| short(i["Id"].as_str().unwrap_or("")) + "\n").collect());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            let cmd = i["Command"].as_str().unwrap_or("");
            let cmd = if cmd.chars().count() > 20 {
                format!("\"{}…\"", cmd.chars().take(19).collect::<String>())
            } else {
                format!("\"{cmd}\"")
            };
            vec![
                short(i["Id"].as_str().unwrap_or("")),
                i["Image"].as_str().unwrap_or("").to_string(),
                cmd,
                ago(i["Created"].as_i64().unwrap_or(0)),
                i["Status"].as_str().unwrap_or("").to_string(),
                String::new(),
                i["Names"][0].as_str().unwrap_or("").trim_start_matches('/').to_string(),
            ]
        })
        .collect();
    Ok(table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows))
}

pub async fn import(
    c: &Client,
    file: &str,
    reference: Option<&str>,
    changes: &[String],
    message: &str,
) -> Result<String> {
    let mut path = "/images/create?fromSrc=-".to_string();
    if let Some(r) = reference {
        path.push_str(&format!("&repo={}", enc(r)));
    }
    for ch in changes {
        path.push_str(&format!("&changes={}", enc(ch)));
    }
    if !message.is_empty() {
        path.push_str(&format!("&message={}", enc(message)));
    }
    let body = if file == "-" {
        reader_body(tokio::io::stdin())
    } else {
        reader_body(tokio::fs::File::open(file).await.map_err(|e| anyhow::anyhow!("open {file}: {e}"))?)
    };
    let resp = Client::check(c.send(Method::POST, &path, body, Some("application/x-tar")).await?).await?;
    let bytes = resp.into_body().collect().await?.to_bytes();
    let mut out = String::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line)?;
        if let Some(e) = v["error"].as_str() {
            bail!(ApiError { status: hyper::StatusCode::OK, message: e.to_string() });
        }
        if let Some(s) = v["status"].as_str() {
            out.push_str(s);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Demultiplexes a stdcopy stream (or copies a TTY stream) to our stdout and stderr.
pub async fn copy_output(mut r: impl tokio::io::AsyncRead + Unpin, tty: bool) -> Result<()> {
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if tty {
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let (frames, rest) = berth_api::stdcopy::parse(&pending);
        let rest = rest.to_vec();
        for (s, data) in frames {
            if s == berth_api::stdcopy::STDERR {
                stderr.write_all(&data).await?;
                stderr.flush().await?;
            } else {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
            }
        }
        pending = rest;
    }
    Ok(())
}

pub struct RunOptions {
    pub image: String,
    pub cmd: Vec<String>,
    pub name: Option<String>,
    pub detach: bool,
    pub rm: bool,
    pub interactive: bool,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub entrypoint: Option<String>,
    pub labels: Vec<String>,
    pub network: Option<String>,
}

/// `docker run`'s exit code for a failed start: 127 not found, 126 not executable, else 125.
pub fn start_failure_code(msg: &str) -> i32 {
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") {
        126
    } else {
        125
    }
}

/// create → attach → wait → start, as the docker CLI orders them. Returns the exit code.
pub async fn run(c: &Client, o: RunOptions) -> Result<i32> {
    let labels: serde_json::Map<String, Value> = o
        .labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), json!(v))
        })
        .collect();
    let body = json!({
        "Image": o.image,
        "Cmd": if o.cmd.is_empty() { Value::Null } else { json!(o.cmd) },
        "Entrypoint": o.entrypoint.as_ref().map(|e| json!([e])).unwrap_or(Value::Null),
        "Env": o.env,
        "WorkingDir": o.workdir.clone().unwrap_or_default(),
        "User": o.user.clone().unwrap_or_default(),
        "Hostname": o.hostname.clone().unwrap_or_default(),
        "Labels": labels,
        "AttachStdin": o.interactive && !o.detach,
        "AttachStdout": !o.detach,
        "AttachStderr": !o.detach,
        "OpenStdin": o.interactive,
        "StdinOnce": o.interactive && !o.detach,
        "Tty": false,
        "HostConfig": {"AutoRemove": o.rm, "NetworkMode": o.network.clone().unwrap_or_else(|| "default".into())},
    });
    let mut path = "/containers/create".to_string();
    if let Some(n) = &o.name {
        path.push_str(&format!("?name={}", enc(n)));
    }
    let created = c.call(Method::POST, &path, Some(&body)).await?;
    let id = created["Id"].as_str().unwrap_or_default().to_string();
    if o.detach {
        println!("{id}");
        if let Err(e) = c.call(Method::POST, &format!("/containers/{id}/start"), None).await {
            let msg = e.to_string();
            eprintln!("berth: {msg}");
            return Ok(start_failure_code(&msg));
        }
        return Ok(0);
    }
    let stream = c
        .hijack(&format!(
            "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}",
            if o.interactive { "&stdin=1" } else { "" }
        ))
        .await?;
    let cond = if o.rm { "removed" } else { "next-exit" };
    let wait = Client::check(
        c.send(Method::POST, &format!("/containers/{id}/wait?condition={cond}"), crate::client::empty(), None).await?,
    )
    .await?;
    if let Err(e) = c.call(Method::POST, &format!("/containers/{id}/start"), None).await {
        let msg = e.to_string();
        eprintln!("berth: {msg}");
        return Ok(start_failure_code(&msg));
    }
    let (rd, mut wr) = tokio::io::split(stream);
    if o.interactive {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await;
            let _ = wr.shutdown().await;
        });
    }
    copy_output(rd, false).await?;
    let body = wait.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&body)?;
    Ok(v["StatusCode"].as_i64().unwrap_or(125) as i32)
}

pub async fn logs(
    c: &Client,
    name: &str,
    follow: bool,
    timestamps: bool,
    tail: &str,
    since: Option<&str>,
) -> Result<()> {
    let info: Value = c.get(&format!("/containers/{}/json", enc(name))).await?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut path = format!(
        "/containers/{}/logs?stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        enc(name),
        follow as u8,
        timestamps as u8,
        enc(tail)
    );
    if let Some(s) = since {
        path.push_str(&format!("&since={}", enc(s)));
    }
    let resp = Client::check(c.send(Method::GET, &path, crate::client::empty(), None).await?).await?;
    use futures_util::TryStreamExt;
    let stream = http_body_util::BodyStream::new(resp.into_body())
        .try_filter_map(|f| async move { Ok(f.into_data().ok()) })
        .map_err(std::io::Error::other);
    copy_output(tokio_util::io::StreamReader::new(Box::pin(stream)), tty).await
}
