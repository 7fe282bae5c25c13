//! The wire contract, pinned: every route's answer at API 1.24, 1.41, 1.44, 1.50, 1.52 and 1.56,
//! reduced to its shape (keys and value types, ids and addresses generalised), against the golden
//! files in `tests/e2e/golden/` (one per version). A change of shape fails here and shows where;
//! `BERTH_UPDATE_GOLDEN=1` writes the files from what the code answers, to be reviewed against
//! moby's swagger (api/swagger.yaml) before they are committed.

use std::collections::BTreeMap;

use berth_e2e::*;
use serde_json::{json, Map, Value};

const VERSIONS: [&str; 6] = ["1.24", "1.41", "1.44", "1.50", "1.52", "1.56"];

/// A key that names an object (an id, an address, a digest) rather than a field.
fn generic_key(k: &str) -> Option<&'static str> {
    let hex = |s: &str| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(k) || k.strip_prefix("sha256:").is_some_and(hex) {
        Some("<id>")
    } else if k.split('/').next().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()) {
        Some("<address>")
    } else {
        None
    }
}

/// The shape of a JSON value: scalars become their type; objects keep their keys (generalised
/// where they name objects); an array is the union of its elements' shapes.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => {
            let mut merged = Value::Null;
            for e in a {
                merged = union(merged, shape(e));
            }
            if a.is_empty() {
                json!([])
            } else {
                json!([merged])
            }
        }
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, v) in o {
                let key = generic_key(k).map(String::from).unwrap_or_else(|| k.clone());
                let s = shape(v);
                let merged = match m.remove(&key) {
                    Some(old) => union(old, s),
                    None => s,
                };
                m.insert(key, merged);
            }
            Value::Object(m)
        }
    }
}

/// Two shapes as one: objects merge their keys; differing scalar types are listed.
fn union(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Null, b) => b,
        (Value::Object(mut x), Value::Object(y)) => {
            for (k, v) in y {
                let merged = match x.remove(&k) {
                    Some(old) => union(old, v),
                    None => v,
                };
                x.insert(k, merged);
            }
            Value::Object(x)
        }
        (Value::Array(x), Value::Array(y)) => match (x.into_iter().next(), y.into_iter().next()) {
            (Some(p), Some(q)) => json!([union(p, q)]),
            (Some(p), None) | (None, Some(p)) => json!([p]),
            (None, None) => json!([]),
        },
        (a, b) if a == b => a,
        (a, b) => {
            let mut types: Vec<String> = [a, b]
                .iter()
                .flat_map(|t| t.as_str().unwrap_or("?").split('|').map(String::from).collect::<Vec<_>>())
                .collect();
            types.sort();
            types.dedup();
            json!(types.join("|"))
        }
    }
}

/// Every differing path between two shapes.
fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => diff(&format!("{path}.{k}"), wv, gv, out),
                    None => out.push(format!("{path}.{k}: missing (golden: {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}.{k}: new, {}", g[k]));
            }
        }
        (Value::Array(w), Value::Array(g)) => match (w.first(), g.first()) {
            (Some(a), Some(b)) => diff(&format!("{path}[]"), a, b, out),
            (None, None) => {}
            _ => out.push(format!("{path}: {want} became {got}")),
        },
        _ if want != got => out.push(format!("{path}: {want} became {got}")),
        _ => {}
    }
}

/// Objects every route reads: a running container on a user network with a published port,
/// a healthcheck and a volume; a stopped one; a built image; an exec.
fn fixtures(d: &Berthd) -> BTreeMap<&'static str, String> {
    d.import_busybox("busybox");
    let o = d.docker_stdin(&["build", "-q", "-t", "built", "-"], Some(b"FROM busybox\nLABEL a=b\nCMD [\"sh\"]\n"));
    assert!(o.status.success(), "{}", err(&o));
    d.ok(&["network", "create", "--subnet", "10.98.0.0/24", "gnet"]);
    d.ok(&["volume", "create", "gvol"]);
    let run = d.ok(&[
        "run",
        "-d",
        "--name",
        "grun",
        "--network",
        "gnet",
        "-p",
        "127.0.0.1::80",
        "-v",
        "gvol:/data",
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        "--label",
        "k=v",
        "busybox",
        "sleep",
        "300",
    ]);
    let stopped = d.ok(&["create", "--name", "gstop", "busybox", "true"]);
    let (_, ex) = d.api_at("1.44", "POST", &format!("/containers/{run}/exec"), Some(&json!({"Cmd": ["true"]})));
    let exec = ex["Id"].as_str().unwrap().to_string();
    d.ok(&["exec", &run, "touch", "/changed"]);
    // The health state settles before shapes are taken (its log appears after the first probe).
    eventually("a first health probe", || d.ok(&["inspect", "-f", "{{.State.Health.Status}}", &run]) == "healthy");
    BTreeMap::from([("run", run), ("stopped", stopped), ("exec", exec)])
}

