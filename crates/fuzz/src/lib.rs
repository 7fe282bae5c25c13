//! Fuzz targets: each takes arbitrary bytes and panics only on a bug. See README.md.

pub mod mutate;
pub mod tarbuild;

use std::path::Path;

use berth_api::container::{Config, CreateRequest, HostConfig};
use berth_api::image::ImageConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A named target.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

pub const TARGETS: &[Target] = &[
    Target { name: "api_json", run: api_json },
    Target { name: "query", run: query },
    Target { name: "reference", run: reference },
    Target { name: "manifest", run: manifest },
    Target { name: "dockerfile", run: dockerfile },
    Target { name: "patterns", run: patterns },
    Target { name: "streams", run: streams },
    Target { name: "tar_apply", run: tar_apply },
    Target { name: "apply_layer", run: apply_layer },
];

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Splits the input at its first NUL: two independent strings.
fn two(data: &[u8]) -> (String, String) {
    let i = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    (text(&data[..i]).into_owned(), text(data.get(i + 1..).unwrap_or(&[])).into_owned())
}

/// What we accept, we write back in a form we accept again, unchanged.
fn round_trip<T: DeserializeOwned + Serialize>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let once = serde_json::to_value(&v).expect("serialises");
        let back: T = serde_json::from_value(once.clone()).expect("what we wrote reads back");
        assert_eq!(serde_json::to_value(&back).expect("serialises"), once, "a round trip changed the value");
    }
}

/// API request bodies and the image config (from images: hostile too).
pub fn api_json(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<CreateRequest>(data) {
        // What the daemon stores of a create reads back as it was.
        round_trip::<Config>(&serde_json::to_vec(&r.config).expect("serialises"));
        round_trip::<HostConfig>(&serde_json::to_vec(&r.host_config).expect("serialises"));
    }
    round_trip::<HostConfig>(data);
    round_trip::<Config>(data);
    round_trip::<ImageConfig>(data);
    round_trip::<berth_api::events::Event>(data);
    let _ = berth_api::filters::Filters::parse(&text(data));
}

/// Query strings as the server reads them: every accessor on every key, timestamps, filters.
pub fn query(data: &[u8]) {
    let (q, other) = two(data);
    let q = berth_server::query::Query::parse(&q);
    for k in ["filters", "since", "until", "t", "tail", "size", "all", "force", "limit", "signal"] {
        let _ = q.int(k);
        let _ = q.bool(k);
        let _ = q.all(k);
        if let Some(v) = q.str(k) {
            let _ = berth_server::query::parse_time(v);
        }
    }
    if let Ok(f) = q.filters() {
        let _ = f.validate(&["label", "name", "id", "status", "reference", "dangling", "before", "since"]);
        let labels = [("a".to_string(), "b".to_string())].into_iter().collect();
        let _ = f.match_labels(&labels);
        for r in f.get("reference") {
            let _ = berth_api::filters::glob(r, &other);
        }
    }
    let _ = berth_server::query::parse_time(&other);
}

/// Image references and digests: what parses prints back to the same reference.
pub fn reference(data: &[u8]) {
    let s = text(data);
    for r in [berth_types::Reference::parse(&s), berth_types::Reference::parse_tagged(&s)].into_iter().flatten() {
        let again = berth_types::Reference::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(again, r, "{s:?} printed as {r}");
        let _ = (r.familiar(), r.familiar_repository(), r.domain(), r.tag());
    }
    let _ = s.parse::<berth_types::Digest>();
}

/// Manifests and indexes from a registry (or an archive), under every media type.
pub fn manifest(data: &[u8]) {
    use berth_distribution::manifest as m;
    for ct in ["", m::DOCKER_MANIFEST, m::DOCKER_LIST, m::OCI_MANIFEST, m::OCI_INDEX, "application/json"] {
        let _ = m::Manifest::parse(ct, data);
    }
    let _ = m::Platform::parse(&text(data));
}

