//! ADSR envelope, per voice, advanced per sample on the audio thread. Attack is a
//! linear rise; decay and release are exponential and reach -60 dB of their span in
//! exactly the stated time; the release starts from wherever the level is, so a
//! note-off never clicks.

use crate::dsp::math::t60_coef;

/// Shortest attack: a zero attack on a waveform that starts away from zero would click.
pub const MIN_ATTACK_SECONDS: f32 = 0.001;
/// Shortest release: a note-off always fades, never cuts.
pub const MIN_RELEASE_SECONDS: f32 = 0.01;
/// Level, relative to the segment's start, at which decay and release end.
const END_LEVEL: f32 = 0.001;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Attack,
    Decay,
    Sustain,
    Release,
    Done,
}

/// Envelope times and level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adsr {
    pub attack: f32,
    pub decay: f32,
    pub sustain: f32,
    pub release: f32,
}

#[derive(Clone, Copy, Debug)]
pub struct Envelope {
    stage: Stage,
    level: f32,
    /// Per-sample increment (attack) or multiplier (decay, release).
    rate: f32,
    /// Level at which the current exponential segment ends.
    floor: f32,
}

impl Envelope {
    pub const fn idle() -> Self {
        Envelope { stage: Stage::Done, level: 0.0, rate: 0.0, floor: 0.0 }
    }

    pub fn start(adsr: &Adsr, sample_rate: f32) -> Self {
        let a = adsr.attack.max(MIN_ATTACK_SECONDS);
        Envelope { stage: Stage::Attack, level: 0.0, rate: 1.0 / (a * sample_rate), floor: 0.0 }
    }

    #[inline]
    pub fn stage(&self) -> Stage {
        self.stage
    }

    #[inline]
    pub fn level(&self) -> f32 {
        self.level
    }

    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Whether the envelope surely does not end within the next `frames` samples
    /// while `adsr` holds still: short of its release with a sustain level above
    /// zero, or in a release that stays well above the level where it ends (the
    /// decay worked out in double precision, with a margin far beyond the rounding
    /// of the per-sample steps).
    pub fn lasts(&self, adsr: &Adsr, frames: usize) -> bool {
        match self.stage {
            Stage::Attack | Stage::Decay | Stage::Sustain => adsr.sustain > 0.0,
            Stage::Release => {
                // (An end level far above the smallest normal float: the per-sample
                // levels never flush to zero on the way.)
                let frames = i32::try_from(frames).unwrap_or(i32::MAX);
                self.floor > 1e-30 && self.level as f64 * (self.rate as f64).powi(frames) > self.floor as f64 * 1.01
            }
            Stage::Done => false,
        }
    }

    /// The level if it is holding still (sustain reached), to skip per-sample work.
    #[inline]
    pub fn steady_level(&self, adsr: &Adsr) -> Option<f32> {
        (self.stage == Stage::Sustain && self.level == adsr.sustain && self.level > 0.0).then_some(self.level)
    }

    /// Starts the release from the current level.
    pub fn release(&mut self, adsr: &Adsr, sample_rate: f32) {
        if matches!(self.stage, Stage::Release | Stage::Done) {
            return;
        }
        self.stage = Stage::Release;
        self.rate = t60_coef(adsr.release.max(MIN_RELEASE_SECONDS), sample_rate);
        self.floor = self.level * END_LEVEL;
    }

    fn enter_decay(&mut self, adsr: &Adsr, sample_rate: f32) {
        self.level = 1.0;
        if adsr.decay <= 0.0 || adsr.sustain >= 1.0 {
            self.stage = Stage::Sustain;
            self.level = adsr.sustain;
            if self.level <= 0.0 {
                self.stage = Stage::Done;
            }
        } else {
            self.stage = Stage::Decay;
            self.rate = t60_coef(adsr.decay, sample_rate);
        }
    }

