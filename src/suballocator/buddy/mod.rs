//! The buddy allocator: power-of-two blocks that split in halves and merge back.
//!
//! # Algorithm
//!
//! Every range the allocator hands out is a *block* whose size is a power of two, 2<sup>k</sup>
//! bytes, called a block of *order* k, and whose offset is a multiple of its size. A block of
//! order k > 0 splits into two halves of order k − 1, which are each other's *buddy*: the buddy
//! of the block at `offset` of order k is at `offset ^ (1 << k)`. When a block is freed and its
//! buddy is free and whole (not split further), the two merge into their parent again, and so
//! on up.
//!
//! To serve a request, the allocator picks the order
//! `max(⌈log2 size⌉, log2 alignment, log2 granularity)`, finds the smallest non-empty free list
//! of that order or higher, takes a block from it, and splits it, putting the upper halves on
//! the free lists of the orders in between, until a block of the wanted order remains.
//!
//! # Regions that are not a power of two
//!
//! The region is cut into *root* blocks following the binary representation of its size: a
//! region of 96 bytes (`0b110_0000`) has a root of 64 bytes at offset 0 and one of 32 bytes at
//! offset 64. Roots are listed from the largest down, so each one starts at a multiple of its
//! own size and obeys the same rules as any other block. A root has no buddy: roots never
//! merge with each other, so the largest request a region can ever serve is its largest root
//! (64 bytes in the example, even with all 96 free). The root containing an offset is found
//! in O(1): it is the highest bit in which the offset and the region size differ, because
//! below the region size that is the first bit where the offset leaves the prefix of roots
//! laid out before it.
//!
//! # Bookkeeping and cost
//!
//! - One free list per order (64 orders, 1 B to 2<sup>63</sup> B), each a stack of offsets,
//!   plus a 64-bit mask with bit k set when the list of order k is non-empty. Finding the
//!   smallest usable order is one mask and one `trailing_zeros`.
//! - One hash map from offset to block, holding every block of the current tiling (free or
//!   allocated). A free block records its position in its free list, so freeing can look up
//!   the buddy and unlink it from the middle of its stack in O(1) (a `swap_remove`). Keys are
//!   distinct offsets, so a multiplicative hash with a fold of the high bits is enough, no
//!   need for a DoS-resistant hasher.
//!
//! `allocate` and `deallocate` therefore cost O(log region) expected time: at most one split
//! or merge per order, each a constant number of hash-map operations. Memory is proportional
//! to the number of blocks, that is to the number of live allocations times the depth.
//!
//! # Padding and granularity
//!
//! An allocation holds its whole block: a request of 33 bytes holds 64, one of 1 byte with an
//! alignment of 256 holds 256. That rounding is the allocator's internal fragmentation and is
//! counted as used: [`free_size`](Suballocator::free_size) is the region minus the sizes of the
//! live *blocks*. Alignment needs no padding inside the block, because a block is aligned to
//! its own size and its size is at least the alignment.
//!
//! When `buffer_image_granularity` is larger than 1, every block is at least one granularity
//! page. Such a block is made of whole pages, so no other allocation can share a page with it
//! and no granularity conflict is possible, whatever the types. The cost is that small
//! allocations hold a whole page each; pass a granularity of 1 where the device does not need
//! one. The rule relies on every allocation of one allocator using the same granularity (it is
//! a constant of the device).
//!
//! # Errors
//!
//! [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) when fewer bytes are free than
//! requested; otherwise [`FragmentedRegion`](SuballocatorError::FragmentedRegion) when no free
//! block of the needed order exists, which includes requests larger than the largest root.
//! [`largest_free_range`](Suballocator::largest_free_range) is exact: the size of the largest
//! free block.

use super::*;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Number of orders: blocks of 2^0 ..= 2^63 bytes.
const ORDERS: usize = 64;

