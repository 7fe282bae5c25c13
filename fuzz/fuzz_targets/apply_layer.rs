//! Fuzzes the layer applier: any byte stream, as a (possibly compressed) tar, applied to a fresh
//! root must never create anything outside that root.
#![no_main]


use berth_sys::root::Root;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let jail = tempfile::tempdir().expect("tempdir");
    let root = jail.path().join("root");
    let outside = jail.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    if let Ok(plain) = berth_image::compress::decompress(data) {
        let _ = berth_image::apply::apply(plain, &Root::open(&root).unwrap());
    }
    let escaped: Vec<_> = std::fs::read_dir(jail.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "root" && n != "outside")
        .collect();
    assert!(escaped.is_empty(), "entries escaped the root: {escaped:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "wrote into a sibling directory");
});
