//! The registry parser on registry-shaped TOML built from the input (structure-aware): the
//! documents get past TOML syntax and reach validation, rendering and evolution.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiver_engine::fuzzing::registry_shaped(data);
});
