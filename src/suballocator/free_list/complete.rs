//! The complete search (step 3 of the [search](super#algorithm)), for requests the fast path
//! could not place: every free range, longest first, checked exactly; the bound that a failed
//! walk learns (see [`fit_bounds`]); and, for requests of fewer than
//! [`MIN_SPLIT_PADDING`] bytes, the padding that allocations absorbed, and placing a request
//! there.

use super::*;

impl FreeListAllocator {
    /// The most bytes the free node `idx` holds at `alignment` for type `ty`, and where they
    /// start: [`fit`](Self::fit) succeeds for exactly the sizes from 1 up to that room, at that
    /// start.
    #[inline]
    pub(super) fn room(
        &self,
        idx: u32,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> (DeviceSize, DeviceSize) {
        let node = &self.nodes[idx as usize];
        let Some(start) = self.first_start(node, alignment, ty, granularity) else {
            return (0, 0);
        };
        let mut end = node.end();
        if granularity != DeviceAlignment::MIN && node.next != NONE {
            // The last byte stays off the page where a conflicting next allocation starts.
            let next = &self.nodes[node.next as usize];
            if let State::Used(next_ty) = next.state() {
                if next_ty.conflicts_with(ty) {
                    end = end.min(align_down(next.allocation_start(), granularity));
                }
            }
        }
        (end.saturating_sub(start), start)
    }

    /// The complete search, for when the quick one found nothing: every free node that may
    /// hold `size` bytes, from the highest non-empty bucket down (the larger a range, the
    /// likelier its alignment padding leaves room), until one fits; then, for a request of
    /// fewer than [`MIN_SPLIT_PADDING`] bytes, the padding that allocations absorbed. On
    /// failure the walks learn the most bytes any free range holds for this request's
    /// alignment and type, padding included, and record it: every larger request of that
    /// alignment and type fails too, at once, until the next free.
    ///
    /// Kept out of line: it runs only for requests that are about to fail or nearly so.
    #[cold]
    #[inline(never)]
    pub(super) fn search_all(
        &mut self,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Option<Found> {
        // No free range holds more than the bound that the complete searches that failed
        // since the last free found.
        if size > self.fit_bounds.largest(ty, alignment, granularity) {
            return None;
        }

        let largest_node = match self.walk_all(size, alignment, ty, granularity) {
            Ok((idx, start)) => return Some(Found::Node(idx, start)),
            Err(largest) => largest,
        };
        let largest_padding = match self.search_padding(size, alignment, ty, granularity, true) {
            Ok((idx, start)) => return Some(Found::Padding(idx, start)),
            Err(largest) => largest,
        };
        self.fit_bounds.record(
            ty,
            alignment,
            granularity,
            largest_node.max(largest_padding),
        );
        None
    }

    /// The walk of [`search_all`](Self::search_all): the node that holds the request and
    /// where, or the most bytes any free node holds for it.
    fn walk_all(
        &self,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Result<(u32, DeviceSize), DeviceSize> {
        // The most bytes a node seen so far holds (less than `size` while the walk goes on).
        let mut largest = 0;
        let mut bucket = self.buckets.highest_non_empty();
        // A bucket whose ranges are all at most `largest` bytes holds nothing new, nor do the
        // buckets below it.
        while let Some(b) = bucket.filter(|b| b.max_size() > largest) {
            let mut idx = self.buckets.head(b);
            while idx != NONE {
                let node = &self.nodes[idx as usize];
                // The room before granularity, from the node alone: an upper bound of its
                // room, which spares reading the neighbours for most nodes.
                let aligned_room = align_up(node.offset, alignment)
                    .map_or(0, |start| node.end().saturating_sub(start));
                if aligned_room > largest {
                    let (room, start) = self.room(idx, alignment, ty, granularity);
                    if room >= size {
                        return Ok((idx, start));
                    }
                    largest = largest.max(room);
                }
                idx = node.next_free;
            }
            bucket = b
                .prev()
                .and_then(|p| self.buckets.last_non_empty_through(p));
        }
        Err(largest)
    }

    /// The last resort of the complete search, for requests of fewer than
    /// [`MIN_SPLIT_PADDING`] bytes: the padding absorbed by allocated nodes, in offset order
    /// from the node where the last such search placed a request (`from_last`, wrapping
    /// around: a region filled up to its padding fills it in order, each search going on
    /// where the one before stopped), or from the region's start. Returns the node whose
    /// padding can hold the request, and where; or an upper bound of the bytes any padding
    /// holds for it (exact when the padding was walked).
    #[cold]
    #[inline(never)]
    pub(super) fn search_padding(
        &mut self,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
        from_last: bool,
    ) -> Result<(u32, DeviceSize), DeviceSize> {
        if self.padded == 0 {
            return Err(0);
        }
        if size >= MIN_SPLIT_PADDING {
            // Not walked: no padding holds this request, but a smaller one may fit there.
            return Err(MIN_SPLIT_PADDING - 1);
        }
        let mut largest = 0;
        // The last host, if it is still a node of the region (it may have been recycled, or
        // recycled and used again: any node of the region is a place to start).
        let start = match self.nodes.get(self.padding_rover as usize) {
            Some(node) if from_last && node.state() != State::Recycled => self.padding_rover,
            _ => self.first,
        };
        let mut idx = start;
        loop {
            let node = &self.nodes[idx as usize];
            if matches!(node.state(), State::Used(_)) && DeviceSize::from(node.next_free) > largest
            {
                let (room, at) = self.padding_room(idx, alignment, ty, granularity);
                if room >= size {
                    self.padding_rover = idx;
                    return Ok((idx, at));
                }
                largest = largest.max(room);
            }
            idx = if node.next == NONE {
                self.first
            } else {
                node.next
            };
            if idx == start {
                return Err(largest);
            }
        }
    }

    /// Turns `[start, start + size)` of the padding absorbed by the allocated node `idx` into
    /// an allocation: a new node in front of `idx` that holds the padding before `start`; `idx`
    /// keeps the padding after the new allocation.
    pub(super) fn take_padding(
        &mut self,
        idx: u32,
        start: DeviceSize,
        size: DeviceSize,
        ty: AllocationType,
    ) -> Suballocation {
        let offset = self.nodes[idx as usize].offset;
        let end = start + size;
        let allocation_start = self.nodes[idx as usize].allocation_start();
        let used = self.insert_used_before(idx, start, end, ty);
        let host = &mut self.nodes[idx as usize];
        host.offset = end;
        host.size -= end - offset;
        host.next_free = (allocation_start - end) as u32;
        // The host's padding was counted; each of the two nodes may hold a part of it now.
        self.padded -= 1;
        self.padded += usize::from(start > offset) + usize::from(allocation_start > end);
        self.free_size -= size;
        self.count_allocation(ty);
        Suballocation {
            offset: start,
            size,
            allocation_type: ty,
            handle: SuballocationHandle::new(u64::from(used)),
        }
    }

    /// The most bytes the padding absorbed by the allocated node `idx` holds at `alignment`
    /// for type `ty`, and where they start: the same checks as [`fit`](Self::fit), with the
    /// node's own allocation as the neighbour after.
    fn padding_room(
        &self,
        idx: u32,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> (DeviceSize, DeviceSize) {
        let node = &self.nodes[idx as usize];
        let State::Used(own_ty) = node.state() else {
            return (0, 0);
        };
        // (The node before an allocated node with padding is never free: a free node takes
        // over the padding behind it.)
        let Some(start) = self.first_start(node, alignment, ty, granularity) else {
            return (0, 0);
        };
        let allocation_start = node.allocation_start();
        let mut end = allocation_start;
        if granularity != DeviceAlignment::MIN && own_ty.conflicts_with(ty) {
            // The last byte stays off the page where the node's own allocation starts.
            end = end.min(align_down(allocation_start, granularity));
        }
        (end.saturating_sub(start), start)
    }
}

/// Where the complete search places a request.
pub(super) enum Found {
    /// In the free node, at the offset.
    Node(u32, DeviceSize),
    /// In the padding absorbed by the allocated node, at the offset.
    Padding(u32, DeviceSize),
}
