//! Reloading a set while it plays: republishing the same set changes nothing,
//! parameter jumps glide without clicks, a changed instrument lets sounding notes
//! finish on the old sound, a removed channel fades out, patterns switch on the
//! next bar line and a tempo change applies at once.

mod common;

use common::*;
use jamrig::offline::Renderer;

const LINEAR_MASTER: &str = r#"master(#{ gain: 1.0, mode: "limiter" });"#;

fn example_set() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/set.rhai");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn nominal(note: u8) -> f64 {
    440.0 * ((note as f64 - 69.0) / 12.0).exp2()
}

/// Renders `frames`, publishes `next`, renders `more`; returns the whole output.
fn with_publish(r: &mut Renderer, frames: usize, next: &jamrig::rig::Set, more: usize) -> Vec<f32> {
    let mut x = r.render(frames, 512);
    r.publish(next).expect("set builds");
    x.extend(r.render(more, 512));
    x
}

// ---------------------------------------------------------------------------------
// 19. Null test

#[test]
fn republishing_the_same_set_changes_nothing() {
    let sr = 48000;
    let text = format!(
        "{}\n{}",
        example_set(),
        r#"channel(4, #{ synth: "saw", envelope: "pad", delay: 0.3, lowpass: 1200.0, chorus: 0.3 });"#
    );
    let held = [note_on(100, 3, 57, 100), note_on(30000, 3, 64, 90), note_off(100_000, 3, 57)];
    let whole = {
        let mut r = renderer(&text, sr);
        r.add_events(held);
        r.render(at(3.0, sr), 512)
    };
    // The same Set value, then the same text evaluated again (what a save does), at
    // a tick boundary and mid-tick.
    for (split, fresh) in [(at(1.5, sr), false), (at(1.5, sr), true), (at(1.5, sr) + 17, true)] {
        let s = set(&text);
        let mut r = Renderer::with_tables(&s, tables(sr)).unwrap();
        r.add_events(held);
        let next = if fresh { set(&text) } else { s.clone() };
        let x = with_publish(&mut r, split, &next, at(3.0, sr) - split);
        assert_eq!(r.stats().snapshots_adopted.load(std::sync::atomic::Ordering::Relaxed), 1);
        let first = x.iter().zip(&whole).position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(
            first.is_none(),
            "republishing (split {split}, re-evaluated {fresh}) changes the output from frame {}",
            first.unwrap() / 2
        );
    }
}

