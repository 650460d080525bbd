//! The compressed-record decoder on arbitrary bytes (bombs included), with a dictionary
//! trained on the example registry's `user_stats`-like records, plus pack → unpack
//! round trips of arbitrary plain bytes.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use quiver_engine::fuzzing::PackedTarget;
use quiver_engine::Registry;

fn target() -> &'static Mutex<PackedTarget> {
    static T: OnceLock<Mutex<PackedTarget>> = OnceLock::new();
    T.get_or_init(|| {
        let registry = Registry::from_toml(include_str!("../../examples/registry.toml"))
            .expect("example registry is valid");
        let view = registry.views()[0].name.clone();
        // Records of the first view's shape are not needed for a dictionary to exist: any
        // repetitive sample trains one, and hostile frames are the point here.
        let samples: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| {
                let mut r = vec![0x20, 3, (i % 7) as u8];
                r.extend_from_slice(&(1_700_000_000u32 + i % 100).to_le_bytes());
                r.extend(std::iter::repeat_n((i % 13) as u8, (i % 40) as usize));
                r
            })
            .collect();
        let refs: Vec<&[u8]> = samples.iter().map(|s| &s[..]).collect();
        Mutex::new(PackedTarget::new(&registry, &view, &refs).expect("a dictionary trains"))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(mut t) = target().lock() {
        t.run(data);
    }
});
