//! The ring allocator: allocate at the head, free from the tail, wrap around at the end.
//!
//! # Algorithm
//!
//! The live allocations form one contiguous run in *ring order*: from the *tail* (the start of
//! the oldest one) to the *head* (the end of the newest one), possibly wrapping around from
//! the end of the region to offset 0. A new allocation goes at the head, rounded up to its
//! alignment. When it does not fit before the end of the region and the run has not wrapped
//! yet, it goes at offset 0 instead, if it fits before the tail; once wrapped, the only free
//! range is the one from the head to the tail. This is the shape of a staging ring or a
//! command stream: data written in order and consumed in order, with a few frames in flight.
//!
//! Frees are expected oldest first. Freeing the oldest allocation moves the tail to the next
//! one. Freeing the newest moves the head back to the end of the newest one still live (as
//! VMA's ring buffer does). Freeing any other allocation is allowed but only marks it freed:
//! its bytes stay held until every older allocation is freed too, and then the tail moves
//! past all of them at once (or until every newer one is freed, and then the head moves back
//! over them). When the last allocation is freed, head and tail return to 0 and the whole
//! region is one free range again; [`reset`](Suballocator::reset) does the same at once.
//!
//! The allocations are kept in a `VecDeque` in allocation order, each with its held range,
//! type and a live flag; the [`SuballocationHandle`] is the allocation's sequence number, so
//! its entry is at index `sequence − sequence of the oldest entry`.
//!
//! # Cost
//!
//! `allocate` is O(1): at most two candidate positions, each checked against at most two
//! neighbours (below), then one push (amortized, when the deque grows). `deallocate` is
//! amortized O(1): a free out of order is one flag, and the tail (or the head) later moves
//! past each entry once. Memory is one 32-byte entry per allocation not yet passed by the tail
//! or the head, live or not.
//!
//! # Padding and granularity
//!
//! Everything from the tail to the head in ring order is *held* and counted as used by
//! [`free_size`](Suballocator::free_size), which is exact:
//! - every allocation, with the padding before it (alignment, and the page boundary skipped
//!   for buffer-image granularity), from where the head was to the allocation's end;
//! - when an allocation wraps around, the bytes from the old head to the end of the region
//!   that it skipped, held as part of the allocation before it (they are freed when the tail
//!   passes that one);
//! - allocations freed out of order that the tail has not passed yet.
//!
//! So the free ranges are the one or two gaps outside the run: `[head, end)` and `[0, tail)`
//! before wrapping, `[head, tail)` after. [`largest_free_range`](Suballocator::largest_free_range)
//! is the larger of them, exact.
//!
//! When `buffer_image_granularity` is larger than 1, a new allocation can share a page with
//! two held ranges at most, and only these are checked:
//! - the newest allocation, when the new one goes right after it at the head: the start moves
//!   to the next page boundary when the newest one's type
//!   [conflicts](AllocationType::conflicts_with) with the new one's and its last byte lies on
//!   the page where the new one would start;
//! - the oldest live allocation, at the tail, when the new one goes before it (at offset 0
//!   when wrapping, or at the head once wrapped): the request is refused at that position when
//!   its type conflicts and the new one's last byte would lie on the oldest one's first page.
//!
//! No other held range can share a page with the new one. Nothing lies between the new
//! allocation and these two neighbours but free bytes and padding. Any other held range is
//! beyond a neighbour, so if it reached a page of the new allocation it would share that page
//! with the neighbour too; held ranges on a common page never conflict (every allocation was
//! checked the same way when it was made), which means they have the same type, `Linear` or
//! `NonLinear`, and the new allocation conflicts with that range exactly when it conflicts
//! with the neighbour. Before wrapping, no range lies after the head; once wrapped, nothing
//! lies before offset 0. Both neighbours are live: the tail never stops at a freed
//! allocation, and the head moves back over freed ones.
//!
//! # Tracking
//!
//! [`for_each_range`](Suballocator::for_each_range) reports one allocated range per live
//! allocation, with the type of its allocation. Allocations freed out of order that the tail
//! has not passed stay held, as [`free_size`](Suballocator::free_size) counts them, so their
//! ranges are reported as padding of a live neighbour in the same unwrapped part of the run:
//! the one before them, or the first one after them when none is before (after the wrap
//! point). Both parts of the run start or end with a live allocation (the oldest and the
//! newest are live), so statistics, dumps and leak reports list live allocations only. The
//! held ranges tile the run without gaps, so with the free gaps they tile the region in
//! offset order.
//!
//! # Errors
//!
//! [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) when fewer than `size` bytes
//! are free in total; otherwise [`FragmentedRegion`](SuballocatorError::FragmentedRegion) when
//! neither candidate position fits: the free bytes are split between the two gaps, or padding
//! or a granularity page pushes the end past the gap.
//!
//! A failed request implies that every larger, at least as strictly aligned request of the
//! same type fails as well, until the next free: the candidate positions only move forward
//! with a stricter alignment, a larger request only ends further, and allocations in between
//! only move the head forward (and may use up the wrap-around).

