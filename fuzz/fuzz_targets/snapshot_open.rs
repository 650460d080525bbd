//! The snapshot opener on arbitrary file contents: open must refuse anything damaged before it
//! is used; whatever it accepts must be readable end to end without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiver_engine::fuzzing::snapshot_open(data);
});
