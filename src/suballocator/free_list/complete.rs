//! The complete search (step 3 of the [search](super#algorithm)), for requests the fast path
//! could not place: every free range, longest first, checked exactly, the bound that a
//! failed walk learns, and what a free tells the bounds (see [`fit_bounds`]).

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
    /// likelier its alignment padding leaves room), until one fits. On failure the walk learns
    /// the most bytes any free node holds for this request's alignment and type, and records
    /// it: every larger request of that alignment and type fails too, at once, until a free
    /// makes a range that holds more (see [`fit_bounds`]).
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
    ) -> Option<(u32, DeviceSize)> {
        // No free range holds more than the bound that the complete searches that failed
        // found, raised by the ranges that frees made since.
        if size > self.fit_bounds.largest(ty, alignment, granularity) {
            return None;
        }
        match self.walk_all(size, alignment, ty, granularity) {
            Ok(found) => Some(found),
            Err((largest, walked)) => {
                self.fit_bounds
                    .record(ty, alignment, granularity, largest, walked);
                None
            }
        }
    }

    /// The allocated node `idx` is about to be freed: the failed searches' bounds take in the
    /// free range it makes, from the free node before it (or its own start, absorbed padding
    /// included) to the end of the free node after it (or of the padding the allocation after
    /// it absorbed, which joins the freed range); see [`fit_bounds`]. Only called while the
    /// bounds are kept across frees.
    #[cold]
    #[inline(never)]
    pub(super) fn note_free_for_bounds(&mut self, idx: u32) {
        let node = &self.nodes[idx as usize];
        let mut start = node.offset;
        if node.prev != NONE && self.nodes[node.prev as usize].state() == State::Free {
            start = self.nodes[node.prev as usize].offset;
        }
        let mut end = node.end();
        if node.next != NONE {
            let next = &self.nodes[node.next as usize];
            end = match next.state() {
                State::Free => next.end(),
                _ => next.allocation_start(),
            };
        }
        self.fit_bounds.freed(start, end);
    }

    /// [`take`](Self::take) is about to place `[start, end)` in the free node `idx`: the noted
    /// ranges lose the bytes that leave the free nodes, the allocation's and the padding it
    /// absorbs on either side (in front of it, and the few bytes after it that join the next
    /// allocation's padding), so that a bound raised by them sends no request on a walk that
    /// fails. Only called while ranges are noted.
    #[cold]
    #[inline(never)]
    pub(super) fn cut_for_bounds(&mut self, idx: u32, start: DeviceSize, end: DeviceSize) {
        let node = &self.nodes[idx as usize];
        let (offset, free_len, next) = (node.offset, node.size, node.next);
        if !Self::splits_front(offset, start) && Self::rest_keeps_class(offset, free_len, end) {
            self.fit_bounds.taken(offset, end);
            return;
        }
        let from = if Self::splits_front(offset, start) {
            start
        } else {
            offset
        };
        let range_end = offset + free_len;
        let to = if self.absorbs_rest(range_end - end, next) {
            range_end
        } else {
            end
        };
        self.fit_bounds.taken(from, to);
    }

    /// Whether the range of a free node at `offset` of `free_len` bytes keeps its size class
    /// when an allocation ending at `end` is carved from its front: then [`take`](Self::take)
    /// leaves the free node in its place in its bucket list, shrunk to the rest after the
    /// allocation (the padding in front, if any, absorbed or split off as a node of its own).
    #[inline(always)]
    pub(super) fn rest_keeps_class(
        offset: DeviceSize,
        free_len: DeviceSize,
        end: DeviceSize,
    ) -> bool {
        end < offset + free_len && Bucket::same(offset + free_len - end, free_len)
    }

    /// Whether [`take`](Self::take) makes the padding between a free node's `offset` and an
    /// allocation's `start` a free node of its own (else the allocation absorbs it: see
    /// [padding](super#padding-and-granularity)).
    #[inline(always)]
    pub(super) fn splits_front(offset: DeviceSize, start: DeviceSize) -> bool {
        start - offset >= MIN_SPLIT_PADDING
    }

    /// Whether the `rest` bytes after an allocation, before node `next`, join that node's
    /// absorbed padding rather than make a free node (see [padding](super#padding-and-granularity)).
    #[inline(always)]
    pub(super) fn absorbs_rest(&self, rest: DeviceSize, next: u32) -> bool {
        rest > 0 && rest < self.smallest_request.min(MIN_SPLIT_PADDING) && next != NONE
    }

    /// The walk of [`search_all`](Self::search_all): the node that holds the request and
    /// where, or the most bytes any free node holds for it (an upper bound, exact unless a
    /// learned bound stood in for a bucket) and the number of nodes walked.
    ///
    /// A bucket whose learned bounds show that no node of it holds the request is passed
    /// without reading its nodes; a bucket read to its end teaches its bound, in a region of
    /// long walks or once this walk is long (see [`class_bounds`]).
    pub(super) fn walk_all(
        &mut self,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
    ) -> Result<(u32, DeviceSize), (DeviceSize, usize)> {
        // The most bytes a node seen so far holds (less than `size` while the walk goes on).
        let mut largest = 0;
        let mut walked = 0;
        let class = class_bounds::class_of(alignment);
        let mut bucket = self.buckets.highest_non_empty();
        // A bucket whose ranges are all at most `largest` bytes holds nothing new, nor do the
        // buckets below it.
        while let Some(b) = bucket.filter(|b| b.max_size() > largest) {
            bucket = b
                .prev()
                .and_then(|p| self.buckets.last_non_empty_through(p));
            if let Some(seen) = self.buckets.passes(b, alignment, size, largest) {
                largest = seen;
                continue;
            }
            // Only a walk at a class alignment learns, and only in a region of long walks, or
            // once this walk is long: the others read the bucket without keeping its room (a
            // few instructions a node).
            let learning = class.filter(|_| self.buckets.bounds.learns(walked));
            let read = if learning.is_some() {
                self.read_bucket::<true>(b, size, alignment, ty, granularity, &mut largest)
            } else {
                self.read_bucket::<false>(b, size, alignment, ty, granularity, &mut largest)
            };
            match read {
                BucketRead::Found(idx, start) => {
                    self.buckets.bounds.walked(walked);
                    return Ok((idx, start));
                }
                BucketRead::Passed { nodes, room } => {
                    walked += nodes;
                    if let Some(class) = learning {
                        self.buckets.learn(b, class, room);
                    }
                }
            }
        }
        self.buckets.bounds.walked(walked);
        Err((largest, walked))
    }

    /// Reads every node of bucket `b` for the walk of [`walk_all`](Self::walk_all), until one
    /// holds the request; raises `largest` by the room of the nodes read. With `ROOM`, also
    /// the most bytes a node of the bucket holds at `alignment`, granularity aside.
    #[inline(always)]
    fn read_bucket<const ROOM: bool>(
        &self,
        b: Bucket,
        size: DeviceSize,
        alignment: DeviceAlignment,
        ty: AllocationType,
        granularity: DeviceAlignment,
        largest: &mut DeviceSize,
    ) -> BucketRead {
        let mut nodes = 0;
        let mut bucket_room = 0;
        let mut idx = self.buckets.head(b);
        while idx != NONE {
            let node = &self.nodes[idx as usize];
            nodes += 1;
            // The room before granularity, from the node alone: an upper bound of its room,
            // which spares reading the neighbours for most nodes.
            let aligned_room = class_bounds::aligned_room(node.offset, node.end(), alignment);
            if ROOM {
                bucket_room = bucket_room.max(aligned_room);
            }
            if aligned_room > *largest {
                let (room, start) = self.room(idx, alignment, ty, granularity);
                if room >= size {
                    return BucketRead::Found(idx, start);
                }
                *largest = (*largest).max(room);
            }
            idx = node.next_free;
        }
        BucketRead::Passed {
            nodes,
            room: bucket_room,
        }
    }
}

/// What [`read_bucket`](FreeListAllocator::read_bucket) found.
enum BucketRead {
    /// The node that holds the request, and where.
    Found(u32, DeviceSize),
    /// None: the number of nodes read, and the most bytes one holds at the alignment (when
    /// asked for).
    Passed { nodes: usize, room: DeviceSize },
}
