//! The record decoder on arbitrary bytes, against the example registry's views (the first
//! byte picks one).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiver_engine::fuzzing::record_target(data);
});
