//! The server's request decoding and validation (native GetOnlineFeatures and WriteFeatures,
//! Feast's GetOnlineFeatures) against a registry of every type: raw protobuf bytes, and
//! well-formed messages built from the input (structure-aware).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver_server::fuzzing::RequestTarget;

fn target() -> &'static RequestTarget {
    static T: OnceLock<RequestTarget> = OnceLock::new();
    T.get_or_init(RequestTarget::new)
}

fuzz_target!(|data: &[u8]| {
    target().run(data);
});