/// A buddy allocator over a region of any size.
///
/// Each allocation holds a block of 2<sup>k</sup> bytes aligned to its size, with k the
/// smallest order that covers the request's size, its alignment and, when
/// `buffer_image_granularity` is above 1, the granularity (so that every allocation owns whole
/// pages and no two can conflict). Larger free blocks are split in halves to get there, and a
/// freed block merges with its buddy whenever both halves are free. `allocate` and
/// `deallocate` cost O(log region_size) expected time.
///
/// A region whose size is not a power of two is cut into one *root* block per set bit of its
/// size (96 bytes: 64 at offset 0, then 32 at offset 64). Roots never merge, so the largest
/// request the allocator can serve is its largest root.
///
/// The rounding up to a power of two is held by the allocation:
/// [`free_size`](Suballocator::free_size) is the region minus the live blocks, and
/// [`largest_free_range`](Suballocator::largest_free_range) is exactly the largest free
/// block. Errors: [`OutOfRegionMemory`](SuballocatorError::OutOfRegionMemory) when fewer bytes
/// are free than requested, [`FragmentedRegion`](SuballocatorError::FragmentedRegion) when no
/// free block is large enough.
#[derive(Debug)]
pub struct BuddyAllocator {
    region_size: DeviceSize,
    free_size: DeviceSize,
    allocation_count: usize,
    /// `free_lists[k]`: offsets of the free blocks of order `k`, in no particular order.
    free_lists: Vec<Vec<DeviceSize>>,
    /// Bit `k` is set when `free_lists[k]` is not empty.
    non_empty: u64,
    /// Every block of the current tiling of the region, by offset.
    blocks: HashMap<DeviceSize, Block, BuildHasherDefault<OffsetHasher>>,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    order: u32,
    state: BlockState,
}

#[derive(Clone, Copy, Debug)]
enum BlockState {
    /// Free, at this index of its order's free list.
    Free(usize),
    /// Held by a live allocation of this type.
    Allocated(AllocationType),
}

/// Hashes the `u64` offsets used as keys (and other integer keys: the defragmentation's
/// memory handles and allocation ids): a multiplication by an odd constant (a bijection) and
/// a fold of the high half into the low half, so that the bucket index (taken from the low
/// bits) depends on every bit of the offset, not only on its low bits, which are zero for
/// large blocks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OffsetHasher(u64);

impl Hasher for OffsetHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        let x = (self.0 ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 32);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }
}

/// The smallest order whose block holds `size` bytes (`size` is at most 2^63).
#[inline]
fn order_for_size(size: DeviceSize) -> u32 {
    64 - (size - 1).leading_zeros()
}

impl BuddyAllocator {
    /// The order of the block a request takes: it covers the size, the alignment (a block is
    /// aligned to its size) and the granularity (every block owns whole pages).
    #[inline]
    fn order_for(layout: DeviceLayout, buffer_image_granularity: DeviceAlignment) -> u32 {
        // A layout's size is at most 2^63 - 1 and every alignment at most 2^63, so the order
        // is at most 63.
        order_for_size(layout.size())
            .max(layout.alignment().log2())
            .max(buffer_image_granularity.log2())
    }

    fn push_free(&mut self, offset: DeviceSize, order: u32) {
        let list = &mut self.free_lists[order as usize];
        self.blocks.insert(
            offset,
            Block {
                order,
                state: BlockState::Free(list.len()),
            },
        );
        list.push(offset);
        self.non_empty |= 1 << order;
    }

    /// Takes the free block at `index` of the list of `order` out of that list. The caller
    /// removes or overwrites its entry in `blocks`.
    fn unlink_free(&mut self, order: u32, index: usize) {
        let list = &mut self.free_lists[order as usize];
        list.swap_remove(index);
        if let Some(&moved) = list.get(index) {
            if let Some(block) = self.blocks.get_mut(&moved) {
                block.state = BlockState::Free(index);
            }
        }
        if list.is_empty() {
            self.non_empty &= !(1 << order);
        }
    }

    /// Lays out the root blocks of an empty region.
    fn init_roots(&mut self) {
        let mut offset = 0;
        for order in (0..ORDERS as u32).rev() {
            if self.region_size & (1 << order) != 0 {
                self.push_free(offset, order);
                offset += 1 << order;
            }
        }
        self.free_size = self.region_size;
    }
}

// The trait is unsafe to implement; nothing unsafe happens inside.
#[allow(unsafe_code)]
// SAFETY: every range is a free buddy node of the region, aligned to its own power-of-two size
// (at least the alignment) and padded to whole granularity pages; the shared property tests
// (`testing`) check every guarantee after every operation.
unsafe impl Suballocator for BuddyAllocator {
    /// A request fails exactly when fewer than `size` bytes are free or no free block has the
    /// order `max(⌈log2 size⌉, log2 alignment, log2 granularity)` or more; both conditions only
    /// get stronger with a larger size or alignment. In between, an allocation only takes free
    /// bytes away, and it splits a block into smaller ones, so no free block of a higher order
    /// than the largest one left appears before a free.
    #[inline]
    fn fails_monotonically() -> bool {
        true
    }