/// A channel that a reload configures for the first time arrives built (its voice
/// slots and bus made on the control side, swapped in at adoption): it sounds the
/// same, bit for bit, as the same channel built at the start and silent until then.
#[test]
fn a_channel_first_named_by_a_reload_sounds_as_if_built_at_the_start() {
    let sr = 48000;
    let before = r#"channel(1, #{ synth: "saw", envelope: "pad", lowpass: 1500.0 });"#;
    let after = format!(
        "{before}\n{}",
        r#"channel(12, "pluck_synth", #{ reverb: 0.4, delay: 0.3, chorus: 0.3, lowpass: 3000.0 });
        channel(7, #{ synth: "supersaw", reverb: 0.4, delay: 0.25 });
        drums(14, #{ reverb: 0.2 });"#
    );
    let split = at(0.5, sr) + 17;
    let events = [
        note_on(100, 0, 57, 100),
        note_on(split as u64 + 300, 11, 50, 100),
        note_on(split as u64 + 900, 6, 62, 90),
        note_on(split as u64 + 1000, 13, 38, 120),
        note_on(split as u64 + 5000, 11, 57, 100),
        note_off(split as u64 + 20000, 6, 62),
        note_off(split as u64 + 30000, 0, 57),
    ];
    let whole = {
        let mut r = renderer(&after, sr);
        r.add_events(events);
        r.render(at(2.5, sr), 512)
    };
    let mut r = renderer(before, sr);
    r.add_events(events);
    let x = with_publish(&mut r, split, &set(&after), at(2.5, sr) - split);
    let loud = x[2 * split..].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(loud > 0.05, "the new channels sounded (peak {loud})");
    let first = x.iter().zip(&whole).position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(first.is_none(), "the new channels sound otherwise from frame {}", first.unwrap() / 2);
}

// ---------------------------------------------------------------------------------
// 20. Parameter jumps through a publish

/// Factor by which the largest sample step near a parameter change (within 100 ms)
/// may exceed the larger of the steady maxima before it (200 ms) and after it
/// (300..500 ms after), per side. The held note is a sine (A4), whose largest step
/// is 2 pi 440 / 48000 = 0.058 of its amplitude, so a one-sample jump of a tenth
/// of the level already doubles it and a cut gives ~17x; a 10 ms glide of a gain or
/// mix moves the signal by at most (change / 480) per sample. 2 rather than ~1
/// because effects that add a delayed copy of the tone (reverb, delay) can, while
/// they fill, add in phase and lift the level by a few dB before settling. A saw
/// would not do as the test tone: its band-limited jump steps by nearly its full
/// height every period and hides any click.
const STEP_FACTOR: f32 = 2.0;

/// The sharper check: `click_ratio` (largest step over what a sinusoid at the local
/// peak level can do) stays under this. Steady and gliding sines measure <= 1.01;
/// 1.25 flags a jump of ~1.4 % of the local level (-37 dB) or more.
const CLICK_FACTOR: f32 = 1.25;

/// Plays a held A4 sine with `before` parameters, publishes `after` `frames` into
/// the render; returns the output and the frame of the change.
fn held_note_change_at(before: &str, after: &str, frames: usize) -> Vec<f32> {
    let sr = 48000;
    let mk =
        |params: &str| format!(r#"{LINEAR_MASTER} channel(1, #{{ synth: "sine", envelope: "organ", {params} }});"#);
    let mut r = renderer(&mk(before), sr);
    r.add_events([note_on(0, 0, 69, 100)]);
    with_publish(&mut r, frames, &set(&mk(after)), at(0.6, sr))
}

fn held_note_change(before: &str, after: &str) -> (Vec<f32>, usize) {
    let t = at(0.5, 48000);
    (held_note_change_at(before, after, t), t)
}

/// Worst (step ratio, click ratio) over 16 publish frames spread across ticks and
/// the tone's phase (a click's size depends on where in the cycle it lands).
fn worst_change(before: &str, after: &str) -> (f32, f32) {
    let sr = 48000;
    let (mut step, mut click) = (0.0f32, 0.0f32);
    for k in 0..16 {
        let t = at(0.5, sr) + k * (3 * 64 + 5);
        let x = held_note_change_at(before, after, t);
        for side in [left(&x), right(&x)] {
            let steady = max_step(&side[t - at(0.2, sr)..t]).max(max_step(&side[t + at(0.3, sr)..t + at(0.5, sr)]));
            step = step.max(max_step(&side[t - 64..t + at(0.1, sr)]) / steady);
            click = click.max(click_ratio(&side[t - at(0.05, sr)..t + at(0.25, sr)], sr, 440.0, 1e-4).0);
        }
    }
    (step, click)
}

fn check_changes(cases: &[(&str, &str)]) {
    let mut failures = Vec::new();
    for (a, b) in cases {
        let (step, click) = worst_change(a, b);
        println!("{a} -> {b}: step ratio {step:.3}, click ratio {click:.3}");
        if step > STEP_FACTOR || click > CLICK_FACTOR {
            failures.push(format!("{a} -> {b}: step {step:.2}x the steady maximum, click ratio {click:.2}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parameter_jumps_through_a_publish_glide_without_clicks() {
    check_changes(&[
        ("lowpass: 8000.0", "lowpass: 300.0"),
        ("volume: 0.8", "volume: 0.1"),
        ("pan: -1.0", "pan: 1.0"),
        ("lowpass: 0.0", "lowpass: 300.0"),
        ("highpass: 0.0", "highpass: 2000.0"),
        ("phaser: 0.0", "phaser: 1.0"),
        ("lowpass: 2000.0, volume: 0.2, pan: 0.5", "lowpass: 500.0, volume: 0.9, pan: -0.5, highpass: 100.0"),
    ]);
}

#[test]
fn wet_effects_switched_on_through_a_publish_do_not_click() {
    check_changes(&[
        ("reverb: 0.0", "reverb: 0.8"),
        ("delay: 0.0, delay_time: 0.05", "delay: 0.8, delay_time: 0.05"),
        ("chorus: 0.0", "chorus: 1.0"),
    ]);
}

#[test]
fn delay_time_jump_through_a_publish_has_no_burst() {
    check_changes(&[("delay: 0.5, delay_time: 0.2", "delay: 0.5, delay_time: 0.6")]);
}

#[test]
fn volume_change_glides_with_a_10_ms_time_constant() {
    let sr = 48000;
    let (x, t) = held_note_change("volume: 0.8", "volume: 0.1");
    let env = analytic_envelope(&mono(&x));
    let level = |a: usize, b: usize| env[a..b].iter().sum::<f32>() / (b - a) as f32;
    let (v0, v1) = (level(t - at(0.2, sr), t - at(0.1, sr)), level(t + at(0.3, sr), t + at(0.4, sr)));
    assert!((db(v1) - db(v0) - db(0.1 / 0.8)).abs() <= 0.2, "level change {:.2} dB", db(v1) - db(v0));
    // Time to cover 63 % of the way (one time constant).
    let target = v1 + (v0 - v1) * (-1.0f32).exp();
    let k = (t..x.len() / 2).find(|&k| env[k] <= target).unwrap();
    let tau_ms = (k - t) as f64 * 1000.0 / sr as f64;
    println!("volume 0.8 -> 0.1: time constant {tau_ms:.2} ms");
    // +/-3 ms: a tick (1.3 ms) of granularity and some envelope smoothing.
    assert!((7.0..=13.0).contains(&tau_ms), "volume glide time constant {tau_ms:.2} ms (expected ~10)");
    // And no faster at the start: after 1 ms at most ~10 % of the way (1 - e^-0.1).
    let early = level(t + 48, t + 96);
    assert!(
        (v0 - early) / (v0 - v1) < 0.2,
        "volume falls {:.0} % of the way in the first 2 ms",
        100.0 * (v0 - early) / (v0 - v1)
    );
}

// ---------------------------------------------------------------------------------
// 21. Changed instrument

#[test]
fn changed_instrument_lets_sounding_notes_finish_on_the_old_sound() {
    let sr = 48000;
    let mk = |synth: &str| format!(r#"{LINEAR_MASTER} channel(1, #{{ synth: "{synth}", envelope: "organ" }});"#);
    let mut r = renderer(&mk("sine"), sr);
    let (first, second) = (60u8, 81u8); // C4 and A5: no shared partials below 2.6 kHz
    let t = at(0.5, sr);
    let t2 = at(1.0, sr);
    r.add_events([
        note_on(0, 0, first, 100),
        note_on(t2 as u64, 0, second, 100),
        note_off(at(2.0, sr) as u64, 0, first),
    ]);
    let x = mono(&with_publish(&mut r, t, &set(&mk("saw")), at(1.8, sr)));
    let (f1, f2) = (nominal(first), nominal(second));
    let rel = |seg: &[f32], hz: f64, to: f64| {
        let (m, bin) = spectrum_bh(seg, sr as f64, 1 << 17);
        20.0 * (band_level(&m, bin, hz, 3.0) / band_level(&m, bin, to, 3.0)).log10()
    };
    // The first note alone after the publish, then with the new note.
    for (label, seg) in
        [("after the publish", &x[t + at(0.05, sr)..t2]), ("with the new note", &x[t2 + at(0.1, sr)..t2 + at(0.9, sr)])]
    {
        let worst = (2..=8).map(|h| rel(seg, f1 * h as f64, f1)).fold(f64::MIN, f64::max);
        println!("first note {label}: strongest harmonic {worst:.1} dB");
        assert!(worst <= -40.0, "first note {label}: harmonic at {worst:.1} dB, not a sine any more");
    }
    let whole = &x[t2 + at(0.1, sr)..t2 + at(0.9, sr)];
    let (h2, h3) = (rel(whole, 2.0 * f2, f2), rel(whole, 3.0 * f2, f2));
    println!("new note: 2nd harmonic {h2:.1} dB, 3rd {h3:.1} dB");
    // A saw's harmonics fall as 1/n: -6.0 and -9.5 dB.
    assert!((h2 + 6.02).abs() <= 1.5 && (h3 + 9.54).abs() <= 1.5, "new note is not a saw: {h2:.1}, {h3:.1} dB");
    // The first note keeps its level through the publish.
    let before = rms(&x[t - at(0.2, sr)..t]);
    let after = rms(&x[t + at(0.05, sr)..t2]);
    assert!((db(after) - db(before)).abs() <= 0.1, "first note level changed by {:.2} dB", db(after) - db(before));
}

#[test]
fn changed_instrument_keeps_a_bent_note_at_its_pitch() {
    let sr = 48000;
    let mk = |synth: &str| format!(r#"{LINEAR_MASTER} channel(1, #{{ synth: "{synth}", envelope: "organ" }});"#);
    let b4 = nominal(71);
    let t = at(0.5, sr);
    let held = [note_on(0, 0, 69, 100), pitch_bend(100, 0, 8191)];
    // By a reload that changes the instrument, and by a program change (16: organ).
    let reloaded = {
        let mut r = renderer(&mk("sine"), sr);
        r.add_events(held);
        mono(&with_publish(&mut r, t, &set(&mk("saw")), at(0.5, sr)))
    };
    let program = mono(&render(
        &mk("sine"),
        sr,
        1.0,
        512,
        &[
            held[0],
            held[1],
            jamrig::engine::event::Event::new(
                t as u64,
                jamrig::engine::event::EventKind::Program { channel: 0, program: 16 },
            ),
        ],
    ));
    let mut failures = Vec::new();
    for (label, x) in [("reload", &reloaded), ("program change", &program)] {
        let before = cents(phase_freq(&x[at(0.1, sr)..t], sr, b4, 4096), b4);
        let coarse = peak_freq(&x[t + at(0.05, sr)..], sr as f64, 300.0, 700.0);
        println!("{label}: bent note {before:+.2} cents re B4 before, strongest component {coarse:.2} Hz after");
        assert!(before.abs() <= 2.0);
        if cents(coarse, b4).abs() > 5.0 {
            failures.push(format!("{label}: the held bent note moves from B4 ({b4:.2} Hz) to {coarse:.2} Hz"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------
// 22. Removed channel

#[test]
fn removed_channel_releases_then_its_reverb_tail_fades_out() {
    let sr = 48000;
    let with = format!(
        r#"{LINEAR_MASTER} channel(1, #{{ synth: "sine", attack: 0.01, decay: 0.0, sustain: 1.0, release: 0.2, reverb: 0.5 }});
        channel(2, "saw");"#
    );
    let without = format!(r#"{LINEAR_MASTER} channel(2, "saw");"#);
    let t = at(1.0, sr);
    let removed = {
        let mut r = renderer(&with, sr);
        r.add_events([note_on(0, 0, 69, 100)]);
        with_publish(&mut r, t, &set(&without), at(4.0, sr))
    };
    // The same note released by a note-off at the removal frame, channel kept.
    let released = render(&with, sr, 5.0, 512, &[note_on(0, 0, 69, 100), note_off(t as u64, 0, 69)]);
    let first = removed.iter().zip(&released).position(|(a, b)| a.to_bits() != b.to_bits());
    assert!(first.is_none(), "removal differs from a note-off at the same frame from frame {}", first.unwrap() / 2);

    // What that sounds like: no cut, the release, the reverb tail beyond it, silence.
    // Steps: the dry sine and its reverb interfere, so a side's level (and its
    // steps) can rise by a few dB when the dry part goes; a cut would step by the
    // whole amplitude, ~17 steady steps of an A4 sine. Factor 2.
    for side in [left(&removed), right(&removed)] {
        let steady = max_step(&side[t - at(0.2, sr)..t]);
        let around = max_step(&side[t - 64..t + at(0.1, sr)]);
        assert!(around <= 2.0 * steady, "removal steps {:.2}x the steady maximum", around / steady);
    }
    let x = mono(&removed);
    let before = rms(&x[t - at(0.2, sr)..t]);
    let level = |a: f64, b: f64| db(rms(&x[t + at(a, sr)..t + at(b, sr)])) - db(before);
    let (tail, later) = (level(0.3, 0.4), level(0.8, 0.9));
    println!("removed: tail {tail:.1} dB at 0.3..0.4 s, {later:.1} dB at 0.8..0.9 s");
    // The release is over after 0.2 s; the reverb (1 s decay) still rings, and fades.
    assert!(tail > -40.0, "no reverb tail after the release: {tail:.1} dB");
    assert!(later < tail - 10.0, "the tail does not fade: {tail:.1} then {later:.1} dB");
    assert_eq!(peak(&x[t + at(3.0, sr)..]), 0.0, "removed channel still sounds 3 s later");
}

// ---------------------------------------------------------------------------------
// 23, 24. Patterns and tempo

/// Each hit's onset: patterns on drum channel 10 with silence between hits.
fn drum_onsets(x: &[f32]) -> Vec<usize> {
    onsets(&mono(x), 500)
}

#[test]
fn a_new_pattern_takes_over_at_the_next_bar_line() {
    let sr = 48000;
    let a = r#"tempo(120); drums(10);
        pattern("p", 10, 4.0, [[0.0, "closed_hat", 100], [1.0, "closed_hat", 100], [2.0, "closed_hat", 100], [3.0, "closed_hat", 100]]);"#;
    let b = r#"tempo(120); drums(10);
        pattern("p", 10, 4.0, [[0.0, "clave", 100], [0.5, "closed_hat", 100], [1.5, "closed_hat", 100], [2.5, "closed_hat", 100], [3.5, "closed_hat", 100]]);"#;
    let mut r = renderer(a, sr);
    let publish_at = 5 * 24000 + 7300; // beat 5.3: mid-bar (bar 2 is beats 4..8)
    let x = with_publish(&mut r, publish_at, &set(b), 4 * 24000 + 12 * 24000 - publish_at);
    let on = drum_onsets(&x);
    let mut expected: Vec<usize> = (0..8).map(|k| k * 24000).collect();
    for bar in [8usize, 12] {
        expected.push(bar * 24000);
        expected.extend([0.5, 1.5, 2.5, 3.5].iter().map(|o| ((bar as f64 + o) * 24000.0) as usize));
    }
    assert_eq!(on, expected, "A's hits up to the bar line, then B's from it");
    // What sounds at the bar line is B's clave, exactly as B plays it from the start.
    let alone = render(b, sr, 0.1, 512, &[]);
    let n = alone.len();
    let bar = 8 * 24000 * 2;
    assert!(x[bar..bar + n] == alone[..], "the bar line does not play B's first hit");
}

#[test]
fn a_tempo_change_applies_at_once() {
    let sr = 48000u64;
    let mk = |bpm: u32| format!(r#"tempo({bpm}); drums(10); pattern("p", 10, 1.0, [[0.0, "closed_hat", 100]]);"#);
    let mut r = renderer(&mk(120), sr as u32);
    let change = 60032usize; // 938 ticks: beat 2.50133 at 120 BPM
    let x = with_publish(&mut r, change, &set(&mk(60)), 300_000 - change);
    // From the adoption frame on, a beat is 48000 frames: beat b at change + (b - change / 24000) * 48000.
    let mut expected = vec![0usize, 24000, 48000];
    for b in 3..=7u64 {
        expected.push((change as u64 + b * 48000 - 2 * change as u64) as usize);
    }
    assert_eq!(drum_onsets(&x), expected, "hits after a tempo change from 120 to 60 BPM at frame {change}");
}
