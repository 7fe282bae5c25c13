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
