//! The WAL segment scanner (frame decoder, checksums, bounded decompression) on arbitrary
//! bytes: it must report damage, never panic or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    quiver_engine::fuzzing::wal_segment(data);
});
