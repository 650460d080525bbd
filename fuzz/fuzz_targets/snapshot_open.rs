//! The snapshot opener on arbitrary file contents: open must refuse anything damaged before it
//! is used; whatever it accepts must be readable end to end without panicking.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver_engine::Snapshot;

fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("quiver-fuzz-{}.qsnap", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(snap) = Snapshot::open(path) {
        // Whatever open accepted must be safe to read, even if verify would object.
        let mut keys = 0usize;
        for (key, _record) in snap.iter() {
            let _ = snap.get(key);
            keys += 1;
        }
        if Snapshot::verify(path).is_ok() {
            assert_eq!(keys, snap.len(), "a verified snapshot iterates every entity");
            for (key, record) in snap.iter() {
                assert_eq!(snap.get(key), Some(record), "a verified snapshot finds its own keys");
            }
        }
    }
});
