//! A list read on every allocation and changed rarely: kept in copies, one reader per copy.
//!
//! Every allocation walks its block vector's list of blocks, while the list only changes when
//! a block is added or released. A plain reader-writer lock makes every reader write to the
//! lock's one shared word, so threads allocating at the same time keep stealing that cache
//! line from each other even though none of them waits; and taking and giving back a read
//! lock are two atomic read-modify-writes (locked instructions on x86, some 9 ns each on the
//! peers bench's VM, see [`spin_lock`](super::spin_lock)).
//!
//! Here the list is kept in identical copies (as many as the machine has cores, at least
//! [`MIN_COPIES`], at most [`MAX_COPIES`]), each behind a
//! [spin lock](super::spin_lock) of its own on its own cache line. A reader takes one copy
//! for itself: its thread's shard's first, and when another thread holds that one, whichever
//! copy is free (they are all the same), so readers never wait for each other while a copy is
//! free, and a reader that reads again before it is done (a nested look) takes another copy.
//! Reading costs one atomic operation to take the copy and a plain store to give it back. A
//! writer takes every copy, always in the same order (so two writers cannot deadlock), and
//! changes all of them; a reader that finds every copy taken waits for its own. Writing
//! costs a few more locks, which is fine for an operation that also calls `vkAllocateMemory`
//! or `vkFreeMemory`.
//!
//! A heap that runs out of memory takes the empty blocks kept in *other* lists back (see
//! [releasing](super#releasing)) while its caller may hold its own list: that write must not
//! wait for good ([`ShardedList::try_write_for`]). It takes every free copy at once, then
//! waits a bounded time for the rest, and readers hold off while it does: a thread reading
//! in a loop takes its copy back the moment it gives it up, so a writer that only watched
//! for free copies could wait for ever.

#![deny(unsafe_code)]

use super::spin_lock::{SpinMutex, SpinMutexGuard};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The fewest copies a list keeps, whatever the machine.
const MIN_COPIES: usize = 8;
/// The most copies a list keeps (and the number of distinct [`thread_shard`]s).
const MAX_COPIES: usize = 64;

// A thread's home arena is its shard modulo the arena count: every arena can be a home.
const _: () = assert!(MIN_COPIES >= crate::allocator::placement::MAX_BLOCK_ARENAS);

/// How many copies a list keeps on this machine: one per core (so that every core can read
/// at once), a power of two between [`MIN_COPIES`] and [`MAX_COPIES`].
fn copy_count() -> usize {
    std::thread::available_parallelism()
        .map_or(MIN_COPIES, |n| n.get())
        .clamp(MIN_COPIES, MAX_COPIES)
        .next_power_of_two()
}

/// Keeps each copy's lock on its own cache line (128 bytes covers adjacent-line prefetch).
#[repr(align(128))]
struct Padded<T>(T);

/// A small number per thread, handed out in the order threads first use a list.
#[inline]
pub(crate) fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialized: no lazy-initialization check on every access.
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD.with(|s| match s.get() {
        usize::MAX => {
            let shard = NEXT.fetch_add(1, Ordering::Relaxed) % MAX_COPIES;
            s.set(shard);
            shard
        }
        shard => shard,
    })
}

/// A `Vec<T>` kept in identical copies (see [`copy_count`]).
pub(crate) struct ShardedList<T> {
    copies: Box<[Padded<SpinMutex<Vec<T>>>]>,
    /// How many times the list was taken for writing (see [`generation`](Self::generation)).
    generation: AtomicU64,
    /// How many [`write`](Self::write)s are taking the copies now: a
    /// [`try_write_for`](Self::try_write_for) lets go of its copies for them.
    writers: AtomicUsize,
    /// Held by a [`try_write_for`](Self::try_write_for) while it gathers the copies, so that
    /// two never each hold some and wait for the other's.
    gathering: parking_lot::Mutex<()>,
    /// Set while a [`try_write_for`](Self::try_write_for) gathers the copies: readers wait
    /// for it to end before they take a copy (on its own cache line, which only that rare
    /// caller writes, so reading it costs readers a load from their own cache).
    gather_pending: Padded<AtomicBool>,
}

/// Clears [`ShardedList::gather_pending`] when dropped.
struct Pending<'a>(&'a AtomicBool);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One copy of a [`ShardedList`], taken for reading.
pub(crate) type ShardedRead<'a, T> = SpinMutexGuard<'a, Vec<T>>;

impl<T: Clone> ShardedList<T> {
    pub(crate) fn new() -> Self {
        Self {
            copies: (0..copy_count())
                .map(|_| Padded(SpinMutex::new(Vec::new())))
                .collect(),
            generation: AtomicU64::new(0),
            writers: AtomicUsize::new(0),
            gathering: parking_lot::Mutex::new(()),
            gather_pending: Padded(AtomicBool::new(false)),
        }
    }

