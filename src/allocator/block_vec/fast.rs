//! The fast try: a thread's own copy of the arenas its next allocation most likely goes to,
//! so that most allocations touch neither the block list nor its lock.
//!
//! A search of the existing blocks ([`allocate_existing`](super::BlockVec::allocate_existing))
//! first tries the thread's home arena of the first block, then the arena in use with the
//! least room that may fit (see [which block](crate::allocator::placement#which-block)). In a
//! running application one of the two is where nearly every allocation lands: the home
//! arena while the first block has room, the tightest arena once the memory in use spans
//! several blocks. Reaching either takes a copy of the block list (one atomic
//! read-modify-write and a store) and a walk over it. Each thread therefore keeps, per block
//! vector, strong references to every arena of the list, in the list's order, with the list's
//! [generation](super::sharded::ShardedList::generation) they were taken at and which of
//! them is its home arena of the first block, and makes those two steps before it takes the
//! list: when the generation still holds, the copy is the list's arenas as a walk would find
//! them, so the steps place exactly as the walk's first two would. A miss (no arena can take
//! the request, or the one that may is busy or holds no allocation) goes on with the walk as
//! before; a stale copy (another vector's, or an older generation) is replaced after the
//! walk, from the list copy the walk held. The block vector's side of the two steps is in
//! [`fast_try`](super::fast_try).
//!
//! # Why it is safe without the list
//!
//! The list keeps blocks from being released under a search, and the list's write lock keeps
//! searches out of a block that a release has found empty. The fast try holds neither, so:
//!
//! - *The arenas live*: the thread's own strong references keep them, wherever their blocks
//!   are. They do not keep the blocks' memory: an arena points to its block's shared part
//!   without counting (see `SharedPtr`, beside [`Arena`](super::Arena)), and the fast try
//!   never reads it.
//! - *It never fills an empty block*: it allocates only in an arena that holds a live
//!   allocation already, judged under the arena's lock
//!   ([`Arena::try_allocate_in_use`](super::Arena::try_allocate_in_use)). A release removes
//!   a block only when no arena of it holds one, under the list's write lock, which keeps the
//!   walks out; so nothing can allocate in it again, and a thread that still holds its arenas
//!   finds them empty and goes on with the walk. The generation may change between the check
//!   and the allocation: that is the same race, and ends the same way.
//! - *It never fills a block set aside*: a defragmentation empties such a block, so its
//!   arenas are closed under their locks when it leaves the list, and opened when it comes
//!   back ([`Block::set_closed`](super::Block::set_closed)).
//!
//! Each block vector has a number of its own, never reused, and a thread keeps one copy per
//! number modulo [`ENTRIES`] (an application allocates from a few memory types at a time): a
//! copy is only ever taken of the arenas of the vector of its number, so their type is known.
//! The copies go when the thread ends, or when another is taken in their place; until then
//! the arenas stay, also those of blocks released since: not their memory, and not their
//! suballocators' bookkeeping either, which a released block's arenas give back for that of
//! an empty suballocator as the block goes
//! ([`Arena::drop_bookkeeping`](super::Arena::drop_bookkeeping)), so a thread that stops
//! allocating keeps a few small objects per arena, not the node arrays of a busy block.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many vectors a thread keeps a reference for (a power of two).
const ENTRIES: usize = 8;

/// One thread's copy of one vector's arenas.
#[derive(Clone, Copy)]
struct Entry {
    /// The vector's number; 0: no copy.
    vec: usize,
    /// The list's generation the copy was taken at.
    generation: u64,
    /// The thread's home slot in the vector.
    slot: usize,
    /// The thread's home arena of the first block (the pointer of its `Arc`, which `arenas`
    /// holds), or null when the first block has none for the thread's slot.
    home: *const (),
    /// The arenas: a `Box<[Arc<A>]>` as `Box::into_raw` gave it, its first element...
    arenas: *const (),
    /// ...and its length.
    len: usize,
    /// Gives the box back (knows its type).
    release: unsafe fn(*const (), usize),
}

/// No copy.
const EMPTY: Entry = Entry {
    vec: 0,
    generation: 0,
    slot: 0,
    home: std::ptr::null(),
    arenas: std::ptr::null(),
    len: 0,
    release: release_nothing,
};

/// A [`EMPTY`] entry's `release`: there is nothing to give back.
unsafe fn release_nothing(_: *const (), _: usize) {}

