//! A ceiling on the memory a set's evaluation may take. The `jamrig` program counts
//! the bytes each thread holds through [`CountingAlloc`], its global allocator; an
//! evaluation is stopped with an error once its thread holds more than
//! [`MAX_SCRIPT_BYTES`] beyond what it held when the evaluation began. Control
//! thread (the allocator itself runs on every thread: one thread-local add).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The most memory one evaluation of a set (with its modules) may take.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024 * 1024;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (blocks freed on another
    /// thread than their own make this drift, which does not matter over one
    /// evaluation on one thread).
    static HELD: Cell<isize> = const { Cell::new(0) };
}

/// The system allocator, counting per thread what it hands out.
pub struct CountingAlloc;

#[inline]
fn add(bytes: isize) {
    let _ = HELD.try_with(|h| h.set(h.get().wrapping_add(bytes)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counter
// is a thread-local integer (const-initialised, no destructor, no allocation).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Bytes this thread holds now (0 where [`CountingAlloc`] is not the allocator).
pub fn held() -> isize {
    HELD.try_with(Cell::get).unwrap_or(0)
}

/// Whether this thread holds more than [`MAX_SCRIPT_BYTES`] beyond `baseline`.
pub fn over_ceiling(baseline: isize) -> bool {
    held().wrapping_sub(baseline) > MAX_SCRIPT_BYTES as isize
}
