//! berth-registry row by row against the endpoint table of the OCI distribution spec (end-1 …
//! end-14, spec.md "Endpoints"): each endpoint's success code and each failure code the table
//! lists, with the headers the spec's text requires; then the spec's corners with hostile input
//! (ranges, wrong digests, truncated chunks, hostile names, referrers, mounts). Raw HTTP, so nothing
//! a client library smooths over hides a wrong status.

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

#[test]
fn spec_corners_and_hostile_input() {
    let reg = BerthRegistry::start(&[], &[]);
    let a = reg.addr.as_str();
    let base = http(a, "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(header(&base.1, "docker-distribution-api-version"), Some("registry/2.0"));

    // Monolithic upload, HEAD with the real length, Range reads.
    let blob = b"0123456789abcdef".to_vec();
    let d = upload(a, "t/r", &blob);
    let head = http(a, "HEAD", &format!("/v2/t/r/blobs/{d}"), &[], b"").unwrap();
    assert_eq!(head.0, 200);
    assert_eq!(header(&head.1, "content-length"), Some("16"));
    let part = http(a, "GET", &format!("/v2/t/r/blobs/{d}"), &[("Range", "bytes=2-5")], b"").unwrap();
    assert_eq!((part.0, part.2.as_slice()), (206, &b"2345"[..]));
    assert_eq!(header(&part.1, "content-range"), Some("bytes 2-5/16"));
    // Not linked into another repository.
    assert_eq!(code(&http(a, "GET", &format!("/v2/t/other/blobs/{d}"), &[], b"").unwrap()), "BLOB_UNKNOWN");

    // A wrong digest stores nothing.
    let wrong = digest_of(b"something else");
    let r = http(a, "POST", &format!("/v2/t/r/blobs/uploads/?digest={wrong}"), &[], b"payload").unwrap();
    assert_eq!((r.0, code(&r)), (400, "DIGEST_INVALID".to_string()));
    assert_eq!(http(a, "HEAD", &format!("/v2/t/r/blobs/{wrong}"), &[], b"").unwrap().0, 404);
    assert_eq!(http(a, "HEAD", &format!("/v2/t/r/blobs/{}", digest_of(b"payload")), &[], b"").unwrap().0, 404);

    // Chunked upload with an out-of-order chunk, status, and completion.
    let r = http(a, "POST", "/v2/t/r/blobs/uploads/", &[], b"").unwrap();
    assert_eq!(r.0, 202);
    let loc = path_of(header(&r.1, "location").unwrap());
    let r = http(a, "PATCH", &loc, &[("Content-Range", "0-4")], b"hello").unwrap();
    assert_eq!((r.0, header(&r.1, "range")), (202, Some("0-4")));
    let r = http(a, "PATCH", &loc, &[("Content-Range", "9-12")], b"oops").unwrap();
    assert_eq!(r.0, 416, "out-of-order chunk accepted");
    let r = http(a, "GET", &loc, &[], b"").unwrap();
    assert_eq!((r.0, header(&r.1, "range")), (204, Some("0-4")));
    let r = http(a, "PATCH", &loc, &[("Content-Range", "5-10")], b" world").unwrap();
    assert_eq!(r.0, 202);
    let whole = digest_of(b"hello world");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = http(a, "PUT", &format!("{loc}{sep}digest={whole}"), &[], b"").unwrap();
    assert_eq!(r.0, 201, "{}", String::from_utf8_lossy(&r.2));
    // A new session cut short mid-body keeps offset 0.
    let r = http(a, "POST", "/v2/t/r/blobs/uploads/", &[], b"").unwrap();
    let cut = path_of(header(&r.1, "location").unwrap());
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(a).unwrap();
        write!(s, "PATCH {cut} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789")
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut out);
    }
    let r = http(a, "GET", &cut, &[], b"").unwrap();
    assert_eq!((r.0, header(&r.1, "range")), (204, Some("0-0")), "a truncated chunk was kept");
    assert_eq!(http(a, "GET", &format!("/v2/t/r/blobs/{whole}"), &[], b"").unwrap().2, b"hello world");
    // Cancel.
    let r = http(a, "POST", "/v2/t/r/blobs/uploads/", &[], b"").unwrap();
    let loc = path_of(header(&r.1, "location").unwrap());
    assert_eq!(http(a, "DELETE", &loc, &[], b"").unwrap().0, 204);
    assert_eq!(code(&http(a, "GET", &loc, &[], b"").unwrap()), "BLOB_UPLOAD_UNKNOWN");

    // Hostile names and ids.
    for p in ["/v2/../x/tags/list", "/v2/a/../../b/tags/list", "/v2/UPPER/tags/list"] {
        assert_eq!(code(&http(a, "GET", p, &[], b"").unwrap()), "NAME_INVALID", "{p}");
    }
    assert_eq!(code(&http(a, "GET", "/v2/t/r/blobs/uploads/..%2f..%2fetc", &[], b"").unwrap()), "BLOB_UPLOAD_UNKNOWN");

    // Manifests: missing blob, unknown type, too big, digest mismatch, then a good one.
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cfg_d = upload(a, "t/r", cfg);
    let missing = image_manifest(&cfg_d, cfg.len(), &digest_of(b"never uploaded"), 3);
    let r = put_manifest(a, "t/r", "bad", OCI_MANIFEST, missing.to_string().as_bytes());
    assert_eq!((r.0, code(&r)), (400, "MANIFEST_BLOB_UNKNOWN".to_string()));
    assert_eq!(code(&http(a, "GET", "/v2/t/r/manifests/bad", &[], b"").unwrap()), "MANIFEST_UNKNOWN");
    let good = image_manifest(&cfg_d, cfg.len(), &d, blob.len());
    let mut odd = good.clone();
    odd["mediaType"] = "application/x-unknown".into();
    let r = put_manifest(a, "t/r", "odd", "application/x-unknown", odd.to_string().as_bytes());
    assert_eq!(code(&r), "MANIFEST_INVALID");
    let huge = vec![b' '; 5 << 20];
    assert_eq!(code(&put_manifest(a, "t/r", "huge", OCI_MANIFEST, &huge)), "MANIFEST_INVALID");
    let body = good.to_string();
    let r = put_manifest(a, "t/r", &digest_of(b"not it"), OCI_MANIFEST, body.as_bytes());
    assert_eq!(code(&r), "DIGEST_INVALID");
    for t in ["a", "b", "c"] {
        assert_eq!(put_manifest(a, "t/r", t, OCI_MANIFEST, body.as_bytes()).0, 201);
    }
    let m = http(a, "GET", "/v2/t/r/manifests/a", &[("Accept", OCI_MANIFEST)], b"").unwrap();
    assert_eq!((m.0, header(&m.1, "content-type")), (200, Some(OCI_MANIFEST)));
    assert_eq!(header(&m.1, "docker-content-digest"), Some(digest_of(body.as_bytes()).as_str()));
    let page = http(a, "GET", "/v2/t/r/tags/list?n=2", &[], b"").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&page.2).unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "b"]));
    assert!(header(&page.1, "link").unwrap().contains("last=b"));
    let rest = http(a, "GET", "/v2/t/r/tags/list?n=2&last=b", &[], b"").unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&rest.2).unwrap()["tags"], serde_json::json!(["c"]));
    assert_eq!(code(&http(a, "GET", "/v2/none/here/tags/list", &[], b"").unwrap()), "NAME_UNKNOWN");

    // Referrers: a manifest with a subject, found by the subject, filtered by artifactType.
    let subject = digest_of(body.as_bytes());
    let mut sig = good.clone();
    sig["artifactType"] = "application/vnd.example.sig".into();
    sig["subject"] = serde_json::json!({"mediaType": OCI_MANIFEST, "digest": subject, "size": body.len()});
    let sig_body = sig.to_string();
    let r = put_manifest(a, "t/r", &digest_of(sig_body.as_bytes()), OCI_MANIFEST, sig_body.as_bytes());
    assert_eq!((r.0, header(&r.1, "oci-subject")), (201, Some(subject.as_str())));
    let refs = http(a, "GET", &format!("/v2/t/r/referrers/{subject}"), &[], b"").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&refs.2).unwrap();
    assert_eq!(v["manifests"][0]["artifactType"], "application/vnd.example.sig");
    let none = http(a, "GET", &format!("/v2/t/r/referrers/{subject}?artifactType=x/y"), &[], b"").unwrap();
    assert_eq!(header(&none.1, "oci-filters-applied"), Some("artifactType"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&none.2).unwrap()["manifests"], serde_json::json!([]));

    // Cross-repository mount, then delete by digest.
    let r = http(a, "POST", &format!("/v2/t/mounted/blobs/uploads/?mount={d}&from=t/r"), &[], b"").unwrap();
    assert_eq!(r.0, 201);
    assert_eq!(http(a, "HEAD", &format!("/v2/t/mounted/blobs/{d}"), &[], b"").unwrap().0, 200);
    assert_eq!(http(a, "DELETE", &format!("/v2/t/r/manifests/{subject}"), &[], b"").unwrap().0, 202);
    assert_eq!(code(&http(a, "GET", "/v2/t/r/manifests/a", &[], b"").unwrap()), "MANIFEST_UNKNOWN");
}
