//! The fast try: a thread's own reference to the arena its next allocation most likely goes
//! to, so that most allocations touch neither the block list nor its lock.
//!
//! A search of the existing blocks ([`allocate_existing`](super::BlockVec::allocate_existing))
//! first tries the thread's home arena of the first block (see
//! [which block](crate::allocator::placement#which-block)), and in a running application
//! that is where nearly every small allocation lands. Reaching it takes a copy of the block
//! list (one atomic read-modify-write and a store) and a walk to the arena. Each thread
//! therefore keeps, per block vector, a strong reference to that arena, with the list's
//! [generation](super::sharded::ShardedList::generation) it was taken at, and tries it
//! before it takes the list: when the generation still holds, the arena is still the first
//! block's home arena of the thread, and the try is the first step of the walk, without the
//! walk. A miss (the arena is full, busy, or holds no allocation) goes on with the walk as
//! before; a stale reference (another vector's, or an older generation) is replaced after
//! the walk, from the list copy the walk held.
//!
//! # Why it is safe without the list
//!
//! The list keeps blocks from being released under a search, and the list's write lock keeps
//! searches out of a block that a release has found empty. The fast try holds neither, so:
//!
//! - *The arena lives*: the thread's own strong reference keeps it, wherever its block is.
//!   It does not keep the block's memory: an arena points to its block's shared part without
//!   counting (see `SharedPtr`, beside [`Arena`](super::Arena)), and the fast try never
//!   reads it.
//! - *It never fills an empty block*: it allocates only in an arena that holds a live
//!   allocation already, judged under the arena's lock
//!   ([`Arena::try_allocate_in_use`](super::Arena::try_allocate_in_use)). A release removes
//!   a block only when no arena of it holds one, under the list's write lock, which keeps the
//!   walks out; so nothing can allocate in it again, and a thread that still holds one of its
//!   arenas finds it empty and goes on with the walk.
//! - *It never fills a block set aside*: a defragmentation empties such a block, so its
//!   arenas are closed under their locks when it leaves the list, and opened when it comes
//!   back ([`Block::set_closed`](super::Block::set_closed)).
//!
//! Each block vector has a number of its own, never reused, and a thread keeps one
//! reference per number modulo [`ENTRIES`] (an application allocates from a few memory types
//! at a time): a reference is only ever taken for an arena of the vector of its number, so
//! its type is known. The references go when the thread ends, or when another is taken in
//! their place; until then the arenas (their bookkeeping, not their memory) stay.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many vectors a thread keeps a reference for (a power of two).
const ENTRIES: usize = 8;

/// One thread's reference to one arena.
#[derive(Clone, Copy)]
struct Entry {
    /// The vector's number; 0: no reference.
    vec: usize,
    /// The list's generation the arena was the first block's home arena at.
    generation: u64,
    /// The thread's home slot in the vector.
    slot: usize,
    /// An `Arc` of the arena, as `Arc::into_raw` gave it.
    arena: *const (),
    /// Gives the `Arc` back (knows its type).
    release: unsafe fn(*const ()),
}

/// No reference.
const EMPTY: Entry = Entry {
    vec: 0,
    generation: 0,
    slot: 0,
    arena: std::ptr::null(),
    release: release_nothing,
};

/// A [`EMPTY`] entry's `release`: there is nothing to give back.
unsafe fn release_nothing(_: *const ()) {}

/// Gives back the `Arc<A>` that `Arc::into_raw` turned into `arena`.
///
/// # Safety
///
/// `arena` came from `Arc::<A>::into_raw`, and is given back once.
unsafe fn release_arc<A>(arena: *const ()) {
    // SAFETY: forwarded from the caller.
    drop(unsafe { Arc::from_raw(arena.cast::<A>()) });
}

/// A thread's references, by vector number modulo [`ENTRIES`].
type Cache = [Cell<Entry>; ENTRIES];

thread_local! {
    /// The references. No destructor of its own: reading it is a plain thread-local access on
    /// every allocation (no state to check, no call), and it stays readable while the thread
    /// ends. Its [`Guard`] gives the references back.
    static CACHE: Cache = const { [const { Cell::new(EMPTY) }; ENTRIES] };
    /// Made (its destructor registered) by the thread's first [`keep`].
    static GUARD: Guard = const { Guard };
}

/// Gives a thread's references back when the thread ends.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        // The cache has no destructor: it is there for the whole of the thread's end.
        let _ = CACHE.try_with(|cache| {
            for cell in cache {
                let entry = cell.replace(EMPTY);
                // SAFETY: the entry's `arena` came from `Arc::into_raw` of the type its
                // `release` knows (see `keep`), and was just taken out of the cache: given
                // back once.
                unsafe { (entry.release)(entry.arena) };
            }
        });
    }
}

/// A new vector's number: never 0, never given twice.
pub(super) fn next_vec_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The calling thread's reference for vector `vec`: the arena (from `Arc::into_raw` of the
/// type the vector keeps), the generation it was taken at and the thread's home slot. The
/// arena stays alive until the thread calls [`keep`] for a vector with the same number
/// modulo [`ENTRIES`], or ends.
#[inline(always)]
pub(super) fn cached(vec: usize) -> Option<(*const (), u64, usize)> {
    CACHE
        .try_with(|c| {
            let entry = c[vec & (ENTRIES - 1)].get();
            (entry.vec == vec).then_some((entry.arena, entry.generation, entry.slot))
        })
        .ok()
        .flatten()
}

