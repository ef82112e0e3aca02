//! Releasing empty blocks: the rules of [releasing](super#releasing), for the default block
//! vectors (under the [high-water mark](super::high_water)) and for custom pools and
//! defragmentations (by count and by size).

use super::high_water::{self, HIGH_WATER_EPOCH};
use super::sharded::ShardedWrite;
use super::{Arena, Block, BlockMemory, BlockOrigin, BlockVec, Keep, NewBlockError};
use crate::allocator::placement::ArenaLayout;
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The allocator's other default block vectors, as one of them sees them (see
/// [releasing](super#releasing)).
pub(crate) trait Neighbours: Send + Sync {
    /// Called with the size of a memory object the vector is about to make, holding its
    /// list: gives back the kept blocks of the others as far as needed for the object not to
    /// take the allocator past the most memory it ever reserved, and returns the bytes it
    /// still would.
    fn make_way(&self, size: DeviceSize) -> DeviceSize;

    /// The vector's [high-water mark](super::high_water) started a new epoch: tells the others
    /// ([`neighbour_epoch_passed`](BlockVec::neighbour_epoch_passed)).
    fn epoch_passed(&self);
}

/// How long [`try_release_empty`](BlockVec::try_release_empty) waits at most for the threads
/// that hold a vector's list. A reader holds it for one search or one statistics walk
/// (microseconds; a walk over many large arenas, a few milliseconds), so only a writer that
/// waits for the caller in turn holds it longer; the wait is paid only when a heap is out of
/// memory, next to a failed `vkAllocateMemory`. (Not waiting at all let a thread that was
/// merely searching a list keep its kept blocks, and the allocation failed for want of
/// their memory.)
pub(super) const RELEASE_PATIENCE: Duration = Duration::from_millis(50);

/// How long [`try_release_kept_bytes`](BlockVec::try_release_kept_bytes) waits at most for
/// the threads that hold a vector's list: long enough for those that search it, short
/// against a `vkAllocateMemory` (it is paid only when a memory object is about to raise the
/// allocator's peak, and only while the other vector keeps empty blocks).
const KEPT_PATIENCE: Duration = Duration::from_millis(1);

/// How many whole epochs of other vectors' marks pass without a sample of a vector's own
/// before it keeps at most one empty block (see [`BlockVec::neighbour_epoch_passed`]): its
/// last sample is then between one and two epochs old, as when its own mark forgets it.
pub(crate) const IDLE_EPOCHS: u32 = 1;

/// What a walk over a vector's listed blocks counts (see `BlockVec::tally`).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Bytes of the blocks that hold allocations.
    in_use: DeviceSize,
    /// How many blocks are empty, and their bytes.
    empty: usize,
    empty_bytes: DeviceSize,
    /// The largest block.
    largest: DeviceSize,
    /// How many of the blocks that hold allocations were made for sizable requests.
    for_sizable_in_use: usize,
    /// How many blocks (empty or not) were made for other requests.
    not_for_sizable: usize,
}