    /// Fills `out` with the envelope's gain, one value per sample; `adsr` is read live
    /// (a changed sustain level glides, a changed release applies at note-off).
    #[inline]
    pub fn render(&mut self, adsr: &Adsr, sample_rate: f32, out: &mut [f32]) {
        let mut i = 0;
        let n = out.len();
        while i < n {
            match self.stage {
                Stage::Attack => {
                    while i < n && self.level < 1.0 {
                        self.level += self.rate;
                        out[i] = self.level.min(1.0);
                        i += 1;
                    }
                    if self.level >= 1.0 {
                        self.enter_decay(adsr, sample_rate);
                    }
                }
                Stage::Decay => {
                    // The distance to the sustain level shrinks by `rate` a sample: the
                    // powers in lanes, then the first sample within `end` of it.
                    let s = adsr.sustain;
                    let end = (1.0 - s) * END_LEVEL;
                    let rest = &mut out[i..];
                    geometric(rest, s, self.level - s, self.rate);
                    let last = rest[rest.len() - 1];
                    if last - s > end {
                        self.level = last;
                        return;
                    }
                    let at = rest.iter().position(|v| *v - s <= end).unwrap_or(rest.len() - 1);
                    i += at + 1;
                    self.level = s;
                    self.stage = if s <= 0.0 { Stage::Done } else { Stage::Sustain };
                }
                Stage::Sustain if self.level == adsr.sustain => {
                    out[i..].fill(self.level);
                    if self.level <= 0.0 {
                        self.stage = Stage::Done;
                    }
                    return;
                }
                Stage::Sustain => {
                    // Follows a moving sustain level without a step.
                    let s = adsr.sustain;
                    let k = 0.002;
                    while i < n {
                        self.level += (s - self.level) * k;
                        if (self.level - s).abs() < 1e-6 {
                            self.level = s;
                        }
                        out[i] = self.level;
                        i += 1;
                    }
                    if self.level <= 1e-5 && s <= 0.0 {
                        self.stage = Stage::Done;
                    }
                }
                Stage::Release => {
                    let rest = &mut out[i..];
                    geometric(rest, 0.0, self.level, self.rate);
                    let last = rest[rest.len() - 1];
                    if last > self.floor {
                        self.level = last;
                        return;
                    }
                    let at = rest.iter().position(|v| *v <= self.floor).unwrap_or(rest.len() - 1);
                    i += at + 1;
                    self.stage = Stage::Done;
                    self.level = 0.0;
                }
                Stage::Done => {
                    out[i..].fill(0.0);
                    return;
                }
            }
        }
    }
}

/// Lanes of [`geometric`].
const LANES: usize = 4;

