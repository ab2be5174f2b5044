//! Fuzz target: any bytes as a session capture (`cargo fuzz run capture`). Reading
//! returns a log or an error; a log stays within the longest render. Runs on the
//! fuzzer's thread.
#![no_main]

use jamrig::capture::replay;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = replay::parse(data, std::path::Path::new("fuzz.jsonl")) {
        let max = jamrig::offline::render::MAX_RENDER_SECONDS * log.sample_rate as f64;
        assert!(log.frames() as f64 <= max + 2.0 * log.sample_rate as f64);
    }
});
