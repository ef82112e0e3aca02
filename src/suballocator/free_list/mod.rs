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
//! three steps, each only when the one before found nothing, after a step 0 in a region near
//! capacity:
//!
//! 0. *Near capacity* (at most a quarter of the region free) in a region of at least 32 live
//!    allocations, it first tries the first range of the first non-empty bucket from the
//!    one holding `size` (where step 2 starts), and takes it when the request fits. Near
//!    capacity the free ranges left are all that later requests can use, and step 1 cuts the
//!    front off a range of a larger bucket even where a range of the request's own bucket
//!    holds it: in nearly full blocks that spends the larger ranges on small requests until
//!    a large request finds none, and the allocator makes one block more than a snug search
//!    needs. (Random frees of 16-53 KiB objects at about 92 % of four growing 64 MiB blocks:
//!    a fifth block in 7 of 32 traces where VMA needs four, in 1 of them with this step; see
//!    docs/benchmarks.md.) It reads one range and walks nothing: far from capacity it costs
//!    a comparison, and near capacity it replaces step 1 whenever it succeeds. Regions of
//!    fewer allocations skip it: among a few large resources (the peer benchmark's `large`
//!    workload, 40 of 1-85 MiB in 256 MiB blocks), where each one lands decides the peak by
//!    chance more than by fit, step 0 in every region moved the peak of 37 of 40 seeds, 22
//!    of them up, and put 6 above VMA's peak against 3; with the limit none moves.
//! 1. It computes the worst-case footprint `size + (max(a, g) - 1) + (g - 1)` (the last term
//!    only when `g > 1`), rounds it up to a bucket boundary, and takes the first range of the
//!    first non-empty bucket from there: every range in it is large enough whatever its offset
//!    and neighbours. When `g` is 1 the footprint is `size + a - min(a, q)` instead, `q` the
//!    region's *boundary quantum*: every range starts on a multiple of it (see the end of
//!    *Padding and granularity*), so padding takes at most `a - q` bytes, and none for a
//!    request aligned to at most `q`, which then takes the first range of the first bucket
//!    whose ranges are all at least its size, often a range freed by a request like it rather
//!    than the front of a larger one. Here `g` is the granularity only while some live
//!    allocation of the region has a type that [conflicts](AllocationType::conflicts_with) with
//!    the request's (the free list counts its live allocations of each type), and 1
//!    otherwise: with no such neighbour anywhere, no page can be shared in conflict, so the
//!    answers are the same, and the search need not reserve two pages' worth of room that it
//!    would never skip. A region of buffers only thus reuses snug ranges instead of carving
//!    every small request out of a larger one.
//! 2. It tries the first range of the bucket holding `size` itself and of a few non-empty
//!    buckets above it (at most 16 candidates), because a range smaller than the worst case
//!    often fits anyway, for example one that happens to be aligned.
//! 3. It walks every range of every non-empty bucket from the highest down to the one holding
//!    `size` (the buckets below hold only smaller ranges) and takes the first that fits. Each
//!    range is checked exactly (see below), so this finds a place whenever one exists. The
//!    walk goes from large ranges to small ones because every range it meets is shorter than
//!    the worst case (else step 1 had taken it): what it fails on is alignment, and the
//!    longer a range, the likelier it leaves room after its alignment padding. When nothing
//!    fits, the walk goes on through the smaller buckets, down to the first whose ranges are
//!    all shorter than the most room seen, and so learns the *bound*: the most bytes any free
//!    range holds at this alignment for this type. A request of that type, at least as
//!    strictly aligned and larger than the bound, then fails at once, until the next free
//!    (after a long walk, a free raises the bound to what the range it makes holds instead:
//!    see the `complete` and `fit_bounds` modules of this file's folder). A long walk also
//!    teaches each size class it reads to its end the most bytes its ranges hold at the
//!    request's alignment, and a later walk passes a class whose bound is below its request
//!    without reading a range of it, until a range enters the class or grows in it (see the
//!    `class_bounds` module).
//!
//! Step 0 and the first two steps are the fast path, O(1); the third makes the search
//! complete, so [`FragmentedRegion`](SuballocatorError::FragmentedRegion) means that no free range can hold
//! the request with its alignment and granularity (absorbed padding, a few free bytes that
//! no request is placed in, aside: see below), and failure is monotone: a request fails only if every request at least as large and as
//! strictly aligned, of the same type, fails as well ([`fails_monotonically`](Suballocator::fails_monotonically)). It reports
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
//! *allocation* starts, past any padding its node holds (see below). Checking the two
//! neighbours is enough: any other range on one of those pages lies beyond the neighbour and,
//! as it shares a page with the neighbour, cannot conflict with the neighbour's type, hence
//! not with ours. No later start in the range does better (it only ends later), so a range
//! that fails this check cannot hold the request anywhere.
//!
//! The bytes skipped before the start (alignment and granularity padding) stay free, whatever
//! their number: an allocation never holds a byte it did not ask for. At least 64 of them
//! become a free node of their own. Fewer are *absorbed* into the allocation's node, which
//! remembers how many, so that splitting them off costs the fast path nothing. They are free
//! ([`free_size`](Suballocator::free_size) counts them,
//! [`for_each_range`](Suballocator::for_each_range) reports them as a free range), but no
//! request is placed in them: they are in no bucket, and searching them would mean walking
//! the allocations. When the range in front of such padding is freed, it takes the padding
//! over, so that the node after a free node never holds padding, free bytes are never cut in
//! two, and the padding is allocatable again.
//!
//! Why not search the padding: a region full of small allocations holds padding in front of
//! most of them, and only a walk over the allocations can find the padding that holds a
//! request. Such a walk ran for every request of fewer than 64 bytes that no free node held,
//! and came back after every free: the peer benchmark's `tiny` workload (objects of 16-256
//! bytes) with a million live objects instead of 50,000, whose arenas are full, took 20 µs
//! per allocate+free against VMA's 0.7 µs. Without the walk it takes about VMA's time, with the
//! same peak of reserved memory. Why not more than 64 bytes of padding per node: a free node
//! for each alignment gap costs a node and a bucket insertion at the allocation and a merge
//! at the free, and the peer benchmark's `frame` (alignments 16 to 256) takes a fifth less time
//! with larger gaps kept in the nodes; but the larger the bytes kept out of reach, the more
//! memory a full region leaves unused.
//!
//! The bytes after the end become a free node, unless they are fewer than 64 and fewer than
//! the smallest request the region has served since it was last reset: then they join the
//! padding of the next allocation (the node after a free node is always allocated, or there
//! is none, and it holds no padding). Sizes in bytes rarely match a freed range exactly, so
//! without this nearly every snug fit (which the first step makes common) would leave a
//! splinter between two allocations: a node to make and file now, and to merge again at the
//! next free of either neighbour, for bytes that no request seen so far could use. Bytes that
//! such a request could use become a free node that a later request takes: a region that
//! serves requests of 16 bytes and more keeps 16 to 63 bytes left over in free nodes, and one
//! used as a virtual block of single bytes keeps every byte reachable.
//!
//! Before that, the allocation's node takes the bytes up to the next multiple of the region's
//! *boundary quantum*, the least alignment it has served since it was last reset (at most 64
//! bytes): the allocation's *slack*. Like absorbed padding, the slack is free, reported as
//! free, and takes no request until the allocation is freed. It is never more than the
//! padding that a request at the quantum's alignment would skip after the allocation anyway,
//! and it makes every node of the region start on a multiple of the quantum: a free range
//! holds a request at that alignment of up to its own length, and the sure-fit search of
//! step 1 needs no room for padding. Without it, in a region of requests of 16-256 bytes at
//! 16-byte alignment (the peer benchmark's `tiny`), every range ended where its allocation
//! did, every request needed a range 15 bytes longer than itself, and the ranges of 16-30
//! bytes that splits left behind took no request at all: 7,600 free ranges among 50,000
//! allocations, 7,000 of them such splinters, against 1,100-1,400 with the slack, and the
//! region's used front about 3 % shorter. (See the `take` module of this file's folder.)
//!
//! # Efficiency
//!
//! Deallocation takes constant time; when the freed range joins the free range before it
//! without taking it out of its size class, that range keeps its place in its bucket list,
//! as a large range that allocation carves from the front does. Allocation takes constant time whenever the fast path
//! finds a range: a few bitmap operations, at most 17 range checks, and a constant number of
//! list updates. That covers almost every request in practice: any request whose worst-case
//! footprint, rounded up to a size class, is no larger than the largest free range succeeds
//! in step 1. The complete search of step 3 only runs for requests the fast path could not place,
//! requests that are about to fail or nearly so, and costs O(free ranges) in the worst case:
//! a failing request checks every free range longer than the room it has seen. Most of
//! those checks read the range's own node only: a range whose room after alignment padding
//! alone is too small is passed without looking at its neighbours. A failing walk learns a
//! bound that turns away every larger request of that type and alignment, or a stricter one,
//! in O(1) until the next free; after a long walk also past frees, which raise the bound to
//! what the one range each makes holds, less what allocations took from it since. Only a
//! request within the bound walks again, and it either finds a range or lowers the bound
//! (allocations may have taken room that the bound still counts). A walk that succeeds usually stops
//! within the first few ranges, the longest; where it does not (thousands of short ranges, small
//! strictly aligned requests), the bounds its size classes learned let the next
//! walk pass the classes that hold nothing for it, and such walks read about a third as many
//! ranges (see the `class_bounds` module). On the peer benchmark's `burst` workload
//! (100,000 allocations of 64 B-64 KiB at alignments 16-256, then all freed), where full
//! arenas keep some 2,000 short free ranges each, most of them alignment padding, this took
//! the complete search from 495 walks per run, 15.6 M instructions in all, to about 220
//! walks and 270 refusals by a bound, 1.4 M instructions (see docs/benchmarks.md). (An allocator
//! over many regions can skip a region altogether: with
//! [`fails_monotonically`](Suballocator::fails_monotonically) it may skip a region for
//! requests implied by one that failed there since its last free.)
//!
//! Memory use is one 32-byte node per range (free or allocated) plus a fixed 4 KiB table of
//! bucket heads, and 13 KiB of learned bounds in a region whose walks were long. There is no
//! internal fragmentation: padding and slack stay free (above), though fewer than 64 bytes of
//! padding in front of an allocation, and of slack behind it, wait for that allocation's free.
//! Because the search takes the first range of a bucket that is sure to fit rather than the
//! smallest range that fits (near capacity, after one range of the request's own bucket),
//! large ranges are occasionally split where a snug one exists (good fit, not best fit).

