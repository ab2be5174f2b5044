//! Fuzz target: any bytes as a MIDI file (`cargo fuzz run midi`). Must not panic;
//! what parses comes in frame order. Runs on the fuzzer's thread.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((events, end)) = jamrig::offline::midifile::events_from_bytes(data, "fuzz.mid", 48000.0) {
        assert!(events.windows(2).all(|w| w[0].frame <= w[1].frame));
        assert!(events.iter().all(|e| e.frame <= end));
    }
});
