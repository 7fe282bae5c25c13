//! Docker's units (go-units): human sizes and durations, and parsing of sizes, durations and signals.

use anyhow::{anyhow, bail, Result};

/// `%.<sig>g` of `v` followed by `unit`, as go-units' `CustomSize` prints.
fn g(v: f64, unit: &str, sig: i32) -> String {
    let digits = if v == 0.0 { 1 } else { (v.abs().log10().floor() as i32 + 1).max(1) };
    let prec = (sig - digits).max(0) as usize;
    let mut s = format!("{v:.prec$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{unit}")
}

fn custom(n: f64, base: f64, units: &[&str]) -> String {
    custom_prec(n, base, units, 4)
}

fn custom_prec(n: f64, base: f64, units: &[&str], sig: i32) -> String {
    let mut v = n;
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    g(v, units[i], sig)
}

/// go-units' `HumanSizeWithPrecision` (`docker ps -s` uses 3 significant digits).
pub fn human_size_prec(n: f64, sig: i32) -> String {
    custom_prec(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], sig)
}

/// go-units' `HumanSize`: decimal units, as `docker images` and `docker system df` show sizes.
pub fn human_size(n: f64) -> String {
    custom(n, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

/// go-units' `BytesSize`: binary units, as `docker stats` shows memory.
pub fn bytes_size(n: f64) -> String {
    custom(n, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

/// go-units' `HumanDuration`.
pub fn human_duration(secs: i64) -> String {
    let (s, m, h) = (secs, secs / 60, secs / 3600);
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// "N minutes ago" for a unix time.
pub fn ago(unix: i64) -> String {
    format!("{} ago", human_duration(chrono::Utc::now().timestamp() - unix))
}

/// "N minutes ago" for an RFC 3339 time.
pub fn ago_rfc3339(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t).map(|d| ago(d.timestamp())).unwrap_or_default()
}

/// go-units' `RAMInBytes`: `512`, `64k`, `1.5g`, `100MB` (binary multiples, case-insensitive).
pub fn parse_bytes(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| anyhow!("invalid size: '{s}'"))?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("invalid size: '{s}'"),
    };
    Ok((n * mult) as i64)
}

/// Go's `time.ParseDuration`, in nanoseconds (`1m30s`, `300ms`).
pub fn parse_duration(s: &str) -> Result<i64> {
    berth_dockerfile::duration::parse(s).map_err(|e| anyhow!(e))
}

/// The first 12 characters of an id, without its `sha256:` prefix.
pub fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// `docker ps`'s COMMAND: quoted, cut to 20 characters with an ellipsis unless `--no-trunc`.
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_go_units() {
        assert_eq!(human_size(100.0), "100B");
        assert_eq!(human_size(1234.0), "1.234kB");
        assert_eq!(human_size(12_345_678.0), "12.35MB");
        assert_eq!(human_size(4_400_000.0), "4.4MB");
        assert_eq!(bytes_size(1024.0 * 1024.0 * 1.5), "1.5MiB");
        assert_eq!(bytes_size(0.0), "0B");
    }

    #[test]
    fn parses_sizes_and_durations() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert!(parse_bytes("12q").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("300ms").unwrap(), 300_000_000);
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn durations_read_as_docker() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(75), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(ellipsis("abcdefghijklmnopqrstuvwxyz", 20), "abcdefghijklmnopqrs…");
    }
}
