//! The transport following MIDI clock, offline: synthetic tick streams (steady,
//! jittered, tempo steps and ramps, Stop/Continue, Song Position) drive the engine
//! through the same events the MIDI input produces, and the hats a pattern plays on
//! every beat are compared with the ticks they should sit on.

mod common;

use common::*;
use jamrig::engine::event::{Event, EventKind};
use jamrig::offline::Renderer;
use rand::Rng;
use rand_pcg::Pcg32;

const SR: u32 = 48000;
const SRF: f64 = SR as f64;
const PPQN: usize = 24;

/// A closed hat on every beat (its first sample is non-zero: the onset is the hit).
fn hat_set(clock: &str) -> String {
    format!(
        r#"tempo(100); clock("{clock}"); drums(10);
        pattern("beat", 10, 1.0, [[0.0, "closed_hat", 100]]);"#
    )
}

fn period(bpm: f64) -> f64 {
    60.0 * SRF / (bpm * PPQN as f64)
}

/// Ideal tick times from `start`, `n` ticks, the tempo of tick `k` given by `bpm`.
fn ticks(start: f64, n: usize, bpm: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut t = start;
    (0..n)
        .map(|k| {
            let now = t;
            t += period(bpm(k));
            now
        })
        .collect()
}

/// Clock events at the ideal times plus uniform jitter of up to `jitter_ms`.
fn clock_events(ideal: &[f64], jitter_ms: f64, seed: u64) -> Vec<Event> {
    let mut rng = Pcg32::new(seed, 7);
    ideal
        .iter()
        .map(|t| {
            let u = (rng.next_u32() as f64 / u32::MAX as f64) * 2.0 - 1.0;
            Event::new((t + u * jitter_ms * 1e-3 * SRF).round().max(0.0) as u64, EventKind::Clock)
        })
        .collect()
}

/// What a run gives: hat onsets (frames), and every `probe` seconds the clock
/// tempo the engine reports and the transport's tempo.
struct Run {
    onsets: Vec<u64>,
    probes: Vec<(f64, Option<f64>, f64)>,
}

/// Renders `seconds` of `set_text` following `events`, keeping only what is
/// measured (a 10-minute run would not fit as audio).
fn run(set_text: &str, events: Vec<Event>, seconds: f64, probe: f64) -> Run {
    let mut r = Renderer::following_clock(&set(set_text), tables(SR)).expect("rig builds");
    r.add_events(events);
    let chunk = (probe * SRF) as usize;
    let total = (seconds * SRF) as usize;
    let (mut onsets, mut probes) = (Vec::new(), Vec::new());
    let (mut quiet, mut frame) = (usize::MAX, 0u64);
    let mut done = 0;
    while done < total {
        let n = chunk.min(total - done);
        let out = r.render(n, 512);
        for lr in out.chunks_exact(2) {
            if lr[0] != 0.0 || lr[1] != 0.0 {
                if quiet >= 2000 {
                    onsets.push(frame);
                }
                quiet = 0;
            } else {
                quiet = quiet.saturating_add(1);
            }
            frame += 1;
        }
        done += n;
        let stats = r.stats();
        probes.push((done as f64 / SRF, stats.clock_tempo(), stats.tempo()));
    }
    Run { onsets, probes }
}

/// Onset minus the tick of its beat, in ms, for every beat `first..` the run has.
fn phase_errors_ms(onsets: &[u64], ideal: &[f64], beats: std::ops::Range<usize>) -> Vec<f64> {
    beats
        .filter(|b| b * PPQN < ideal.len())
        .map(|b| {
            let want = ideal[b * PPQN];
            let got = *onsets
                .iter()
                .min_by(|x, y| (**x as f64 - want).abs().total_cmp(&(**y as f64 - want).abs()))
                .expect("some onsets");
            (got as f64 - want) / SRF * 1e3
        })
        .collect()
}

/// Just after the last tick (the transport runs on by itself when ticks stop
/// coming, so a run that went on would play the next beat too).
fn end_of(ticks: &[f64]) -> f64 {
    let n = ticks.len();
    (ticks[n - 1] + 0.5 * (ticks[n - 1] - ticks[n - 2])) / SRF
}

