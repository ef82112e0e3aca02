//! The default suballocator: a two-level segregated fit (TLSF) free list.
//!
//! # Algorithm
//!
//! The region is cut into *nodes*, each a range that is either free or held by one allocation.
//! Nodes form a doubly linked list in offset order (the *physical* list), and two free nodes
//! are never neighbours in it: freeing a node merges it with a free node on either side.
//!
//! Free nodes are also filed by size into *buckets*. The first level of a bucket is the size's
//! power of two, the second level one of 16 equal slices of that power of two (sizes below 16
//! bytes get a bucket each). A bitmap of non-empty buckets per first level, and one of
//! non-empty first levels, find the first non-empty bucket at or above any bucket with two
//! `trailing_zeros`, whatever the number of free ranges.
//!
//! To allocate `size` bytes at alignment `a` with granularity `g`, the allocator searches in
//! three steps, each only when the one before found nothing:
//!
//! 1. It computes the worst-case footprint `size + (max(a, g) - 1) + (g - 1)` (the last term
//!    only when `g > 1`), rounds it up to a bucket boundary, and takes the first range of the
//!    first non-empty bucket from there: every range in it is large enough whatever its offset
//!    and neighbours.
//! 2. It tries the first range of the bucket holding `size` itself and of a few non-empty
//!    buckets above it (at most 16 candidates), because a range smaller than the worst case
//!    often fits anyway, for example one that happens to be aligned.
//! 3. It walks every range of every non-empty bucket from the one holding `size` upwards (the
//!    buckets below hold only smaller ranges) and takes the first that fits. Each range is
//!    checked exactly (see below), so this finds a place whenever one exists.
//!
//! The first two steps are the fast path, O(1); the third makes the search complete, so
//! [`FragmentedRegion`](SuballocatorError::FragmentedRegion) means that no free range can hold
//! the request with its alignment and granularity, and failure is monotone: a request fails
//! only if every request at least as large and as strictly aligned, of the same type, fails
//! as well ([`fails_monotonically`](Suballocator::fails_monotonically)). It reports
//! [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) exactly when fewer than `size`
//! bytes are free in total. (One more failure exists in theory: a region cut into about four
//! billion ranges runs out of node indices and answers `FragmentedRegion` to every request
//! until a free.)
//!
//! Nodes live in one `Vec`; a node that a merge frees goes onto a list of recycled nodes and
//! is reused by the next split, so once the number of ranges has peaked, allocating and
//! freeing never touch the heap. The [`SuballocationHandle`] is the node's index.
//!
//! # Padding and granularity
//!
//! The allocation starts at the first offset of the chosen range that is aligned and that is
//! not on the last granularity page of a [conflicting](AllocationType::conflicts_with)
//! allocated neighbour before it; it is rejected if its last byte would be on the first page
//! of a conflicting allocated neighbour after it, that is on the page where the neighbour's
//! *allocation* starts, past any padding its node absorbed (see below). Checking the two
//! neighbours is enough: any other range on one of those pages lies beyond the neighbour and,
//! as it shares a page with the neighbour, cannot conflict with the neighbour's type, hence
//! not with ours. No later start in the range does better (it only ends later), so a range
//! that fails this check cannot hold the request anywhere.
//!
//! The bytes skipped before the start (alignment and granularity padding) become a free range
//! of their own when there are at least 64 of them; fewer are *absorbed* into the
//! allocation's node, held by it, counted as used by [`free_size`](Suballocator::free_size),
//! and freed with it. The node remembers how many, so the check against a following
//! neighbour sees where its allocation really starts. The bytes after the end always become a
//! free range.
//!
//! # Efficiency
//!
//! Deallocation takes constant time. Allocation takes constant time whenever the fast path
//! finds a range: a few bitmap operations, at most 17 range checks, and a constant number of
//! list updates. That covers almost every request in practice: any request whose worst-case
//! footprint, rounded up to a size class, is no larger than the largest free range succeeds
//! in step 1. The complete search of step 3 only runs for requests the fast path could not place,
//! requests that are about to fail or nearly so, and costs O(free ranges) in the worst case:
//! a failing request checks every free range at least `size` bytes long. (An allocator over
//! many regions need not pay that again and again: with
//! [`fails_monotonically`](Suballocator::fails_monotonically) it may skip a region for
//! requests implied by one that failed there since its last free.)
//!
//! Memory use is one 32-byte node per range (free or allocated) plus a fixed 4 KiB table of
//! bucket heads. Internal fragmentation is at most 63 bytes of absorbed padding per
//! allocation. Because the search takes the first range of a bucket that is sure to fit
//! rather than the smallest range that fits, large ranges are occasionally split where a snug
//! one exists (good fit, not best fit).

mod buckets;
mod strategy;

use self::buckets::{Bucket, Buckets};
use super::*;
use crate::layout::{align_up, on_same_page};

/// "No node": the end of a list.
const NONE: u32 = u32::MAX;
/// The state of a node that is not free, kept where a free node keeps its `prev_free` link
/// (see [`Node`]): node indices stay below `FIRST_TAG`.
const TAG_RECYCLED: u32 = u32::MAX - 1;
const TAG_USED_UNKNOWN: u32 = TAG_RECYCLED - 1;
const TAG_USED_LINEAR: u32 = TAG_USED_UNKNOWN - 1;
const TAG_USED_NON_LINEAR: u32 = TAG_USED_LINEAR - 1;
const FIRST_TAG: u32 = TAG_USED_NON_LINEAR;
/// Padding before an allocation shorter than this is absorbed into it rather than split off.
const MIN_SPLIT_PADDING: DeviceSize = 64;
/// Quick fallback candidates (bucket heads) tried once the sure-fit bucket search found nothing,
/// before the complete search.
const MAX_FALLBACK_CANDIDATES: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Used(AllocationType),
    /// On the recycled list; not part of the region.
    Recycled,
}

