//! Deserializers for the loose shapes Docker clients send.

use serde::{Deserialize, Deserializer};

/// `null` becomes the type's default (Docker's Go clients send `null` for empty slices and maps).
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Makes a request body read as Docker's Go server reads it: an object member that is `null` is
/// the field's zero value, so it is dropped and the field's default applies (clients in Go and
/// Python send `null` for empty slices, maps, strings and structs alike). Under `EndpointsConfig`
/// the keys are network names and `null` means "this network, default settings": kept as `{}`.
pub fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "EndpointsConfig" {
                    if let serde_json::Value::Object(eps) = child {
                        for ep in eps.values_mut().filter(|e| e.is_null()) {
                            *ep = serde_json::Value::Object(Default::default());
                        }
                    }
                }
            }
            m.retain(|_, child| !child.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Docker's `StrSlice`: a JSON string or an array of strings, or null.
pub fn strslice<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::One(s)) => Some(vec![s]),
        Some(S::Many(v)) => Some(v),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn nulls_are_absent_except_network_names() {
        let mut v = serde_json::json!({
            "Cmd": null, "Env": ["A=b", null], "HostConfig": {"Binds": null, "Memory": 1},
            "NetworkingConfig": {"EndpointsConfig": {"net1": null, "net2": {"Aliases": null}}},
        });
        super::strip_nulls(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "Env": ["A=b", null], "HostConfig": {"Memory": 1},
                "NetworkingConfig": {"EndpointsConfig": {"net1": {}, "net2": {}}},
            })
        );
    }
}
