//! `ImageRef::parse` on arbitrary text: never panics, and a parsed reference prints to text that
//! parses back to the same value (and prints the same again).
#![no_main]

use kaniko_builder_core::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = ImageRef::parse(input) {
        let shown = parsed.to_string();
        let again = ImageRef::parse(&shown)
            .unwrap_or_else(|e| panic!("{input:?} parsed, but its Display {shown:?} does not: {e}"));
        assert_eq!(parsed, again, "{input:?} -> {shown:?} re-parses to another value");
        assert_eq!(shown, again.to_string(), "Display is not stable for {input:?}");
        let _ = parsed.manifest_reference();
        let _ = parsed.registry_host();
    }
});
