//! Fuzz target: any text as a set (`cargo fuzz run set`). Evaluation returns a
//! set or a located error; a set that builds renders finite audio. Runs on the
//! fuzzer's thread.
#![no_main]

use jamrig::script::ScriptHost;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn host() -> &'static ScriptHost {
    static HOST: OnceLock<ScriptHost> = OnceLock::new();
    HOST.get_or_init(|| ScriptHost::new().expect("the stdlib evaluates"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ev) = host().eval_source("fuzz.rhai", text, None, Default::default(), false)
        && let Ok(mut r) = jamrig::offline::Renderer::new(&ev.set, 8000)
    {
        let x = r.render(800, 256);
        assert!(x.iter().all(|s| s.is_finite()));
    }
});
