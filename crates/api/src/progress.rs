//! JSON progress lines (`{"status":...}`, `{"stream":...}`, in-band errors) for pull, import, build.

use serde_json::{json, Value};

pub fn status(s: &str) -> Vec<u8> {
    line(json!({ "status": s }))
}

pub fn status_id(s: &str, id: &str) -> Vec<u8> {
    line(json!({ "status": s, "id": id }))
}

pub fn stream(s: &str) -> Vec<u8> {
    line(json!({ "stream": s }))
}

/// An error after the response headers went out: the client prints `message`.
pub fn error(message: &str) -> Vec<u8> {
    line(json!({ "errorDetail": { "message": message }, "error": message }))
}

fn line(v: Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(&v).expect("json value serialises");
    b.push(b'\n');
    b
}

/// A per-layer status with an empty `progressDetail`, as Docker sends them (`Pulling fs layer`).
pub fn layer(s: &str, id: &str) -> Vec<u8> {
    line(json!({ "status": s, "progressDetail": {}, "id": id }))
}

/// A per-layer byte count (`Downloading`, `Pushing`), with the bar older clients print as is.
pub fn bytes(s: &str, id: &str, current: u64, total: u64) -> Vec<u8> {
    line(json!({
        "status": s,
        "progressDetail": { "current": current, "total": total },
        "progress": bar(current, total),
        "id": id,
    }))
}

/// `{"progressDetail":{},"aux":{...}}`: structured results (push's tag, digest and size).
pub fn aux(v: Value) -> Vec<u8> {
    line(json!({ "progressDetail": {}, "aux": v }))
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