/// Gives back the `Box<[Arc<A>]>` of `len` elements that `Box::into_raw` turned into
/// `arenas` (its first element).
///
/// # Safety
///
/// `arenas` and `len` came from `Box::<[Arc<A>]>::into_raw`, and are given back once.
unsafe fn release_arcs<A>(arenas: *const (), len: usize) {
    let slice = std::ptr::slice_from_raw_parts_mut(arenas.cast_mut().cast::<Arc<A>>(), len);
    // SAFETY: forwarded from the caller.
    drop(unsafe { Box::from_raw(slice) });
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
                // SAFETY: the entry's `arenas` and `len` came from `Box::into_raw` of the
                // type its `release` knows (see `keep`), and were just taken out of the
                // cache: given back once.
                unsafe { (entry.release)(entry.arenas, entry.len) };
            }
        });
    }
}

/// A new vector's number: never 0, never given twice.
pub(super) fn next_vec_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Marks the generation kept by a thread whose slot has no home arena in the first block:
/// the fast try's check of the generation fails for it (so that the check of the home arena
/// costs nothing more), and the second step reads the generation without the mark. No list
/// is written `2^63` times.
pub(super) const NO_HOME: u64 = 1 << 63;

/// What the calling thread keeps for vector `vec`: its home arena of the first block (the
/// pointer of an `Arc` of the type the vector keeps, or null when the first block has none
/// for the thread's slot), the generation it was taken at (with [`NO_HOME`] when there is
/// no home arena) and the thread's home slot. The arena stays alive until the thread calls
/// [`keep`] for a vector with the same number modulo [`ENTRIES`], or ends. (It reads the
/// entry itself, not through [`entry`]: that way the first step's code came out 0.25 %
/// more instructions on `tiny` and `frame`.)
#[inline(always)]
pub(super) fn cached(vec: usize) -> Option<(*const (), u64, usize)> {
    CACHE
        .try_with(|c| {
            let e = c[vec & (ENTRIES - 1)].get();
            (e.vec == vec).then_some((e.home, e.generation, e.slot))
        })
        .ok()
        .flatten()
}

/// The whole copy the calling thread keeps for vector `vec`, for the second step.
pub(super) struct KeptCopy {
    /// As [`cached`] gives them.
    pub home: *const (),
    pub generation: u64,
    pub slot: usize,
    /// The arenas (`Arc`s of the type the vector keeps, in the order of its list at that
    /// generation): the first and the count. They stay alive as the home arena does.
    pub arenas: *const (),
    pub len: usize,
}

/// [`cached`] with the arenas of the copy, read at once.
#[inline(always)]
pub(super) fn cached_copy(vec: usize) -> Option<KeptCopy> {
    entry(vec).map(|e| KeptCopy {
        home: e.home,
        generation: e.generation,
        slot: e.slot,
        arenas: e.arenas,
        len: e.len,
    })
}

/// The calling thread's entry for vector `vec`, if it keeps one.
#[inline(always)]
fn entry(vec: usize) -> Option<Entry> {
    CACHE
        .try_with(|c| Some(c[vec & (ENTRIES - 1)].get()).filter(|e| e.vec == vec))
        .ok()
        .flatten()
}

