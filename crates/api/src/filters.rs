//! The `filters` query parameter: `{"label":{"k=v":true}}` (current) or `{"label":["k=v"]}` (legacy).

use std::collections::BTreeMap;

use serde_json::Value;

/// Parsed filters: each key maps to the values given for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the JSON text of a `filters` query parameter; an empty string means no filters.
    pub fn parse(s: &str) -> Result<Filters, String> {
        if s.trim().is_empty() {
            return Ok(Filters::default());
        }
        let v: Value = serde_json::from_str(s).map_err(|e| format!("invalid filter: {e}"))?;
        let obj = v.as_object().ok_or_else(|| "invalid filter: not an object".to_string())?;
        let mut out = BTreeMap::new();
        for (k, v) in obj {
            let values: Vec<String> = match v {
                Value::Object(m) => {
                    m.iter().filter(|(_, on)| on.as_bool().unwrap_or(true)).map(|(k, _)| k.clone()).collect()
                }
                Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
                Value::String(s) => vec![s.clone()],
                _ => return Err(format!("invalid filter: bad value for {k:?}")),
            };
            out.insert(k.clone(), values);
        }
        Ok(Filters(out))
    }

    pub fn get(&self, key: &str) -> &[String] {
        self.0.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Rejects keys outside `allowed`, with Docker's message.
    pub fn validate(&self, allowed: &[&str]) -> Result<(), String> {
        match self.keys().find(|k| !allowed.contains(k)) {
            Some(k) => Err(format!("invalid filter '{k}'")),
            None => Ok(()),
        }
    }

    /// True when every `label` filter (`key` or `key=value`) matches `labels`.
    pub fn match_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.get("label").iter().all(|f| match f.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(f.as_str()),
        })
    }
}

/// `*` matches any run of characters. Linear in both lengths (one backtrack point, the last `*`):
/// a pattern of many stars must not tie a worker up or overflow the stack.
pub fn glob(p: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (p.chars().collect(), s.chars().collect());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            // Let the last star take one more character and try again from there.
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("bus*", "busybox:latest"));
        assert!(glob("*box*", "busybox:latest"));
        assert!(!glob("alp*", "busybox"));
        assert!(glob("busybox", "busybox"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob("**", ""));
        // Once exponential (25 stars) and a stack overflow (200k): now a linear scan.
        let hostile = "*".repeat(25) + "x";
        assert!(!glob(&hostile, &"a".repeat(60)));
        let huge = "*a".repeat(100_000);
        assert!(!glob(&huge, &"a".repeat(1000)));
    }

    #[test]
    fn both_spellings() {
        let a = Filters::parse(r#"{"label":{"a=b":true},"status":{"exited":true}}"#).unwrap();
        let b = Filters::parse(r#"{"label":["a=b"],"status":["exited"]}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get("status"), ["exited"]);
        assert!(Filters::parse("{").is_err());
        assert!(a.validate(&["label"]).is_err());
        let mut labels = BTreeMap::new();
        labels.insert("a".to_string(), "b".to_string());
        assert!(a.match_labels(&labels));
        labels.insert("a".to_string(), "c".to_string());
        assert!(!a.match_labels(&labels));
    }
}