mod buckets;
mod class_bounds;
mod complete;
mod fit_bounds;
mod node;
mod strategy;
mod take;

use self::buckets::{Bucket, Buckets};
use self::fit_bounds::FitBounds;
use self::node::{Node, State, FIRST_TAG, NONE};
use super::*;
use crate::layout::{align_down, align_up, on_same_page};

/// Padding before an allocation shorter than this is absorbed into its node (still free, but
/// taking no request until the allocation is freed, see
/// [padding](self#padding-and-granularity)) rather than split off as a free node.
const MIN_SPLIT_PADDING: DeviceSize = 64;
/// The largest boundary quantum: [`MIN_SPLIT_PADDING`], so that an allocation's slack is
/// shorter than the padding split off as a free node.
const MAX_QUANTUM: DeviceAlignment = match DeviceAlignment::new(MIN_SPLIT_PADDING) {
    Some(quantum) => quantum,
    None => panic!("MIN_SPLIT_PADDING is a power of two"),
};
/// Quick fallback candidates (bucket heads) tried once the sure-fit bucket search found nothing,
/// before the complete search.
const MAX_FALLBACK_CANDIDATES: usize = 16;
/// A region with at most `region_size >> NEAR_CAPACITY_SHIFT` bytes free (a quarter) is *near
/// capacity*: there the search tries a snug range first (step 0 of the
/// [algorithm](self#algorithm)).
const NEAR_CAPACITY_SHIFT: u32 = 2;
/// Step 0 is for regions of many allocations, at least this many live: where many requests
/// cut up the large ranges. A region of a few large resources keeps the good fit.
const SNUG_MIN_ALLOCATIONS: usize = 32;

