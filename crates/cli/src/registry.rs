//! `berth pull`, `push`, `login`, `logout`: the daemon talks to the registry; the client keeps the
//! credentials in Docker's `config.json` format (so `docker login` and `berth login` share them).

use berth_api::progress::JsonMessage;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::{json, Value};

use crate::client::{empty, enc, full, Client};

/// Docker Hub's key in `config.json`.
const HUB: &str = "https://index.docker.io/v1/";

/// `$BERTH_CONFIG`, else `$DOCKER_CONFIG`, else `~/.docker`: the folder holding `config.json`.
pub fn config_dir() -> PathBuf {
    std::env::var_os("BERTH_CONFIG")
        .or_else(|| std::env::var_os("DOCKER_CONFIG"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".docker"))
}

pub(crate) fn read_config() -> Result<Value> {
    let p = config_dir().join("config.json");
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("invalid {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
    }
}

pub(crate) fn write_config(v: &Value) -> Result<()> {
    let dir = config_dir();
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(".config.json.tmp");
    // It holds credentials: 0600 from its creation (as the docker CLI), never readable for a moment.
    let _ = std::fs::remove_file(&tmp);
    let mut f =
        std::os::unix::fs::OpenOptionsExt::mode(std::fs::OpenOptions::new().write(true).create_new(true), 0o600)
            .open(&tmp)?;
    std::io::Write::write_all(&mut f, &serde_json::to_vec_pretty(v)?)?;
    drop(f);
    std::fs::rename(&tmp, dir.join("config.json"))?;
    Ok(())
}

/// The registry part of a reference, as config.json keys it (`docker.io` is Docker Hub's index URL).
pub fn registry_of(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    if image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        if first == "docker.io" || first == "index.docker.io" {
            HUB.into()
        } else {
            first.into()
        }
    } else {
        HUB.into()
    }
}

/// `X-Registry-Auth` for a registry from the stored credentials (`e30=` when there are none).
pub fn auth_header(registry: &str) -> Result<String> {
    let cfg = read_config()?;
    let mut a = json!({"serveraddress": registry});
    if let Some(helper) = crate::creds::helper_for(&cfg, registry) {
        if let Some((user, secret)) = crate::creds::get(&helper, registry)? {
            if user == "<token>" {
                a["identitytoken"] = secret.into();
            } else {
                a["username"] = user.into();
                a["password"] = secret.into();
            }
            return Ok(base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&a)?));
        }
        return Ok("e30=".into());
    }
    let entry = &cfg["auths"][registry];
    if let Some(tok) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        a["identitytoken"] = tok.into();
    }
    if let Some(basic) = entry["auth"].as_str() {
        let raw = base64::engine::general_purpose::STANDARD.decode(basic).unwrap_or_default();
        if let Some((u, p)) = String::from_utf8_lossy(&raw).split_once(':') {
            a["username"] = u.into();
            a["password"] = p.into();
        }
    }
    if a.as_object().is_some_and(|o| o.len() == 1) {
        return Ok("e30=".into());
    }
    Ok(base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&a)?))
}

/// Shows a JSON progress stream (bars on a terminal, docker's plain lines otherwise); the first
/// in-band error fails.
pub async fn print_progress(
    resp: hyper::Response<hyper::body::Incoming>,
    quiet: bool,
    to_stderr: bool,
) -> Result<Vec<JsonMessage>> {
    let mut lines = Vec::new();
    let mut p = crate::progress::Progress::new(quiet, to_stderr);
    let r = crate::client::read_json_lines(resp, |v: JsonMessage| -> Result<Option<()>> {
        if let Some(e) = &v.error {
            bail!("{e}");
        }
        p.show(&v);
        lines.push(v);
        Ok(None)
    })
    .await;
    p.finish();
    r?;
    Ok(lines)
}

/// `berth pull [-a] [--platform p] [-q] NAME[:TAG|@DIGEST]`
pub async fn pull(c: &Client, image: &str, all_tags: bool, platform: Option<&str>, quiet: bool) -> Result<()> {
    pull_to(c, image, all_tags, platform, quiet, false).await?;
    if quiet {
        let (name, _) = split_reference(image);
        println!("{}", if all_tags { name } else { image.to_string() });
    }
    Ok(())
}

