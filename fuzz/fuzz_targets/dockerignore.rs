//! `.dockerignore` parsing and matching: the first line of the input is a path, the rest the
//! file. Never panics, whatever the patterns and the path.
#![no_main]

use libfuzzer_sys::fuzz_target;

use kaniko_builder_context::DockerIgnore;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (path, content) = input.split_once('\n').unwrap_or((input, ""));
    if let Ok(ignore) = DockerIgnore::parse(content) {
        let _ = ignore.is_excluded(path);
        let _ = ignore.is_excluded(path.trim_start_matches('/'));
        let _ = ignore.patterns().count();
    }
});
