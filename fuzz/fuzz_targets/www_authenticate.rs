//! The `WWW-Authenticate` challenge parser on arbitrary header values: never panics; a Bearer
//! challenge it accepts always has an http(s) realm.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    let _ = kaniko_builder_registry::__fuzz::parse_challenge(header);
});