/// Pulls with the progress on stdout or (for `run` and `create`) stderr.
pub async fn pull_to(
    c: &Client,
    image: &str,
    all_tags: bool,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<()> {
    let (name, tag) = split_reference(image);
    let tag = if all_tags { String::new() } else { tag.unwrap_or_else(|| "latest".into()) };
    let mut path = format!("/images/create?fromImage={}&tag={}", enc(&name), enc(&tag));
    if let Some(p) = platform {
        path.push_str(&format!("&platform={}", enc(p)));
    }
    let auth = auth_header(&registry_of(&name))?;
    let resp =
        Client::check(c.send_with(Method::POST, &path, empty(), None, &[("X-Registry-Auth", &auth)]).await?).await?;
    print_progress(resp, quiet, to_stderr).await?;
    Ok(())
}

/// `berth push NAME[:TAG]` (no tag: every local tag of the repository).
pub async fn push(c: &Client, image: &str, all_tags: bool, quiet: bool) -> Result<()> {
    let (name, tag) = split_reference(image);
    let tag = if all_tags { String::new() } else { tag.unwrap_or_else(|| "latest".into()) };
    let auth = auth_header(&registry_of(&name))?;
    let path = format!("/images/{name}/push?tag={}", enc(&tag));
    let resp =
        Client::check(c.send_with(Method::POST, &path, empty(), None, &[("X-Registry-Auth", &auth)]).await?).await?;
    print_progress(resp, quiet, false).await?;
    Ok(())
}

/// `NAME[:TAG|@DIGEST]` → (`NAME`, tag or digest).
fn split_reference(image: &str) -> (String, Option<String>) {
    if let Some((n, d)) = image.split_once('@') {
        return (n.to_string(), Some(d.to_string()));
    }
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (image[..slash + i].to_string(), Some(image[slash + i + 1..].to_string())),
        None => (image.to_string(), None),
    }
}

/// `berth login [-u USER] [-p PASS | --password-stdin] [SERVER]`: the daemon checks, we store.
pub async fn login(c: &Client, server: Option<&str>, user: &str, password: &str) -> Result<()> {
    let key = match server {
        None => HUB.to_string(),
        Some(s) => registry_of(&format!("{}/x", s.trim_start_matches("https://").trim_start_matches("http://"))),
    };
    let body = json!({"username": user, "password": password, "serveraddress": key});
    let resp =
        Client::check(c.send(Method::POST, "/auth", full(serde_json::to_vec(&body)?), Some("application/json")).await?)
            .await?;
    let answer: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes()).unwrap_or_default();
    let mut cfg = read_config()?;
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    if let Some(helper) = crate::creds::helper_for(&cfg, &key) {
        // With a helper the secret lives in the helper; config.json only lists the registry.
        match answer["IdentityToken"].as_str().filter(|t| !t.is_empty()) {
            Some(tok) => crate::creds::store(&helper, &key, "<token>", tok)?,
            None => crate::creds::store(&helper, &key, user, password)?,
        }
        cfg["auths"][&key] = json!({});
        write_config(&cfg)?;
        println!("{}", answer["Status"].as_str().unwrap_or("Login Succeeded"));
        return Ok(());
    }
    let entry = match answer["IdentityToken"].as_str().filter(|t| !t.is_empty()) {
        Some(tok) => {
            json!({"auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:")), "identitytoken": tok})
        }
        None => json!({"auth": base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))}),
    };
    cfg["auths"][&key] = entry;
    write_config(&cfg)?;
    println!("{}", answer["Status"].as_str().unwrap_or("Login Succeeded"));
    Ok(())
}

/// `berth logout [SERVER]`
pub fn logout(server: Option<&str>) -> Result<()> {
    let key = match server {
        None => HUB.to_string(),
        Some(s) => registry_of(&format!("{}/x", s.trim_start_matches("https://").trim_start_matches("http://"))),
    };
    let mut cfg = read_config()?;
    let mut removed = cfg["auths"].as_object_mut().and_then(|m| m.remove(&key)).is_some();
    if let Some(helper) = crate::creds::helper_for(&cfg, &key) {
        removed |= crate::creds::erase(&helper, &key).is_ok();
    }
    if removed {
        write_config(&cfg)?;
        println!("Removing login credentials for {key}");
    } else {
        println!("Not logged in to {key}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_registries() {
        assert_eq!(split_reference("busybox"), ("busybox".into(), None));
        assert_eq!(split_reference("127.0.0.1:5000/a/b:1"), ("127.0.0.1:5000/a/b".into(), Some("1".into())));
        assert_eq!(split_reference("a/b@sha256:00"), ("a/b".into(), Some("sha256:00".into())));
        assert_eq!(registry_of("busybox"), HUB);
        assert_eq!(registry_of("user/app"), HUB);
        assert_eq!(registry_of("127.0.0.1:5000/a/b"), "127.0.0.1:5000");
        assert_eq!(registry_of("docker.io/library/busybox"), HUB);
    }
}