use super::*;
use crate::layout::{align_up, on_same_page};
use std::collections::VecDeque;

/// An allocator for data freed in the order it was allocated, reusing the region as a ring.
///
/// Allocations go at the head, wrapping around to offset 0 when the end of the region is
/// reached, and are freed from the tail (or the head, the newest one). Freeing out of order is
/// allowed but only delays reuse: a freed allocation stays held until all older ones, or all
/// newer ones, are freed. `allocate` is O(1) and
/// `deallocate` amortized O(1).
///
/// [`free_size`](Suballocator::free_size) is exact and counts as held everything from the tail
/// to the head: allocations with their alignment and granularity padding, the bytes skipped at
/// the end of the region when wrapping around, and allocations freed out of order that wait for
/// the tail (which [`for_each_range`](Suballocator::for_each_range) reports as padding of a
/// live neighbour).
/// Buffer-image granularity is checked against the newest allocation and, once the head is
/// before the tail in the region, the oldest live one. Errors:
/// [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) when fewer than `size` bytes are
/// free, [`FragmentedRegion`](SuballocatorError::FragmentedRegion) otherwise.
#[derive(Debug)]
pub struct RingAllocator {
    region_size: DeviceSize,
    /// Allocations not yet passed by the tail or the head, oldest first; the first and the
    /// last one are always live.
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]` (the next allocation's, when there are none). 32 bits,
    /// wrapping: a handle that fits in 32 bits keeps the allocation that holds it three words
    /// (see [`MemoryAlloc`](crate::MemoryAlloc)), and no ring holds four billion entries.
    front_seq: u32,
    /// The end of the newest allocation; 0 when there is none.
    head: DeviceSize,
    allocation_count: usize,
}

/// One allocation and the bytes it holds.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Start of the held range: the head before the allocation, or 0 when it wrapped around.
    start: DeviceSize,
    /// Start of the allocation itself (after its padding).
    offset: DeviceSize,
    /// End of the held range: the end of the allocation, or the end of the region once the
    /// next allocation wrapped around after it.
    end: DeviceSize,
    ty: AllocationType,
    live: bool,
}

/// A held neighbour of a candidate range: where it reaches, and its type.
type Neighbour = Option<(DeviceSize, AllocationType)>;

/// Where `layout` can start in the free range `[from, limit)`, if anywhere: aligned, on a new
/// page after `previous` (its last byte) if that conflicts, and not ending on the first page
/// of `next` (its first byte) if that conflicts.
#[inline]
fn fit(
    from: DeviceSize,
    limit: DeviceSize,
    layout: DeviceLayout,
    ty: AllocationType,
    g: DeviceAlignment,
    previous: Neighbour,
    next: Neighbour,
) -> Option<DeviceSize> {
    let mut start = align_up(from, layout.alignment())?;
    let paged = g != DeviceAlignment::MIN;
    if let Some((last, previous_ty)) = previous.filter(|_| paged) {
        if previous_ty.conflicts_with(ty) && on_same_page(last, start, g) {
            start = align_up(start, g)?;
        }
    }
    let end = start.checked_add(layout.size())?;
    if end > limit {
        return None;
    }
    if let Some((first, next_ty)) = next.filter(|_| paged) {
        // `end` is above `start`: layouts are never empty.
        if next_ty.conflicts_with(ty) && on_same_page(end - 1, first, g) {
            return None;
        }
    }
    Some(start)
}

impl RingAllocator {
    /// Whether the run of held ranges wraps around: the newest allocation lies before the
    /// oldest in the region.
    #[inline]
    fn wrapped(&self) -> bool {
        match (self.entries.front(), self.entries.back()) {
            (Some(front), Some(back)) => back.start < front.start,
            _ => false,
        }
    }

    /// The start of the oldest held range (0 when there is none).
    #[inline]
    fn tail(&self) -> DeviceSize {
        self.entries.front().map_or(0, |e| e.start)
    }

    /// Records an allocation of `layout` at `offset` holding `[start, end of the allocation)`,
    /// a range that `fit` placed in a free gap.
    fn push(
        &mut self,
        start: DeviceSize,
        offset: DeviceSize,
        layout: DeviceLayout,
        ty: AllocationType,
    ) -> Suballocation {
        let end = offset + layout.size();
        // The entries are fewer than 2^32 (see `front_seq`): the sequence numbers of the live
        // ones are distinct modulo 2^32.
        let seq = self.front_seq.wrapping_add(self.entries.len() as u32);
        self.entries.push_back(Entry {
            start,
            offset,
            end,
            ty,
            live: true,
        });
        self.head = end;
        self.allocation_count += 1;
        Suballocation {
            offset,
            size: layout.size(),
            allocation_type: ty,
            handle: SuballocationHandle::new(u64::from(seq)),
        }
    }

    /// Reports the held ranges of `entries[range]` (a run that does not wrap), allocated:
    /// each live allocation's range with the ranges of the allocations freed out of order next
    /// to it (those after it, and before the first live one of the run), as its padding. A
    /// run with no live allocation is reported as one range.
    fn report_held(&self, range: std::ops::Range<usize>, f: &mut dyn FnMut(RangeInfo)) {
        // The held range being gathered: start, end, type, and whether it has a live one.
        let mut group: Option<(DeviceSize, DeviceSize, AllocationType, bool)> = None;
        let report = |f: &mut dyn FnMut(RangeInfo), (start, end, ty, _)| {
            f(RangeInfo {
                offset: start,
                size: end - start,
                kind: RangeKind::Allocated(ty),
            })
        };
        for e in self.entries.range(range) {
            group = Some(match group {
                // A new live allocation after a live one: its own range.
                Some(g) if e.live && g.3 => {
                    report(f, g);
                    (e.start, e.end, e.ty, true)
                }
                // The first live one takes the freed ones before it.
                Some((start, _, _, false)) if e.live => (start, e.end, e.ty, true),
                // A freed one is held by the range before it.
                Some((start, _, ty, live)) => (start, e.end, ty, live),
                None => (e.start, e.end, e.ty, e.live),
            });
        }
        if let Some(g) = group {
            report(f, g);
        }
    }
}

// The trait is unsafe to implement; nothing unsafe happens inside.
#[allow(unsafe_code)]
// SAFETY: every range is placed inside a free gap of the run, `[head, end)`, `[0, tail)` or
// `[head, tail)`, which no held range overlaps and which lies in the region (`fit` checks the
// end against the gap's limit, with overflow checks); its start is aligned by `fit`; and `fit`
// checks granularity against the two held neighbours that can share a page with it, which is
// enough (module docs). The shared property tests (`testing`) check every guarantee after
// every operation.
unsafe impl Suballocator for RingAllocator {
    /// `true`: a stricter alignment only moves each candidate start forward, a larger
    /// request only ends further, and allocations in between only move the head forward or
    /// use up the room before the tail (see the module docs).
    #[inline]
    fn fails_monotonically() -> bool {
        true
    }

    fn new(region_size: DeviceSize) -> Self {
        Self {
            region_size,
            entries: VecDeque::new(),
            front_seq: 0,
            head: 0,
            allocation_count: 0,
        }
    }

    #[inline]
    fn region_size(&self) -> DeviceSize {
        self.region_size
    }

    fn allocate(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Result<Suballocation, SuballocatorError> {
        if self.free_size() < layout.size() {
            return Err(SuballocatorError::OutOfRegionMemory);
        }
        let ty = allocation_type;
        let g = buffer_image_granularity;
        let (Some(front), Some(back)) = (self.entries.front(), self.entries.back()) else {
            // Empty: the whole region is free, and offset 0 is aligned to anything. The size
            // fits by the free-size check.
            return Ok(self.push(0, 0, layout, ty));
        };
        let tail = front.start;
        // `head` is the end of `back`, so above 0.
        let newest = Some((self.head - 1, back.ty));
        let oldest = Some((front.offset, front.ty));
        if self.wrapped() {
            if let Some(offset) = fit(self.head, tail, layout, ty, g, newest, oldest) {
                return Ok(self.push(self.head, offset, layout, ty));
            }
        } else {
            if let Some(offset) = fit(self.head, self.region_size, layout, ty, g, newest, None) {
                return Ok(self.push(self.head, offset, layout, ty));
            }
            if let Some(offset) = fit(0, tail, layout, ty, g, None, oldest) {
                // The bytes skipped at the end stay held, by the newest allocation.
                let region_size = self.region_size;
                if let Some(back) = self.entries.back_mut() {
                    back.end = region_size;
                }
                return Ok(self.push(0, offset, layout, ty));
            }
        }
        Err(SuballocatorError::FragmentedRegion)
    }

    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        // A handle that is no sequence number (above 32 bits) finds no entry.
        let index = u32::try_from(suballocation.handle.get())
            .map_or(usize::MAX, |seq| seq.wrapping_sub(self.front_seq) as usize);
        let entry = self
            .entries
            .get_mut(index)
            .filter(|e| e.live && e.offset == suballocation.offset);
        debug_assert!(
            entry.is_some(),
            "{suballocation:?} is not a live allocation of this ring"
        );
        // A bad handle breaks the caller's contract; ignoring it keeps the bookkeeping whole.
        let Some(entry) = entry else { return };
        entry.live = false;
        self.allocation_count -= 1;
        if index == 0 {
            while self.entries.front().is_some_and(|e| !e.live) {
                self.entries.pop_front();
                self.front_seq = self.front_seq.wrapping_add(1);
            }
        }
        // The head moves back over the newest ones when they are freed (the oldest is live,
        // so this stops at a live one), to the end of the newest live one: its held range,
        // which keeps the bytes it skipped at the end of the region if the run wrapped after
        // it.
        while self.entries.back().is_some_and(|e| !e.live) {
            self.entries.pop_back();
        }
        self.head = self.entries.back().map_or(0, |e| e.end);
    }

    #[inline]
    fn free_size(&self) -> DeviceSize {
        if self.entries.is_empty() {
            self.region_size
        } else if self.wrapped() {
            self.tail() - self.head
        } else {
            self.region_size - (self.head - self.tail())
        }
    }

    #[inline]
    fn largest_free_range(&self) -> DeviceSize {
        if self.entries.is_empty() {
            self.region_size
        } else if self.wrapped() {
            self.tail() - self.head
        } else {
            self.tail().max(self.region_size - self.head)
        }
    }

    #[inline]
    fn allocation_count(&self) -> usize {
        self.allocation_count
    }

    fn reset(&mut self) {
        // Sequence numbers keep counting, so that debug builds catch a stale handle.
        self.front_seq = self.front_seq.wrapping_add(self.entries.len() as u32);
        self.entries.clear();
        self.head = 0;
        self.allocation_count = 0;
    }

    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
        let (tail, head, len) = (self.tail(), self.head, self.entries.len());
        if self.entries.is_empty() {
            report_free(f, 0, self.region_size);
        } else if self.wrapped() {
            // The first allocation after the wrap is the only one starting at 0 (the oldest
            // starts at the tail, above 0).
            let wrap = self.entries.iter().position(|e| e.start == 0).unwrap_or(0);
            self.report_held(wrap..len, f);
            report_free(f, head, tail);
            self.report_held(0..wrap, f);
        } else {
            report_free(f, 0, tail);
            self.report_held(0..len, f);
            report_free(f, head, self.region_size);
        }
    }
}

/// Reports `[from, to)` as free, unless it is empty.
fn report_free(f: &mut dyn FnMut(RangeInfo), from: DeviceSize, to: DeviceSize) {
    if from < to {
        f(RangeInfo {
            offset: from,
            size: to - from,
            kind: RangeKind::Free,
        });
    }
}

#[cfg(test)]
mod tests;