/// Writes `base + d r^(k + 1)` to `out[k]`: four running powers, each multiplied by
/// `r^4` a step, so the chain is one multiply per four samples rather than one (or a
/// subtract, multiply and add) per sample. Within float rounding of the sample-by-sample
/// recursion (a few units in the last place per block of 64).
#[inline]
fn geometric(out: &mut [f32], base: f32, d: f32, r: f32) {
    let r2 = r * r;
    let r4 = r2 * r2;
    let mut lane = [d * r, d * r2, d * (r2 * r), d * r4];
    let mut chunks = out.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            c[j] = base + lane[j];
            lane[j] *= r4;
        }
    }
    for (x, v) in chunks.into_remainder().iter_mut().zip(lane) {
        *x = base + v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f32 = 48000.0;

    fn run(env: &mut Envelope, adsr: &Adsr, n: usize) -> Vec<f32> {
        let mut out = vec![0.0; n];
        env.render(adsr, SR, &mut out);
        out
    }

    #[test]
    fn attack_peaks_on_time_then_decays_to_sustain() {
        let adsr = Adsr { attack: 0.01, decay: 0.1, sustain: 0.5, release: 0.2 };
        let mut e = Envelope::start(&adsr, SR);
        let out = run(&mut e, &adsr, 48000);
        let peak = out.iter().position(|&v| v >= 1.0).unwrap();
        assert!((peak as i64 - 480).abs() <= 1, "{peak}");
        assert_eq!(e.stage(), Stage::Sustain);
        assert!((out[47999] - 0.5).abs() < 1e-4);
    }

    #[test]
    fn an_envelope_said_to_last_does_not_end_meanwhile() {
        let adsr = Adsr { attack: 0.01, decay: 0.05, sustain: 0.5, release: 0.08 };
        let mut e = Envelope::start(&adsr, SR);
        let (mut lasted, mut not) = (0, 0);
        let mut out = [0.0f32; 128];
        for block in 0..200 {
            if block == 30 {
                e.release(&adsr, SR);
            }
            let lasts = e.lasts(&adsr, 1024);
            let mut ended = false;
            for _ in 0..8 {
                e.render(&adsr, SR, &mut out);
                ended |= e.is_done();
            }
            assert!(!(lasts && ended), "block {block}: said to last, but ended");
            if lasts {
                lasted += 1
            } else {
                not += 1
            }
            if e.is_done() {
                break;
            }
        }
        assert!(lasted > 30 && not > 0, "{lasted} {not}");
        // Without a sustain level the decay ends the note: never said to last.
        assert!(!Envelope::start(&adsr, SR).lasts(&Adsr { sustain: 0.0, ..adsr }, 1024));
    }

    #[test]
    fn release_reaches_minus_60_db_at_release_time() {
        let adsr = Adsr { attack: 0.001, decay: 0.0, sustain: 1.0, release: 0.3 };
        let mut e = Envelope::start(&adsr, SR);
        run(&mut e, &adsr, 1000);
        e.release(&adsr, SR);
        let out = run(&mut e, &adsr, 48000);
        let end = out.iter().position(|&v| v == 0.0).unwrap();
        assert!((end as f32 / SR - 0.3).abs() < 0.002, "{end}");
        assert!(e.is_done());
    }

    /// Decay and release in lanes follow the exact exponentials (computed in f64)
    /// within 1e-5 of full scale, in blocks of several lengths (blocks of one sample
    /// are the sample-by-sample recursion: 7e-6 off), and are silent once ended.
    #[test]
    fn decay_and_release_in_lanes_follow_the_exact_exponentials() {
        let adsr = Adsr { attack: 0.001, decay: 0.4, sustain: 0.3, release: 0.5 };
        for block in [64usize, 37, 5, 1] {
            let mut e = Envelope::start(&adsr, SR);
            let mut out = Vec::new();
            let mut buf = vec![0.0; block];
            while out.len() < 48_000 {
                e.render(&adsr, SR, &mut buf);
                out.extend_from_slice(&buf);
            }
            e.release(&adsr, SR);
            let from = out.len();
            while out.len() < from + 48_000 {
                e.render(&adsr, SR, &mut buf);
                out.extend_from_slice(&buf);
            }
            let top = out.iter().position(|&v| v >= 1.0).unwrap();
            let rate = t60_coef(adsr.decay, SR) as f64;
            let s = adsr.sustain as f64;
            let end = (1.0 - s) * END_LEVEL as f64;
            let mut worst = 0.0f64;
            for (k, &v) in out[top + 1..from].iter().enumerate() {
                let d = (1.0 - s) * rate.powi(k as i32 + 1);
                let want = if d < end * 0.99 { s } else { s + d };
                if (d - end).abs() > end * 0.01 {
                    worst = worst.max((v as f64 - want).abs());
                }
            }
            let level = out[from - 1] as f64;
            let rate = t60_coef(adsr.release, SR) as f64;
            let floor = level * END_LEVEL as f64;
            for (k, &v) in out[from..].iter().enumerate() {
                let want = level * rate.powi(k as i32 + 1);
                if want > floor * 1.01 {
                    worst = worst.max((v as f64 - want).abs());
                } else if want < floor * 0.99 {
                    assert_eq!(v, 0.0, "block {block}: sounding after the release's end");
                }
            }
            println!("block {block}: {worst:.2e}");
            assert!(worst < 1e-5, "block {block}: {worst}");
            assert!(e.is_done());
        }
    }

    #[test]
    fn percussive_envelope_finishes_by_itself() {
        let adsr = Adsr { attack: 0.002, decay: 0.15, sustain: 0.0, release: 0.1 };
        let mut e = Envelope::start(&adsr, SR);
        run(&mut e, &adsr, 48000 / 5);
        assert!(e.is_done());
    }

    #[test]
    fn release_during_attack_starts_from_current_level() {
        let adsr = Adsr { attack: 0.1, decay: 0.1, sustain: 0.8, release: 0.1 };
        let mut e = Envelope::start(&adsr, SR);
        let a = run(&mut e, &adsr, 480);
        e.release(&adsr, SR);
        let b = run(&mut e, &adsr, 1);
        assert!((a[479] - b[0]).abs() < 0.01);
    }
}