    /// How many copies the list keeps.
    #[cfg(test)]
    pub(crate) fn copies(&self) -> usize {
        self.copies.len()
    }

    /// A copy for the calling thread to read.
    #[inline]
    pub(crate) fn read(&self) -> ShardedRead<'_, T> {
        self.read_shard(thread_shard())
    }

    /// A copy to read, for a caller that has its [`thread_shard`] already: copy `shard` (any
    /// number: it is taken modulo the copies) if it is free, else the next free one, else
    /// (a writer holds them, or more readers than copies) copy `shard` once it is given back.
    #[inline]
    pub(crate) fn read_shard(&self, shard: usize) -> ShardedRead<'_, T> {
        // The count is a power of two.
        let own = shard & (self.copies.len() - 1);
        if self.gather_pending.0.load(Ordering::Relaxed) {
            return self.read_after_gathering(own);
        }
        match self.copies[own].0.try_lock() {
            Some(copy) => copy,
            None => self.read_another(own),
        }
    }

    /// [`read_shard`](Self::read_shard) while a [`try_write_for`](Self::try_write_for)
    /// gathers the copies: a thread reading in a loop would otherwise take its copy back
    /// each time, before the gatherer saw it free. The gatherer's wait is bounded, so this
    /// one is too (even for a nested read whose outer copy the gatherer waits for).
    #[cold]
    #[inline(never)]
    fn read_after_gathering(&self, own: usize) -> ShardedRead<'_, T> {
        while self.gather_pending.0.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        match self.copies[own].0.try_lock() {
            Some(copy) => copy,
            None => self.read_another(own),
        }
    }

    /// [`read_shard`](Self::read_shard) when copy `own` is taken.
    #[cold]
    #[inline(never)]
    fn read_another(&self, own: usize) -> ShardedRead<'_, T> {
        let n = self.copies.len();
        (1..n)
            .find_map(|k| self.copies[(own + k) & (n - 1)].0.try_lock())
            .unwrap_or_else(|| self.copies[own].0.lock())
    }

    /// How many times the list was taken for writing: while it stays, the list is as it
    /// was (read with no lock, it may be a moment behind; read while holding a copy, it is
    /// the copy's).
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Exclusive access to all copies, taken in order.
    pub(crate) fn write(&self) -> ShardedWrite<'_, T> {
        // Counted while taking them: a `try_write_for` holding some lets go of them.
        self.writers.fetch_add(1, Ordering::AcqRel);
        let guards = self.copies.iter().map(|c| c.0.lock()).collect();
        self.writers.fetch_sub(1, Ordering::AcqRel);
        self.written(guards)
    }

    /// The write access to the copies `guards` (all of them): a new generation.
    fn written<'a>(&'a self, guards: Vec<SpinMutexGuard<'a, Vec<T>>>) -> ShardedWrite<'a, T> {
        // Under every copy's lock: a reader that holds a copy sees the generation its copy
        // was written at.
        self.generation.fetch_add(1, Ordering::Relaxed);
        ShardedWrite { guards }
    }

    /// Exclusive access to all copies if no other thread holds any of them now; never
    /// waits (the copies taken so far are let go again on a miss).
    #[cfg(test)]
    pub(crate) fn try_write(&self) -> Option<ShardedWrite<'_, T>> {
        self.try_write_for(Duration::ZERO)
    }

    /// Exclusive access to all copies, waiting at most about `patience` for the threads that
    /// hold some of them; `None` once it is spent.
    ///
    /// Readers give their copy back within a search or a statistics walk, so a short wait
    /// takes the list from any number of them. Every free copy is taken first, and only then
    /// are the others waited for: a reader that comes meanwhile finds no free copy and waits
    /// in turn, instead of taking one this caller has yet to reach (readers moving ahead of
    /// a caller that takes the copies in order kept it waiting a whole walk per copy, past
    /// any sensible bound), and readers wait for the gathering to end before they take a
    /// copy (a thread reading in a loop took its own copy back each time before this caller
    /// could see it free). A [`write`](Self::write) takes the copies in order and could be
    /// waiting for one taken here: while one is under way, this caller holds none. A thread
    /// that holds the list for writing while it waits for something the caller holds
    /// (another vector's list) keeps it past the bound, which then ends the wait instead of
    /// deadlocking.
    pub(crate) fn try_write_for(&self, patience: Duration) -> Option<ShardedWrite<'_, T>> {
        let deadline = Instant::now() + patience;
        let _gathering = self.gathering.try_lock_until(deadline)?;
        self.gather_pending.0.store(true, Ordering::Release);
        let _pending = Pending(&self.gather_pending.0);
        let writing = || self.writers.load(Ordering::Acquire) > 0;
        loop {
            while writing() {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::yield_now();
            }
            let mut taken: Vec<Option<SpinMutexGuard<'_, Vec<T>>>> =
                self.copies.iter().map(|c| c.0.try_lock()).collect();
            let mut missing = taken.iter().filter(|t| t.is_none()).count();
            while missing > 0 && !writing() {
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::yield_now();
                for (copy, slot) in self.copies.iter().zip(&mut taken) {
                    if slot.is_none() {
                        *slot = copy.0.try_lock();
                        missing -= usize::from(slot.is_some());
                    }
                }
            }
            if missing == 0 {
                return Some(self.written(taken.into_iter().flatten().collect()));
            }
            // A writer waits for copies taken here: let it have them first.
        }
    }
}

