//! The WAL write-batch decoder on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiver_engine::fuzzing::batch(data);
});