#[test]
fn every_route_at_every_version_keeps_its_shape() {
    let d = Berthd::start();
    let f = fixtures(&d);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let routes: Vec<(String, String)> = [
        "/version",
        "/info",
        "/containers/json?all=1",
        "/containers/json?size=1",
        "/containers/{run}/json",
        "/containers/{stopped}/json?size=1",
        "/containers/{run}/top",
        "/containers/{run}/stats?stream=0&one-shot=1",
        "/containers/{run}/changes",
        "/exec/{exec}/json",
        "/images/json",
        "/images/built/json",
        "/images/built/history",
        "/networks",
        "/networks/gnet",
        "/volumes",
        "/volumes/gvol",
        "/system/df",
        "/events?since=0&until={now}",
        // Answers of writes: prunes that match nothing (the fixtures stay), a create, a wait.
        "POST /containers/prune?filters={none}",
        "POST /images/prune?filters={none}",
        "POST /networks/prune?filters={none}",
        "POST /volumes/prune?filters={none}",
        "POST /build/prune?filters={old}",
        "POST /containers/create",
        "POST /containers/{stopped}/wait?condition=not-running",
    ]
    .iter()
    .map(|r| {
        let path = r
            .replace("{run}", &f["run"])
            .replace("{stopped}", &f["stopped"])
            .replace("{exec}", &f["exec"])
            .replace("{now}", &now.to_string())
            .replace("{none}", "%7B%22label%22%3A%5B%22golden%3Dnone%22%5D%7D")
            .replace("{old}", "%7B%22until%22%3A%5B%221%22%5D%7D");
        (r.to_string(), path)
    })
    .collect();
    let dir = workspace().join("tests/e2e/golden");
    let update = std::env::var("BERTH_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for v in VERSIONS {
        let mut got = Map::new();
        for (name, path) in &routes {
            let (method, path) = path.split_once(' ').unwrap_or(("GET", path));
            let create = json!({"Image": "busybox", "Cmd": ["true"]});
            let body = path.ends_with("/create").then_some(&create);
            let (code, body) = d.api_raw(v, method, path, body, &[]);
            assert!(code == 200 || code == 201, "{method} /v{v}{path}: {body}");
            // Streams (events) are one JSON value per line.
            let values: Vec<Value> = body
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("GET /v{v}{path}: {e}: {l}")))
                .collect();
            let s = if name.starts_with("/events") { shape(&Value::Array(values)) } else { shape(&values[0]) };
            let name = if name.contains(' ') { name.to_string() } else { format!("GET {name}") };
            got.insert(name, s);
        }
        let file = dir.join(format!("v{v}.json"));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, serde_json::to_string_pretty(&Value::Object(got)).unwrap() + "\n").unwrap();
            continue;
        }
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e} (BERTH_UPDATE_GOLDEN=1 writes it)", file.display())),
        )
        .unwrap();
        let mut out = Vec::new();
        diff(&format!("v{v}"), &want, &Value::Object(got), &mut out);
        failures.extend(out);
    }
    assert!(
        failures.is_empty(),
        "shapes changed (review against the swagger, then BERTH_UPDATE_GOLDEN=1):\n{}",
        failures.join("\n")
    );
}

#[test]
fn shapes_generalise_ids_and_merge_lists() {
    let v = json!({"a": [{"x": 1}, {"y": "s"}], "0123456789abcdef0123": {"z": null}, "10.1.0.0/24": true});
    assert_eq!(shape(&v), json!({"a": [{"x": "number", "y": "string"}], "<id>": {"z": "null"}, "<address>": "bool"}));
    assert_eq!(union(json!("null"), json!("string")), json!("null|string"));
}
