//! Flush-to-zero and denormals-are-zero for the thread that renders audio (the
//! audio callback or the offline renderer), set for the length of one
//! [`super::Engine::process`] call and restored after it. Audio thread.
//!
//! Decaying feedback (filters, delay lines, reverb tails) sinks towards the
//! denormal range, where x86 arithmetic runs many times slower; below it, these
//! modes make values zero instead. Inaudible: the smallest normal `f32` is -758 dBFS.

/// The floating-point mode while it lives; the thread's own mode again when dropped.
pub struct FlushDenormals {
    #[allow(dead_code)]
    saved: usize,
}

#[cfg(target_arch = "x86_64")]
mod arch {
    /// MXCSR: flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

    pub fn enter() -> usize {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register;
        // SSE2 is part of the x86-64 baseline. Only the FTZ and DAZ bits change.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            let set = csr | FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &set, options(nostack, readonly));
        }
        csr as usize
    }

    pub fn leave(saved: usize) {
        let csr = saved as u32;
        // SAFETY: restores the value read by `enter` on this same thread.
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly)) };
    }

    pub fn active() -> bool {
        let mut csr: u32 = 0;
        // SAFETY: reads this thread's SSE control register.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack)) };
        csr & FTZ_DAZ == FTZ_DAZ
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    /// FPCR: flush-to-zero (bit 24), which on AArch64 also treats denormal inputs as zero.
    const FZ: u64 = 1 << 24;

    pub fn enter() -> usize {
        let fpcr: u64;
        // SAFETY: reads and writes this thread's floating-point control register;
        // only the FZ bit changes.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr | FZ, options(nomem, nostack));
        }
        fpcr as usize
    }

    pub fn leave(saved: usize) {
        // SAFETY: restores the value read by `enter` on this same thread.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) saved as u64, options(nomem, nostack)) };
    }

    pub fn active() -> bool {
        let fpcr: u64;
        // SAFETY: reads this thread's floating-point control register.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack)) };
        fpcr & FZ == FZ
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod arch {
    pub fn enter() -> usize {
        0
    }
    pub fn leave(_: usize) {}
    pub fn active() -> bool {
        false
    }
}

impl FlushDenormals {
    /// Turns the modes on for this thread until the value is dropped.
    #[inline]
    pub fn enter() -> Self {
        FlushDenormals { saved: arch::enter() }
    }

    /// Whether this thread flushes denormals now.
    pub fn active() -> bool {
        arch::active()
    }
}

impl Drop for FlushDenormals {
    #[inline]
    fn drop(&mut self) {
        arch::leave(self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn denormals_flush_inside_and_the_mode_is_restored_after() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        assert!(!FlushDenormals::active());
        assert!(std::hint::black_box(tiny * 0.5) > 0.0, "denormals exist outside");
        {
            let _g = FlushDenormals::enter();
            assert!(FlushDenormals::active());
            assert_eq!(std::hint::black_box(tiny) * std::hint::black_box(0.5f32), 0.0);
        }
        assert!(!FlushDenormals::active());
        assert!(std::hint::black_box(tiny * 0.5) > 0.0);
    }
}