/// Keeps a reference to `arena` for vector `vec` (the thread's home arena, slot `slot`, of
/// its first block at list generation `generation`), in place of the one kept for `vec` or
/// for another vector of the same number modulo [`ENTRIES`]. Only the generation changes when
/// `arena` is kept already.
pub(super) fn keep<A: Send + Sync + 'static>(
    vec: usize,
    arena: &Arc<A>,
    generation: u64,
    slot: usize,
) {
    // A thread whose guard is gone (or going: the thread is ending) keeps nothing: nothing
    // would give the reference back.
    if GUARD.try_with(|_| ()).is_err() {
        return;
    }
    let _ = CACHE.try_with(|c| {
        let cell = &c[vec & (ENTRIES - 1)];
        let old = cell.get();
        if old.vec == vec && old.arena == Arc::as_ptr(arena).cast() {
            cell.set(Entry { generation, ..old });
            return;
        }
        cell.set(Entry {
            vec,
            generation,
            slot,
            arena: Arc::into_raw(arena.clone()).cast(),
            release: release_arc::<A>,
        });
        // After the cache holds the new entry: whatever the drop does, it finds the cache
        // whole.
        // SAFETY: the old entry's `arena` came from `Arc::into_raw` of the type its `release`
        // knows, and the entry is out of the cache: given back once.
        unsafe { (old.release)(old.arena) };
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_keeps_one_reference_per_vector_number_and_gives_it_back() {
        let a = Arc::new(1u32);
        let b = Arc::new(2u32);
        let (va, vb) = (next_vec_number(), next_vec_number());
        assert_ne!(va, vb);
        // Joined, not scoped: a scoped thread counts as done before its thread-locals go.
        let (a2, b2) = (a.clone(), b.clone());
        std::thread::spawn(move || {
            let (a, b) = (a2, b2);
            assert!(cached(va).is_none());
            // Held here and by the test's thread.
            assert_eq!(Arc::strong_count(&a), 2);
            keep(va, &a, 3, 1);
            assert_eq!(Arc::strong_count(&a), 3);
            assert_eq!(cached(va), Some((Arc::as_ptr(&a).cast(), 3, 1)));
            // The same arena at a new generation: no second reference.
            keep(va, &a, 4, 1);
            assert_eq!(Arc::strong_count(&a), 3);
            assert_eq!(cached(va).map(|c| c.1), Some(4));
            // The same vector with another arena (a new first block): the arena is replaced,
            // and the old one given back.
            let c = Arc::new(3u32);
            keep(va, &c, 5, 1);
            assert_eq!(cached(va), Some((Arc::as_ptr(&c).cast(), 5, 1)));
            assert_eq!(Arc::strong_count(&c), 2);
            assert_eq!(Arc::strong_count(&a), 2, "the replaced arena is given back");
            keep(va, &a, 6, 1);
            assert_eq!(Arc::strong_count(&c), 1);
            assert_eq!(Arc::strong_count(&a), 3);
            // Another vector of the same number modulo the entries takes the place.
            let same_place = va + ENTRIES;
            keep(same_place, &b, 1, 0);
            assert_eq!(
                Arc::strong_count(&a),
                2,
                "the replaced reference is given back"
            );
            assert_eq!(Arc::strong_count(&b), 3);
            assert!(cached(va).is_none());
            assert!(cached(vb).is_none());
        })
        .join()
        .unwrap();
        // The thread ended: its references went with it.
        assert_eq!(Arc::strong_count(&b), 1);
    }

    #[test]
    fn a_reference_kept_while_the_thread_ends_is_not_leaked() {
        // A thread-local of the user's whose destructor allocates (so keeps a reference), made
        // before and after the thread's guard: whichever way the destructors run, the
        // reference is given back or never taken.
        struct KeepsOnDrop(Arc<u32>, usize);
        impl Drop for KeepsOnDrop {
            fn drop(&mut self) {
                keep(self.1, &self.0, 1, 0);
            }
        }
        thread_local! {
            static BEFORE: std::cell::RefCell<Option<KeepsOnDrop>> = const { std::cell::RefCell::new(None) };
            static AFTER: std::cell::RefCell<Option<KeepsOnDrop>> = const { std::cell::RefCell::new(None) };
        }
        let a = Arc::new(1u32);
        let (va, vb) = (next_vec_number(), next_vec_number());
        let a2 = a.clone();
        std::thread::spawn(move || {
            BEFORE.with(|b| *b.borrow_mut() = Some(KeepsOnDrop(a2.clone(), va)));
            keep(vb, &a2, 1, 0);
            AFTER.with(|b| *b.borrow_mut() = Some(KeepsOnDrop(a2, vb + ENTRIES)));
        })
        .join()
        .unwrap();
        assert_eq!(Arc::strong_count(&a), 1, "every reference is given back");
    }
}
