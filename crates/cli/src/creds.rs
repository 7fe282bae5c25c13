//! Docker credential helpers (`credsStore`, `credHelpers` in config.json): `docker-credential-<name>`
//! run with `get`, `store` or `erase`, speaking JSON on stdin/stdout as the docker CLI does.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// The helper responsible for `registry`: its own entry in `credHelpers`, else `credsStore`.
pub fn helper_for(cfg: &Value, registry: &str) -> Option<String> {
    cfg["credHelpers"][registry]
        .as_str()
        .or_else(|| cfg["credsStore"].as_str())
        .filter(|h| !h.is_empty())
        .map(String::from)
}

fn call(helper: &str, action: &str, input: &[u8]) -> Result<Vec<u8>> {
    let bin = format!("docker-credential-{helper}");
    let mut child = Command::new(&bin)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("error getting credentials - err: exec: \"{bin}\": executable file not found in $PATH")
        })?;
    child.stdin.take().expect("piped").write_all(input)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        bail!("error {action} credentials - {bin}: {msg}");
    }
    Ok(out.stdout)
}

/// (username, secret) for `registry`, or None when the helper has none. A username of `<token>`
/// means the secret is an identity token.
pub fn get(helper: &str, registry: &str) -> Result<Option<(String, String)>> {
    match call(helper, "get", registry.as_bytes()) {
        Ok(out) => {
            let v: Value = serde_json::from_slice(&out).context("credential helper answered invalid JSON")?;
            let user = v["Username"].as_str().unwrap_or_default().to_string();
            let secret = v["Secret"].as_str().unwrap_or_default().to_string();
            Ok((!secret.is_empty()).then_some((user, secret)))
        }
        // Helpers answer "credentials not found in native keychain" with a failure exit.
        Err(e) if e.to_string().contains("credentials not found") => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn store(helper: &str, registry: &str, user: &str, secret: &str) -> Result<()> {
    let body = json!({"ServerURL": registry, "Username": user, "Secret": secret});
    call(helper, "store", &serde_json::to_vec(&body)?).map(|_| ())
}

pub fn erase(helper: &str, registry: &str) -> Result<()> {
    call(helper, "erase", registry.as_bytes()).map(|_| ())
}
