//! Smaller hardening of issue 22 point 10: no `unsafe` anywhere in the crate, LMDB reader
//! slots sized for the effect pool, TLS with the system's roots plus a custom CA.

use runner::dev::TempDir;
use runner::settings::Settings;
use runner::store::Store;

/// `#![forbid(unsafe_code)]` on the library and the binary: nothing in the crate can
/// opt out of it with an `allow`.
#[test]
fn the_library_and_the_binary_forbid_unsafe_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["src/lib.rs", "src/main.rs"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
            "{file} lacks #![forbid(unsafe_code)]"
        );
    }
}

/// A store opened for a large effect pool holds a read transaction per worker and the
/// other stages' at once (LMDB's default table has 126 slots; each open read
/// transaction takes one).
#[test]
fn a_store_opened_for_300_effect_workers_has_a_reader_slot_for_each() {
    let dir = TempDir::new("readers").unwrap();
    let mut settings = Settings::default();
    settings.effects.workers = 300;
    settings.storage.path = dir.path().join("store");
    settings.storage.map_size_mib = 16;
    settings.storage.max_size_mib = 16;
    let store = Store::open_with(
        &settings.storage.path,
        &runner::cli::store_options(&settings),
    )
    .unwrap();
    let mut readers = Vec::new();
    for n in 0..320 {
        match store.reader() {
            Ok(r) => readers.push(r),
            Err(e) => panic!("read transaction {} of 320 refused: {e}", n + 1),
        }
    }
    assert_eq!(readers.len(), 320);
}
