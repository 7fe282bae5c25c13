//! berth-registry row by row against the endpoint table of the OCI distribution spec (end-1 …
//! end-14, spec.md "Endpoints"): each endpoint's success code and each failure code the table
//! lists, with the headers the spec's text requires. Raw HTTP, so nothing a client library
//! smooths over hides a wrong status.

use berth_e2e::registry::{
    code, digest_of, header, http, image_manifest, path_of, put_manifest, upload, BerthRegistry, Reply, OCI_MANIFEST,
};

fn req(a: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    http(a, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Status and error code of a reply, for one-line assertions.
fn answer(r: &Reply) -> (u16, String) {
    (r.0, code(r))
}

fn with_query(loc: &str, q: &str) -> String {
    format!("{loc}{}{q}", if loc.contains('?') { '&' } else { '?' })
}

fn all_headers<'a>(r: &'a Reply, name: &str) -> Vec<&'a str> {
    r.1.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
}

/// A repository `spec/r` with a config and a layer, and a manifest tagged `v1`; its digest.
fn seed_repo(a: &str) -> (String, String, String) {
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cfg_d = upload(a, "spec/r", cfg);
    let layer = b"layer bytes".to_vec();
    let layer_d = upload(a, "spec/r", &layer);
    let m = image_manifest(&cfg_d, cfg.len(), &layer_d, layer.len()).to_string();
    let r = put_manifest(a, "spec/r", "v1", OCI_MANIFEST, m.as_bytes());
    assert_eq!(r.0, 201, "{}", String::from_utf8_lossy(&r.2));
    (m, layer_d, cfg_d)
}