/// A two-level segregated fit (TLSF) allocator with O(1) deallocation, and O(1) allocation
/// unless the request is about to fail.
///
/// Free ranges are filed into size classes (one per power of two, each cut into 16 slices)
/// with a bitmap of non-empty classes, so a range that surely fits is found with two
/// `trailing_zeros`, and a freed range is merged with free neighbours at once. The search is a
/// good fit, not a best fit: it may split a larger range where a snug one exists (less so in a
/// region near capacity, where the first range of the request's own size class is tried
/// first). When neither a range that surely fits nor one of 16 quick candidates does,
/// allocation falls back to checking every free range large enough, O(free ranges), so that
/// it fails only when no free range can hold the request. Once the number of ranges has
/// peaked, allocation and deallocation never allocate heap memory.
///
/// Buffer-image granularity is checked against both neighbours of the candidate range.
/// [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) means fewer free bytes than
/// requested; [`FragmentedRegion`](SuballocatorError::FragmentedRegion) means that no free
/// range can hold the request with its alignment and granularity. Failure is therefore
/// monotone ([`fails_monotonically`](Suballocator::fails_monotonically) is `true`).
///
/// Alignment and granularity padding in front of an allocation stays free: an allocation holds
/// exactly the bytes it asked for, and [`free_size`](Suballocator::free_size) counts every
/// other byte. Fewer than 64 bytes of it are kept in the allocation's node and take no request
/// until that allocation is freed (searching them would mean walking the allocations), and so
/// are the few bytes after it up to the next multiple of the least alignment the region has
/// served (its slack, which lets every range start aligned: see the module's docs).
/// [`largest_free_range`](Suballocator::largest_free_range) is the upper size limit of the
/// highest non-empty size class, capped by the free size, so it overestimates the largest
/// free node by less than 1/16 of it when that node is 16 bytes or more (the padding kept in
/// allocations' nodes does not count: it takes no request).
#[derive(Debug)]
pub struct FreeListAllocator {
    region_size: DeviceSize,
    free_size: DeviceSize,
    allocation_count: usize,
    /// Live allocations of each type, indexed by `AllocationType as usize` (see
    /// [`effective_granularity`](Self::effective_granularity)).
    live_by_type: [usize; 3],
    /// The smallest request the region served since it was last reset (see
    /// [padding](self#padding-and-granularity)).
    smallest_request: DeviceSize,
    /// Every node of the region starts on a multiple of this (a power of two, at most
    /// [`MAX_QUANTUM`]): the least alignment of the requests since the last reset, or
    /// [`MAX_QUANTUM`] when that is larger.
    boundary_quantum: DeviceAlignment,
    nodes: Vec<Node>,
    /// Head of the recycled-node list.
    recycled: u32,
    /// The node at offset 0, `NONE` for an empty region.
    first: u32,
    buckets: Buckets,
    /// What failed complete searches learned since the last free.
    fit_bounds: FitBounds,
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

