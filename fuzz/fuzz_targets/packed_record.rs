//! The compressed-record decoder on arbitrary bytes (bombs included), with a dictionary
//! trained once, plus pack → unpack round trips of arbitrary plain bytes.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use quiver_engine::fuzzing::{packed_target, PackedTarget};

fn target() -> &'static Mutex<PackedTarget> {
    static T: OnceLock<Mutex<PackedTarget>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(packed_target()))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(mut t) = target().lock() {
        t.run(data);
    }
});
