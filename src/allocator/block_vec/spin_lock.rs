//! The arenas' lock: one atomic read-modify-write to take it, a plain store to give it back.
//!
//! # Why not a parking mutex
//!
//! An allocation and its free each take their arena's lock once, for one suballocator
//! operation (well under a microsecond). On x86 every atomic read-modify-write is a locked
//! instruction that waits for the store buffer to drain, about as long as the whole
//! suballocator operation: some 9 ns each on the 2-core VM of the peers bench, against
//! 36-55 ns for an entire allocate and free of the bare `offset-allocator` there. A parking
//! mutex (`parking_lot`'s, `std`'s) needs two of them per lock: one to take it and one to give
//! it back, because giving it back must also see, atomically, whether a thread went to sleep
//! waiting and must be woken.
//!
//! This lock never puts a waiting thread to sleep on the lock itself, so nobody has to be
//! woken: giving it back is a release store, a plain `mov` on x86. A thread that finds it
//! taken waits until it looks free (reading, so the holder keeps its cache line) and tries
//! again: first spinning a few dozen times, then yielding its time slice, and, once the
//! holder has kept it for long (a statistics walk or a corruption check over a large arena),
//! napping [`NAP`] at a time, so a long wait does not burn a core. Threads rarely wait at
//! all: each thread allocates in its own home arenas, and the block vector's search passes
//! over an arena another thread holds (see [`try_lock`](lock_api::RawMutex::try_lock)).

use parking_lot::lock_api;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A mutex on [`RawSpinLock`]: the `parking_lot` API (guards, `try_lock`, `get_mut`).
pub(crate) type SpinMutex<T> = lock_api::Mutex<RawSpinLock, T>;

/// The guard of a [`SpinMutex`].
pub(crate) type SpinMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawSpinLock, T>;

/// How many times a waiting thread spins before it yields its time slice.
const SPINS: u32 = 64;
/// How many times it yields before it naps.
const YIELDS: u32 = 64;
/// How long one nap lasts.
const NAP: Duration = Duration::from_micros(50);

/// The lock word of a [`SpinMutex`].
pub(crate) struct RawSpinLock {
    locked: AtomicBool,
}

// SAFETY: a thread holds the lock exactly from its successful compare-exchange of `locked`
// from false to true (in `try_lock`, which `lock` retries until it succeeds) to its `unlock`,
// which the trait's contract reserves to the holder; so at most one thread holds it at a time.
// The exchange acquires and `unlock`'s store releases, so everything the last holder wrote
// under the lock happens before anything the next holder reads under it. Nothing ties the
// lock to the thread that took it, so guards may be sent to other threads (`GuardSend`).
unsafe impl lock_api::RawMutex for RawSpinLock {
    // A fresh, unlocked lock each time the constant is used (a `const` item, not a shared
    // static): the trait wants it as its initializer.
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        locked: AtomicBool::new(false),
    };
    type GuardMarker = lock_api::GuardSend;

    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl RawSpinLock {
    /// Waits for the lock (see the [module docs](self)) and takes it.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut waits: u32 = 0;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                if waits < SPINS {
                    std::hint::spin_loop();
                } else if waits < SPINS + YIELDS {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(NAP);
                }
                waits = waits.saturating_add(1);
            }
            if lock_api::RawMutex::try_lock(self) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};

    #[test]
    fn one_holder_at_a_time_and_every_write_is_seen() {
        // A plain (non-atomic) counter behind the lock: lost updates or torn reads would show
        // in the total. More threads than cores, so holders are preempted while waiters wait.
        const THREADS: usize = 6;
        const ROUNDS: usize = 20_000;
        let counter = Arc::new(SpinMutex::new((0usize, 0usize)));
        let inside = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let (counter, inside, start) = (counter.clone(), inside.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..ROUNDS {
                        let mut g = counter.lock();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        // Two fields written apart: a reader that saw only one would fail.
                        assert_eq!(g.0, g.1);
                        g.0 += 1;
                        std::hint::spin_loop();
                        g.1 += 1;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*counter.lock(), (THREADS * ROUNDS, THREADS * ROUNDS));
    }

    #[test]
    fn try_lock_fails_while_held_and_succeeds_after() {
        let m = SpinMutex::new(7);
        let g = m.lock();
        assert!(m.try_lock().is_none());
        assert!(m.is_locked());
        drop(g);
        assert!(!m.is_locked());
        assert_eq!(*m.try_lock().expect("free again"), 7);
    }

    #[test]
    fn a_waiter_gets_the_lock_after_a_long_hold() {
        // Long enough for the waiter to pass from spinning to yielding to napping.
        let m = Arc::new(SpinMutex::new(0));
        let held = Arc::new(Barrier::new(2));
        let g = m.lock();
        let waiter = {
            let (m, held) = (m.clone(), held.clone());
            std::thread::spawn(move || {
                held.wait();
                *m.lock() += 1;
            })
        };
        held.wait();
        std::thread::sleep(Duration::from_millis(30));
        drop(g);
        waiter.join().unwrap();
        assert_eq!(*m.lock(), 1);
    }
}