/// Dockerfiles, their durations and the shell words of instructions.
pub fn dockerfile(data: &[u8]) {
    let s = text(data);
    let env = |name: &str| name.len().is_multiple_of(2).then(|| format!("v{name}"));
    if let Ok(df) = berth_dockerfile::parse(&s) {
        for st in &df.stages {
            let _ = berth_dockerfile::shell::expand_word(&st.base, df.escape, &env);
            for i in &st.instructions {
                let _ = berth_dockerfile::shell::expand_words(&i.original, df.escape, &env);
            }
        }
    }
    let _ = berth_dockerfile::duration::parse(&s);
    for esc in ['\\', '`'] {
        let _ = berth_dockerfile::shell::expand_word(&s, esc, &env);
        let _ = berth_dockerfile::shell::expand_words(&s, esc, &env);
    }
    let mut config = Config::default();
    let _ = berth_image::changes::apply(&mut config, &s.lines().map(String::from).collect::<Vec<_>>());
}

/// `.dockerignore` patterns and path globs against a name.
pub fn patterns(data: &[u8]) {
    let (p, name) = two(data);
    let ig = berth_dockerfile::pattern::Ignore::parse(&p);
    let _ = ig.excludes(&name);
    let _ = ig.has_exclusions();
    for line in p.lines().take(8) {
        let _ = berth_dockerfile::pattern::glob_match(line, &name, true);
        let _ = berth_dockerfile::pattern::glob_match(line, &name, false);
        let _ = berth_dockerfile::pattern::clean(line);
    }
}

/// stdcopy frames and detach-key specs and scanning.
pub fn streams(data: &[u8]) {
    let (frames, rest) = berth_api::stdcopy::parse(data);
    assert!(rest.len() <= data.len());
    assert!(frames.iter().map(|(_, b)| b.len() + 8).sum::<usize>() + rest.len() <= data.len());
    let (spec, input) = two(data);
    if let Ok(keys) = berth_api::detach::parse(&spec) {
        let mut s = berth_api::detach::Scanner::new(keys);
        for chunk in input.as_bytes().chunks(3) {
            let _ = s.feed(chunk);
        }
    }
}

/// A hostile archive applied as a layer and as `docker cp` input: whatever it holds, nothing is
/// created outside the root (beside it, or at the host's `/` or `/tmp`).
pub fn tar_apply(data: &[u8]) {
    let tar = tarbuild::archive(data);
    let sandbox = tempfile::Builder::new().prefix("berth-fuzz-").tempdir().expect("tempdir");
    let root_dir = sandbox.path().join("root");
    std::fs::create_dir(&root_dir).expect("root");
    let root = berth_sys::root::Root::open(&root_dir).expect("open root");
    let _ = berth_image::apply::apply(&tar[..], &root);
    std::fs::create_dir_all(root_dir.join("a")).ok();
    let _ = berth_image::apply::apply_at(&tar[..], &root, Path::new("a"), true);
    let beside: Vec<String> = std::fs::read_dir(sandbox.path())
        .expect("sandbox")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(beside, ["root"], "an entry escaped beside the root");
    for c in tarbuild::CANARIES {
        for dir in ["/", "/tmp"] {
            let p = Path::new(dir).join(c);
            assert!(std::fs::symlink_metadata(&p).is_err(), "an entry escaped to {}", p.display());
        }
    }
    // The archive may have made 0000 directories: removable again when not run as root.
    open_up(&root_dir);
}

/// Raw bytes (plain or compressed) as a layer: the unstructured twin of `tar_apply`, for
/// header-level damage (checksums, sizes, truncation, compression frames).
pub fn apply_layer(data: &[u8]) {
    let sandbox = tempfile::Builder::new().prefix("berth-fuzz-").tempdir().expect("tempdir");
    let root_dir = sandbox.path().join("root");
    std::fs::create_dir(&root_dir).expect("root");
    if let Ok(plain) = berth_image::compress::decompress(data) {
        let root = berth_sys::root::Root::open(&root_dir).expect("open root");
        let _ = berth_image::apply::apply(plain, &root);
    }
    let beside = std::fs::read_dir(sandbox.path()).expect("sandbox").count();
    assert_eq!(beside, 1, "an entry escaped beside the root");
    open_up(&root_dir);
}

fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&e.path());
        }
    }
}
