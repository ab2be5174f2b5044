//! Worker threads that render channels beside the audio thread: started on the
//! control side with the stream (or the offline render), handed work by the audio
//! thread through atomics, never by a lock. The audio thread and the workers take
//! items from one counter; whoever takes an item renders it, so the result does not
//! depend on who did (or on how many threads there are).
//!
//! The hand-off: the audio thread publishes a job and bumps a generation number in
//! one atomic word, wakes the workers that sleep, and takes items itself (from the
//! front of the job, the workers from its back). A worker
//! spins for [`SPIN_MICROS`] waiting for the next generation, then parks. The audio
//! thread never waits for a worker to wake: it only waits for items a worker has
//! already taken to be finished. Nothing on this path allocates, frees or locks
//! (`std::thread::park`/`unpark` are a futex on an atomic).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// The most threads one engine renders on (the audio thread included).
pub const MAX_THREADS: usize = 16;
/// How long a worker spins for the next job before it parks, in microseconds.
pub const SPIN_MICROS: u64 = 200;
/// How long starting a pool waits for its workers to be up, at most (milliseconds).
const START_WAIT_MILLIS: u64 = 1000;
/// Items in one job, at most (channels, and a bound the claim word can hold).
pub const MAX_ITEMS: usize = 255;

/// How many threads renders use unless told otherwise: every core.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, MAX_THREADS)
}

/// Threads an engine renders on unless `--threads` says otherwise: every core
/// ([`available_threads`]). A tick whose work is too small to pay for the hand-off
/// stays on one thread whatever the count (`engine::PARALLEL_MIN_MICROS`).
pub const DEFAULT_THREADS: usize = 0;

/// Threads the command line asked for (0: not said).
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// `--threads` was given (rather than the default taken).
static CHOSEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records that the command line asked for `--threads` itself: live, the workers
/// are then used even without realtime priority. Control side.
pub fn mark_chosen() {
    CHOSEN.store(true, Relaxed);
}

/// Whether `--threads` was given.
pub fn threads_chosen() -> bool {
    CHOSEN.load(Relaxed)
}

/// Sets how many threads engines built from now on render on (0: every core): the
/// command line's `--threads`, else [`DEFAULT_THREADS`]. Control side.
pub fn set_threads(n: usize) {
    THREADS.store(if n == 0 { available_threads() } else { n.min(MAX_THREADS) }, Relaxed);
}

/// Threads an engine renders on: as set, else every core ([`DEFAULT_THREADS`]).
pub fn configured_threads() -> usize {
    match THREADS.load(Relaxed) {
        0 => available_threads(),
        n => n,
    }
}

/// Wraps everything a worker does between two sleeps (tests pass one that runs it
/// under `assert_no_alloc` and counts what it finds).
pub type WorkerGuard = fn(&mut dyn FnMut());

fn unguarded(f: &mut dyn FnMut()) {
    f()
}

/// The order to hand out `costs.len()` items in on `threads` threads, into `order`:
/// the first `pinned` items for the audio thread (taken first, from the front), then
/// the rest, given costliest first, shared out greedily (each to the side, the audio
/// thread's or the workers', that is less loaded for its share of the threads). The
/// audio thread's side goes at the front, costliest first; the workers' side at the
/// back, cheapest first, so that each side takes its costliest items first from its
/// own end and the two meet at the cheapest items of both, where whichever thread is
/// early takes what is left (the wait for the last item is short). The same costs
/// give the same sides tick after tick: a channel stays on its thread, its state in
/// that core's cache. Returns the heavier side's cost per thread (the audio thread's
/// total, or the workers' over their count). Audio thread: no allocation.
pub fn split_order(costs: &[f32], pinned: usize, threads: usize, order: &mut [u8]) -> f32 {
    let n = costs.len().min(order.len()).min(MAX_ITEMS);
    let pinned = pinned.min(n);
    let workers = threads.saturating_sub(1).max(1) as f32;
    // Which side each item goes to (true: the audio thread's), greedily.
    let mut ours = [false; MAX_ITEMS];
    let (mut mine, mut theirs) = (0.0f32, 0.0f32);
    for (i, &c) in costs[..n].iter().enumerate() {
        ours[i] = i < pinned || mine <= theirs / workers;
        if ours[i] {
            mine += c;
        } else {
            theirs += c;
        }
    }
    if threads == 2 && n - pinned <= REBALANCE_MAX_ITEMS {
        (mine, theirs) = rebalance(&costs[..n], pinned, &mut ours[..n], mine, theirs);
    }
    let (mut front, mut back) = (0usize, n);
    for (i, &o) in ours[..n].iter().enumerate() {
        if o {
            order[front] = i as u8;
            front += 1;
        } else {
            back -= 1;
            order[back] = i as u8;
        }
    }
    mine.max(theirs / workers)
}

