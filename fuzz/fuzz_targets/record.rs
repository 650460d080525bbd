//! The record decoder on arbitrary bytes, against the example registry's views.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver_engine::Registry;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        Registry::from_toml(include_str!("../../examples/registry.toml"))
            .expect("example registry is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let views = registry().views();
    let view = &views[which as usize % views.len()].name;
    quiver_engine::fuzzing::record(registry(), view, rest);
});
