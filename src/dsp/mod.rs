//! DSP building blocks: pure, allocation-free processing that any thread may run.
//! The engine runs them on the audio thread; the table builders on the control thread.
//! Buffers are allocated by constructors (control side) and never resized.

pub mod biquad;
pub mod chorus;
pub mod delay;
pub mod glide;
pub mod math;
pub mod oversample;
pub mod phaser;
pub mod reverb;
pub mod svf;
pub mod wavescan;

/// Defines `fn $name(args) -> ret`, which runs `$plain` (an `#[inline(always)]`
/// function of the same arguments) built for AVX2 where the processor has it, and as
/// is otherwise. The loops `$plain` inlines then take eight floats a vector rather than
/// four, with the same operations in the same order (AVX2 brings no fused multiply-add,
/// and Rust never fuses on its own): the same result bit for bit either way.
macro_rules! wide_build {
    ($(#[$meta:meta])* $vis:vis fn $name:ident = $plain:path, ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $plain($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor has AVX2 (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            $plain($($arg),*)
        }
    };
}
pub(crate) use wide_build;

/// Eight vectors of eight floats transposed, rows into columns: lane `i` of
/// `out[j]` is lane `j` of `m[i]` (the first eight of `m`). For the kernels that run
/// eight delay lines or voices side by side in vector lanes.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) fn transpose8(m: &[std::arch::x86_64::__m256]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(m[0], m[1]);
    let t1 = _mm256_unpackhi_ps(m[0], m[1]);
    let t2 = _mm256_unpacklo_ps(m[2], m[3]);
    let t3 = _mm256_unpackhi_ps(m[2], m[3]);
    let t4 = _mm256_unpacklo_ps(m[4], m[5]);
    let t5 = _mm256_unpackhi_ps(m[4], m[5]);
    let t6 = _mm256_unpacklo_ps(m[6], m[7]);
    let t7 = _mm256_unpackhi_ps(m[6], m[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

/// Whether [`zeroed`] maps its pages at once (the default, for the live host).
static PREFAULT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns page pre-faulting off or on. An offline render, where the engine's thread
/// has no deadline, turns it off: buffers of channels and voices that never play
/// then take no memory.
pub fn set_prefault(on: bool) {
    PREFAULT.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether buffers are pre-faulted (see [`set_prefault`]).
pub fn prefaults() -> bool {
    PREFAULT.load(std::sync::atomic::Ordering::Relaxed)
}

/// A zeroed buffer whose pages are already mapped: a buffer the audio thread will
/// write must not page-fault there on first touch (control side).
pub fn zeroed(len: usize) -> Box<[f32]> {
    let mut buf = vec![0.0f32; len].into_boxed_slice();
    if !PREFAULT.load(std::sync::atomic::Ordering::Relaxed) {
        return buf;
    }
    // Freshly allocated zeroed memory is mapped lazily; store to every page so the
    // faults happen here. `black_box` keeps the stores from being elided.
    for x in buf.iter_mut().step_by(1024) {
        *std::hint::black_box(x) = 0.0;
    }
    buf
}
