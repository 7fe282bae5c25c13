//! Go's `time.ParseDuration` (`1h2m3.5s`, `300ms`, `10us`), in nanoseconds: what HEALTHCHECK's flags
//! and docker's `--health-*` flags take. Shared by the builder and the CLI.

/// Nanoseconds of a Go duration, or the error text Go gives.
pub fn parse(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let v: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += v * mult;
        rest = &rest[u..];
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_go_durations() {
        assert_eq!(super::parse("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(super::parse("300ms").unwrap(), 300_000_000);
        assert_eq!(super::parse("1.5h").unwrap(), 5_400_000_000_000);
        assert_eq!(super::parse("0").unwrap(), 0);
        assert!(super::parse("5").is_err());
        assert!(super::parse("").is_err());
        assert!(super::parse("3d").is_err());
    }
}
