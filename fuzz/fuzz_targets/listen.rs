//! Fuzz target: the control port's parsers (`jamrig play --listen`), OSC packets
//! (bundles and their time tags included) and the TCP line protocol, fed the same
//! bytes. Neither may panic, and what they take keeps to the port's bounds.
#![no_main]

use jamrig::live::listen::{
    Item, LineReader, MAX_BLOCK_BYTES, MAX_BUNDLE_AHEAD, MAX_BUNDLE_MESSAGES, Request, check_line, osc_request,
    osc_timed,
};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    if let Ok(msgs) = osc_timed(data, now) {
        assert!(msgs.len() <= MAX_BUNDLE_MESSAGES);
        for (ahead, m) in &msgs {
            assert!(ahead.is_none_or(|d| d <= MAX_BUNDLE_AHEAD));
            for token in [None, Some("sesame-123")] {
                if let Ok(Request::Line(l)) = osc_request(m, token) {
                    assert!(check_line(&l).is_ok());
                }
            }
        }
    }
    let mut reader = LineReader::default();
    let mut out = Vec::new();
    // Fed whole, then again in pieces split where the bytes say.
    reader.feed(data, &mut out);
    reader.feed(b"\n", &mut out);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut pieces = LineReader::default();
    pieces.feed(&data[..cut], &mut out);
    pieces.feed(&data[cut..], &mut out);
    for item in &out {
        if let Item::Request(l) = item {
            assert!(l.len() <= MAX_BLOCK_BYTES);
        }
    }
});
