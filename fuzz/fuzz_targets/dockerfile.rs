//! The Dockerfile parser, word expansion and .dockerignore matching take arbitrary text without
//! panicking or running away.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name.len() % 2 == 0).then(|| format!("v{name}"));
    if let Ok(df) = berth_dockerfile::parse(text) {
        for s in &df.stages {
            let _ = berth_dockerfile::shell::expand_word(&s.base, df.escape, &env);
            for i in &s.instructions {
                let _ = berth_dockerfile::shell::expand_words(&i.original, df.escape, &env);
            }
        }
    }
    let _ = berth_dockerfile::shell::expand_word(text, '\\', &env);
    let (pat, name) = text.split_once('\n').unwrap_or((text, "a/b/c"));
    let _ = berth_dockerfile::pattern::glob_match(pat, name, true);
    let _ = berth_dockerfile::pattern::Ignore::parse(pat).excludes(name);
});
