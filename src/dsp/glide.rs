//! Parameter glide: a one-pole approach to a target, stepped once per tick and
//! interpolated linearly inside the tick, so every change (CC sweeps, reloads, REPL
//! tweaks) is free of clicks and zipper noise, and the result does not depend on
//! the host's block size (ticks sit on an absolute frame grid).

/// Time constant of every parameter glide.
pub const GLIDE_SECONDS: f32 = 0.01;

#[derive(Clone, Copy, Debug)]
pub struct Glide {
    value: f32,
    coef: f32,
}

impl Glide {
    /// A glide resting at `value`, stepped every `tick_frames` at `sample_rate`.
    pub fn new(value: f32, tick_frames: usize, sample_rate: f32) -> Self {
        Self::with_time(value, GLIDE_SECONDS, tick_frames, sample_rate)
    }

    pub fn with_time(value: f32, seconds: f32, tick_frames: usize, sample_rate: f32) -> Self {
        let coef = 1.0 - (-(tick_frames as f32) / (seconds * sample_rate)).exp();
        Glide { value, coef }
    }

    #[inline]
    pub fn value(&self) -> f32 {
        self.value
    }

    /// Jumps to `v` (no glide): for values that never sounded.
    #[inline]
    pub fn reset(&mut self, v: f32) {
        self.value = v;
    }

    #[inline]
    pub fn is_settled_at(&self, target: f32) -> bool {
        self.value == target
    }

    /// Moves one tick toward `target`; returns `(start, step)` so that sample `i` of the
    /// tick uses `start + step * (i + 1)`, ending exactly on the new value.
    #[inline]
    pub fn step(&mut self, target: f32, tick_frames: usize) -> (f32, f32) {
        let start = self.value;
        if start.to_bits() == target.to_bits() && start.is_finite() {
            // At rest: what the step below gives then (`target - start` is +0), without
            // its arithmetic. (Zeros of opposite signs, infinities and NaN take the step.)
            return (start, 0.0);
        }
        let mut next = start + (target - start) * self.coef;
        if (target - next).abs() <= 1e-6 * (1.0 + target.abs()) {
            next = target;
        }
        self.value = next;
        (start, (next - start) / tick_frames as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_and_snaps() {
        let mut g = Glide::new(0.0, 32, 48000.0);
        for _ in 0..2000 {
            g.step(1.0, 32);
        }
        assert_eq!(g.value(), 1.0);
        assert!(g.is_settled_at(1.0));
    }

    /// The shortcut for a glide at rest gives what the full step gives, for values
    /// of either sign, zeros of both signs, and targets near the value.
    #[test]
    fn a_glide_at_rest_steps_as_the_full_step_does() {
        fn full(value: f32, coef: f32, target: f32, tick: usize) -> (f32, f32, f32) {
            let start = value;
            let mut next = start + (target - start) * coef;
            if (target - next).abs() <= 1e-6 * (1.0 + target.abs()) {
                next = target;
            }
            (start, (next - start) / tick as f32, next)
        }
        for v in [0.0f32, -0.0, 1.0, -1.0, 0.3, 440.0, -96.0, 1e-30, f32::MAX, f32::INFINITY, f32::NAN] {
            for target in [v, v.next_up(), v.next_down(), 0.0, -0.0] {
                let mut g = Glide::new(v, 64, 48000.0);
                let (s, d) = g.step(target, 64);
                let (s2, d2, next) = full(v, g.coef, target, 64);
                let bits = |x: f32| if x.is_nan() { u32::MAX } else { x.to_bits() };
                assert_eq!((bits(s), bits(d), bits(g.value())), (bits(s2), bits(d2), bits(next)), "{v} -> {target}");
            }
        }
    }

    #[test]
    fn ramp_is_continuous() {
        let mut g = Glide::new(0.0, 32, 48000.0);
        let (s, d) = g.step(1.0, 32);
        assert_eq!(s, 0.0);
        assert!((s + d * 32.0 - g.value()).abs() < 1e-6);
        assert!(d > 0.0 && d * 32.0 < 0.1);
    }
}
