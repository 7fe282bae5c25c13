//! The template functions: docker's (`json join split lower upper title pad truncate`) and Go's
//! builtins (`print println printf len index eq ne lt le gt ge and or not`).

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use super::{is_missing, missing, null_field, to_text, truth};

fn as_str(v: &Value) -> String {
    to_text(v)
}

fn cmp(a: &Value, b: &Value) -> Result<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            Ok(x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(std::cmp::Ordering::Equal))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => bail!("incompatible types for comparison"),
    }
}

fn eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

pub(super) fn call(name: &str, a: &[Value]) -> Result<Value> {
    let arg = |i: usize| a.get(i).ok_or_else(|| anyhow!("template: wrong number of args for {name}"));
    Ok(match name {
        "json" => {
            let v = arg(0)?;
            json!(if is_missing(v) || null_field(v).is_some() { "null".to_string() } else { serde_json::to_string(v)? })
        }
        "join" => {
            let sep = as_str(arg(1)?);
            match arg(0)? {
                Value::Array(items) => json!(items.iter().map(as_str).collect::<Vec<_>>().join(&sep)),
                o => json!(as_str(o)),
            }
        }
        "split" => json!(as_str(arg(0)?).split(as_str(arg(1)?).as_str()).collect::<Vec<_>>()),
        "lower" => json!(as_str(arg(0)?).to_lowercase()),
        "upper" => json!(as_str(arg(0)?).to_uppercase()),
        "title" => {
            let s = as_str(arg(0)?);
            let mut out = String::new();
            let mut start = true;
            for ch in s.chars() {
                out.extend(if start { ch.to_uppercase().collect::<Vec<_>>() } else { vec![ch] });
                start = ch.is_whitespace();
            }
            json!(out)
        }
        "pad" => {
            let s = as_str(arg(0)?);
            let l = arg(1)?.as_u64().unwrap_or(0) as usize;
            let r = arg(2)?.as_u64().unwrap_or(0) as usize;
            json!(format!("{}{s}{}", " ".repeat(l), " ".repeat(r)))
        }
        "truncate" => {
            let s = as_str(arg(0)?);
            let n = arg(1)?.as_u64().unwrap_or(0) as usize;
            json!(s.chars().take(n).collect::<String>())
        }
        "print" => json!(a.iter().map(to_text).collect::<Vec<_>>().concat()),
        "println" => json!(a.iter().map(to_text).collect::<Vec<_>>().join(" ") + "\n"),
        "printf" => json!(printf(&as_str(arg(0)?), &a[1..])),
        "len" => json!(match arg(0)? {
            Value::Array(x) => x.len(),
            Value::Object(m) => m.len(),
            Value::String(s) => s.len(),
            _ => bail!("len of {}", to_text(&a[0])),
        }),
        "index" => {
            let mut cur = arg(0)?.clone();
            for k in &a[1..] {
                cur = match (&cur, k) {
                    (Value::Array(x), Value::Number(n)) => x
                        .get(n.as_u64().unwrap_or(u64::MAX) as usize)
                        .cloned()
                        .ok_or_else(|| anyhow!("index out of range: {n}"))?,
                    (Value::Object(m), Value::String(s)) => m.get(s).cloned().unwrap_or_else(missing),
                    _ => missing(),
                };
            }
            cur
        }
        "eq" => json!(a[1..].iter().any(|b| eq(arg(0).unwrap_or(&Value::Null), b))),
        "ne" => json!(!eq(arg(0)?, arg(1)?)),
        "lt" => json!(cmp(arg(0)?, arg(1)?)?.is_lt()),
        "le" => json!(cmp(arg(0)?, arg(1)?)?.is_le()),
        "gt" => json!(cmp(arg(0)?, arg(1)?)?.is_gt()),
        "ge" => json!(cmp(arg(0)?, arg(1)?)?.is_ge()),
        "not" => json!(!truth(arg(0)?)),
        "and" => a.iter().find(|v| !truth(v)).or(a.last()).cloned().unwrap_or(Value::Null),
        "or" => a.iter().find(|v| truth(v)).or(a.last()).cloned().unwrap_or(Value::Null),
        _ => bail!("template: function \"{name}\" not defined"),
    })
}

/// `printf` for the verbs templates use: `%s %v %d %q %f %.Nf %%`, with optional width and `-`.
fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut n = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = it.peek() {
            if d.is_ascii_digit() || d == '-' || d == '.' {
                spec.push(d);
                it.next();
            } else {
                break;
            }
        }
        let Some(verb) = it.next() else { break };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = args.get(n).cloned().unwrap_or(Value::Null);
        n += 1;
        let (left, spec) = match spec.strip_prefix('-') {
            Some(s) => (true, s.to_string()),
            None => (false, spec),
        };
        let (width, prec) = match spec.split_once('.') {
            Some((w, p)) => (w.parse::<usize>().unwrap_or(0), p.parse::<usize>().ok()),
            None => (spec.parse::<usize>().unwrap_or(0), None),
        };
        let s = match verb {
            'q' => serde_json::to_string(&as_str(&v)).unwrap_or_default(),
            'f' => format!("{:.*}", prec.unwrap_or(6), v.as_f64().unwrap_or(0.0)),
            'd' => v.as_i64().map(|i| i.to_string()).unwrap_or_else(|| to_text(&v)),
            _ => to_text(&v),
        };
        if left {
            out.push_str(&format!("{s:<width$}"));
        } else {
            out.push_str(&format!("{s:>width$}"));
        }
    }
    out
}
