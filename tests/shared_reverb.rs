//! Channels whose reverb settings are the same share one reverb (decided when the
//! snapshot is built): the mix must sound as it does with a reverb per channel.
//! Offline renders, compared with the same set where a CC mapping keeps every
//! channel on its own reverb.

mod common;

use common::*;
use jamrig::engine::event::Event;

const SR: u32 = 48_000;

/// Two channels with the same reverb; quiet master (the soft clip stays linear).
const SHARED: &str = r#"
channel(1, "electric_piano", #{ reverb: 0.4, lowpass: 4000.0, chorus: 0.2 });
channel(3, "synth_pad", #{ reverb: 0.4, lowpass: 4000.0, chorus: 0.2 });
master(#{ gain: 0.1 });
"#;

/// The same set, each channel with its own reverb (a CC that can re-pan every
/// channel keeps them out of a shared reverb; it is never sent).
fn unshared() -> String {
    format!("{SHARED}cc(102, \"pan\", -1.0, 1.0);\n")
}

fn chords(channels: &[u8]) -> Vec<Event> {
    let mut ev = Vec::new();
    for &ch in channels {
        for (i, key) in [48u8, 55, 60, 64].into_iter().enumerate() {
            let on = (0.1 * i as f64 * SR as f64) as u64;
            ev.push(note_on(on, ch, key + 12 * (ch == 0) as u8, 100));
            ev.push(note_off(on + SR as u64 * 2, ch, key + 12 * (ch == 0) as u8));
        }
    }
    ev
}

#[test]
fn channels_with_the_same_reverb_share_one_and_a_cc_mapping_keeps_them_apart() {
    let snap = jamrig::rig::build::build(&set(SHARED), None).expect("builds");
    assert!(snap.shared_reverbs[0].is_some() && snap.shared_reverbs[2].is_some());
    assert_eq!(snap.shared_reverbs[0], snap.shared_reverbs[2]);
    let apart = jamrig::rig::build::build(&set(&unshared()), None).expect("builds");
    assert!(apart.shared_reverbs.iter().all(|s| s.is_none()));
    // Different decays: no group of two, so each keeps its own.
    let other = SHARED.replace("synth_pad\", #{ reverb: 0.4", "synth_pad\", #{ reverb_decay: 2.0, reverb: 0.4");
    let snap = jamrig::rig::build::build(&set(&other), None).expect("builds");
    assert!(snap.shared_reverbs.iter().all(|s| s.is_none()));
}

#[test]
fn one_channel_through_the_shared_reverb_equals_its_own_reverb() {
    // Only channel 1 plays: the shared reverb's input is its alone.
    let events = chords(&[0]);
    let shared = render(SHARED, SR, 4.0, 256, &events);
    let own = render(&unshared(), SR, 4.0, 256, &events);
    let top = peak(&own);
    assert!(top > 0.01, "the set sounds ({top})");
    let worst = shared.iter().zip(&own).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    // Float rounding only: the same operations in another order.
    assert!(worst < 1e-4 * top, "max difference {worst} against a peak of {top}");
}

#[test]
fn two_channels_through_the_shared_reverb_sound_as_with_their_own() {
    let events = chords(&[0, 2]);
    let shared = render(SHARED, SR, 4.0, 256, &events);
    let own = render(&unshared(), SR, 4.0, 256, &events);
    let top = peak(&own);
    // The mono sum is linear in the reverb's lines: the same within rounding.
    let (ms, mo) = (mono(&shared), mono(&own));
    let worst = ms.iter().zip(&mo).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4 * top, "mono sum: max difference {worst} against a peak of {top}");
    // The side: the reverb's left/right balance is tracked on its whole input, so
    // the samples differ, but each side's level and spectrum stay.
    for (name, a, b) in [("left", left(&shared), left(&own)), ("right", right(&shared), right(&own))] {
        let (la, lb) = (db(rms(&a)), db(rms(&b)));
        assert!((la - lb).abs() < 0.25, "{name}: {la:.2} dB shared, {lb:.2} dB own");
        let (sa, _) = spectrum(&a, SR as f64, 1 << 17);
        let (sb, _) = spectrum(&b, SR as f64, 1 << 17);
        // Octave bands from 62.5 Hz to 16 kHz.
        let bin_hz = SR as f64 / (1 << 17) as f64;
        let mut lo = 62.5;
        while lo < 16_000.0 {
            let band = |s: &[f64]| {
                let (i, j) = ((lo / bin_hz) as usize, ((2.0 * lo / bin_hz) as usize).min(s.len()));
                s[i..j].iter().map(|m| m * m).sum::<f64>()
            };
            let (ea, eb) = (band(&sa), band(&sb));
            if eb > 1e-9 * band_total(&sb) {
                let diff = 10.0 * (ea / eb).log10();
                println!("{name}, octave from {lo} Hz: {diff:.2} dB");
                assert!(diff.abs() < 1.0, "{name}, octave from {lo} Hz: {diff:.2} dB apart");
            }
            lo *= 2.0;
        }
    }
    let side = |x: &[f32]| rms(&left(x).iter().zip(right(x)).map(|(l, r)| l - r).collect::<Vec<_>>());
    let (ss, so) = (side(&shared), side(&own));
    assert!((db(ss) - db(so)).abs() < 0.5, "side level {:.2} dB shared, {:.2} dB own", db(ss), db(so));
}

fn band_total(s: &[f64]) -> f64 {
    s.iter().map(|m| m * m).sum()
}
