//! The registry parser on arbitrary text (two documents split at a NUL byte): what parses must
//! render and re-parse to an equal registry, and evolving one into the other must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiver_engine::fuzzing::registry_text(data);
});