/// Items beyond which a split between two threads stays the greedy one (the
/// search for a better one takes time in the square of their count).
const REBALANCE_MAX_ITEMS: usize = 24;

/// Improves a split between two threads (`ours[i]`: item `i` on the audio
/// thread's side, whose items cost `mine` in all, the other side `theirs`) by
/// moving one unpinned item across or swapping two, the move that evens the
/// sides most each time, while one does (a few rounds at most): the greedy split
/// leaves, for instance, 30.3 against 24.7 where 28.5 against 26.6 exists. Returns
/// the sides' new costs. The same costs give the same split.
fn rebalance(costs: &[f32], pinned: usize, ours: &mut [bool], mut mine: f32, mut theirs: f32) -> (f32, f32) {
    const ROUNDS: usize = 4;
    for _ in 0..ROUNDS {
        let gap = (mine - theirs).abs();
        // (the gap after, the items moved: one, or two swapped)
        let mut best = (gap, usize::MAX, usize::MAX);
        for i in pinned..costs.len() {
            let d = if ours[i] { -costs[i] } else { costs[i] };
            let after = (mine + d - (theirs - d)).abs();
            if after < best.0 {
                best = (after, i, usize::MAX);
            }
            if !ours[i] {
                continue;
            }
            for j in pinned..costs.len() {
                if ours[j] {
                    continue;
                }
                let d = costs[j] - costs[i];
                let after = (mine + d - (theirs - d)).abs();
                if after < best.0 {
                    best = (after, i, j);
                }
            }
        }
        if best.1 == usize::MAX || best.0 >= gap * 0.999 {
            break;
        }
        for k in [best.1, best.2] {
            if k != usize::MAX {
                let d = if ours[k] { -costs[k] } else { costs[k] };
                ours[k] = !ours[k];
                mine += d;
                theirs -= d;
            }
        }
    }
    (mine, theirs)
}

/// The claim word: generation (high 40 bits), items in the job, items taken from
/// the front (by the audio thread) and from the back (by the workers), 8 bits each.
/// The engine orders a job with [`split_order`]: each side takes its own costliest
/// items first, the same channels stay on the same thread from tick to tick (their
/// state stays in that core's cache), and the two ends meet at the cheapest items.
#[inline]
fn pack(generation: u64, len: usize) -> u64 {
    generation << 24 | (len as u64) << 16
}

/// (generation, len, taken from the front, taken from the back).
#[inline]
fn unpack(word: u64) -> (u64, usize, usize, usize) {
    (word >> 24, (word >> 16 & 0xFF) as usize, (word >> 8 & 0xFF) as usize, (word & 0xFF) as usize)
}

struct Shared {
    claim: AtomicU64,
    /// Items of the current job finished.
    done: AtomicUsize,
    /// The job: its data and the function that renders item `i` of it.
    data: AtomicPtr<()>,
    call: AtomicUsize,
    stop: AtomicBool,
    /// Per worker: it is parked, or about to park, and needs an unpark.
    sleeping: Vec<AtomicBool>,
    /// A worker's item panicked (the audio thread panics in turn).
    panicked: AtomicBool,
    /// Items rendered by workers rather than the audio thread.
    worker_items: AtomicU64,
    /// Workers that run at realtime priority.
    realtime: AtomicUsize,
    /// Workers that have started (and asked for their priority).
    started: AtomicUsize,
}

