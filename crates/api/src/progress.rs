//! JSON progress lines (`{"status":...}`, `{"stream":...}`, in-band errors) for pull, import, build.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of a progress stream (Docker's `jsonmessage.JSONMessage`): pull, push, import, load
/// and build answers. Members in alphabetical order, as Docker's map-built lines had them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonMessage {
    /// Structured results: a build's `{"ID": ...}`, a push's tag, digest and size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, rename = "errorDetail", skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<JsonError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The bar older clients print as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    #[serde(default, rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
}

/// An error inside a progress stream; `code` is a failed RUN step's exit status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsonError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

impl JsonMessage {
    /// The message as one line of the stream.
    pub fn line(&self) -> Vec<u8> {
        let mut b = serde_json::to_vec(self).expect("a progress message serialises");
        b.push(b'\n');
        b
    }

    pub fn stream(s: impl Into<String>) -> JsonMessage {
        JsonMessage { stream: Some(s.into()), ..Default::default() }
    }

    pub fn aux(v: Value) -> JsonMessage {
        JsonMessage { aux: Some(v), ..Default::default() }
    }

    /// An error after the response headers went out: the client prints `message`.
    pub fn error(message: impl Into<String>, code: Option<i64>) -> JsonMessage {
        let message = message.into();
        JsonMessage {
            error: Some(message.clone()),
            error_detail: Some(JsonError { code, message }),
            ..Default::default()
        }
    }
}

pub fn status(s: &str) -> Vec<u8> {
    JsonMessage { status: Some(s.into()), ..Default::default() }.line()
}

pub fn status_id(s: &str, id: &str) -> Vec<u8> {
    JsonMessage { status: Some(s.into()), id: Some(id.into()), ..Default::default() }.line()
}

pub fn stream(s: &str) -> Vec<u8> {
    JsonMessage::stream(s).line()
}

/// An error after the response headers went out: the client prints `message`.
pub fn error(message: &str) -> Vec<u8> {
    JsonMessage::error(message, None).line()
}

/// A per-layer status with an empty `progressDetail`, as Docker sends them (`Pulling fs layer`).
pub fn layer(s: &str, id: &str) -> Vec<u8> {
    JsonMessage {
        status: Some(s.into()),
        progress_detail: Some(ProgressDetail::default()),
        id: Some(id.into()),
        ..Default::default()
    }
    .line()
}

/// A per-layer byte count (`Downloading`, `Pushing`), with the bar older clients print as is.
pub fn bytes(s: &str, id: &str, current: u64, total: u64) -> Vec<u8> {
    JsonMessage {
        status: Some(s.into()),
        progress_detail: Some(ProgressDetail { current: Some(current), total: Some(total) }),
        progress: Some(bar(current, total)),
        id: Some(id.into()),
        ..Default::default()
    }
    .line()
}

/// `{"aux":{...},"progressDetail":{}}`: structured results (push's tag, digest and size).
pub fn aux(v: Value) -> Vec<u8> {
    JsonMessage { aux: Some(v), progress_detail: Some(ProgressDetail::default()), ..Default::default() }.line()
}

/// Docker's `[=====>      ]  1.2MB/3.4MB`, 50 characters wide.
pub fn bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let human = |n: u64| {
        let units = ["B", "kB", "MB", "GB", "TB"];
        let mut v = n as f64;
        let mut i = 0;
        while v >= 1000.0 && i < units.len() - 1 {
            v /= 1000.0;
            i += 1;
        }
        if i == 0 {
            format!("{n}B")
        } else {
            // Go's %.4g: four significant digits, no trailing zeros.
            let decimals = 3usize.saturating_sub(format!("{}", v as u64).len() - 1);
            let n = format!("{v:.decimals$}");
            let n = if n.contains('.') { n.trim_end_matches('0').trim_end_matches('.').to_string() } else { n };
            format!("{n}{}", units[i])
        }
    };
    if total == 0 {
        return format!("{:>8}", human(current));
    }
    let filled = (current.min(total) * WIDTH / total).min(WIDTH);
    let arrow = if filled < WIDTH { ">" } else { "=" };
    let mut b = "=".repeat(filled.saturating_sub(1) as usize);
    if filled > 0 {
        b.push_str(arrow);
    }
    format!("[{b:<50}] {:>8}/{}", human(current), human(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_have_docker_shape() {
        use serde_json::json;
        // Byte for byte what the map-built lines were (sorted members).
        assert_eq!(error("x"), b"{\"error\":\"x\",\"errorDetail\":{\"message\":\"x\"}}\n");
        assert_eq!(layer("Done", "a"), b"{\"id\":\"a\",\"progressDetail\":{},\"status\":\"Done\"}\n");
        let v: Value = serde_json::from_slice(&bytes("Downloading", "abc", 5, 10)).unwrap();
        assert_eq!(v["progressDetail"]["current"], 5);
        assert_eq!(v["progressDetail"]["total"], 10);
        assert!(v["progress"].as_str().unwrap().starts_with("[========================>"));
        let v: Value = serde_json::from_slice(&layer("Pull complete", "abc")).unwrap();
        assert_eq!(v["progressDetail"], json!({}));
        assert_eq!(bar(10, 10).matches('=').count(), 50);
        assert!(bar(1_500_000, 3_000_000).ends_with("1.5MB/3MB"));
    }
}