    /// `2^k` with `k = max(⌈log2 size⌉, log2 alignment, log2 granularity)`: the block the
    /// request takes. A region of fewer bytes has only smaller roots (they follow its size's
    /// bits), so no smaller region serves it.
    #[inline]
    fn region_size_for(
        layout: DeviceLayout,
        _allocation_type: AllocationType,
        buffer_image_granularity: DeviceAlignment,
    ) -> Option<DeviceSize> {
        Some(1 << Self::order_for(layout, buffer_image_granularity))
    }

    fn new(region_size: DeviceSize) -> Self {
        let mut allocator = Self {
            region_size,
            free_size: region_size,
            allocation_count: 0,
            free_lists: vec![Vec::new(); ORDERS],
            non_empty: 0,
            blocks: HashMap::default(),
        };
        allocator.init_roots();
        allocator
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
        if self.free_size < size {
            return Err(SuballocatorError::OutOfRegionMemory);
        }
        let order = Self::order_for(layout, buffer_image_granularity);
        let usable = self.non_empty & (u64::MAX << order);
        if usable == 0 {
            return Err(SuballocatorError::FragmentedRegion);
        }
        let mut current = usable.trailing_zeros();
        let list = &mut self.free_lists[current as usize];
        let offset = list.pop().expect("the mask says the list is not empty");
        if list.is_empty() {
            self.non_empty &= !(1 << current);
        }
        while current > order {
            current -= 1;
            self.push_free(offset + (1 << current), current);
        }
        self.blocks.insert(
            offset,
            Block {
                order,
                state: BlockState::Allocated(allocation_type),
            },
        );
        self.free_size -= 1 << order;
        self.allocation_count += 1;
        Ok(Suballocation {
            offset,
            size,
            allocation_type,
            handle: SuballocationHandle::new(u64::from(order)),
        })
    }

    unsafe fn deallocate(&mut self, suballocation: Suballocation) {
        let mut offset = suballocation.offset;
        // Orders are below 64, so the handle holds a value that fits.
        let mut order = suballocation.handle.get() as u32;
        let removed = self.blocks.remove(&offset);
        debug_assert!(
            matches!(removed, Some(Block { order: o, state: BlockState::Allocated(_) }) if o == order),
            "{suballocation:?} is not a live allocation of this allocator"
        );
        self.free_size += 1 << order;
        self.allocation_count -= 1;
        // Merging stops at the root: a root's buddy would lie past the region's end, or be a
        // smaller root (the roots follow the region size's bits from the highest down), so
        // no free block of the same order is found there.
        while order < DeviceSize::BITS - 1 {
            let buddy = offset ^ (1 << order);
            match self.blocks.get(&buddy) {
                Some(&Block {
                    order: buddy_order,
                    state: BlockState::Free(index),
                }) if buddy_order == order => {
                    self.unlink_free(order, index);
                    self.blocks.remove(&buddy);
                    offset &= !(1 << order);
                    order += 1;
                }
                _ => break,
            }
        }
        self.push_free(offset, order);
    }

    #[inline]
    fn free_size(&self) -> DeviceSize {
        self.free_size
    }

    #[inline]
    fn largest_free_range(&self) -> DeviceSize {
        if self.non_empty == 0 {
            0
        } else {
            1 << (63 - self.non_empty.leading_zeros())
        }
    }

    #[inline]
    fn allocation_count(&self) -> usize {
        self.allocation_count
    }

    fn reset(&mut self) {
        for list in &mut self.free_lists {
            list.clear();
        }
        self.non_empty = 0;
        self.blocks.clear();
        self.allocation_count = 0;
        self.init_roots();
    }

    fn for_each_range(&self, f: &mut dyn FnMut(RangeInfo)) {
        let mut blocks: Vec<_> = self.blocks.iter().map(|(&o, &b)| (o, b)).collect();
        blocks.sort_unstable_by_key(|&(offset, _)| offset);
        for (offset, block) in blocks {
            f(RangeInfo {
                offset,
                size: 1 << block.order,
                kind: match block.state {
                    BlockState::Free(_) => RangeKind::Free,
                    BlockState::Allocated(ty) => RangeKind::Allocated(ty),
                },
            });
        }
    }
}

#[cfg(test)]
mod tests;
