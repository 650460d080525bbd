//! The WAL segment scanner (frame decoder, checksums, bounded decompression) on arbitrary
//! bytes: it must report damage, never panic or allocate without bound.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quiver_engine::WalSegmentInfo;

fuzz_target!(|data: &[u8]| {
    let _ = WalSegmentInfo::scan(Path::new("00000000000000000001.log"), data);
});