impl<S: Suballocator + Send + 'static, M: BlockMemory> BlockVec<S, M> {
    /// Releases the empty blocks in the list that `among` selects, as long as the minimum block
    /// count stays (a defragmentation gives back the blocks it emptied when it ends). Returns
    /// how many were released.
    pub(crate) fn release_empty_among(&self, among: impl Fn(&Block<S, M>) -> bool) -> usize {
        Self::remove_empty(&mut self.blocks.write(), self.limits.min, among)
    }

    /// Releases every empty block beyond the minimum block count: the heap ran out of memory
    /// or budget, and the blocks kept for reuse give theirs back (see
    /// [releasing](super#releasing)). Waits at most [`RELEASE_PATIENCE`] for the list: the
    /// threads that read it (searching, taking statistics) give it back within that, while
    /// the caller may hold another vector's lock as it makes a memory object, and waiting
    /// for good could deadlock with a thread doing the same the other way round. Returns how
    /// many were released.
    pub(crate) fn try_release_empty(&self) -> usize {
        match self.blocks.try_write_for(RELEASE_PATIENCE) {
            Some(mut blocks) => Self::remove_empty(&mut blocks, self.limits.min, |_| true),
            None => 0,
        }
    }

    /// Removes the empty blocks of `blocks` that `among` selects, last first, as long as
    /// `min` blocks stay. Returns how many were removed.
    pub(super) fn remove_empty(
        blocks: &mut ShardedWrite<'_, Block<S, M>>,
        min: usize,
        among: impl Fn(&Block<S, M>) -> bool,
    ) -> usize {
        let mut released = 0;
        let mut i = blocks.items().len();
        while i > 0 && blocks.items().len() > min {
            i -= 1;
            let b = &blocks.items()[i];
            if among(b) && b.is_empty() {
                Self::remove_block(blocks, i);
                released += 1;
            }
        }
        released
    }

    /// Whether the empty blocks kept stay under the [high-water mark](super::high_water).
    pub(super) fn high_water_on(&self) -> bool {
        self.limits.high_water
    }

    /// Counts the blocks of `blocks` in one pass: see [`Tally`].
    fn tally(blocks: &[Block<S, M>]) -> Tally {
        let mut t = Tally::default();
        for b in blocks {
            let size = b.memory().size();
            t.largest = t.largest.max(size);
            if b.is_empty() {
                t.empty += 1;
                t.empty_bytes += size;
            } else {
                t.in_use += size;
                t.for_sizable_in_use += usize::from(b.for_sizable());
            }
            t.not_for_sizable += usize::from(!b.for_sizable());
        }
        t
    }

    /// The bytes of the blocks a defragmentation set aside (in use: no search finds them).
    fn aside_bytes(&self) -> DeviceSize {
        self.aside.lock().iter().map(|b| b.memory().size()).sum()
    }

    /// The memory in use for the [high-water mark](super::high_water), given the `tally` of
    /// the listed blocks: the listed blocks that hold allocations, the blocks set aside, and
    /// the memory objects of the type outside the blocks (dedicated allocations).
    fn in_use(&self, tally: &Tally) -> DeviceSize {
        tally
            .in_use
            .saturating_add(self.aside_bytes())
            .saturating_add(self.outside.load(Ordering::Relaxed))
    }

    /// Before a memory object of `size` bytes is made outside the blocks (a dedicated
    /// allocation of the vector's memory type): the empty blocks kept are given back as far
    /// as needed for the memory in use, the new object and those that stay to fit under the
    /// high-water mark, as before a new block (see [`make_room`](Self::make_room)). Kept
    /// memory then never raises the memory the type reserves past its peak either. Returns
    /// how many were released.
    pub(crate) fn make_room_outside(&self, size: DeviceSize) -> usize {
        if !self.high_water_on() {
            return 0;
        }
        if !self.maybe_kept.load(Ordering::Acquire) {
            // Nothing kept here: only the other vectors may have to give theirs back, and the
            // searching threads need not stop.
            if let Some(neighbours) = self.neighbours.get() {
                neighbours.make_way(size);
            }
            return 0;
        }
        // The list for writing (a dedicated allocation costs a `vkAllocateMemory` anyway).
        let mut blocks = self.blocks.write();
        let tally = Self::tally(blocks.items());
        let mut released = 0;
        if tally.empty > 0 {
            let with_object = self.in_use(&tally).saturating_add(size);
            let cap = self.kept_cap(tally.largest, blocks.items());
            let room = self
                .high_water
                .lock()
                .mark()
                .saturating_sub(with_object)
                .min(cap);
            released += self.release_beyond(&mut blocks, room, false);
        }
        released += self.keep_under_peak(&mut blocks, size);
        self.note_kept(&blocks);
        released
    }

    /// Before the vector makes a memory object of `size` bytes, under its list's lock: the
    /// vector's [`Neighbours`] give back their kept blocks
    /// as far as needed for the allocator to stay within its peak, then the vector gives back
    /// its own for what is left (see [releasing](super#releasing)). Returns how many of its
    /// own were released.
    fn keep_under_peak(
        &self,
        blocks: &mut ShardedWrite<'_, Block<S, M>>,
        size: DeviceSize,
    ) -> usize {
        let Some(neighbours) = self.neighbours.get() else {
            return 0;
        };
        match neighbours.make_way(size) {
            0 => 0,
            over => Self::release_bytes(blocks, self.limits.min, over).0,
        }
    }

    /// Gives back empty blocks kept for reuse, beyond the minimum block count, adding up to at
    /// least `bytes` where they do (the smallest that covers what is left, else the largest,
    /// one after the other), if the list can be had at once: another vector of the allocator
    /// is about to make memory that would take the allocator past the most it ever reserved
    /// (see [releasing](super#releasing)). Only the default block vectors (with a
    /// [high-water mark](super::high_water)) give theirs. Returns the bytes released.
    pub(crate) fn try_release_kept_bytes(&self, bytes: DeviceSize) -> DeviceSize {
        if !self.high_water_on() || bytes == 0 || !self.maybe_kept.load(Ordering::Acquire) {
            return 0;
        }
        // A short wait, for the threads searching the list: the caller may hold its own
        // vector's list, and a thread of this vector may hold this one while it waits the
        // other way round (the wait then ends it).
        let Some(mut blocks) = self.blocks.try_write_for(KEPT_PATIENCE) else {
            return 0;
        };
        let released = Self::release_bytes(&mut blocks, self.limits.min, bytes).1;
        self.note_kept(&blocks);
        released
    }

    /// Clears the hint that blocks may be kept when none of `blocks` (the list, held for
    /// writing) is empty.
    fn note_kept(&self, blocks: &ShardedWrite<'_, Block<S, M>>) {
        if !blocks.items().iter().any(|b| b.is_empty()) {
            // Under the write lock no block fills, and one that empties from now on sets it
            // again. One that emptied during the walk and set it already is seen by the
            // second walk (the swap reads its store, which follows its free).
            self.maybe_kept.swap(false, Ordering::AcqRel);
            if blocks.items().iter().any(|b| b.is_empty()) {
                self.maybe_kept.store(true, Ordering::Release);
            }
        }
    }

    /// Removes empty blocks of `blocks` adding up to at least `bytes` where they do (the
    /// smallest that covers what is left, else the largest, one after the other), as long as
    /// `min` blocks stay. Returns how many were removed, and their bytes.
    fn release_bytes(
        blocks: &mut ShardedWrite<'_, Block<S, M>>,
        min: usize,
        bytes: DeviceSize,
    ) -> (usize, DeviceSize) {
        let (mut count, mut released) = (0, 0);
        while released < bytes && blocks.items().len() > min {
            let left = bytes - released;
            let empty = blocks
                .items()
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_empty())
                .map(|(i, b)| (i, b.memory().size()));
            let covering = empty
                .clone()
                .filter(|&(_, s)| s >= left)
                .min_by_key(|&(_, s)| s);
            let Some((i, size)) = covering.or_else(|| empty.max_by_key(|&(_, s)| s)) else {
                break;
            };
            Self::remove_block(blocks, i);
            count += 1;
            released += size;
        }
        (count, released)
    }

    /// A memory object outside the blocks was made (and counted): the memory in use is a
    /// sample of the [high-water mark](super::high_water).
    pub(crate) fn outside_made(&self) {
        if self.high_water_on() {
            let in_use = self.in_use(&Self::tally(&self.blocks.read()));
            self.sample_in_use(in_use);
        }
    }

    /// Takes a sample of the memory in use for the [high-water mark](super::high_water); returns
    /// the mark.
    pub(super) fn sample_in_use(&self, in_use: DeviceSize) -> DeviceSize {
        let (mark, new_epoch) = {
            let mut hw = self.high_water.lock();
            let new_epoch = hw.record(in_use, HIGH_WATER_EPOCH);
            (hw.mark(), new_epoch)
        };
        self.sampled.store(true, Ordering::Relaxed);
        if new_epoch {
            if let Some(neighbours) = self.neighbours.get() {
                neighbours.epoch_passed();
            }
        }
        mark
    }

    /// An epoch of another default vector's mark passed. A vector that took no sample of
    /// its own for [`IDLE_EPOCHS`] whole ones (no block of it emptied, none was made)
    /// keeps at most one empty block, as VMA's default pools do, and its mark starts over
    /// from its memory in use: its kept memory does not wait for a free of its own to decay
    /// (see [releasing](super#releasing)). Takes the list only if it may keep blocks, and
    /// only if it can within a moment.
    pub(crate) fn neighbour_epoch_passed(&self) {
        if !self.high_water_on() {
            return;
        }
        if self.sampled.swap(false, Ordering::Relaxed) {
            self.idle_epochs.store(0, Ordering::Relaxed);
            return;
        }
        if self.idle_epochs.fetch_add(1, Ordering::Relaxed) + 1 < IDLE_EPOCHS
            || !self.maybe_kept.load(Ordering::Acquire)
        {
            return;
        }
        let Some(mut blocks) = self.blocks.try_write_for(KEPT_PATIENCE) else {
            return;
        };
        self.release_beyond(&mut blocks, 0, true);
        let in_use = self.in_use(&Self::tally(blocks.items()));
        {
            let mut hw = self.high_water.lock();
            *hw = high_water::HighWater::default();
            let _ = hw.record(in_use, HIGH_WATER_EPOCH);
        }
        self.note_kept(&blocks);
    }

    /// Before a new block is made, under the list's write lock: the size of the block
    /// (`block_size` given the blocks held beyond the empty ones, as if they were all given
    /// back), and the empty blocks kept given back as far as needed for the memory in use,
    /// the new block and those that stay to fit under the high-water mark (all of them when
    /// the memory in use and the new block alone reach past it; the mark rises to them once
    /// the block is made). Returns the size and the memory in use.
    pub(super) fn make_room<E>(
        &self,
        blocks: &mut ShardedWrite<'_, Block<S, M>>,
        block_size: impl FnOnce(usize, DeviceSize) -> Option<DeviceSize>,
    ) -> Result<(DeviceSize, DeviceSize), NewBlockError<E>> {
        let tally = Self::tally(blocks.items());
        let held = self.owned(blocks.items().len()) - tally.empty;
        if held >= self.limits.max {
            Self::remove_empty(blocks, self.limits.min, |_| true);
            return Err(NewBlockError::Full {
                max_blocks: self.limits.max,
            });
        }
        let in_use = self.in_use(&tally);
        // The memory in use of a vector of sizable resources alone (see
        // [block sizes](super::super::placement#block-sizes)).
        let sizable_in_use = if tally.not_for_sizable == 0 {
            in_use
        } else {
            0
        };
        // Blocks made for sizable requests are no steps of the growth: after a few large
        // resources, the first block for small ones is still small.
        let size = block_size(held - tally.for_sizable_in_use, sizable_in_use)
            .ok_or(NewBlockError::NoSize)?;
        let with_block = in_use.saturating_add(size);
        let mark = self.high_water.lock().mark().max(with_block);
        if tally.empty > 0 {
            let cap = self.kept_cap(tally.largest.max(size), blocks.items());
            let room = mark.saturating_sub(with_block).min(cap);
            self.release_beyond(blocks, room, false);
        }
        self.keep_under_peak(blocks, size);
        self.note_kept(blocks);
        if self.owned(blocks.items().len()) >= self.limits.max {
            return Err(NewBlockError::Full {
                max_blocks: self.limits.max,
            });
        }
        Ok((size, in_use))
    }

    /// Gives back empty blocks of `blocks` so that those that stay add up to at most `room`
    /// bytes (the largest stay first, see [`high_water::empty_to_release`]), as long as the
    /// minimum block count stays. Returns how many were released.
    fn release_beyond(
        &self,
        blocks: &mut ShardedWrite<'_, Block<S, M>>,
        room: DeviceSize,
        keep_one: bool,
    ) -> usize {
        // The memory objects kept for large requests alone go first, newest first: they serve
        // the fewest requests (see `Block::for_large`).
        let (mut empty, mut empty_bytes) = (0usize, 0);
        for b in blocks.items().iter().filter(|b| b.is_empty()) {
            empty += 1;
            empty_bytes += b.memory().size();
        }
        let mut released = 0;
        let mut i = blocks.items().len();
        while empty_bytes > room
            && empty > usize::from(keep_one)
            && i > 0
            && blocks.items().len() > self.limits.min
        {
            i -= 1;
            let b = &blocks.items()[i];
            if b.is_empty() && b.for_large() {
                empty -= 1;
                empty_bytes -= b.memory().size();
                Self::remove_block(blocks, i);
                released += 1;
            }
        }
        let (indices, sizes): (smallvec::SmallVec<[usize; 8]>, smallvec::SmallVec<[_; 8]>) = blocks
            .items()
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_empty())
            .map(|(i, b)| (i, b.memory().size()))
            .unzip();
        let mut release: smallvec::SmallVec<[usize; 8]> =
            high_water::empty_to_release(&sizes, room, keep_one)
                .into_iter()
                .map(|k| indices[k])
                .collect();
        released + self.remove_listed(blocks, &mut release)
    }

    /// Removes the blocks at the indices `release` (empty blocks), as many as the minimum
    /// block count lets go, the highest index first so that the others stay in place.
    /// Returns how many were removed.
    fn remove_listed(
        &self,
        blocks: &mut ShardedWrite<'_, Block<S, M>>,
        release: &mut [usize],
    ) -> usize {
        let count = release
            .len()
            .min(blocks.items().len().saturating_sub(self.limits.min));
        let release = &mut release[..count];
        release.sort_unstable_by(|a, b| b.cmp(a));
        for &i in release.iter() {
            Self::remove_block(blocks, i);
        }
        release.len()
    }

    /// Removes the empty block at `i` from the list, which releases it: blocks are only
    /// referenced by the vector and by live allocations, and an empty block has none, so this
    /// drops it (and frees its memory) once any in-flight `free` on it returns. Its arenas
    /// that a thread's [fast try](super::fast) still keeps give back their suballocators'
    /// bookkeeping ([`Arena::drop_bookkeeping`]).
    fn remove_block(blocks: &mut ShardedWrite<'_, Block<S, M>>, i: usize) {
        let arenas: smallvec::SmallVec<[Arc<Arena<S, M>>; 4]> =
            blocks.items()[i].arenas().iter().cloned().collect();
        blocks.remove(i);
        for arena in arenas {
            // One reference: ours, and the arena goes with it.
            if Arc::strong_count(&arena) > 1 {
                arena.drop_bookkeeping();
            }
        }
    }

    /// A free emptied a block of `size` bytes (the block's last live allocation went):
    /// releases empty blocks as the vector's rule says (see [releasing](super#releasing)).
    /// Returns how many were released.
    pub(crate) fn block_emptied(&self, size: DeviceSize) -> usize {
        if !self.high_water_on() {
            return self.release_empty_blocks(Keep::Largest);
        }
        self.maybe_kept.store(true, Ordering::Release);
        // A first look holding one copy of the list, as allocating threads do: most calls
        // find nothing to release and need not stop them.
        let mark = {
            let blocks = self.blocks.read();
            let tally = Self::tally(&blocks);
            let in_use = self.in_use(&tally);
            // The memory in use was at its highest just before this free.
            let mark = self.sample_in_use(in_use.saturating_add(size));
            if tally.empty <= 1 || blocks.len() <= self.limits.min {
                return 0;
            }
            let room = mark.saturating_sub(in_use);
            // Within one block's worth and the mark, all stay whatever the budget says (no
            // need to ask it).
            if tally.empty_bytes
                <= room.min(tally.largest.saturating_mul(self.limits.empty_kept.min(1)))
            {
                return 0;
            }
            let cap = self.kept_cap(tally.largest, &blocks);
            if tally.empty_bytes <= room.min(cap) {
                return 0;
            }
            mark
        };
        let mut blocks = self.blocks.write();
        let tally = Self::tally(blocks.items());
        let in_use = self.in_use(&tally);
        let cap = self.kept_cap(tally.largest, blocks.items());
        let room = mark.saturating_sub(in_use).min(cap);
        self.release_beyond(&mut blocks, room, true)
    }

    /// The memory object of a dedicated allocation of the vector's memory type that the
    /// allocator chose to make (made as a block's would be) is free: it becomes an empty
    /// block of the vector, and the rule for a block that just emptied decides whether it
    /// (or another empty block) stays (see [releasing](super#releasing)). Returns `memory`
    /// when the vector keeps no blocks under a mark, has as many blocks as it may, or its
    /// list cannot be had within a moment (the caller frees it).
    pub(crate) fn adopt_emptied(self: &Arc<Self>, memory: M) -> Option<M> {
        if !self.high_water_on() {
            return Some(memory);
        }
        let size = memory.size();
        {
            let Some(mut blocks) = self.blocks.try_write_for(KEPT_PATIENCE) else {
                return Some(memory);
            };
            if self.owned(blocks.items().len()) >= self.limits.max {
                return Some(memory);
            }
            // One arena, the whole object: it was made for one large request, and is kept
            // for the next (see the placement's "Kept blocks for large requests").
            blocks.push(
                self.new_block(memory, BlockOrigin::LargeObject, |size| ArenaLayout {
                    count: 1,
                    size,
                }),
            );
        }
        self.block_emptied(size);
        None
    }

    /// The indices of the empty blocks of `blocks` that [`release_empty_blocks`] gives back
    /// under `keep`'s rule, in no particular order.
    ///
    /// [`release_empty_blocks`]: Self::release_empty_blocks
    fn empty_to_release(
        blocks: &[Block<S, M>],
        keep: Keep,
        empty_kept: DeviceSize,
    ) -> smallvec::SmallVec<[usize; 4]> {
        let mut empty: smallvec::SmallVec<[usize; 4]> = blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_empty())
            .map(|(i, _)| i)
            .collect();
        if empty.len() <= 1 {
            return smallvec::SmallVec::new();
        }
        let size = |i: usize| blocks[i].memory().size();
        match keep {
            Keep::Largest => {
                // Largest first; keep them while they add up to no more than `empty_kept`
                // times the largest block of the vector.
                empty.sort_by_key(|&i| std::cmp::Reverse(size(i)));
                let cap = blocks.iter().map(|b| b.memory().size()).max().unwrap_or(0);
                let cap = cap.saturating_mul(empty_kept);
                let mut total = size(empty[0]);
                let mut kept = 1;
                while kept < empty.len() && total.saturating_add(size(empty[kept])) <= cap {
                    total += size(empty[kept]);
                    kept += 1;
                }
                empty.drain(..kept);
                empty
            }
            Keep::Smallest => {
                empty.sort_by_key(|&i| size(i));
                empty.drain(..1);
                empty
            }
        }
    }

    /// How many blocks' worth of empty memory the vector keeps now: its limit while the heap
    /// is under its budget, one block's worth past it (the budget is read only when the
    /// limit is more than one, from the first empty block's memory).
    fn empty_kept(&self, blocks: &[Block<S, M>]) -> DeviceSize {
        let limit = self.limits.empty_kept;
        let under_budget = || {
            blocks
                .iter()
                .find(|b| b.is_empty())
                .is_none_or(|b| b.memory().heap_within_budget())
        };
        if limit > 1 && !under_budget() {
            1
        } else {
            limit
        }
    }

    /// The most bytes of empty blocks a vector with a [high-water mark](super::high_water)
    /// keeps now (besides the mark), given its `largest` block: [`empty_kept`] blocks' worth
    /// of the larger of that block and [`preferred_block`] while the heap is within its
    /// budget, its largest block alone past it.
    ///
    /// [`empty_kept`]: Self::empty_kept
    /// [`preferred_block`]: super::BlockLimits::preferred_block
    fn kept_cap(&self, largest: DeviceSize, blocks: &[Block<S, M>]) -> DeviceSize {
        match self.empty_kept(blocks) {
            kept @ (0 | 1) => largest.saturating_mul(kept),
            kept => largest
                .max(self.limits.preferred_block)
                .saturating_mul(kept),
        }
    }

    /// Keeps the empty blocks `keep` says (beyond the minimum block count): releases the
    /// others. Returns how many were released.
    pub(crate) fn release_empty_blocks(&self, keep: Keep) -> usize {
        // A first look holding one copy of the list, as allocating threads do: most calls find
        // nothing to release and need not stop them.
        let kept = {
            let blocks = self.blocks.read();
            if blocks.len() <= self.limits.min {
                return 0;
            }
            let Tally {
                empty,
                empty_bytes,
                largest,
                ..
            } = Self::tally(&blocks);
            if empty <= 1 {
                return 0;
            }
            // The largest empty blocks stay while they add up to at most `kept` times the
            // largest block, so when all of them do, none goes: within one block's worth
            // whatever the budget says (no need to ask it), else once it is read.
            let all_stay = |kept: DeviceSize| {
                keep == Keep::Largest && kept >= 1 && empty_bytes <= largest.saturating_mul(kept)
            };
            if all_stay(self.limits.empty_kept.min(1)) {
                return 0;
            }
            let kept = self.empty_kept(&blocks);
            if all_stay(kept) {
                return 0;
            }
            if Self::empty_to_release(&blocks, keep, kept).is_empty() {
                return 0;
            }
            kept
        };
        let mut blocks = self.blocks.write();
        let mut release = Self::empty_to_release(blocks.items(), keep, kept);
        self.remove_listed(&mut blocks, &mut release)
    }
}