    /// Counts a new allocation of type `ty`.
    #[inline]
    fn count_allocation(&mut self, ty: AllocationType) {
        self.allocation_count += 1;
        self.live_by_type[ty as usize] += 1;
    }

    /// The granularity a request of type `ty` has to respect here: `granularity` while some
    /// live allocation's type [conflicts](AllocationType::conflicts_with) with `ty`, none
    /// otherwise. Without such an allocation no neighbour can share a page with the request
    /// in conflict, so the answers are the same; only the sure-fit search no longer reserves
    /// room for pages it will not skip (two of them), and finds snug ranges.
    #[inline]
    fn effective_granularity(
        &self,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> DeviceAlignment {
        let conflicting = match ty {
            AllocationType::Unknown => self.allocation_count,
            _ => self.allocation_count - self.live_by_type[ty as usize],
        };
        if conflicting == 0 {
            DeviceAlignment::MIN
        } else {
            granularity
        }
    }

    fn recycle(&mut self, idx: u32) {
        let node = &mut self.nodes[idx as usize];
        node.set_state(State::Recycled);
        node.next_free = self.recycled;
        self.recycled = idx;
    }

    /// The first offset in `node` where a request of `alignment` and type `ty` may start: its
    /// offset aligned, then moved to the next page when the allocation before it (ending at
    /// `node.offset`, its last byte at `node.offset - 1`) is of a conflicting type on that
    /// page.
    #[inline]
    fn first_start(
        &self,
        node: &Node,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Option<DeviceSize> {
        let start = align_up(node.offset, alignment)?;
        if granularity != DeviceAlignment::MIN && node.prev != NONE {
            // The byte before the node may be the slack of the allocation before it rather than
            // its last byte, with the same answer (see the `take` module).
            if let State::Used(prev_ty) = self.nodes[node.prev as usize].state() {
                if prev_ty.conflicts_with(ty) && on_same_page(node.offset - 1, start, granularity) {
                    return align_up(start, alignment.max(granularity));
                }
            }
        }
        Some(start)
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
        let start = self.first_start(node, alignment, ty, granularity)?;
        let check_pages = granularity != DeviceAlignment::MIN;
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
            live_by_type: [0; 3],
            smallest_request: DeviceSize::MAX,
            boundary_quantum: MAX_QUANTUM,
            nodes: Vec::new(),
            recycled: NONE,
            first: NONE,
            buckets: Buckets::new(),
            fit_bounds: FitBounds::new(),
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
        let granularity = self.effective_granularity(allocation_type, buffer_image_granularity);
        // The steps find the range; one call takes it (so that `take` is inlined once).
        let (idx, start) = 'found: {
            // Step 0, near capacity: the first range of the first non-empty size class from
            // the request's own, when it fits (see the module's docs).
            if self.free_size <= self.region_size >> NEAR_CAPACITY_SHIFT
                && self.allocation_count >= SNUG_MIN_ALLOCATIONS
            {
                if let Some(bucket) = self.buckets.first_non_empty_from(Bucket::containing(size)) {
                    let idx = self.buckets.head(bucket);
                    if let Some(start) =
                        self.fit(idx, size, alignment, allocation_type, granularity)
                    {
                        break 'found (idx, start);
                    }
                }
            }
            let worst_case = if granularity == DeviceAlignment::MIN {
                // Every free node starts on a multiple of the boundary quantum (a request
                // aligned to less needs no padding at all).
                let a = alignment.as_devicesize();
                size.checked_add(a - a.min(self.boundary_quantum.as_devicesize()))
            } else {
                size.checked_add(alignment.max(granularity).as_devicesize() - 1)
                    .and_then(|s| s.checked_add(granularity.as_devicesize() - 1))
            };
            if let Some(bucket) = worst_case
                .and_then(Bucket::all_at_least)
                .and_then(|b| self.buckets.first_non_empty_from(b))
            {
                let idx = self.buckets.head(bucket);
                if let Some(start) = self.fit(idx, size, alignment, allocation_type, granularity) {
                    break 'found (idx, start);
                }
            }
            let mut from = Some(Bucket::containing(size));
            for _ in 0..MAX_FALLBACK_CANDIDATES {
                let Some(bucket) = from.and_then(|b| self.buckets.first_non_empty_from(b)) else {
                    break;
                };
                let idx = self.buckets.head(bucket);
                if let Some(start) = self.fit(idx, size, alignment, allocation_type, granularity) {
                    break 'found (idx, start);
                }
                from = bucket.next();
            }
            match self.search_all(size, alignment, allocation_type, granularity) {
                Some(found) => found,
                None => return Err(SuballocatorError::FragmentedRegion),
            }
        };
        self.lower_quantum(alignment);
        Ok(self.take(idx, start, size, allocation_type))
    }

    /// Every strategy: see the `strategy` module of this file's folder. The default search
    /// (`Default` and `MinTime`) is called straight from here, with no step between.
    #[inline(always)]
    fn allocate_with_strategy(
        &mut self,
        layout: DeviceLayout,
        allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
        strategy: AllocationStrategy,
    ) -> Result<Suballocation, SuballocatorError> {
        match strategy {
            AllocationStrategy::Default | AllocationStrategy::MinTime => {
                self.allocate(layout, allocation_type, buffer_image_granularity)
            }
            AllocationStrategy::MinMemory | AllocationStrategy::MinOffset => self
                .allocate_by_strategy(layout, allocation_type, buffer_image_granularity, strategy),
        }
    }

    /// Frees the node named by the handle and merges it with free neighbours.
    ///
    /// # Panics
    ///
    /// May panic if the contract is broken (a handle that names no live allocation).
    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        let mut idx = suballocation.handle.get() as u32;
        // Before the node is read: the rare call leaves nothing to keep across it.
        if self.fit_bounds.kept() {
            self.note_free_for_bounds(idx);
        } else {
            self.fit_bounds.forget_at_free();
        }
        let node = self.nodes[idx as usize];
        // Read before the next node is: the two reads (each often a cache miss, as neighbours
        // are anywhere in the node vector) go out together. Nothing below changes it.
        let prev_is_free =
            node.prev != NONE && self.nodes[node.prev as usize].state() == State::Free;
        let ty = match node.state() {
            State::Used(ty)
                if node.allocation_start() == suballocation.offset
                    && node.allocation_end() - suballocation.offset == suballocation.size =>
            {
                ty
            }
            _ => panic!("{suballocation:?} is not a live allocation of this FreeListAllocator"),
        };
        self.allocation_count -= 1;
        self.live_by_type[ty as usize] -= 1;
        self.nodes[idx as usize].set_state(State::Free);
        // The padding absorbed by the next allocation joins this free range: the node after a
        // free node holds no padding.
        if node.next != NONE {
            let next = &mut self.nodes[node.next as usize];
            if matches!(next.state(), State::Used(_)) {
                // Without a test whether there is any: in a region of mixed alignments that is
                // a coin toss, and a mispredicted branch costs more than writing a line that
                // was just read.
                let padding = next.give_up_padding();
                self.nodes[idx as usize].size += padding;
            }
        }
        // Counted apart from the allocation count above (in another basic block): counting
        // both together, the compiler packs them into one vector addition, which takes more
        // instructions than two plain ones.
        self.free_size += suballocation.size;
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
        if prev_is_free {
            let prev = node.prev;
            let Node {
                size, next: after, ..
            } = self.nodes[idx as usize];
            let prev_size = self.nodes[prev as usize].size;
            // When the free range before grows within its size class (a range growing by a
            // small neighbour, the common case), it keeps its place in its bucket list: no
            // unlinking and relinking.
            let filed = Bucket::same(prev_size, prev_size + size);
            if filed {
                self.buckets.grew_in_place(prev_size);
            } else {
                self.buckets.remove(&mut self.nodes, prev);
            }
            self.nodes[prev as usize].size = prev_size + size;
            self.nodes[prev as usize].next = after;
            if after != NONE {
                self.nodes[after as usize].prev = prev;
            }
            self.recycle(idx);
            if filed {
                return;
            }
            idx = prev;
        }
        self.buckets.insert(&mut self.nodes, idx);
    }