/// Renders items of the job `data` (the monomorphized trampoline of `Pool::run`).
type Call = unsafe fn(*const (), usize);

/// Threads beside the audio thread, and the hand-off to them.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    handles: Vec<JoinHandle<()>>,
    generation: Cell<u64>,
}

/// What a job needs: the items, the order to take them in, and the function.
struct Job<'a, T, F> {
    items: *mut T,
    order: &'a [u8],
    f: &'a F,
}

/// Renders item `i` of the job at `data`.
///
/// SAFETY: `data` points at a live `Job<T, F>`, `i` is below its order's length, and
/// no other thread renders the same `i` (the claim counter hands each out once).
unsafe fn call<T, F: Fn(&mut T)>(data: *const (), i: usize) {
    // SAFETY: as the function's contract says.
    unsafe {
        let job = &*(data as *const Job<'_, T, F>);
        let k = job.order[i] as usize;
        (job.f)(&mut *job.items.add(k));
    }
}

impl Pool {
    /// Starts `threads - 1` workers (the audio thread is the first thread), at
    /// realtime priority when `realtime` and the system allows it. `guard` wraps
    /// their work. Control side.
    pub fn start(threads: usize, realtime: bool, guard: Option<WorkerGuard>) -> Pool {
        let workers = threads.clamp(1, MAX_THREADS) - 1;
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            data: AtomicPtr::new(std::ptr::null_mut()),
            call: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sleeping: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            panicked: AtomicBool::new(false),
            worker_items: AtomicU64::new(0),
            realtime: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        });
        let guard = guard.unwrap_or(unguarded);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let s = shared.clone();
            let h = std::thread::Builder::new()
                .name(format!("jamrig-render-{}", w + 1))
                .spawn(move || worker(s, w, realtime, guard))
                .expect("a render thread could not be started");
            handles.push(h);
        }
        let threads = handles.iter().map(|h| h.thread().clone()).collect();
        // The workers are up (and their priority known) before the pool is used.
        let t0 = Instant::now();
        while shared.started.load(Acquire) < workers && t0.elapsed() < Duration::from_millis(START_WAIT_MILLIS) {
            std::thread::sleep(Duration::from_micros(100));
        }
        Pool { shared, threads, handles, generation: Cell::new(0) }
    }

    /// Threads that render (the audio thread and the workers).
    pub fn threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Items the workers have rendered so far.
    pub fn worker_items(&self) -> u64 {
        self.shared.worker_items.load(Relaxed)
    }

    /// Workers running at realtime priority.
    pub fn realtime_workers(&self) -> usize {
        self.shared.realtime.load(Relaxed)
    }

    /// Runs `f` on `items[order[0]]`, `items[order[1]]`, ... on this thread and the
    /// workers, and returns when every one is done. This thread takes items from the
    /// front of `order`, the workers from its back (put the costliest first). Audio
    /// thread: no allocation, no lock; it spins only while a worker finishes an item
    /// it took.
    ///
    /// Panics if `order` names an item twice or one out of range.
    pub fn run<T: Send, F: Fn(&mut T) + Sync>(&self, items: &mut [T], order: &[u8], f: &F) {
        let len = order.len().min(MAX_ITEMS);
        let mut seen = [0u64; 4];
        for &k in &order[..len] {
            let (w, b) = (k as usize / 64, k as usize % 64);
            assert!((k as usize) < items.len() && seen[w] & 1 << b == 0, "each item once, within the slice");
            seen[w] |= 1 << b;
        }
        let order = &order[..len];
        if self.handles.is_empty() || len < 2 {
            for &k in order {
                f(&mut items[k as usize]);
            }
            return;
        }
        let job = Job { items: items.as_mut_ptr(), order, f };
        let s = &*self.shared;
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        s.done.store(0, Relaxed);
        s.data.store(&job as *const Job<'_, T, F> as *mut (), Relaxed);
        s.call.store(call::<T, F> as Call as usize, Relaxed);
        s.claim.store(pack(generation, len), SeqCst);
        for (w, t) in self.threads.iter().enumerate() {
            if s.sleeping[w].load(SeqCst) && s.sleeping[w].swap(false, SeqCst) {
                t.unpark();
            }
        }
        let mut mine = 0;
        while let Some(i) = take(s, generation, true) {
            let data = &job as *const Job<'_, T, F> as *const ();
            // SAFETY: `job` lives until every item is done (below); `take` handed
            // out `i` once. A panic is caught so that the job outlives the workers'
            // use of it, and raised again below.
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { call::<T, F>(data, i) }));
            if ok.is_err() {
                s.panicked.store(true, Relaxed);
            }
            mine += 1;
        }
        s.done.fetch_add(mine, Release);
        while s.done.load(Acquire) < len {
            std::hint::spin_loop();
        }
        if s.panicked.swap(false, Relaxed) {
            panic!("a render thread panicked while rendering a channel");
        }
    }
}

