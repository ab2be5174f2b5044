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