    #[inline]
    fn free_size(&self) -> DeviceSize {
        self.free_size
    }

    #[inline(always)]
    fn largest_free_range(&self) -> DeviceSize {
        // Free nodes only: absorbed padding takes no request.
        let nodes = self.buckets.highest_non_empty().map_or(0, |b| b.max_size());
        nodes.min(self.free_size)
    }

    #[inline]
    fn allocation_count(&self) -> usize {
        self.allocation_count
    }

    fn reset(&mut self) {
        self.nodes.clear();
        self.buckets.clear();
        self.fit_bounds.forget();
        self.recycled = NONE;
        self.first = NONE;
        self.free_size = self.region_size;
        self.allocation_count = 0;
        self.live_by_type = [0; 3];
        self.smallest_request = DeviceSize::MAX;
        self.boundary_quantum = MAX_QUANTUM;
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

    /// Free bytes that touch are reported as one range: the slack of an allocation, the free
    /// node after it, and the padding of the allocation after that.
    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
        // The nodes tile the region: the free bytes not yet reported are `[free_from, o)`, `o`
        // the offset of the node at hand.
        let mut free_from = 0;
        let mut idx = self.first;
        while idx != NONE {
            let node = &self.nodes[idx as usize];
            match node.state() {
                State::Free => {}
                State::Used(ty) => {
                    let (start, end) = (node.allocation_start(), node.allocation_end());
                    if start > free_from {
                        f(RangeInfo {
                            offset: free_from,
                            size: start - free_from,
                            kind: RangeKind::Free,
                        });
                    }
                    f(RangeInfo {
                        offset: start,
                        size: end - start,
                        kind: RangeKind::Allocated(ty),
                    });
                    free_from = end;
                }
                State::Recycled => unreachable!("a recycled node is linked into the region"),
            }
            idx = node.next;
        }
        if self.region_size > free_from {
            f(RangeInfo {
                offset: free_from,
                size: self.region_size - free_from,
                kind: RangeKind::Free,
            });
        }
    }
}

#[cfg(test)]
mod tests;