fn worst(x: &[f64]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// The clock runs before Start (as devices do), then Start, then the song.
fn song(pre_ticks: usize, song_ticks: usize, bpm: impl Fn(usize) -> f64 + Copy) -> (Vec<f64>, Vec<f64>, u64) {
    let first = 4800.0;
    let all = ticks(first, pre_ticks + song_ticks, bpm);
    let start_frame = (all[pre_ticks] - period(bpm(0)) / 2.0) as u64;
    (all[..pre_ticks].to_vec(), all[pre_ticks..].to_vec(), start_frame)
}

/// The clock events of a song: the pre-roll ticks, Start, the song's ticks, with
/// up to `jitter_ms` of jitter (seeded by `seed` and `seed + 1`).
fn started(pre: &[f64], song_ticks: &[f64], start: u64, jitter_ms: f64, seed: u64) -> Vec<Event> {
    let mut ev = clock_events(pre, jitter_ms, seed);
    ev.push(Event::new(start, EventKind::ClockStart));
    ev.extend(clock_events(song_ticks, jitter_ms, seed + 1));
    ev
}

#[test]
fn steady_clock_puts_every_beat_on_its_tick() {
    for bpm in [120.0, 133.0, 87.5] {
        let (pre, song_ticks, start) = song(48, 24 * 32, |_| bpm);
        let ev = started(&pre, &song_ticks, start, 0.0, 1);
        let seconds = end_of(&song_ticks);
        let run = run(&hat_set("midi"), ev, seconds, 0.25);
        let errors = phase_errors_ms(&run.onsets, &song_ticks, 0..32);
        assert_eq!(run.onsets.len(), 32, "{bpm} BPM: one hat per beat, none before Start");
        assert!(worst(&errors) < 0.03, "{bpm} BPM: onsets off their ticks by up to {:.3} ms", worst(&errors));
        let (_, clock, transport) = *run.probes.last().unwrap();
        assert!((clock.unwrap() - bpm).abs() < 0.01, "{bpm} BPM: clock tempo {clock:?}");
        assert!((transport - bpm).abs() < 0.01, "{bpm} BPM: transport tempo {transport}");
    }
}

/// Ten minutes of a clock with 1 ms of random jitter: the tempo holds within
/// 0.1 BPM, and the beats do not drift from the ticks.
#[test]
fn jittered_clock_for_ten_minutes_holds_tempo_and_phase() {
    let bpm = 124.0;
    let beats = (600.0 * bpm / 60.0) as usize;
    let (pre, song_ticks, start) = song(96, beats * PPQN, |_| bpm);
    let ev = started(&pre, &song_ticks, start, 1.0, 42);
    let seconds = end_of(&song_ticks);
    let run = run(&hat_set("midi"), ev, seconds, 1.0);
    assert!(run.onsets.len() >= beats - 1, "{} hats for {beats} beats", run.onsets.len());

    let settled: Vec<_> = run.probes.iter().filter(|p| p.0 > 5.0).collect();
    let tempo_err = settled.iter().map(|p| (p.1.unwrap() - bpm).abs()).fold(0.0, f64::max);
    let transport_err = settled.iter().map(|p| (p.2 - bpm).abs()).fold(0.0, f64::max);
    assert!(tempo_err < 0.1, "clock tempo off by up to {tempo_err:.3} BPM");
    assert!(transport_err < 0.1, "transport tempo off by up to {transport_err:.3} BPM");

    let per_minute = (bpm as usize).max(1);
    let first = phase_errors_ms(&run.onsets, &song_ticks, 8..per_minute);
    let last = phase_errors_ms(&run.onsets, &song_ticks, beats - per_minute..beats);
    let all = phase_errors_ms(&run.onsets, &song_ticks, 8..beats);
    eprintln!(
        "10 min at {bpm} BPM, 1 ms jitter: tempo error <= {tempo_err:.4} BPM, phase error worst {:.3} ms, mean first minute {:.4} ms, last minute {:.4} ms",
        worst(&all),
        mean(&first),
        mean(&last)
    );
    assert!(worst(&all) < 0.5, "a beat is {:.3} ms off its tick", worst(&all));
    assert!(
        (mean(&last) - mean(&first)).abs() < 0.05,
        "drift: mean phase error {:.4} ms in the first minute, {:.4} ms in the last",
        mean(&first),
        mean(&last)
    );
}

/// A tempo step is followed within one beat, and the beats stay on the ticks.
#[test]
fn tempo_steps_are_followed_within_a_beat() {
    for (from, to, jitter) in [(120.0, 140.0, 0.0), (140.0, 96.0, 0.0), (120.0, 121.0, 0.0), (120.0, 132.0, 1.0)] {
        let step_beat = 16;
        let bpm = move |k: usize| if k < step_beat * PPQN { from } else { to };
        let (pre, song_ticks, start) = song(48, 32 * PPQN, bpm);
        let ev = started(&pre, &song_ticks, start, jitter, 5);
        let seconds = end_of(&song_ticks);
        let run = run(&hat_set("midi"), ev, seconds, 0.01);
        // The tempo one beat after the step.
        let after = song_ticks[(step_beat + 1) * PPQN] / SRF;
        let (_, clock, _) = *run.probes.iter().find(|p| p.0 >= after).unwrap();
        let tol = 0.1;
        assert!((clock.unwrap() - to).abs() < tol, "{from}->{to}: one beat after the step the clock reads {clock:?}");
        let errors = phase_errors_ms(&run.onsets, &song_ticks, 0..32);
        let bound = if jitter > 0.0 { 1.0 } else { 0.5 };
        assert!(worst(&errors) < bound, "{from}->{to}: a beat is {:.3} ms off its tick ({errors:.3?})", worst(&errors));
    }
}

#[test]
fn tempo_ramps_keep_the_beats_on_the_ticks() {
    let ramp = |k: usize| 100.0 + 40.0 * (k as f64 / (32 * PPQN) as f64).min(1.0);
    let (pre, song_ticks, start) = song(48, 40 * PPQN, ramp);
    let ev = started(&pre, &song_ticks, start, 0.0, 1);
    let seconds = end_of(&song_ticks);
    let run = run(&hat_set("midi"), ev, seconds, 0.25);
    let errors = phase_errors_ms(&run.onsets, &song_ticks, 0..40);
    assert_eq!(run.onsets.len(), 40);
    assert!(worst(&errors) < 1.0, "during the ramp a beat is {:.3} ms off its tick ({errors:.3?})", worst(&errors));
}

/// Stop silences the pattern (notes released, not cut) while the clock keeps
/// ticking; Continue resumes at the song position; Song Position moves it.
#[test]
fn stop_continue_and_song_position() {
    let bpm = 120.0;
    let (pre, song_ticks, start) = song(24, 40 * PPQN, |_| bpm);
    let p = period(bpm);
    let mut ev = started(&pre, &song_ticks, start, 0.0, 1);
    // Play beats 0..8, stop between tick 8*24-1 and 8*24 (so the song position is
    // beat 8), silence for 4 beats of ticks, Continue: beat 8 falls on the first
    // tick after it.
    let stop_at = (song_ticks[8 * PPQN] - p / 2.0) as u64;
    let cont_at = (song_ticks[12 * PPQN] - p / 2.0) as u64;
    // Then stop again at beat 16 of the song (tick 20*24 of the stream: 8 + 8
    // beats played), set the position to 16th 40 (beat 10), Continue at tick 24*24.
    let stop2 = (song_ticks[20 * PPQN] - p / 2.0) as u64;
    let cont2 = (song_ticks[24 * PPQN] - p / 2.0) as u64;
    ev.push(Event::new(stop_at, EventKind::ClockStop));
    ev.push(Event::new(cont_at, EventKind::ClockContinue));
    ev.push(Event::new(stop2, EventKind::ClockStop));
    ev.push(Event::new(stop2 + 100, EventKind::SongPosition(40)));
    ev.push(Event::new(cont2, EventKind::ClockContinue));
    // A held note pattern shows the release: a pad note across the stop.
    let set_text = format!(
        "{}\nchannel(1, #{{ synth: \"sine\", envelope: \"pad\" }});\npattern(\"pad\", 1, 16.0, [[0.0, \"C4\", 100, 16.0]]);",
        hat_set("midi")
    );
    let seconds = end_of(&song_ticks);
    let run = run(&hat_set("midi"), ev.clone(), seconds, 0.25);

    // Hats: stream beats 0..8, then 12..20 (song beats 8..16), then 24..40
    // (song beats 10.. after the Song Position Pointer).
    let expect: Vec<u64> = (0..8).chain(12..20).chain(24..40).map(|b| song_ticks[b * PPQN].round() as u64).collect();
    assert_eq!(run.onsets.len(), expect.len(), "onsets {:?}", run.onsets);
    for (got, want) in run.onsets.iter().zip(&expect) {
        assert!(got.abs_diff(*want) <= 1, "onset at {got}, tick at {want}");
    }

    // The pad is released at the stop, not cut: it fades over its release.
    let mut r = Renderer::following_clock(&set(&set_text), tables(SR)).unwrap();
    r.add_events(ev);
    let audio = mono(&r.render((song_ticks[12 * PPQN]) as usize, 512));
    let s = stop_at as usize;
    let before = rms(&audio[s - 2400..s]);
    let just_after = rms(&audio[s..s + 480]);
    let later = rms(&audio[s + 48000..s + 48000 + 2400]);
    assert!(before > 0.01, "the pad sounds before the stop ({before})");
    assert!(just_after > 0.3 * before, "the pad is cut at the stop ({before} -> {just_after})");
    assert!(later < 0.1 * before, "the pad still sounds a second after the stop ({later})");
    assert!(max_step(&audio[s - 480..s + 4800]) < 0.05, "a click at the stop");
}

/// In internal mode the clock is read (its tempo is reported) but does not move
/// the transport.
#[test]
fn internal_mode_reads_the_clock_but_keeps_its_own_time() {
    let (pre, song_ticks, start) = song(48, 16 * PPQN, |_| 150.0);
    let ev = started(&pre, &song_ticks, start, 0.0, 1);
    let run = run(&hat_set("internal"), ev, 4.0, 0.5);
    let beat = 60.0 * SRF / 100.0;
    for (i, on) in run.onsets.iter().enumerate() {
        assert!((*on as f64 - (i as f64 * beat).ceil()).abs() <= 1.0, "hat {i} at {on}");
    }
    let (_, clock, transport) = *run.probes.last().unwrap();
    assert!((clock.unwrap() - 150.0).abs() < 0.01);
    assert_eq!(transport, 100.0);
}

/// Switching from the internal clock to MIDI clock while playing carries on
/// from the beat it is on: no hat is skipped or doubled, and the spacing moves
/// to the clock's tempo.
#[test]
fn switching_to_midi_clock_while_playing_does_not_jump() {
    let internal = hat_set("internal");
    let midi = hat_set("midi");
    let clock = ticks(0.0, 40 * PPQN, |_| 120.0);
    let mut r = Renderer::following_clock(&set(&internal), tables(SR)).unwrap();
    r.add_events(clock_events(&clock, 0.0, 1));
    let mut audio = mono(&r.render((3.3 * SRF) as usize, 512));
    r.publish(&set(&midi)).unwrap();
    audio.extend(mono(&r.render((6.0 * SRF) as usize, 512)));
    let on = onsets(&audio, 2000);
    let gaps: Vec<f64> = on.windows(2).map(|w| (w[1] - w[0]) as f64 / SRF).collect();
    // 100 BPM (0.6 s) before, 120 BPM (0.5 s) after, and every gap in between is
    // between the two (no skipped or doubled beat).
    assert!(gaps.iter().all(|g| (0.45..=0.65).contains(g)), "gaps {gaps:.3?}");
    assert!((gaps[0] - 0.6).abs() < 1e-3 && (gaps.last().unwrap() - 0.5).abs() < 1e-3, "gaps {gaps:.3?}");
}

/// Following an external session's timeline (what the audio callback hands the
/// engine from Ableton Link): nothing plays until the session plays, the first hat
/// lands on the session's next bar line (quantum 4), every hat sits on a session
/// beat, and the session's stop stops the pattern.
#[test]
fn a_link_timeline_drives_the_patterns_on_the_sessions_grid() {
    use jamrig::engine::sync::ExternalTimeline;
    let text = r#"tempo(100); clock("link", 4); drums(10); pattern("beat", 10, 1.0, [[0.0, "closed_hat", 100]]);"#;
    let mut r = Renderer::following_clock(&set(text), tables(SR)).expect("rig");
    let (bpm, b0) = (126.0, 2.3);
    let session_beat = |f: u64| b0 + f as f64 * bpm / (60.0 * SRF);
    let (play_at, stop_at) = ((0.5 * SRF) as u64, (3.0 * SRF) as u64);
    let mut audio = Vec::new();
    while audio.len() < (4.0 * SRF) as usize * 2 {
        let now = r.engine.frames_out();
        let playing = (play_at..stop_at).contains(&now);
        r.engine.follow_timeline(ExternalTimeline { frame: now, beat: session_beat(now), bpm, playing });
        audio.extend(r.render(256, 256));
    }
    let on = onsets(&mono(&audio), 2000);
    let frame_of = |beat: f64| (beat - b0) * 60.0 * SRF / bpm;
    // The session plays from 0.5 s (beat 3.35): the next bar line is beat 4; it
    // stops at 3.0 s (beat 8.6).
    let want: Vec<f64> = (4..=8).map(|b| frame_of(b as f64)).collect();
    assert_eq!(on.len(), want.len(), "onsets {on:?}, session beats at {want:.0?}");
    for (got, want) in on.iter().zip(&want) {
        assert!((*got as f64 - want).abs() <= 1.0, "a hat at {got}, the session's beat at {want:.1}");
    }
}

/// Regression (issue 13, item 8): with 1 ms of jitter on the clock, the first tick
/// after Start often comes later than the fit predicts; the transport then started
/// just past beat 0 and the downbeat was dropped (13 of 24 starts). Every start
/// and every Continue must play its first beat, on its tick.
#[test]
fn the_downbeat_after_start_always_sounds_with_a_jittered_clock() {
    let bpm = 120.0;
    let p = period(bpm);
    let mut missed = Vec::new();
    for seed in 0..24u64 {
        let (pre, song_ticks, start) = song(96, 4 * PPQN, |_| bpm);
        let ev = started(&pre, &song_ticks, start, 1.0, 100 + 2 * seed);
        let run = run(&hat_set("midi"), ev, end_of(&song_ticks), 0.25);
        let first = song_ticks[0];
        let on_first = run.onsets.first().is_some_and(|&o| (o as f64 - first).abs() < 0.0015 * SRF);
        if !on_first || run.onsets.len() != 4 {
            missed.push((seed, run.onsets.clone()));
        }
    }
    assert!(missed.is_empty(), "starts whose downbeat did not sound on its tick (first tick 1 beat in): {missed:?}");

    // Continue: stop after two beats, continue two beats later; beat 2 sounds on
    // the first tick after Continue, every time.
    let mut missed = Vec::new();
    for seed in 0..24u64 {
        let (pre, song_ticks, start) = song(96, 8 * PPQN, |_| bpm);
        let mut ev = started(&pre, &song_ticks, start, 1.0, 300 + 2 * seed);
        ev.push(Event::new((song_ticks[2 * PPQN] - p / 2.0) as u64, EventKind::ClockStop));
        ev.push(Event::new((song_ticks[4 * PPQN] - p / 2.0) as u64, EventKind::ClockContinue));
        let run = run(&hat_set("midi"), ev, end_of(&song_ticks), 0.25);
        let resumed = song_ticks[4 * PPQN];
        let heard = run.onsets.iter().any(|&o| (o as f64 - resumed).abs() < 0.0015 * SRF);
        if !heard {
            missed.push((seed, run.onsets.clone()));
        }
    }
    assert!(missed.is_empty(), "Continues whose first beat did not sound: {missed:?}");
}

/// The song's ticks with some left out (lost on the way) and the beats whose hats
/// must sit on their ticks.
fn without(ticks: &[f64], lost: &[usize]) -> Vec<f64> {
    ticks.iter().enumerate().filter(|(i, _)| !lost.contains(i)).map(|(_, t)| *t).collect()
}

/// Regression (issue 13, item 10): a lost clock tick shifted jamrig's position
/// for good (1 to 12 ticks, up to half a beat) until the next Start. Ticks lost
/// one at a time, two in a row, and one on a beat's own tick: every later beat
/// still sounds on its tick, with and without jitter.
#[test]
fn a_lost_clock_tick_does_not_shift_the_position() {
    for jitter in [0.0, 1.0] {
        let bpm = 120.0;
        let (pre, song_ticks, start) = song(96, 24 * PPQN, |_| bpm);
        // Tick 100 (inside beat 4), ticks 200 and 201, tick 312 (beat 13's own).
        let lost = [100, 200, 201, 13 * PPQN];
        let mut ev = clock_events(&pre, jitter, 9);
        ev.push(Event::new(start, EventKind::ClockStart));
        ev.extend(clock_events(&without(&song_ticks, &lost), jitter, 10));
        let run = run(&hat_set("midi"), ev, end_of(&song_ticks), 0.25);
        // Beat 13's tick never came: its hat sounds where the transport put it
        // (within a jitter of the tick); every other beat on its tick.
        let errors = phase_errors_ms(&run.onsets, &song_ticks, 0..24);
        let bound = if jitter > 0.0 { 1.5 } else { 0.1 };
        assert_eq!(run.onsets.len(), 24, "jitter {jitter} ms: one hat per beat: {:?}", run.onsets);
        assert!(
            worst(&errors) < bound,
            "jitter {jitter} ms: after lost ticks a beat is {:.3} ms off its tick ({errors:.2?})",
            worst(&errors)
        );
    }
}

/// A tick that comes twice (a gap far below a period) is not counted: the beats
/// stay on their ticks.
#[test]
fn a_doubled_clock_tick_is_ignored() {
    let bpm = 120.0;
    let (pre, song_ticks, start) = song(96, 12 * PPQN, |_| bpm);
    let mut ev = started(&pre, &song_ticks, start, 0.0, 1);
    ev.push(Event::new(song_ticks[50] as u64 + 20, EventKind::Clock));
    ev.push(Event::new(song_ticks[130] as u64 + 30, EventKind::Clock));
    let run = run(&hat_set("midi"), ev, end_of(&song_ticks), 0.25);
    let errors = phase_errors_ms(&run.onsets, &song_ticks, 0..12);
    assert_eq!(run.onsets.len(), 12);
    assert!(worst(&errors) < 0.1, "after doubled ticks a beat is {:.3} ms off ({errors:.2?})", worst(&errors));
}

/// A tempo that halves at once is a tempo change, not lost ticks: it is followed,
/// and the beats stay on the ticks.
#[test]
fn a_tempo_that_halves_is_not_taken_for_lost_ticks() {
    let step_beat = 8;
    let bpm = move |k: usize| if k < step_beat * PPQN { 120.0 } else { 60.0 };
    let (pre, song_ticks, start) = song(96, 14 * PPQN, bpm);
    let ev = started(&pre, &song_ticks, start, 0.0, 1);
    let run = run(&hat_set("midi"), ev, end_of(&song_ticks), 0.05);
    let errors = phase_errors_ms(&run.onsets, &song_ticks, 0..14);
    assert_eq!(run.onsets.len(), 14, "onsets {:?}", run.onsets);
    assert!(worst(&errors) < 0.5, "a beat is {:.3} ms off its tick ({errors:.2?})", worst(&errors));
    let after = song_ticks[(step_beat + 1) * PPQN] / SRF;
    let (_, clock, _) = *run.probes.iter().find(|p| p.0 >= after).unwrap();
    assert!((clock.unwrap() - 60.0).abs() < 0.1, "a beat after the change the clock reads {clock:?}");
}

/// Regression (issue 13, item 10): a clock that falls silent without a Stop and
/// comes back made jamrig jump back to its own count. Now the transport plays on
/// at the last tempo while the clock is silent, and when the ticks come back (here
/// a third of a beat off the old grid) it locks onto them on the nearest tick of
/// its own grid: no beat is skipped or doubled, and the hats then sit on the
/// ticks. The tempo shown goes away while the clock is silent.
#[test]
fn a_clock_that_comes_back_without_start_goes_on_without_a_jump() {
    let bpm = 120.0;
    let p = period(bpm);
    let (pre, first, start) = song(96, 8 * PPQN, |_| bpm);
    // Silent for 2.3 beats after the last tick, then ticks again for 10 beats.
    let back = first.last().unwrap() + p + 2.3 * 24.0 * p;
    let again = ticks(back, 10 * PPQN, |_| bpm);
    let mut ev = started(&pre, &first, start, 0.0, 1);
    ev.extend(clock_events(&again, 0.0, 2));
    let run = run(&hat_set("midi"), ev, end_of(&again), 0.05);
    let beat = 60.0 * SRF / bpm;
    let gaps: Vec<f64> = run.onsets.windows(2).map(|w| (w[1] - w[0]) as f64 / beat).collect();
    assert!(
        gaps.iter().all(|g| (g - 1.0).abs() < 0.05),
        "a beat skipped, doubled or jumped (gaps in beats {gaps:.3?})"
    );
    // The hats of the last five beats sit on the returned clock's ticks.
    let late: Vec<u64> = run.onsets.iter().copied().filter(|&o| o as f64 > again[5 * PPQN]).collect();
    assert!(late.len() >= 4, "hats after the return: {late:?}");
    for o in late {
        let d = again.iter().map(|t| (o as f64 - t).abs()).fold(f64::MAX, f64::min);
        assert!(d < 0.001 * SRF, "a hat {:.3} ms from the nearest returned tick", d / SRF * 1e3);
    }
    // While silent, no clock tempo is shown; before and after, the clock's.
    let silent_from = (first.last().unwrap() + 6.0 * p) / SRF;
    for &(t, clock, _) in &run.probes {
        if t > silent_from && t < back / SRF {
            assert_eq!(clock, None, "a clock tempo shown {t:.2} s in, while the clock is silent");
        }
        if let Some(c) = clock {
            assert!((c - bpm).abs() < 1.0, "clock tempo {c:.2} shown at {t:.2} s");
        }
    }
}

/// Regression (issue 13, item 11): `:status` showed a MIDI clock tempo after the
/// clock had stopped, and a spike around Stop. With a jittered clock that stops
/// (Stop, then the ticks end) and starts again, the tempo shown is never more
/// than 1 BPM off, and is gone soon after the last tick.
#[test]
fn the_clock_tempo_shown_has_no_spike_and_goes_when_the_clock_stops() {
    let bpm = 126.0;
    let p = period(bpm);
    let (pre, song_ticks, start) = song(96, 6 * PPQN, |_| bpm);
    let mut ev = started(&pre, &song_ticks, start, 1.0, 21);
    let last = *song_ticks.last().unwrap();
    ev.push(Event::new((last - p / 2.0) as u64, EventKind::ClockStop));
    // The clock comes back 1.5 s later (no Start): its first ticks are the ones a
    // two-tick fit would read wrong.
    let again = ticks(last + 1.5 * SRF, 4 * PPQN, |_| bpm);
    ev.extend(clock_events(&again, 1.0, 22));
    let run = run(&hat_set("midi"), ev, end_of(&again) + 1.0, 0.005);
    let mut gone = None;
    for &(t, clock, _) in &run.probes {
        if let Some(c) = clock {
            assert!((c - bpm).abs() < 1.0, "clock tempo {c:.2} shown at {t:.3} s (the clock runs at {bpm})");
        }
        if t * SRF > last && clock.is_none() && gone.is_none() {
            gone = Some(t - last / SRF);
        }
    }
    let gone = gone.expect("the clock tempo is still shown after the clock stopped");
    assert!(gone < 0.5, "the clock tempo is shown {gone:.2} s after the last tick");
    let (_, at_end, _) = *run.probes.last().unwrap();
    assert_eq!(at_end, None, "a clock tempo is shown a second after the clock ended");
}

/// When the host stalls (an audio overrun), the ticks due meanwhile are delivered
/// late, together, when it runs again. They are neither lost nor doubled: the
/// beats stay on the ticks' own grid, with and without jitter (a stall of 64 ms,
/// three ticks, inside beat 6 and on beat 10's own tick).
#[test]
fn ticks_delivered_late_in_a_burst_keep_the_count() {
    for jitter in [0.0, 1.0] {
        let bpm = 120.0;
        let (pre, song_ticks, start) = song(96, 16 * PPQN, |_| bpm);
        let mut ev = clock_events(&pre, jitter, 31);
        ev.push(Event::new(start, EventKind::ClockStart));
        let mut song_ev = clock_events(&song_ticks, jitter, 32);
        for stall_at in [6 * PPQN + 5, 10 * PPQN] {
            let release = song_ticks[stall_at] + 0.064 * SRF;
            for e in
                song_ev.iter_mut().filter(|e| (e.frame as f64) >= song_ticks[stall_at] && (e.frame as f64) < release)
            {
                e.frame = release as u64;
            }
        }
        let run = run(
            &hat_set("midi"),
            {
                ev.extend(song_ev);
                ev
            },
            end_of(&song_ticks),
            0.25,
        );
        let errors = phase_errors_ms(&run.onsets, &song_ticks, 0..16);
        assert_eq!(run.onsets.len(), 16, "jitter {jitter} ms: one hat per beat: {:?}", run.onsets);
        // Beat 10's tick came 64 ms late: its hat sounds where the transport had it.
        let bound = if jitter > 0.0 { 1.5 } else { 0.1 };
        assert!(
            worst(&errors) < bound,
            "jitter {jitter} ms: after a burst a beat is {:.3} ms off its tick ({errors:.2?})",
            worst(&errors)
        );
    }
}

/// Regression (issue 13, item 9): after an overrun the engine's frame line moves
/// against the clock's time (cycles it did not render were heard as silence), here
/// by exactly one tick period. Told how far (as the JACK frame clock measures it),
/// the follower moves its fit with it: the count holds (a shift of one period is
/// not a doubled tick) and every later beat sounds on its tick.
#[test]
fn after_an_overrun_the_follower_moves_with_the_frame_line() {
    let bpm = 120.0;
    let p = period(bpm);
    let (pre, song_ticks, start) = song(96, 12 * PPQN, |_| bpm);
    let shift_at = song_ticks[5 * PPQN + 7];
    let moved = p.round() as u64;
    let mut ev = started(&pre, &song_ticks, start, 0.0, 3);
    for e in ev.iter_mut().filter(|e| e.frame as f64 > shift_at) {
        e.frame -= moved;
    }
    let mut r = Renderer::following_clock(&set(&hat_set("midi")), tables(SR)).expect("rig");
    r.add_events(ev);
    let mut audio = mono(&r.render(shift_at as usize + 1, 64));
    r.engine.after_overrun(Some(moved as i64));
    audio.extend(mono(&r.render((end_of(&song_ticks) * SRF) as usize - audio.len(), 64)));
    let on = onsets(&audio, 2000);
    let shifted: Vec<f64> = song_ticks.iter().map(|&t| if t > shift_at { t - moved as f64 } else { t }).collect();
    let errors = phase_errors_ms(&on.iter().map(|&o| o as u64).collect::<Vec<_>>(), &shifted, 7..12);
    assert!(worst(&errors) < 0.1, "after the overrun a beat is {:.3} ms off its tick ({errors:.2?})", worst(&errors));
}