/// Takes the next item of job `generation` from its front (the audio thread) or its
/// back (a worker), if one is left.
#[inline]
fn take(s: &Shared, generation: u64, front: bool) -> Option<usize> {
    let mut word = s.claim.load(Acquire);
    loop {
        let (g, len, f, b) = unpack(word);
        if g != generation || f + b >= len {
            return None;
        }
        let (next, item) = if front { (word + (1 << 8), f) } else { (word + 1, len - 1 - b) };
        match s.claim.compare_exchange_weak(word, next, Acquire, Acquire) {
            Ok(_) => return Some(item),
            Err(now) => word = now,
        }
    }
}

fn worker(s: Arc<Shared>, w: usize, realtime: bool, guard: WorkerGuard) {
    if realtime && raise_priority() {
        s.realtime.fetch_add(1, Relaxed);
    }
    s.started.fetch_add(1, Release);
    // The audio thread flushes denormals while it renders; the workers must do the
    // same, or their channels would come out different.
    let _ftz = super::denormal::FlushDenormals::enter();
    let mut seen = 0u64;
    while !s.stop.load(Relaxed) {
        guard(&mut || {
            let generation = wait(&s, w, seen);
            seen = generation;
            let mut mine = 0;
            while let Some(i) = take(&s, generation, false) {
                let data = s.data.load(Relaxed) as *const ();
                // SAFETY: the value stored was a `Call` (`Pool::run`), published with
                // the claim word `take` acquired.
                let f: Call = unsafe { std::mem::transmute::<usize, Call>(s.call.load(Relaxed)) };
                // SAFETY: item `i` was handed to this thread alone; the job lives until
                // it is marked done.
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { f(data, i) })).is_ok();
                if !ok {
                    s.panicked.store(true, Relaxed);
                }
                mine += 1;
                s.done.fetch_add(1, Release);
            }
            if mine > 0 {
                s.worker_items.fetch_add(mine, Relaxed);
            }
        });
    }
}

/// Spins, then parks, until a generation after `seen` is published (or the pool
/// stops); returns it.
fn wait(s: &Shared, w: usize, seen: u64) -> u64 {
    let t0 = Instant::now();
    let mut spins = 0u32;
    loop {
        let (g, ..) = unpack(s.claim.load(Acquire));
        if g != seen || s.stop.load(Relaxed) {
            return g;
        }
        spins += 1;
        if !spins.is_multiple_of(64) || t0.elapsed() < Duration::from_micros(SPIN_MICROS) {
            std::hint::spin_loop();
            continue;
        }
        s.sleeping[w].store(true, SeqCst);
        let (g, ..) = unpack(s.claim.load(SeqCst));
        if g != seen || s.stop.load(SeqCst) {
            s.sleeping[w].store(false, SeqCst);
            return g;
        }
        std::thread::park();
        s.sleeping[w].store(false, SeqCst);
        spins = 0;
    }
}

/// Asks for realtime (FIFO) scheduling for this thread, just under JACK's usual
/// client priority; returns whether the system granted it.
#[cfg(target_os = "linux")]
fn raise_priority() -> bool {
    /// FIFO priority of the render workers.
    const WORKER_PRIORITY: libc::c_int = 60;
    let param = libc::sched_param { sched_priority: WORKER_PRIORITY };
    // SAFETY: sets this thread's own scheduling policy; `param` is valid for the call.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn raise_priority() -> bool {
    false
}