impl State {
    /// What `Node::prev_free` holds for a node in this state (a free node not yet in a
    /// bucket list: `NONE`).
    #[inline]
    fn tag(self) -> u32 {
        match self {
            State::Free => NONE,
            State::Recycled => TAG_RECYCLED,
            State::Used(AllocationType::Unknown) => TAG_USED_UNKNOWN,
            State::Used(AllocationType::Linear) => TAG_USED_LINEAR,
            State::Used(AllocationType::NonLinear) => TAG_USED_NON_LINEAR,
        }
    }
}

/// One range of the region, 32 bytes: two nodes per cache line, none straddling two.
#[derive(Clone, Copy, Debug)]
struct Node {
    offset: DeviceSize,
    size: DeviceSize,
    /// Physical neighbours.
    prev: u32,
    next: u32,
    /// A free node's previous node in its bucket list (or `NONE`); for any other node, its
    /// state as a tag (`TAG_*`), which no node index reaches. Only free nodes need the link,
    /// so the state costs no room of its own.
    prev_free: u32,
    /// A free node's next node in its bucket list; a recycled node's next recycled node; an
    /// allocated node's absorbed padding, the bytes before its allocation starts (below
    /// [`MIN_SPLIT_PADDING`]).
    next_free: u32,
}

impl Node {
    #[inline]
    fn end(&self) -> DeviceSize {
        self.offset + self.size
    }

    /// Where the allocation of an allocated node starts (after its absorbed padding).
    #[inline]
    fn allocation_start(&self) -> DeviceSize {
        debug_assert!(matches!(self.state(), State::Used(_)));
        self.offset + DeviceSize::from(self.next_free)
    }

    #[inline]
    fn state(&self) -> State {
        match self.prev_free {
            TAG_RECYCLED => State::Recycled,
            TAG_USED_UNKNOWN => State::Used(AllocationType::Unknown),
            TAG_USED_LINEAR => State::Used(AllocationType::Linear),
            TAG_USED_NON_LINEAR => State::Used(AllocationType::NonLinear),
            _ => State::Free,
        }
    }

    /// Sets the state; a node made free is unlinked until it is inserted into a bucket.
    #[inline]
    fn set_state(&mut self, state: State) {
        self.prev_free = state.tag();
    }
}

/// A two-level segregated fit (TLSF) allocator with O(1) deallocation, and O(1) allocation
/// unless the request is about to fail.
///
/// Free ranges are filed into size classes (one per power of two, each cut into 16 slices)
/// with a bitmap of non-empty classes, so a range that surely fits is found with two
/// `trailing_zeros`, and a freed range is merged with free neighbours at once. The search is a
/// good fit, not a best fit: it may split a larger range where a snug one exists. When neither
/// a range that surely fits nor one of 16 quick candidates does, allocation falls back to
/// checking every free range large enough, O(free ranges), so that it fails only when no free
/// range can hold the request. Once the number of ranges has peaked, allocation and
/// deallocation never allocate heap memory.
///
/// Buffer-image granularity is checked against both neighbours of the candidate range.
/// [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) means fewer free bytes than
/// requested; [`FragmentedRegion`](SuballocatorError::FragmentedRegion) means that no free
/// range can hold the request with its alignment and granularity. Failure is therefore
/// monotone ([`fails_monotonically`](Suballocator::fails_monotonically) is `true`).
///
/// Alignment padding of fewer than 64 bytes in front of an allocation is held by it (counted
/// as used by [`free_size`](Suballocator::free_size)); larger padding stays free.
/// [`largest_free_range`](Suballocator::largest_free_range) is the upper size limit of the
/// highest non-empty size class (capped by the free size), so it overestimates the largest
/// free range by less than 1/16 of it.
#[derive(Debug)]
pub struct FreeListAllocator {
    region_size: DeviceSize,
    free_size: DeviceSize,
    allocation_count: usize,
    nodes: Vec<Node>,
    /// Head of the recycled-node list.
    recycled: u32,
    /// The node at offset 0, `NONE` for an empty region.
    first: u32,
    buckets: Buckets,
}

impl FreeListAllocator {
    fn new_node(&mut self, node: Node) -> u32 {
        if self.recycled != NONE {
            let idx = self.recycled;
            self.recycled = self.nodes[idx as usize].next_free;
            self.nodes[idx as usize] = node;
            idx
        } else {
            // `allocate` made sure the index fits below `NONE`.
            let idx = self.nodes.len() as u32;
            self.nodes.push(node);
            idx
        }
    }

    fn recycle(&mut self, idx: u32) {
        let node = &mut self.nodes[idx as usize];
        node.set_state(State::Recycled);
        node.next_free = self.recycled;
        self.recycled = idx;
    }

