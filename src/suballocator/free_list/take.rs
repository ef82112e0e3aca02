//! Taking a range: how [`take`](FreeListAllocator::take) turns the part of a free node that a
//! search chose into an allocation, and what it does with the bytes around it.
//!
//! - In front: the alignment (and granularity) padding between the free node's start and the
//!   allocation's. At least [`MIN_SPLIT_PADDING`](super::MIN_SPLIT_PADDING) bytes become a
//!   free node of their own; fewer are *absorbed* into the allocation's node (free, taking no
//!   request until the allocation is freed, or until the range before it is freed and takes
//!   them over).
//! - Behind: the allocation's node ends on the next multiple of the region's *boundary
//!   quantum* (or at the free node's end), and the bytes in between are its *slack*: free,
//!   like absorbed padding, and given back with the allocation. The quantum is the least
//!   alignment the region has served since its last reset, capped at
//!   [`MIN_SPLIT_PADDING`](super::MIN_SPLIT_PADDING), so the slack is never more than the
//!   padding that a request at that alignment would need after the allocation anyway. With
//!   it every node of the region starts on a multiple of the quantum: the free range after an
//!   allocation starts where the next request at that alignment can, the sure-fit search
//!   needs no room for padding up to the quantum, and a request takes a range of its own size
//!   rather than the front of a larger one (see the module's docs, *Padding and
//!   granularity*). The granularity checks look at the page of the byte before a node, the
//!   last of the slack rather than of the allocation, with the same answer: for a quantum of
//!   at least the page size no page boundary lies inside the slack (it would be a multiple of
//!   the quantum), and for a smaller one the node starts on a page boundary, so both bytes are
//!   on pages before any start in it.
//! - After that: the rest of the free node stays a free node (in its place in its bucket
//!   list when its size class does not change), or joins the absorbed padding of the
//!   allocation after it when it is shorter than every request the region has served.

use super::node::{Node, State, NONE};
use super::FreeListAllocator;
use crate::layout::{padding_needed, DeviceAlignment, DeviceSize};
use crate::suballocator::{AllocationType, Suballocation, SuballocationHandle};

impl FreeListAllocator {
    /// Lowers the boundary quantum to a request's `alignment` when that is smaller, once the
    /// request has found its range and before [`take`](Self::take) cuts it: a request that
    /// fails changes nothing (the search needs no lower quantum: every node starts on a
    /// multiple of the higher one, hence of the alignment). A quantum is at most
    /// [`MAX_QUANTUM`](super::MAX_QUANTUM), so an alignment below it is no larger either.
    #[inline(always)]
    pub(super) fn lower_quantum(&mut self, alignment: DeviceAlignment) {
        if alignment < self.boundary_quantum {
            self.boundary_quantum = alignment;
        }
    }

    /// Turns `[start, start + size)` of the free node `idx` into an allocation, splitting off
    /// the padding (if long enough) and the tail as free nodes, and keeping the slack (see
    /// the module's docs). Inlined where it is called: once in `allocate`, once in the
    /// strategies' search.
    #[inline(always)]
    pub(super) fn take(
        &mut self,
        idx: u32,
        start: DeviceSize,
        size: DeviceSize,
        ty: AllocationType,
    ) -> Suballocation {
        self.smallest_request = self.smallest_request.min(size);
        let Node {
            offset,
            size: free_len,
            prev,
            next,
            ..
        } = self.nodes[idx as usize];
        let range_end = offset + free_len;
        // The allocation's node ends at the next multiple of the boundary quantum, its slack
        // in between, or at the range's end (the region's, when that is no multiple of it).
        let alloc_end = start + size;
        let slack = padding_needed(alloc_end, self.boundary_quantum).min(range_end - alloc_end);
        let end = alloc_end + slack;
        if self.fit_bounds.any_pending() {
            self.cut_for_bounds(idx, start, end);
        }
        // The common case of carving the front of a large range: when the rest stays in the
        // same size class, the free node keeps its place in its bucket list and just shrinks
        // to the tail; only the allocation gets a new node (and the padding in front, when it
        // is long enough to be split off). That saves unlinking and relinking the free node.
        if Self::rest_keeps_class(offset, free_len, end) {
            if Self::splits_front(offset, start) {
                self.split_off_padding(idx, offset, start, prev);
                // The node's size, hence its bucket, changes below, within its bucket.
                self.nodes[idx as usize].offset = start;
            }
            let used = self.insert_used_before(idx, start, end, slack, ty);
            let tail = &mut self.nodes[idx as usize];
            tail.offset = end;
            tail.size = offset + free_len - end;
            self.free_size -= size;
            self.count_allocation(ty);
            return Suballocation {
                offset: start,
                size,
                allocation_type: ty,
                handle: SuballocationHandle::new(u64::from(used)),
            };
        }
        self.buckets.remove(&mut self.nodes, idx);
        let mut node_start = offset;
        if Self::splits_front(offset, start) {
            self.split_off_padding(idx, offset, start, prev);
            node_start = start;
        }
        let rest = range_end - end;
        if self.absorbs_rest(rest, next) {
            // A few bytes left before the next allocation (the node after a free node is
            // allocated, and holds no padding), fewer than any request the region served,
            // join its absorbed padding rather than make a free node of their own: no node to
            // make, file and merge again later for bytes that no request seen could use.
            let after = &mut self.nodes[next as usize];
            after.offset = end;
            after.size += rest;
            after.next_free += rest as u32;
        } else if end < range_end {
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
        node.next_free = Node::used_extra(start - node_start, slack);
        self.free_size -= size;
        self.count_allocation(ty);
        Suballocation {
            offset: start,
            size,
            allocation_type: ty,
            handle: SuballocationHandle::new(u64::from(idx)),
        }
    }

    /// Makes the padding `[offset, start)` at the front of the free node `idx` (whose `prev`
    /// is given) a free node of its own, linked in front of it and filed; the caller moves
    /// `idx`'s start.
    #[inline(always)]
    fn split_off_padding(&mut self, idx: u32, offset: DeviceSize, start: DeviceSize, prev: u32) {
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
    }

    /// Links a new allocated node in front of node `idx`, from `idx`'s offset to `end`, whose
    /// allocation starts at `start` (the bytes before it, fewer than
    /// [`MIN_SPLIT_PADDING`](super::MIN_SPLIT_PADDING), are its absorbed padding) and ends
    /// `slack` bytes before `end`; returns it. The caller moves `idx`'s start to `end`.
    #[inline(always)]
    fn insert_used_before(
        &mut self,
        idx: u32,
        start: DeviceSize,
        end: DeviceSize,
        slack: DeviceSize,
        ty: AllocationType,
    ) -> u32 {
        let Node { offset, prev, .. } = self.nodes[idx as usize];
        let used = self.new_node(Node {
            offset,
            size: end - offset,
            prev,
            next: idx,
            prev_free: State::Used(ty).tag(),
            // Both below `MIN_SPLIT_PADDING`.
            next_free: Node::used_extra(start - offset, slack),
        });
        if prev != NONE {
            self.nodes[prev as usize].next = used;
        } else {
            self.first = used;
        }
        self.nodes[idx as usize].prev = used;
        used
    }
}
