//! The orders the planner works in: the destinations, tightest first, kept in order as
//! allocations are placed; and the one sort of blocks and candidates, on packed integers.

use super::BlockState;
use crate::layout::DeviceSize;

/// The blocks in the order destinations are tried: the tightest first, by free bytes (ties by
/// index), kept in order as allocations are placed and undone. This is a best fit among
/// blocks: the holes of blocks that are nearly full take what fits them, and the room left
/// over stays whole in the roomiest blocks for the large allocations still to come. (Filling
/// the blocks fullest by fraction first, as an earlier version did, spread small moves over
/// large blocks: on the peers trace it ended with 1.177 times the live bytes reserved with
/// 16 MiB blocks, against 1.030 this way.)
pub(super) struct Destinations {
    pub order: Vec<usize>,
    /// Where each block is in `order`.
    pub at: Vec<usize>,
    /// Each block's free bytes as last updated: the order's key.
    pub free: Vec<DeviceSize>,
}

impl Destinations {
    #[cfg(test)]
    pub fn new(blocks: &[BlockState], live: &[DeviceSize]) -> Self {
        Self::in_buffers(
            blocks,
            live,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            &mut Vec::new(),
        )
    }

    /// The destinations of `blocks` with `live` bytes, in the given vectors (their contents are dropped); `keys` is
    /// room for the sort's keys.
    pub fn in_buffers(
        blocks: &[BlockState],
        live: &[DeviceSize],
        mut order: Vec<usize>,
        mut at: Vec<usize>,
        mut free: Vec<DeviceSize>,
        keys: &mut Vec<u64>,
    ) -> Self {
        refill(&mut free, blocks.iter().zip(live).map(|(b, &l)| b.free(l)));
        refill(&mut order, 0..blocks.len());
        let most = free.iter().copied().max().unwrap_or(0);
        sort_by_fields(&mut order, keys, [most], |b| [free[b]]);
        refill(&mut at, std::iter::repeat_n(0, blocks.len()));
        for (i, &b) in order.iter().enumerate() {
            at[b] = i;
        }
        Self { order, at, free }
    }

    /// Whether block `a` comes before block `b`: fewer free bytes, then lower index.
    fn tighter(&self, a: usize, b: usize) -> bool {
        (self.free[a], a) < (self.free[b], b)
    }

    /// Where the first block with at least `size` free bytes is in the order (every block
    /// before it has fewer: none of them can take an allocation of `size` bytes). A search
    /// that gallops from the front: few blocks are usually that tight.
    #[inline]
    pub fn first_with(&self, size: DeviceSize) -> usize {
        let tight = |i: usize| self.free[self.order[i]] < size;
        let n = self.order.len();
        if n == 0 || !tight(0) {
            return 0;
        }
        // `tight(lo)` holds; find the first `hi` where it does not (or the end).
        let mut lo = 0;
        let mut step = 1;
        while lo + step < n && tight(lo + step) {
            lo += step;
            step *= 2;
        }
        let hi = (lo + step).min(n);
        lo + 1 + self.order[lo + 1..hi].partition_point(|&b| self.free[b] < size)
    }

    /// Moves block `b` to its place after its live bytes changed: a step at a time towards
    /// the front or the back (a placement moves a block by few places).
    pub fn update(&mut self, blocks: &[BlockState], live: &[DeviceSize], b: usize) {
        self.free[b] = blocks[b].free(live[b]);
        let mut i = self.at[b];
        while i > 0 && self.tighter(b, self.order[i - 1]) {
            self.order.swap(i, i - 1);
            self.at[self.order[i]] = i;
            i -= 1;
        }
        while i + 1 < self.order.len() && self.tighter(self.order[i + 1], b) {
            self.order.swap(i, i + 1);
            self.at[self.order[i]] = i;
            i += 1;
        }
        self.at[b] = i;
    }
}

/// Replaces the contents of `v` with `items`, keeping its capacity.
pub(super) fn refill<T>(v: &mut Vec<T>, items: impl IntoIterator<Item = T>) {
    v.clear();
    v.extend(items);
}

/// Sorts the distinct indices `order` by `fields(i)`, compared field by field, then by the
/// index; `most[k]` is at least every value of field `k`. The sort is on every pass over
/// every block: when the fields and the index fit in 64 bits together (each field in the
/// bits its `most` needs), as they do for blocks of up to a few GiB, it sorts those packed
/// integers in `keys`, not indices looked up at each comparison; otherwise it compares the
/// fields.
pub(super) fn sort_by_fields<const K: usize>(
    order: &mut [usize],
    keys: &mut Vec<u64>,
    most: [u64; K],
    fields: impl Fn(usize) -> [u64; K],
) {
    let bits = |v: u64| u64::BITS - v.leading_zeros();
    let widths = most.map(bits);
    let index_bits = bits(order.iter().copied().max().unwrap_or(0) as u64);
    let total = widths.iter().sum::<u32>() + index_bits;
    if total > u64::BITS {
        order.sort_unstable_by_key(|&i| (fields(i), i));
        return;
    }
    // Field `k` goes above the fields after it and the index: each shift is below 64 for a
    // field with any bits (the widths and the index's bits add up to at most 64).
    let mut shifts = [0; K];
    let mut below = index_bits;
    for k in (0..K).rev() {
        shifts[k] = below;
        below += widths[k];
    }
    let pack = |i: usize| {
        let f = fields(i);
        debug_assert!(
            f.iter().zip(&most).all(|(v, m)| v <= m),
            "a field above its most"
        );
        let mut key = i as u64;
        for k in 0..K {
            if widths[k] > 0 {
                key |= f[k] << shifts[k];
            }
        }
        key
    };
    refill(keys, order.iter().map(|&i| pack(i)));
    keys.sort_unstable();
    let mask = 1u64.checked_shl(index_bits).unwrap_or(0).wrapping_sub(1);
    for (i, &k) in order.iter_mut().zip(keys.iter()) {
        *i = (k & mask) as usize;
    }
}