    /// Where an allocation of `size` bytes could start in the free node `idx`, if anywhere.
    #[inline(always)]
    fn fit(
        &self,
        idx: u32,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Option<DeviceSize> {
        let node = &self.nodes[idx as usize];
        let mut start = align_up(node.offset, alignment)?;
        let check_pages = granularity != DeviceAlignment::MIN;
        if check_pages && node.prev != NONE {
            // The previous node ends at `node.offset`, so its last byte is `node.offset - 1`.
            if let State::Used(prev_ty) = self.nodes[node.prev as usize].state() {
                if prev_ty.conflicts_with(ty) && on_same_page(node.offset - 1, start, granularity) {
                    start = align_up(start, alignment.max(granularity))?;
                }
            }
        }
        let end = start.checked_add(size)?;
        if end > node.end() {
            return None;
        }
        if check_pages && node.next != NONE {
            // The next node starts at `node.end()`, its allocation after its absorbed padding,
            // possibly on a later page.
            let next = &self.nodes[node.next as usize];
            if let State::Used(next_ty) = next.state() {
                if next_ty.conflicts_with(ty)
                    && on_same_page(end - 1, next.allocation_start(), granularity)
                {
                    return None;
                }
            }
        }
        Some(start)
    }

    /// The complete search, for when the quick one found nothing: every free node of every
    /// bucket that may hold `size` bytes, in increasing bucket order, until one fits. `None`
    /// means that no free range can hold the request at all.
    ///
    /// Kept out of line: it runs only for requests that are about to fail or nearly so.
    #[cold]
    #[inline(never)]
    fn search_all(
        &self,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Option<(u32, DeviceSize)> {
        // Buckets below the one containing `size` hold only smaller ranges.
        let mut from = Some(Bucket::containing(size));
        while let Some(bucket) = from.and_then(|b| self.buckets.first_non_empty_from(b)) {
            let mut idx = self.buckets.head(bucket);
            while idx != NONE {
                let node = &self.nodes[idx as usize];
                if node.size >= size {
                    if let Some(start) = self.fit(idx, size, alignment, ty, granularity) {
                        return Some((idx, start));
                    }
                }
                idx = node.next_free;
            }
            from = bucket.next();
        }
        None
    }

    /// Turns `[start, start + size)` of the free node `idx` into an allocation, splitting off
    /// the padding (if long enough) and the tail as free nodes.
    fn take(
        &mut self,
        idx: u32,
        start: DeviceSize,
        size: DeviceSize,
        ty: AllocationType,
    ) -> Suballocation {
        let Node {
            offset,
            size: free_len,
            prev,
            next,
            ..
        } = self.nodes[idx as usize];
        let end = start + size;
        // The common case of carving the front of a large range: when the allocation starts
        // at the range (no padding to split off) and the rest stays in the same size class,
        // the free node keeps its place in its bucket list and just shrinks to the tail; only
        // the allocation gets a new node. That saves unlinking and relinking the free node.
        if start - offset < MIN_SPLIT_PADDING
            && end < offset + free_len
            && Bucket::containing(offset + free_len - end) == Bucket::containing(free_len)
        {
            let used = self.new_node(Node {
                offset,
                size: end - offset,
                prev,
                next: idx,
                prev_free: State::Used(ty).tag(),
                // Below `MIN_SPLIT_PADDING`.
                next_free: (start - offset) as u32,
            });
            if prev != NONE {
                self.nodes[prev as usize].next = used;
            } else {
                self.first = used;
            }
            let tail = &mut self.nodes[idx as usize];
            tail.prev = used;
            tail.offset = end;
            tail.size = offset + free_len - end;
            self.free_size -= end - offset;
            self.allocation_count += 1;
            return Suballocation {
                offset: start,
                size,
                allocation_type: ty,
                handle: SuballocationHandle::new(u64::from(used)),
            };
        }
        self.buckets.remove(&mut self.nodes, idx);
        let range_end = self.nodes[idx as usize].end();
        let mut node_start = offset;
        if start - offset >= MIN_SPLIT_PADDING {
            let pad = self.new_node(Node {
                offset,
                size: start - offset,
                prev,
                next: idx,
                prev_free: State::Free.tag(),
                next_free: NONE,
            });
            if prev != NONE {
                self.nodes[prev as usize].next = pad;
            } else {
                self.first = pad;
            }
            self.nodes[idx as usize].prev = pad;
            self.buckets.insert(&mut self.nodes, pad);
            node_start = start;
        }
        if end < range_end {
            let tail = self.new_node(Node {
                offset: end,
                size: range_end - end,
                prev: idx,
                next,
                prev_free: State::Free.tag(),
                next_free: NONE,
            });
            if next != NONE {
                self.nodes[next as usize].prev = tail;
            }
            self.nodes[idx as usize].next = tail;
            self.buckets.insert(&mut self.nodes, tail);
        }
        let node = &mut self.nodes[idx as usize];
        node.offset = node_start;
        node.size = end - node_start;
        node.set_state(State::Used(ty));
        // Below `MIN_SPLIT_PADDING`, or 0 once the padding was split off.
        node.next_free = (start - node_start) as u32;
        self.free_size -= node.size;
        self.allocation_count += 1;
        Suballocation {
            offset: start,
            size,
            allocation_type: ty,
            handle: SuballocationHandle::new(u64::from(idx)),
        }
    }
}

// The trait is unsafe to implement; nothing unsafe happens inside.
#[allow(unsafe_code)]
// SAFETY: ranges are carved from free nodes that tile the region, each candidate (from any of
// the three search steps) checked by `fit` for alignment and for granularity against the
// allocations of both neighbours (a node records the padding it absorbed, so the next
// allocation's start is known exactly); the shared property tests (`testing`) check every
// guarantee after every operation.
unsafe impl Suballocator for FreeListAllocator {
    /// The search is complete: it fails only when no free range can hold the request (or, in a
    /// region of some four billion ranges, when node indices run out, for every request alike
    /// until a free). A range that holds `s' >= s` bytes at an offset aligned to `a' >= a`
    /// holds `s` bytes aligned to `a` at the same offset, on no page it did not touch already;
    /// and an allocation in between only takes free bytes away and adds live ranges to
    /// conflict with, so the failure stays.
    #[inline]
    fn fails_monotonically() -> bool {
        true
    }

    fn new(region_size: DeviceSize) -> Self {
        let mut this = Self {
            region_size,
            free_size: 0,
            allocation_count: 0,
            nodes: Vec::new(),
            recycled: NONE,
            first: NONE,
            buckets: Buckets::new(),
        };
        this.reset();
        this
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
        let size = layout.size();
        if size > self.free_size {
            return Err(SuballocatorError::OutOfRegionMemory);
        }
        // An allocation adds at most two nodes; keep every index below the state tags.
        if self.recycled == NONE && self.nodes.len() >= (FIRST_TAG - 2) as usize {
            return Err(SuballocatorError::FragmentedRegion);
        }
        let alignment = layout.alignment();
        let granularity = buffer_image_granularity;
        let worst_case = size
            .checked_add(alignment.max(granularity).as_devicesize() - 1)
            .and_then(|s| s.checked_add(granularity.as_devicesize() - 1));
        if let Some(bucket) = worst_case
            .and_then(Bucket::all_at_least)
            .and_then(|b| self.buckets.first_non_empty_from(b))
        {
            let idx = self.buckets.head(bucket);
            if let Some(start) = self.fit(idx, size, alignment, allocation_type, granularity) {
                return Ok(self.take(idx, start, size, allocation_type));
            }
        }
        let mut from = Some(Bucket::containing(size));
        for _ in 0..MAX_FALLBACK_CANDIDATES {
            let Some(bucket) = from.and_then(|b| self.buckets.first_non_empty_from(b)) else {
                break;
            };
            let idx = self.buckets.head(bucket);
            if let Some(start) = self.fit(idx, size, alignment, allocation_type, granularity) {
                return Ok(self.take(idx, start, size, allocation_type));
            }
            from = bucket.next();
        }
        match self.search_all(size, alignment, allocation_type, granularity) {
            Some((idx, start)) => Ok(self.take(idx, start, size, allocation_type)),
            None => Err(SuballocatorError::FragmentedRegion),
        }
    }

    /// Every strategy: see the `strategy` module of this file's folder.
    fn allocate_with_strategy(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
        strategy: AllocationStrategy,
    ) -> Result<Suballocation, SuballocatorError> {
        self.allocate_by_strategy(layout, allocation_type, buffer_image_granularity, strategy)
    }

    /// Frees the node named by the handle and merges it with free neighbours.
    ///
    /// # Panics
    ///
    /// May panic if the contract is broken (a handle that names no live allocation).
    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        let mut idx = suballocation.handle.get() as u32;
        let node = self.nodes[idx as usize];
        assert!(
            matches!(node.state(), State::Used(_))
                && node.allocation_start() == suballocation.offset
                && node.end() - suballocation.offset == suballocation.size,
            "{suballocation:?} is not a live allocation of this FreeListAllocator",
        );
        self.free_size += node.size;
        self.allocation_count -= 1;
        self.nodes[idx as usize].set_state(State::Free);
        if node.next != NONE && self.nodes[node.next as usize].state() == State::Free {
            let next = node.next;
            self.buckets.remove(&mut self.nodes, next);
            let Node {
                size, next: after, ..
            } = self.nodes[next as usize];
            self.nodes[idx as usize].size += size;
            self.nodes[idx as usize].next = after;
            if after != NONE {
                self.nodes[after as usize].prev = idx;
            }
            self.recycle(next);
        }
        if node.prev != NONE && self.nodes[node.prev as usize].state() == State::Free {
            let prev = node.prev;
            self.buckets.remove(&mut self.nodes, prev);
            let Node {
                size, next: after, ..
            } = self.nodes[idx as usize];
            self.nodes[prev as usize].size += size;
            self.nodes[prev as usize].next = after;
            if after != NONE {
                self.nodes[after as usize].prev = prev;
            }
            self.recycle(idx);
            idx = prev;
        }
        self.buckets.insert(&mut self.nodes, idx);
    }

    #[inline]
    fn free_size(&self) -> DeviceSize {
        self.free_size
    }

    #[inline]
    fn largest_free_range(&self) -> DeviceSize {
        self.buckets
            .highest_non_empty()
            .map_or(0, |b| b.max_size().min(self.free_size))
    }

    #[inline]
    fn allocation_count(&self) -> usize {
        self.allocation_count
    }

    fn reset(&mut self) {
        self.nodes.clear();
        self.buckets.clear();
        self.recycled = NONE;
        self.first = NONE;
        self.free_size = self.region_size;
        self.allocation_count = 0;
        if self.region_size > 0 {
            self.first = self.new_node(Node {
                offset: 0,
                size: self.region_size,
                prev: NONE,
                next: NONE,
                prev_free: State::Free.tag(),
                next_free: NONE,
            });
            self.buckets.insert(&mut self.nodes, self.first);
        }
    }

    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
        let mut idx = self.first;
        while idx != NONE {
            let node = &self.nodes[idx as usize];
            let kind = match node.state() {
                State::Free => RangeKind::Free,
                State::Used(ty) => RangeKind::Allocated(ty),
                State::Recycled => unreachable!("a recycled node is linked into the region"),
            };
            f(RangeInfo {
                offset: node.offset,
                size: node.size,
                kind,
            });
            idx = node.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suballocator::testing::{self, Checker};
    use proptest::prelude::*;
    use AllocationType::{Linear, NonLinear, Unknown};

    const KIB: u64 = 1024;

    fn al(value: u64) -> DeviceAlignment {
        DeviceAlignment::new(value).unwrap()
    }

    fn layout(size: u64, alignment: u64) -> DeviceLayout {
        DeviceLayout::from_size_alignment(size, alignment).unwrap()
    }

    fn checker(region: u64, granularity: u64) -> Checker<FreeListAllocator> {
        Checker::new(FreeListAllocator::new(region), al(granularity))
    }

    fn alloc(c: &mut Checker<FreeListAllocator>, size: u64, align: u64, ty: AllocationType) -> u64 {
        c.allocate(layout(size, align), ty).unwrap().offset
    }

    /// Frees the live allocation at `offset` (the checker frees by rank in offset order).
    fn free_at(c: &mut Checker<FreeListAllocator>, offset: u64) {
        let mut rank = 0;
        c.sub.for_each_range(&mut |r| {
            if matches!(r.kind, RangeKind::Allocated(_)) && r.offset + r.size <= offset {
                rank += 1;
            }
        });
        let before = c.live_count();
        c.free(rank);
        assert_eq!(c.live_count(), before - 1);
    }

    /// The region as `(offset, size, None for free / Some(type))`.
    fn ranges(s: &FreeListAllocator) -> Vec<(u64, u64, Option<AllocationType>)> {
        let mut out = Vec::new();
        s.for_each_range(&mut |r| {
            let ty = match r.kind {
                RangeKind::Free => None,
                RangeKind::Allocated(ty) => Some(ty),
            };
            out.push((r.offset, r.size, ty));
        });
        out
    }

    #[test]
    fn a_node_is_half_a_cache_line() {
        assert_eq!(std::mem::size_of::<Node>(), 32);
        for state in [
            State::Free,
            State::Recycled,
            State::Used(Unknown),
            State::Used(Linear),
            State::Used(NonLinear),
        ] {
            let mut node = Node {
                offset: 0,
                size: 1,
                prev: NONE,
                next: NONE,
                prev_free: 7,
                next_free: NONE,
            };
            node.set_state(state);
            assert_eq!(node.state(), state);
        }
        // A free node's link, whatever its value below the tags, reads as free.
        for link in [0, 1, FIRST_TAG - 1, NONE] {
            let node = Node {
                offset: 0,
                size: 1,
                prev: NONE,
                next: NONE,
                prev_free: link,
                next_free: NONE,
            };
            assert_eq!(node.state(), State::Free);
        }
    }

    /// Internal invariants the public checker cannot see: free ranges are coalesced, every
    /// free node is in the list of the bucket its size belongs to, the bitmaps agree with the
    /// lists, and the physical list links both ways.
    fn check_internal(s: &FreeListAllocator) {
        let mut free_nodes = 0;
        let mut prev = NONE;
        let mut idx = s.first;
        while idx != NONE {
            let node = &s.nodes[idx as usize];
            assert_eq!(node.prev, prev, "physical back link of node {idx}");
            if node.state() == State::Free {
                free_nodes += 1;
                assert!(
                    prev == NONE || s.nodes[prev as usize].state() != State::Free,
                    "two free neighbours at {}",
                    node.offset
                );
            }
            assert_ne!(node.state(), State::Recycled);
            if let State::Used(_) = node.state() {
                assert!(
                    DeviceSize::from(node.next_free) < MIN_SPLIT_PADDING.min(node.size),
                    "absorbed padding {} of node {idx}",
                    node.next_free
                );
            }
            prev = idx;
            idx = node.next;
        }
        let mut listed = 0;
        let mut bucket = Some(Bucket::containing(1));
        while let Some(b) = bucket {
            let head = s.buckets.head(b);
            assert_eq!(s.buckets.first_non_empty_from(b) == Some(b), head != NONE);
            let mut prev_free = NONE;
            let mut idx = head;
            while idx != NONE {
                let node = &s.nodes[idx as usize];
                assert_eq!(node.state(), State::Free);
                assert_eq!(Bucket::containing(node.size), b);
                assert_eq!(node.prev_free, prev_free);
                listed += 1;
                prev_free = idx;
                idx = node.next_free;
            }
            bucket = b.next();
        }
        assert_eq!(listed, free_nodes, "free nodes missing from the buckets");
        let mut recycled = 0;
        let mut idx = s.recycled;
        while idx != NONE {
            assert_eq!(s.nodes[idx as usize].state(), State::Recycled);
            recycled += 1;
            idx = s.nodes[idx as usize].next_free;
        }
        let mut linked = 0;
        s.for_each_range(&mut |_| linked += 1);
        assert_eq!(linked + recycled, s.nodes.len(), "nodes leaked");
    }

    #[test]
    fn empty_and_one_byte_regions() {
        let mut c = checker(0, 1);
        assert_eq!(c.sub.free_size(), 0);
        assert_eq!(c.sub.largest_free_range(), 0);
        assert!(ranges(&c.sub).is_empty());
        assert_eq!(
            c.allocate(layout(1, 1), Unknown),
            Err(SuballocatorError::OutOfRegionMemory)
        );
        c.free_all_and_reuse(0);

        let mut c = checker(1, 1);
        assert_eq!(c.sub.largest_free_range(), 1);
        assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
        assert_eq!(c.sub.largest_free_range(), 0);
        assert_eq!(
            c.allocate(layout(1, 1), Linear),
            Err(SuballocatorError::OutOfRegionMemory)
        );
        c.free_all_and_reuse(1);
        check_internal(&c.sub);
    }

    #[test]
    fn places_consecutively_and_splits_the_tail() {
        let mut c = checker(1000, 1);
        assert_eq!(alloc(&mut c, 100, 1, Linear), 0);
        assert_eq!(alloc(&mut c, 200, 1, NonLinear), 100);
        assert_eq!(alloc(&mut c, 300, 4, Unknown), 300);
        assert_eq!(
            ranges(&c.sub),
            [
                (0, 100, Some(Linear)),
                (100, 200, Some(NonLinear)),
                (300, 300, Some(Unknown)),
                (600, 400, None),
            ]
        );
        assert_eq!(c.sub.free_size(), 400);
        assert_eq!(c.sub.allocation_count(), 3);
        assert_eq!(c.sub.largest_free_range(), 400);
        // Exactly the rest fits, with no tail left.
        assert_eq!(alloc(&mut c, 400, 1, Linear), 600);
        assert_eq!(c.sub.free_size(), 0);
        assert_eq!(c.sub.largest_free_range(), 0);
        check_internal(&c.sub);
        c.free_all_and_reuse(1000);
    }

    #[test]
    fn coalesces_with_both_neighbours() {
        let mut c = checker(1000, 1);
        for i in 0..4 {
            assert_eq!(alloc(&mut c, 100, 1, Linear), i * 100);
        }
        free_at(&mut c, 100);
        free_at(&mut c, 300); // merges with the free tail after it
        assert_eq!(
            ranges(&c.sub),
            [
                (0, 100, Some(Linear)),
                (100, 100, None),
                (200, 100, Some(Linear)),
                (300, 700, None),
            ]
        );
        free_at(&mut c, 200); // merges with both sides
        assert_eq!(ranges(&c.sub), [(0, 100, Some(Linear)), (100, 900, None)]);
        check_internal(&c.sub);
        assert_eq!(alloc(&mut c, 900, 1, Linear), 100);
        free_at(&mut c, 0); // merges with nothing: its neighbour is allocated
        assert_eq!(ranges(&c.sub), [(0, 100, None), (100, 900, Some(Linear))]);
        free_at(&mut c, 100);
        assert_eq!(ranges(&c.sub), [(0, 1000, None)]);
        check_internal(&c.sub);
    }

    #[test]
    fn padding_is_split_off_or_absorbed() {
        let mut c = checker(4096, 1);
        assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
        // 255 bytes of padding: split off as a free range.
        assert_eq!(alloc(&mut c, 10, 256, Linear), 256);
        assert_eq!(c.sub.free_size(), 4096 - 11);
        // 15 bytes of padding: absorbed, held by the allocation.
        assert_eq!(alloc(&mut c, 10, 16, Linear), 16);
        assert_eq!(
            ranges(&c.sub),
            [
                (0, 1, Some(Linear)),
                (1, 25, Some(Linear)),
                (26, 230, None),
                (256, 10, Some(Linear)),
                (266, 3830, None),
            ]
        );
        assert_eq!(c.sub.free_size(), 4096 - 11 - 25);
        check_internal(&c.sub);
        // Freeing gives the absorbed padding back.
        free_at(&mut c, 16);
        assert_eq!(c.sub.free_size(), 4096 - 11);
        assert_eq!(ranges(&c.sub)[1], (1, 255, None));
        check_internal(&c.sub);
        c.free_all_and_reuse(4096);
    }

    #[test]
    fn granularity_against_the_previous_neighbour() {
        let mut c = checker(8192, 1024);
        assert_eq!(alloc(&mut c, 100, 1, Linear), 0);
        // Different kind: moved to the next page; the skipped bytes stay free.
        assert_eq!(alloc(&mut c, 100, 1, NonLinear), 1024);
        assert_eq!(ranges(&c.sub)[1], (100, 924, None));
        // Same kind: may share the page.
        assert_eq!(alloc(&mut c, 100, 1, NonLinear), 1124);
        // Unknown conflicts with everything, itself included.
        assert_eq!(alloc(&mut c, 100, 1, Unknown), 2048);
        assert_eq!(alloc(&mut c, 100, 1, Unknown), 3072);
        // Padding up to the page is absorbed when short.
        assert_eq!(alloc(&mut c, 1000, 1, Unknown), 4096);
        assert_eq!(alloc(&mut c, 100, 1, Linear), 5120);
        assert!(ranges(&c.sub).contains(&(5096, 124, Some(Linear))));
        check_internal(&c.sub);
        c.free_all_and_reuse(8192);
    }

    #[test]
    fn granularity_against_the_next_neighbour() {
        let mut c = checker(4000, 1024);
        assert_eq!(alloc(&mut c, 3000, 1, NonLinear), 0);
        assert_eq!(alloc(&mut c, 1000, 1, NonLinear), 3000);
        free_at(&mut c, 0);
        // [0, 3000) is free, followed by a non-linear range starting on page 2048. A linear
        // range ending on that page would share it (vulkano's free list allowed this).
        assert_eq!(
            c.allocate(layout(2100, 1), Linear),
            Err(SuballocatorError::FragmentedRegion)
        );
        assert_eq!(
            c.allocate(layout(2049, 1), Unknown),
            Err(SuballocatorError::FragmentedRegion)
        );
        // Ending on the page before is fine.
        assert_eq!(alloc(&mut c, 2048, 1, Linear), 0);
        free_at(&mut c, 0);
        // The same kind may share the page.
        assert_eq!(alloc(&mut c, 3000, 1, NonLinear), 0);
        check_internal(&c.sub);
        c.free_all_and_reuse(4000);

        // Without a granularity constraint there is nothing to check.
        let mut c = checker(4000, 1);
        assert_eq!(alloc(&mut c, 3000, 1, NonLinear), 0);
        assert_eq!(alloc(&mut c, 1000, 1, NonLinear), 3000);
        free_at(&mut c, 0);
        assert_eq!(alloc(&mut c, 2100, 1, Linear), 0);
    }

    #[test]
    fn granularity_looks_past_the_next_neighbours_absorbed_padding() {
        let mut c = checker(2048, 1024);
        assert_eq!(alloc(&mut c, 1000, 1, Linear), 0);
        // Moved to the next page; the 24 bytes skipped are absorbed into its node.
        assert_eq!(alloc(&mut c, 10, 1, NonLinear), 1024);
        assert_eq!(ranges(&c.sub)[1], (1000, 34, Some(NonLinear)));
        free_at(&mut c, 0);
        // [0, 1000) is free and its next node starts on page 0, but the non-linear bytes
        // start on page 1024: a linear range may end on page 0.
        assert_eq!(alloc(&mut c, 1000, 1, Linear), 0);
        check_internal(&c.sub);
    }

    #[test]
    fn error_kinds() {
        let mut c = checker(1000, 1);
        for (size, offset) in [(50, 0), (300, 50), (100, 350), (300, 450), (250, 750)] {
            assert_eq!(alloc(&mut c, size, 1, Linear), offset);
        }
        free_at(&mut c, 50);
        free_at(&mut c, 450);
        // 600 bytes free, in two ranges of 300: [50, 350) and [450, 750).
        assert_eq!(
            c.allocate(layout(500, 1), Linear),
            Err(SuballocatorError::FragmentedRegion)
        );
        assert_eq!(
            c.allocate(layout(601, 1), Linear),
            Err(SuballocatorError::OutOfRegionMemory)
        );
        // Fits in size, not with its alignment: no multiple of 256 leaves 250 bytes in either.
        assert_eq!(
            c.allocate(layout(250, 256), Linear),
            Err(SuballocatorError::FragmentedRegion)
        );
        // A smaller one does, at 512.
        assert_eq!(alloc(&mut c, 200, 256, Linear), 512);
        free_at(&mut c, 512);
        // Both ranges are in one size class; it is a LIFO list.
        assert_eq!(alloc(&mut c, 300, 1, Linear), 450);
        assert_eq!(alloc(&mut c, 300, 1, Linear), 50);
        check_internal(&c.sub);
    }

    #[test]
    fn large_alignment_falls_back_to_a_snug_range() {
        let mut c = checker(1024 * KIB, 1);
        assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 0);
        assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 64 * KIB);
        assert_eq!(alloc(&mut c, 896 * KIB, 1, Linear), 128 * KIB);
        free_at(&mut c, 64 * KIB);
        // The worst case needs 128 KiB - 1 bytes, but the only free range is aligned.
        assert_eq!(alloc(&mut c, 64 * KIB, 64 * KIB, Linear), 64 * KIB);
        free_at(&mut c, 64 * KIB);
        // Same with granularity padding that turns out not to be needed.
        let mut c = checker(1024 * KIB, 4 * KIB);
        assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 0);
        assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 64 * KIB);
        assert_eq!(alloc(&mut c, 896 * KIB, 1, Linear), 128 * KIB);
        free_at(&mut c, 64 * KIB);
        assert_eq!(alloc(&mut c, 64 * KIB, 1, Linear), 64 * KIB);
        check_internal(&c.sub);
    }

    #[test]
    fn a_legal_range_behind_a_failing_bucket_head_is_found() {
        // Page 0: linear ranges around a free [1, 101); page 1: non-linear ranges around a
        // free [1025, 1125), freed last, so it heads the list of the size class of both.
        let mut c = checker(2048, 1024);
        for (size, ty, offset) in [
            (1, Linear, 0),
            (100, Linear, 1),
            (923, Linear, 101),
            (1, NonLinear, 1024),
            (100, NonLinear, 1025),
            (923, NonLinear, 1125),
        ] {
            assert_eq!(alloc(&mut c, size, 1, ty), offset);
        }
        free_at(&mut c, 1);
        free_at(&mut c, 1025);
        // A linear byte cannot go into [1025, 1125) (its page holds non-linear ranges), but
        // offset 1 is free and shares its page with linear ranges only.
        assert_eq!(alloc(&mut c, 1, 1, Linear), 1);
        // And a non-linear one goes into the other range.
        assert_eq!(alloc(&mut c, 1, 1, NonLinear), 1025);
        check_internal(&c.sub);
    }

    #[test]
    fn a_small_strictly_aligned_request_fits_where_a_larger_one_does() {
        // 16 free ranges of 16 ..= 31 bytes (one size class each) in the first 64 KiB, none
        // holding a multiple of 64 KiB, and a free 4 KiB range at 64 KiB.
        let mut c = checker(64 * KIB + 4 * KIB, 1);
        assert_eq!(alloc(&mut c, 1, 1, Linear), 0);
        let mut smalls = Vec::new();
        for size in 16..32 {
            smalls.push(alloc(&mut c, size, 1, Linear));
            alloc(&mut c, 1, 1, Linear);
        }
        let used = 1 + (16..32).sum::<u64>() + 16;
        alloc(&mut c, 64 * KIB - used, 1, Linear);
        assert_eq!(alloc(&mut c, 4 * KIB, 1, Linear), 64 * KIB);
        for offset in smalls {
            free_at(&mut c, offset);
        }
        free_at(&mut c, 64 * KIB);
        assert_eq!(alloc(&mut c, 4 * KIB, 64 * KIB, Linear), 64 * KIB);
        free_at(&mut c, 64 * KIB);
        // The 16 small ranges come first in size order; the search must not stop there.
        assert_eq!(alloc(&mut c, 16, 64 * KIB, Linear), 64 * KIB);
        check_internal(&c.sub);
    }

    #[test]
    fn largest_free_range_is_a_tight_upper_bound() {
        let mut c = checker(1 << 20, 1);
        assert_eq!(c.sub.largest_free_range(), 1 << 20);
        for _ in 0..5 {
            alloc(&mut c, 100_000, 1, Linear);
        }
        // Free ranges now: [500_000, 2^20) only.
        let largest = (1 << 20) - 500_000;
        assert!(c.sub.largest_free_range() >= largest);
        assert!(c.sub.largest_free_range() <= largest + largest / 16);
        free_at(&mut c, 100_000);
        assert!(c.sub.largest_free_range() >= largest);
        assert!(c.sub.largest_free_range() <= largest + largest / 16);
    }

    #[test]
    fn non_power_of_two_and_huge_regions() {
        let mut c = checker(1_000_003, 1);
        assert_eq!(alloc(&mut c, 999_999, 4, Linear), 0);
        assert_eq!(alloc(&mut c, 4, 1, Linear), 999_999);
        c.free_all_and_reuse(1_000_003);

        let mut c = checker(1 << 62, 64 * KIB);
        assert_eq!(alloc(&mut c, 1 << 61, 1 << 61, Linear), 0);
        assert_eq!(alloc(&mut c, 1, 1, NonLinear), 1 << 61);
        assert_eq!(alloc(&mut c, 1 << 60, 1 << 60, Linear), 3 << 60);
        check_internal(&c.sub);
        c.free_all_and_reuse(1 << 62);

        let mut c = checker(u64::MAX, 1);
        assert_eq!(alloc(&mut c, DeviceLayout::MAX_SIZE, 1, Linear), 0);
        // One byte of padding, absorbed, then up to the last byte of the region.
        assert_eq!(alloc(&mut c, 1 << 62, 1 << 62, Linear), 1 << 63);
        assert_eq!(
            c.allocate(layout(1 << 62, 1 << 62), Linear),
            Err(SuballocatorError::OutOfRegionMemory)
        );
        assert_eq!(
            alloc(&mut c, (1 << 62) - 1, 1, Linear),
            (1 << 63) + (1 << 62)
        );
        assert_eq!(c.sub.free_size(), 0);
        check_internal(&c.sub);
        c.free_all_and_reuse(DeviceLayout::MAX_SIZE);
    }

    #[test]
    fn reset_frees_everything() {
        let mut s = FreeListAllocator::new(10_000);
        for i in 0..10 {
            s.allocate(layout(100 + i, 64), Linear, al(1)).unwrap();
        }
        s.reset();
        assert_eq!(s.free_size(), 10_000);
        assert_eq!(s.allocation_count(), 0);
        assert_eq!(ranges(&s), [(0, 10_000, None)]);
        assert_eq!(s.nodes.len(), 1);
        check_internal(&s);
        let whole = s.allocate(layout(10_000, 1), Unknown, al(1)).unwrap();
        assert_eq!(whole.offset, 0);
    }

    /// A tiny deterministic generator for the node-reuse test.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn nodes_are_recycled() {
        let mut s = FreeListAllocator::new(1 << 30);
        let mut live = Vec::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15;
        let mut churn = |s: &mut FreeListAllocator, live: &mut Vec<Suballocation>, steps| {
            for _ in 0..steps {
                if live.len() == 200 {
                    let i = xorshift(&mut rng) as usize % live.len();
                    // SAFETY: allocated by `s` above and removed from `live`, freed once.
                    #[allow(unsafe_code)]
                    unsafe {
                        s.deallocate(live.swap_remove(i))
                    };
                }
                let r = xorshift(&mut rng);
                let l = layout(1 + r % 100_000, 1 << ((r >> 32) % 13));
                live.push(s.allocate(l, Linear, al(1)).unwrap());
                // Free ranges are never neighbours, so there are at most 2n + 1 ranges, and a
                // node is only pushed when none is recycled.
                assert!(s.nodes.len() <= 2 * 200 + 1);
            }
        };
        churn(&mut s, &mut live, 5_000);
        check_internal(&s);
        let capacity = s.nodes.capacity();
        churn(&mut s, &mut live, 20_000);
        assert_eq!(s.nodes.capacity(), capacity, "steady state allocated nodes");
        check_internal(&s);
    }

    /// A granularity between 1 B and 4 KiB.
    fn small_granularity() -> impl Strategy<Value = DeviceAlignment> {
        (0..=12u32).prop_map(|log| DeviceAlignment::from_log2(log).unwrap())
    }

    /// Region sizes log-uniform in [1 KiB, 1 GiB).
    fn region_size() -> impl Strategy<Value = u64> {
        (10..30u32, any::<u64>()).prop_map(|(log, bits)| (1 << log) + bits % (1 << log))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(64)))]

        /// Requests from 1 byte up to the whole region.
        #[test]
        fn random_sequences_keep_the_invariants(
            (region, ops) in region_size()
                .prop_flat_map(|r| (Just(r), testing::op_sequence(r, 200..2000))),
            granularity in testing::granularity(),
        ) {
            let mut c = Checker::new(FreeListAllocator::new(region), granularity);
            for chunk in ops.chunks(16) {
                c.run(chunk);
                check_internal(&c.sub);
            }
            c.free_all_and_reuse(region);
            check_internal(&c.sub);
        }

        /// Many small requests, so that hundreds of ranges are live at once.
        #[test]
        fn many_small_allocations_keep_the_invariants(
            (region, ops) in region_size()
                .prop_flat_map(|r| (Just(r), testing::op_sequence((r / 256).max(1), 200..2000))),
            granularity in testing::granularity(),
        ) {
            let mut c = Checker::new(FreeListAllocator::new(region), granularity);
            for chunk in ops.chunks(64) {
                c.run(chunk);
                check_internal(&c.sub);
            }
            c.free_all_and_reuse(region);
        }

        /// Small regions, all three types, granularities up to 4 KiB: every failure is checked
        /// against the brute-force oracle, which tries every aligned offset.
        #[test]
        fn fails_only_when_no_offset_is_legal(
            (region, ops) in (1..=16 * KIB, 0..=6u32).prop_flat_map(|(r, shift)| {
                (Just(r), testing::op_sequence((r >> shift).max(1), 100..1000))
            }),
            granularity in small_granularity(),
        ) {
            let mut c = Checker::new(FreeListAllocator::new(region), granularity).complete();
            for chunk in ops.chunks(16) {
                c.run(chunk);
                check_internal(&c.sub);
            }
            c.free_all_and_reuse(region);
        }
    }
}