/// All copies, locked for writing; changes apply to every copy.
pub(crate) struct ShardedWrite<'a, T> {
    guards: Vec<SpinMutexGuard<'a, Vec<T>>>,
}

impl<T: Clone> ShardedWrite<'_, T> {
    /// The list (every copy is the same).
    pub(crate) fn items(&self) -> &[T] {
        &self.guards[0]
    }

    /// Appends `item` to every copy.
    pub(crate) fn push(&mut self, item: T) {
        for g in &mut self.guards {
            g.push(item.clone());
        }
    }

    /// Removes the item at `index` from every copy.
    pub(crate) fn remove(&mut self, index: usize) {
        for g in &mut self.guards {
            g.remove(index);
        }
    }

    /// Removes the item at `index` from every copy, the last item taking its place: the
    /// order of the others is not kept, but nothing moves but that one item (a
    /// [`remove`](Self::remove) moves every item after `index`, in every copy).
    pub(crate) fn swap_remove(&mut self, index: usize) {
        for g in &mut self.guards {
            g.swap_remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_write_never_waits_and_takes_every_copy() {
        let list = ShardedList::<u32>::new();
        {
            let _reader = list.read();
            assert!(list.try_write().is_none(), "a reader holds a copy");
        }
        let mut all = list.try_write().expect("nobody holds the list");
        all.push(7);
        assert!(list.try_write().is_none(), "a writer holds every copy");
        drop(all);
        assert_eq!(*list.read(), [7]);
    }

    #[test]
    fn try_write_for_waits_out_readers_reading_in_a_loop_and_gives_up_on_a_holder() {
        let list = ShardedList::<u32>::new();
        list.write().push(1);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            // Readers that take their copy back as soon as they give it up.
            for _ in 0..3 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let copy = list.read();
                        std::hint::black_box(&*copy);
                        std::thread::yield_now();
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(5));
            for i in 0..20 {
                let mut all = list
                    .try_write_for(Duration::from_secs(5))
                    .expect("readers kept the list from a waiting writer");
                all.push(i);
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(list.read().len(), 21);
        // A copy held for longer than the patience: no list, and every copy let go again.
        let held = list.read();
        let started = Instant::now();
        assert!(list.try_write_for(Duration::from_millis(20)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(20));
        drop(held);
        assert!(list.try_write().is_some());
    }

    #[test]
    fn a_reader_takes_another_copy_when_its_own_is_taken() {
        let list = ShardedList::<u32>::new();
        list.write().push(3);
        // Every copy taken at once by one thread (nested reads): each read gets a copy of its
        // own, starting from the asked one, and never waits.
        let n = list.copies.len();
        assert!(n.is_power_of_two() && (MIN_COPIES..=MAX_COPIES).contains(&n));
        let reads: Vec<_> = (0..n).map(|_| list.read_shard(5)).collect();
        let mut copies: Vec<*const Vec<u32>> = reads.iter().map(|r| &**r as *const _).collect();
        assert_eq!(copies[0], list.copies[5].0.data_ptr() as *const _);
        copies.sort();
        copies.dedup();
        assert_eq!(copies.len(), n, "two readers shared a copy");
        assert!(reads.iter().all(|r| **r == [3]));
        assert!(list.try_write().is_none(), "readers hold the copies");
        // With every copy taken, a reader on another thread waits for its own copy.
        std::thread::scope(|s| {
            let waiting = s.spawn(|| *list.read_shard(2) == [3]);
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(
                !waiting.is_finished(),
                "a reader found a copy that was taken"
            );
            drop(reads);
            assert!(waiting.join().unwrap());
        });
        assert!(list.try_write().is_some());
    }

    #[test]
    fn copies_stay_identical_and_every_thread_sees_the_writes() {
        let list = ShardedList::new();
        {
            let mut w = list.write();
            for i in 0..5 {
                w.push(i);
            }
            w.remove(1);
            assert_eq!(w.items(), &[0, 2, 3, 4]);
        }
        for copy in list.copies.iter() {
            assert_eq!(*copy.0.lock(), vec![0, 2, 3, 4]);
        }
        let seen: Vec<Vec<i32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..(2 * list.copies.len()))
                .map(|_| s.spawn(|| list.read().clone()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.iter().all(|v| v == &[0, 2, 3, 4]));
        assert_eq!(std::mem::align_of::<Padded<SpinMutex<Vec<i32>>>>(), 128);
    }
}
