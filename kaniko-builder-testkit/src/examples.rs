//! The workspace's compiled examples, for tests that run them as a user would.

use std::path::PathBuf;

/// The compiled example `name` (`target/<profile>/examples/<name>`), found from the running test
/// binary (`target/<profile>/deps/…`).
///
/// # Panics
/// When it is not built: run `cargo build --examples` first (`scripts/test.sh` does).
pub fn example_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary");
    dir.pop(); // deps
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --examples` before this test (scripts/test.sh does)",
        path.display()
    );
    path
}