/// Keeps `arenas` for vector `vec` (the arenas of its list at generation `generation`, below
/// [`NO_HOME`], in the list's order; `home`: the index among them of the thread's home arena
/// of the first block, slot `slot`), in place of the copy kept for `vec` or for another
/// vector of the same number modulo [`ENTRIES`].
pub(super) fn keep<A: Send + Sync + 'static>(
    vec: usize,
    arenas: Box<[Arc<A>]>,
    home: Option<usize>,
    generation: u64,
    slot: usize,
) {
    // A thread whose guard is gone (or going: the thread is ending) keeps nothing: nothing
    // would give the references back.
    if GUARD.try_with(|_| ()).is_err() {
        return;
    }
    let home: *const () = home
        .and_then(|i| arenas.get(i))
        .map_or(std::ptr::null(), |a| Arc::as_ptr(a).cast());
    let generation = if home.is_null() {
        generation | NO_HOME
    } else {
        generation
    };
    let len = arenas.len();
    let arenas = Box::into_raw(arenas).cast::<Arc<A>>().cast_const().cast();
    let entry = Entry {
        vec,
        generation,
        slot,
        home,
        arenas,
        len,
        release: release_arcs::<A>,
    };
    let kept = CACHE.try_with(|c| c[vec & (ENTRIES - 1)].replace(entry));
    // After the cache holds the new entry: whatever the drop does, it finds the cache whole.
    // Without the cache (the thread is ending), the new entry is given back at once.
    let old = kept.unwrap_or(entry);
    // SAFETY: the entry's `arenas` and `len` came from `Box::into_raw` of the type its
    // `release` knows, and the entry is out of the cache: given back once.
    unsafe { (old.release)(old.arenas, old.len) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(arenas: &[&Arc<u32>]) -> Box<[Arc<u32>]> {
        arenas.iter().map(|&a| a.clone()).collect()
    }

    /// The arenas kept for `vec`, read back as the fast try reads them.
    fn kept_values(vec: usize) -> Option<(Vec<u32>, Option<u32>, u64, usize)> {
        let Some(KeptCopy {
            home,
            generation,
            slot,
            arenas: ptr,
            len,
        }) = cached_copy(vec)
        else {
            assert!(cached(vec).is_none());
            return None;
        };
        assert_eq!(cached(vec), Some((home, generation, slot)));
        // SAFETY: the thread keeps `len` `Arc<u32>`s from `ptr` (the test keeps only those)
        // until its next `keep` for this number, and none runs meanwhile.
        let arenas = unsafe { std::slice::from_raw_parts(ptr.cast::<Arc<u32>>(), len) };
        let found = arenas.iter().find(|a| Arc::as_ptr(a).cast() == home);
        assert_eq!(found.is_none(), home.is_null(), "home is one of the arenas");
        let values = arenas.iter().map(|a| **a).collect();
        Some((values, found.map(|a| **a), generation, slot))
    }

    #[test]
    fn a_thread_keeps_one_copy_per_vector_number_and_gives_it_back() {
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
            keep(va, boxed(&[&a, &b]), Some(1), 3, 1);
            assert_eq!(Arc::strong_count(&a), 3);
            assert_eq!(Arc::strong_count(&b), 3);
            assert_eq!(kept_values(va), Some((vec![1, 2], Some(2), 3, 1)));
            // A new generation (a new list): the copy is replaced, the old one given back.
            let c = Arc::new(3u32);
            keep(va, boxed(&[&c]), Some(0), 5, 1);
            assert_eq!(kept_values(va), Some((vec![3], Some(3), 5, 1)));
            assert_eq!(Arc::strong_count(&c), 2);
            assert_eq!(Arc::strong_count(&a), 2, "the replaced copy is given back");
            assert_eq!(Arc::strong_count(&b), 2, "the replaced copy is given back");
            // No home arena for the thread's slot (or none at that index): no home, and the
            // generation marked.
            keep(va, boxed(&[&a, &c]), None, 6, 2);
            assert_eq!(kept_values(va), Some((vec![1, 3], None, 6 | NO_HOME, 2)));
            keep(va, boxed(&[&a]), Some(1), 7, 2);
            assert_eq!(kept_values(va), Some((vec![1], None, 7 | NO_HOME, 2)));
            assert_eq!(Arc::strong_count(&c), 1);
            // An empty list.
            keep(va, boxed(&[]), None, 8, 0);
            assert_eq!(kept_values(va), Some((vec![], None, 8 | NO_HOME, 0)));
            assert_eq!(Arc::strong_count(&a), 2);
            // Another vector of the same number modulo the entries takes the place.
            keep(va, boxed(&[&a]), Some(0), 9, 0);
            let same_place = va + ENTRIES;
            keep(same_place, boxed(&[&b]), Some(0), 1, 0);
            assert_eq!(Arc::strong_count(&a), 2, "the replaced copy is given back");
            assert_eq!(Arc::strong_count(&b), 3);
            assert!(cached(va).is_none());
            assert!(cached(vb).is_none());
            assert_eq!(kept_values(same_place), Some((vec![2], Some(2), 1, 0)));
        })
        .join()
        .unwrap();
        // The thread ended: its copies went with it.
        assert_eq!(Arc::strong_count(&a), 1);
        assert_eq!(Arc::strong_count(&b), 1);
    }

    #[test]
    fn a_copy_kept_while_the_thread_ends_is_not_leaked() {
        // A thread-local of the user's whose destructor allocates (so keeps a copy), made
        // before and after the thread's guard: whichever way the destructors run, the copy is
        // given back or never taken.
        struct KeepsOnDrop(Arc<u32>, usize);
        impl Drop for KeepsOnDrop {
            fn drop(&mut self) {
                keep(self.1, boxed(&[&self.0]), Some(0), 1, 0);
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
            keep(vb, boxed(&[&a2]), Some(0), 1, 0);
            AFTER.with(|b| *b.borrow_mut() = Some(KeepsOnDrop(a2, vb + ENTRIES)));
        })
        .join()
        .unwrap();
        assert_eq!(Arc::strong_count(&a), 1, "every copy is given back");
    }
}
