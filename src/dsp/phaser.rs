//! Stereo phaser: four first-order all-pass stages per side with feedback, their
//! corner swept exponentially between 200 Hz and 4 kHz by an LFO (right side a
//! quarter-cycle behind).

use super::math::{fract_turns, sin_turns};
use std::f64::consts::PI;

const STAGES: usize = 4;
const LOW_HZ: f64 = 200.0;
const HIGH_HZ: f64 = 4000.0;
const FEEDBACK: f32 = 0.4;

#[derive(Clone, Copy, Default)]
struct Side {
    x1: [f32; STAGES],
    y1: [f32; STAGES],
    last: f32,
}

impl Side {
    #[inline]
    fn tick(&mut self, a: f32, x: f32) -> f32 {
        let mut s = x + self.last * FEEDBACK;
        for k in 0..STAGES {
            let y = a * s + self.x1[k] - a * self.y1[k];
            self.x1[k] = s;
            self.y1[k] = y;
            s = y;
        }
        self.last = s;
        s
    }
}

#[derive(Clone, Default)]
pub struct Phaser {
    sides: [Side; 2],
    phase: f64,
}

impl Phaser {
    fn coef(phase: f64, sample_rate: f32) -> f32 {
        let sweep = 0.5 + 0.5 * sin_turns(phase);
        let f = LOW_HZ * (HIGH_HZ / LOW_HZ).powf(sweep);
        let t = (PI * f / sample_rate as f64).tan();
        ((t - 1.0) / (t + 1.0)) as f32
    }

    /// Processes one tick in place: the wet (all-pass) signal replaces `l` and `r`.
    pub fn process(&mut self, l: &mut [f32], r: &mut [f32], rate_hz: f32, sample_rate: f32) {
        let n = l.len();
        let (al, ar) = self.coefs(sample_rate);
        for i in 0..n {
            (l[i], r[i]) = self.tick(al, ar, l[i], r[i]);
        }
        self.advance(rate_hz, n, sample_rate);
    }

    /// The all-pass coefficients of the left and right sides for the tick about to
    /// run (what [`Phaser::process`] takes): for a loop that runs the phaser sample by
    /// sample with [`Phaser::tick`] beside other stages, then [`Phaser::advance`].
    #[inline]
    pub fn coefs(&self, sample_rate: f32) -> (f32, f32) {
        (Self::coef(self.phase, sample_rate), Self::coef(self.phase + 0.25, sample_rate))
    }

    /// One sample of each side: the wet (all-pass) outputs for inputs `l` and `r`.
    #[inline]
    pub fn tick(&mut self, al: f32, ar: f32, l: f32, r: f32) -> (f32, f32) {
        (self.sides[0].tick(al, l), self.sides[1].tick(ar, r))
    }

    /// Moves the sweep on after a tick of `n` samples.
    #[inline]
    pub fn advance(&mut self, rate_hz: f32, n: usize, sample_rate: f32) {
        self.phase = fract_turns(self.phase + rate_hz as f64 * n as f64 / sample_rate as f64);
    }

    pub fn clear(&mut self) {
        self.sides = Default::default();
    }
}