impl Drop for Pool {
    /// Stops and joins the workers (control side, or the audio thread once the
    /// stream has ended).
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        for t in &self.threads {
            t.unpark();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_whatever_the_thread_count() {
        for threads in [1, 2, 3, 8] {
            let pool = Pool::start(threads, false, None);
            let mut items = vec![0u32; 16];
            let order: Vec<u8> = (0..16u8).rev().collect();
            for _ in 0..2000 {
                pool.run(&mut items, &order, &|x: &mut u32| *x += 1);
            }
            assert!(items.iter().all(|&x| x == 2000), "{threads} threads: {items:?}");
        }
    }

    #[test]
    fn workers_take_items_when_they_are_awake() {
        let pool = Pool::start(2, false, None);
        let mut items = vec![0u64; 8];
        let order: Vec<u8> = (0..8).collect();
        // Items long enough that a spinning worker takes some.
        let slow = |x: &mut u64| {
            for i in 0..200_000u64 {
                *x = std::hint::black_box(x.wrapping_add(i));
            }
        };
        for _ in 0..200 {
            pool.run(&mut items, &order, &slow);
        }
        assert!(pool.worker_items() > 0, "the worker never took an item");
    }

    /// Each item is handed out once; the audio thread's side starts with the pinned
    /// items, each side takes its costliest first from its own end, and the sides
    /// are balanced to within the largest item; the heavier side's cost is returned.
    #[test]
    fn the_split_order_balances_the_sides_and_names_each_item_once() {
        let costs = [9.0, 7.0, 5.0, 4.0, 3.0, 3.0, 2.0, 1.0, 0.5];
        for pinned in [0, 1, 2] {
            let mut order = [0u8; 9];
            let heavier = split_order(&costs, pinned, 2, &mut order);
            let mut seen = order.to_vec();
            seen.sort();
            assert_eq!(seen, (0..9).collect::<Vec<u8>>(), "pinned {pinned}: {order:?}");
            assert_eq!(&order[..pinned], &(0..pinned as u8).collect::<Vec<u8>>()[..], "{order:?}");
            // The front side: costs falling from the front; the back side: falling from the back.
            let split = (1..9).find(|&k| order[k] < order[k - 1]).unwrap_or(9);
            assert!(order[..split].windows(2).all(|w| w[0] < w[1]), "{order:?}");
            assert!(order[split..].windows(2).all(|w| w[0] > w[1]), "{order:?}");
            let side = |o: &[u8]| o.iter().map(|&k| costs[k as usize]).sum::<f32>();
            let (a, b) = (side(&order[..split]), side(&order[split..]));
            assert!((a - b).abs() <= 9.0, "pinned {pinned}: {a} against {b} ({order:?})");
            assert_eq!(heavier, a.max(b), "pinned {pinned}: the heavier side's cost");
        }
        // Where the greedy split is uneven ({16.1, 7.4, 6.8} against {12.4, 12.4}),
        // a swap evens it ({16.1, 12.4} against {12.4, 7.4, 6.8}).
        let costs = [16.1, 12.4, 12.4, 7.4, 6.8];
        let mut order = [0u8; 5];
        let heavier = split_order(&costs, 0, 2, &mut order);
        assert!((heavier - 28.5).abs() < 1e-3, "{heavier} ({order:?})");
        let mut seen = order.to_vec();
        seen.sort();
        assert_eq!(seen, (0..5).collect::<Vec<u8>>(), "{order:?}");
        // Unpinned, equal costs alternate: half each.
        let mut order = [0u8; 6];
        split_order(&[1.0; 6], 0, 2, &mut order);
        assert_eq!(order, [0, 2, 4, 5, 3, 1]);
    }

    #[test]
    #[should_panic(expected = "each item once")]
    fn an_order_naming_an_item_twice_is_refused() {
        let pool = Pool::start(2, false, None);
        let mut items = vec![0u32; 4];
        pool.run(&mut items, &[1, 1], &|x: &mut u32| *x += 1);
    }
}
