//! `DockerConfig::from_json` on arbitrary text: never panics; an error never echoes the input
//! (it may hold credentials).
#![no_main]

use kaniko_builder_registry::DockerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    match DockerConfig::from_json(input) {
        Ok(config) => {
            let _ = format!("{config:?}");
            for registry in config.registries() {
                let _ = registry.len();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