#[test]
fn endpoint_table_success_and_failure_codes() {
    let reg = BerthRegistry::start(&[], &[]);
    let a = reg.addr.as_str();
    let (manifest, layer, cfg) = seed_repo(a);
    let m_d = digest_of(manifest.as_bytes());
    let unknown = digest_of(b"never pushed");

    // end-1
    assert_eq!(req(a, "GET", "/v2/", &[], b"").0, 200);

    // end-2: GET and HEAD of a blob; HEAD carries the length, no body.
    let r = req(a, "GET", &format!("/v2/spec/r/blobs/{layer}"), &[], b"");
    assert_eq!((r.0, r.2.as_slice()), (200, &b"layer bytes"[..]));
    assert_eq!(header(&r.1, "docker-content-digest"), Some(layer.as_str()));
    let r = req(a, "HEAD", &format!("/v2/spec/r/blobs/{layer}"), &[], b"");
    assert_eq!((r.0, header(&r.1, "content-length"), r.2.len()), (200, Some("11"), 0));
    assert_eq!(answer(&req(a, "GET", &format!("/v2/spec/r/blobs/{unknown}"), &[], b"")), (404, "BLOB_UNKNOWN".into()));
    assert_eq!(req(a, "HEAD", &format!("/v2/spec/r/blobs/{unknown}"), &[], b"").0, 404);
    assert_eq!(req(a, "GET", &format!("/v2/spec/none/blobs/{layer}"), &[], b"").0, 404);

    // end-3: by tag and by digest; anything not there is a 404 MANIFEST_UNKNOWN, a tag that
    // cannot exist included.
    for reference in ["v1", m_d.as_str()] {
        let r = req(a, "GET", &format!("/v2/spec/r/manifests/{reference}"), &[("Accept", OCI_MANIFEST)], b"");
        assert_eq!((r.0, r.2.as_slice()), (200, manifest.as_bytes()), "{reference}");
        assert_eq!(header(&r.1, "docker-content-digest"), Some(m_d.as_str()));
        assert_eq!(req(a, "HEAD", &format!("/v2/spec/r/manifests/{reference}"), &[], b"").0, 200);
    }
    for reference in ["nope", unknown.as_str(), ".cannot-exist"] {
        let r = req(a, "GET", &format!("/v2/spec/r/manifests/{reference}"), &[], b"");
        assert_eq!(answer(&r), (404, "MANIFEST_UNKNOWN".into()), "{reference}");
        assert_eq!(req(a, "HEAD", &format!("/v2/spec/r/manifests/{reference}"), &[], b"").0, 404);
    }
    assert_eq!(req(a, "GET", "/v2/spec/none/manifests/v1", &[], b"").0, 404);

    // end-4a: a session, with its Location.
    let r = req(a, "POST", "/v2/spec/r/blobs/uploads/", &[], b"");
    assert_eq!(r.0, 202);
    assert!(header(&r.1, "location").is_some_and(|l| l.contains("/v2/spec/r/blobs/uploads/")));
    // end-4b: monolithic, 201 with Location and digest; a digest that does not match is a 400.
    let blob = b"monolithic".to_vec();
    let d = digest_of(&blob);
    let r = req(a, "POST", &format!("/v2/spec/r/blobs/uploads/?digest={d}"), &[], &blob);
    assert_eq!((r.0, header(&r.1, "docker-content-digest")), (201, Some(d.as_str())));
    assert_eq!(header(&r.1, "location"), Some(format!("/v2/spec/r/blobs/{d}").as_str()));
    let r = req(a, "POST", &format!("/v2/spec/r/blobs/uploads/?digest={unknown}"), &[], b"other bytes");
    assert_eq!(answer(&r), (400, "DIGEST_INVALID".into()));
    let r = req(a, "POST", "/v2/spec/r/blobs/uploads/?digest=sha256:not-hex", &[], b"x");
    assert_eq!(answer(&r), (400, "DIGEST_INVALID".into()));
    // end-4c: sha256 is served; an algorithm this registry does not store is refused up front.
    assert_eq!(req(a, "POST", "/v2/spec/r/blobs/uploads/?digest-algorithm=sha256", &[], b"").0, 202);
    let r = req(a, "POST", "/v2/spec/r/blobs/uploads/?digest-algorithm=sha512", &[], b"");
    assert_eq!(answer(&r), (400, "DIGEST_INVALID".into()));

    // end-5, end-6, end-13: chunks in order, status, out-of-order 416s, completion.
    let r = req(a, "POST", "/v2/spec/r/blobs/uploads/", &[], b"");
    let loc = path_of(header(&r.1, "location").unwrap());
    let r = req(a, "PATCH", &loc, &[("Content-Range", "0-3"), ("Content-Type", "application/octet-stream")], b"abcd");
    assert_eq!((r.0, header(&r.1, "range")), (202, Some("0-3")));
    assert!(header(&r.1, "location").is_some());
    let r = req(a, "GET", &loc, &[], b"");
    assert_eq!((r.0, header(&r.1, "range")), (204, Some("0-3")));
    assert_eq!(req(a, "PATCH", &loc, &[("Content-Range", "8-9")], b"ij").0, 416);
    let whole = digest_of(b"abcdefgh");
    let r = req(a, "PUT", &with_query(&loc, &format!("digest={whole}")), &[("Content-Range", "6-7")], b"gh");
    assert_eq!(r.0, 416, "a final chunk out of order");
    let r = req(a, "PUT", &with_query(&loc, &format!("digest={whole}")), &[("Content-Range", "4-7")], b"efgh");
    assert_eq!((r.0, header(&r.1, "docker-content-digest")), (201, Some(whole.as_str())));
    assert_eq!(req(a, "GET", &format!("/v2/spec/r/blobs/{whole}"), &[], b"").2, b"abcdefgh");
    let gone = "/v2/spec/r/blobs/uploads/no-such-session";
    assert_eq!(answer(&req(a, "PATCH", gone, &[], b"x")), (404, "BLOB_UPLOAD_UNKNOWN".into()));
    assert_eq!(answer(&req(a, "PUT", &format!("{gone}?digest={d}"), &[], b"")), (404, "BLOB_UPLOAD_UNKNOWN".into()));
    assert_eq!(answer(&req(a, "GET", gone, &[], b"")), (404, "BLOB_UPLOAD_UNKNOWN".into()));
    // end-6: a completion whose bytes are not the digest is a 400 and stores nothing.
    let r = req(a, "POST", "/v2/spec/r/blobs/uploads/", &[], b"");
    let loc = path_of(header(&r.1, "location").unwrap());
    let r = req(a, "PUT", &with_query(&loc, &format!("digest={unknown}")), &[], b"not it");
    assert_eq!(answer(&r), (400, "DIGEST_INVALID".into()));
    assert_eq!(req(a, "HEAD", &format!("/v2/spec/r/blobs/{}", digest_of(b"not it")), &[], b"").0, 404);

    // end-14: cancel, then the session is unknown.
    let r = req(a, "POST", "/v2/spec/r/blobs/uploads/", &[], b"");
    let loc = path_of(header(&r.1, "location").unwrap());
    assert_eq!(req(a, "DELETE", &loc, &[], b"").0, 204);
    assert_eq!(answer(&req(a, "DELETE", &loc, &[], b"")), (404, "BLOB_UPLOAD_UNKNOWN".into()));

    // end-7a: 201 with Location and digest; over the size limit the spec's 413.
    let r = put_manifest(a, "spec/r", "v2", OCI_MANIFEST, manifest.as_bytes());
    assert_eq!((r.0, header(&r.1, "docker-content-digest")), (201, Some(m_d.as_str())));
    assert_eq!(header(&r.1, "location"), Some(format!("/v2/spec/r/manifests/{m_d}").as_str()));
    let huge = vec![b' '; 5 << 20];
    assert_eq!(put_manifest(a, "spec/r", "huge", OCI_MANIFEST, &huge).0, 413);
    // end-7b: tags as parameters of a push by digest, each named in an OCI-Tag header.
    let other = image_manifest(&cfg, 80, &whole, 8).to_string();
    let other_d = digest_of(other.as_bytes());
    let r = put_manifest(a, "spec/r", &format!("{other_d}?tag=t1&tag=t2&tag=t3"), OCI_MANIFEST, other.as_bytes());
    assert_eq!(r.0, 201, "{}", String::from_utf8_lossy(&r.2));
    assert_eq!(all_headers(&r, "oci-tag"), ["t1", "t2", "t3"]);
    for t in ["t1", "t2", "t3"] {
        let r = req(a, "GET", &format!("/v2/spec/r/manifests/{t}"), &[], b"");
        assert_eq!(header(&r.1, "docker-content-digest"), Some(other_d.as_str()), "{t}");
    }
    let bad = put_manifest(a, "spec/r", &format!("{other_d}?tag=.bad"), OCI_MANIFEST, other.as_bytes());
    assert_eq!(bad.0, 400);
    let many: String = (0..101).map(|i| format!("tag=x{i}")).collect::<Vec<_>>().join("&");
    assert_eq!(put_manifest(a, "spec/r", &format!("{other_d}?{many}"), OCI_MANIFEST, other.as_bytes()).0, 414);

    // end-8a, end-8b: lexical order, pagination with Link, n=0 empty without Link; 404 unknown.
    let r = req(a, "GET", "/v2/spec/r/tags/list", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.2).unwrap();
    assert_eq!((r.0, v["tags"].clone()), (200, serde_json::json!(["t1", "t2", "t3", "v1", "v2"])));
    let r = req(a, "GET", "/v2/spec/r/tags/list?n=2&last=t2", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.2).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["t3", "v1"]));
    assert!(header(&r.1, "link").is_some_and(|l| l.contains("rel=\"next\"")));
    let r = req(a, "GET", "/v2/spec/r/tags/list?n=0", &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.2).unwrap();
    assert_eq!((r.0, v["tags"].clone(), header(&r.1, "link")), (200, serde_json::json!([]), None));
    assert_eq!(answer(&req(a, "GET", "/v2/spec/none/tags/list", &[], b"")), (404, "NAME_UNKNOWN".into()));
    let r = req(a, "GET", "/v2/spec/r/tags/list?n=many", &[], b"");
    assert_eq!(answer(&r), (400, "PAGINATION_NUMBER_INVALID".into()));

    // end-11: a mount of a blob the source has is a 201 with Location; of one it has not, an
    // ordinary session (202).
    let r = req(a, "POST", &format!("/v2/spec/m/blobs/uploads/?mount={layer}&from=spec/r"), &[], b"");
    assert_eq!((r.0, header(&r.1, "location")), (201, Some(format!("/v2/spec/m/blobs/{layer}").as_str())));
    let r = req(a, "POST", &format!("/v2/spec/m/blobs/uploads/?mount={unknown}&from=spec/r"), &[], b"");
    assert_eq!(r.0, 202);

    // end-12a/b: referrers of a subject (none yet: an empty index), filtered; 404 for an unknown
    // repository, 400 for a malformed digest.
    let r = req(a, "GET", &format!("/v2/spec/r/referrers/{m_d}"), &[], b"");
    let v: serde_json::Value = serde_json::from_slice(&r.2).unwrap();
    assert_eq!((r.0, v["manifests"].clone()), (200, serde_json::json!([])));
    assert_eq!(header(&r.1, "content-type"), Some("application/vnd.oci.image.index.v1+json"));
    let r = req(a, "GET", &format!("/v2/spec/r/referrers/{m_d}?artifactType=a/b"), &[], b"");
    assert_eq!((r.0, header(&r.1, "oci-filters-applied")), (200, Some("artifactType")));
    assert_eq!(
        answer(&req(a, "GET", &format!("/v2/spec/none/referrers/{m_d}"), &[], b"")),
        (404, "NAME_UNKNOWN".into())
    );
    assert_eq!(req(a, "GET", "/v2/spec/r/referrers/sha256:short", &[], b"").0, 400);

    // end-9: a tag goes alone; a manifest by digest takes its tags with it; unknown is a 404.
    assert_eq!(req(a, "DELETE", "/v2/spec/r/manifests/t1", &[], b"").0, 202);
    assert_eq!(req(a, "GET", "/v2/spec/r/manifests/t1", &[], b"").0, 404);
    assert_eq!(req(a, "GET", &format!("/v2/spec/r/manifests/{other_d}"), &[], b"").0, 200);
    assert_eq!(req(a, "DELETE", &format!("/v2/spec/r/manifests/{other_d}"), &[], b"").0, 202);
    for reference in ["t2", "t3", other_d.as_str()] {
        assert_eq!(req(a, "GET", &format!("/v2/spec/r/manifests/{reference}"), &[], b"").0, 404, "{reference}");
    }
    assert_eq!(answer(&req(a, "DELETE", "/v2/spec/r/manifests/nope", &[], b"")), (404, "MANIFEST_UNKNOWN".into()));
    assert_eq!(req(a, "DELETE", &format!("/v2/spec/none/manifests/{m_d}"), &[], b"").0, 404);

    // end-10: a blob is deleted from the repository; then and for any unknown one, 404.
    assert_eq!(req(a, "DELETE", &format!("/v2/spec/r/blobs/{d}"), &[], b"").0, 202);
    assert_eq!(req(a, "GET", &format!("/v2/spec/r/blobs/{d}"), &[], b"").0, 404);
    assert_eq!(answer(&req(a, "DELETE", &format!("/v2/spec/r/blobs/{d}"), &[], b"")), (404, "BLOB_UNKNOWN".into()));
}

/// end-9 and end-10 where deletion is disabled: 405 (the spec allows 400 or 405), nothing gone.
#[test]
fn deletion_disabled_is_a_405() {
    let reg = BerthRegistry::start(&["--delete-enabled", "false"], &[]);
    let a = reg.addr.as_str();
    let (manifest, layer, _) = seed_repo(a);
    let m_d = digest_of(manifest.as_bytes());
    for path in [
        "/v2/spec/r/manifests/v1".to_string(),
        format!("/v2/spec/r/manifests/{m_d}"),
        format!("/v2/spec/r/blobs/{layer}"),
    ] {
        assert_eq!(answer(&req(a, "DELETE", &path, &[], b"")), (405, "UNSUPPORTED".into()), "{path}");
    }
    assert_eq!(req(a, "GET", "/v2/spec/r/manifests/v1", &[], b"").0, 200);
    assert_eq!(req(a, "GET", &format!("/v2/spec/r/blobs/{layer}"), &[], b"").0, 200);
}
