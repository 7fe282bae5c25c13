//! The CI run of every fuzz target: the kept corpus, then a bounded number of deterministic
//! mutations (`BERTH_FUZZ_ITERS` per target, `BERTH_FUZZ_SEED`). A failing input is saved under
//! `target/fuzz-failures/` and named in the failure, to be replayed or added to the corpus.

use std::path::{Path, PathBuf};

use berth_fuzz::mutate::{mutate, Rng};
use berth_fuzz::{Target, TARGETS};

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn corpus(name: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(name);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    let mut out: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    out.push(Vec::new());
    out
}

/// Runs `t` on `input`; on a panic, saves the input and fails naming it.
fn run(t: &Target, input: &[u8], how: &str) {
    let r = std::panic::catch_unwind(|| (t.run)(input));
    if let Err(e) = r {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{}-{}", t.name, berth_types::Digest::of(input).hex()));
        let _ = std::fs::write(&file, input);
        let msg = e.downcast_ref::<String>().cloned().or(e.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{} failed on {how}: {msg:?}; input saved to {}", t.name, file.display());
    }
}

fn fuzz(name: &str) {
    let t = TARGETS.iter().find(|t| t.name == name).expect("target");
    let seeds = corpus(name);
    for (i, s) in seeds.iter().enumerate() {
        run(t, s, &format!("corpus entry {i}"));
    }
    let iters = env_or("BERTH_FUZZ_ITERS", 1500);
    let seed = env_or("BERTH_FUZZ_SEED", 0x5eed_b37d);
    let mut rng = Rng::new(seed ^ name.len() as u64);
    for i in 0..iters {
        let mut input = seeds[rng.below(seeds.len())].clone();
        let other = &seeds[rng.below(seeds.len())];
        for _ in 0..1 + rng.below(6) {
            mutate(&mut rng, &mut input, other);
        }
        run(t, &input, &format!("mutation {i} (seed {seed:#x})"));
    }
}

/// Every target has a test here, and a corpus to start from.
#[test]
fn every_target_is_run_and_seeded() {
    let src = include_str!("fuzz.rs");
    for t in TARGETS {
        assert!(src.contains(&format!("fuzz(\"{}\")", t.name)), "no test runs {}", t.name);
        assert!(corpus(t.name).len() > 1, "no corpus for {}", t.name);
    }
}

#[test]
fn api_json() {
    fuzz("api_json");
}

#[test]
fn query() {
    fuzz("query");
}

#[test]
fn reference() {
    fuzz("reference");
}

#[test]
fn manifest() {
    fuzz("manifest");
}

#[test]
fn dockerfile() {
    fuzz("dockerfile");
}

#[test]
fn patterns() {
    fuzz("patterns");
}

#[test]
fn streams() {
    fuzz("streams");
}

#[test]
fn tar_apply() {
    fuzz("tar_apply");
}

#[test]
fn apply_layer() {
    fuzz("apply_layer");
}
