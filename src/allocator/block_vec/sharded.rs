//! A list read on every allocation and changed rarely: a sharded ("big-reader") lock.
//!
//! Every allocation walks its block vector's list of blocks, while the list only changes when a block
//! is added or released. A plain reader-writer lock makes every reader write to the lock's
//! one shared word, so threads allocating at the same time keep stealing that cache line from
//! each other even though none of them waits. Here the list is kept in several copies, each
//! behind its own lock on its own cache line: a reader locks only the copy of its thread's
//! shard, and a writer locks every copy (always in the same order) and changes all of them.
//! Reading stays one uncontended lock; writing costs a few more, which is fine for an
//! operation that also calls `vkAllocateMemory` or `vkFreeMemory`.

#![deny(unsafe_code)]

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The number of copies. More than the cores of most machines that share one allocator;
/// threads beyond it share copies, which is correct, only slower.
const SHARDS: usize = 8;

// A thread's home arena is its shard modulo the arena count: every arena can be a home.
const _: () = assert!(SHARDS >= crate::allocator::placement::MAX_BLOCK_ARENAS);

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
            let shard = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(shard);
            shard
        }
        shard => shard,
    })
}

/// A `Vec<T>` kept in [`SHARDS`] identical copies.
pub(crate) struct ShardedList<T> {
    copies: Box<[Padded<RwLock<Vec<T>>>]>,
}

impl<T: Clone> ShardedList<T> {
    pub(crate) fn new() -> Self {
        Self {
            copies: (0..SHARDS)
                .map(|_| Padded(RwLock::new(Vec::new())))
                .collect(),
        }
    }

    /// Read access to the calling thread's copy.
    #[inline]
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Vec<T>> {
        self.read_shard(thread_shard())
    }

    /// Read access to copy `shard` (any number: it is taken modulo the copies), for a caller
    /// that has its [`thread_shard`] already.
    #[inline]
    pub(crate) fn read_shard(&self, shard: usize) -> RwLockReadGuard<'_, Vec<T>> {
        self.copies[shard % SHARDS].0.read()
    }

    /// Exclusive access to all copies.
    pub(crate) fn write(&self) -> ShardedWrite<'_, T> {
        ShardedWrite {
            guards: self.copies.iter().map(|c| c.0.write()).collect(),
        }
    }

    /// Exclusive access to all copies if no other thread holds any of them now; never
    /// waits (the copies taken so far are let go again on a miss).
    pub(crate) fn try_write(&self) -> Option<ShardedWrite<'_, T>> {
        let guards = self
            .copies
            .iter()
            .map(|c| c.0.try_write())
            .collect::<Option<Vec<_>>>()?;
        Some(ShardedWrite { guards })
    }
}

/// All copies, locked for writing; changes apply to every copy.
pub(crate) struct ShardedWrite<'a, T> {
    guards: Vec<RwLockWriteGuard<'a, Vec<T>>>,
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
            assert_eq!(*copy.0.read(), vec![0, 2, 3, 4]);
        }
        let seen: Vec<Vec<i32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..(2 * SHARDS))
                .map(|_| s.spawn(|| list.read().clone()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.iter().all(|v| v == &[0, 2, 3, 4]));
        assert_eq!(std::mem::align_of::<Padded<RwLock<Vec<i32>>>>(), 128);
    }
}
