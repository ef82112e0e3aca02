//! The recent high-water mark of a block vector's memory in use, and which empty blocks stay
//! under it.
//!
//! A default block vector keeps empty blocks for reuse (see [releasing](super#releasing)),
//! but only where they cannot raise the most memory it reserves: the memory of its blocks
//! that hold allocations (*in use*), plus the empty blocks kept, stays at or below the most
//! memory it has had in use recently, its *mark*. The mark is a sample maximum: the memory
//! in use just before each free that empties a block, and the memory in use plus the new
//! block each time one is made. So kept memory only fills room that the vector's own
//! allocations needed a moment ago, and peak reserved rises only when the memory in use
//! does.
//!
//! The mark decays: samples are taken in epochs of [`HIGH_WATER_EPOCH`], and the mark is the
//! largest sample of the current epoch and the one before it. A vector whose memory in use
//! drops for good gives its kept memory back within two epochs (each free that empties a
//! block is a sample, so the epochs pass as the application frees).

#![deny(unsafe_code)]

use crate::layout::DeviceSize;
use smallvec::SmallVec;

/// How many samples an epoch of the [`HighWater`] mark takes: the mark forgets a sample after
/// between one and two epochs.
pub(crate) const HIGH_WATER_EPOCH: u32 = 128;

/// The largest recent sample of the memory a block vector had in use (see the
/// [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HighWater {
    /// The largest sample of the current epoch.
    current: DeviceSize,
    /// The largest sample of the epoch before it.
    previous: DeviceSize,
    /// Samples taken in the current epoch.
    samples: u32,
}

impl HighWater {
    /// Takes a sample of `in_use` bytes: the memory in use at its highest since the last
    /// sample, or the memory in use with a block about to be made. Starts a new epoch every
    /// `epoch` samples (at least one), and returns whether this sample started one.
    pub(crate) fn record(&mut self, in_use: DeviceSize, epoch: u32) -> bool {
        let new_epoch = self.samples >= epoch.max(1);
        if new_epoch {
            self.previous = self.current;
            self.current = 0;
            self.samples = 0;
        }
        self.samples += 1;
        self.current = self.current.max(in_use);
        new_epoch
    }

    /// The mark: the largest sample of this epoch and the one before.
    pub(crate) fn mark(&self) -> DeviceSize {
        self.current.max(self.previous)
    }
}

/// The empty blocks to give back, as indices into `sizes` (their sizes), so that those that
/// stay add up to at most `room` bytes: the largest are kept first, and a block that would go
/// past `room` is skipped for the smaller ones after it. With `keep_one`, the largest block
/// stays when none fits `room` (a free never raises the memory reserved, so one block kept
/// costs nothing but that memory; the next new block gives it back).
pub(crate) fn empty_to_release(
    sizes: &[DeviceSize],
    room: DeviceSize,
    keep_one: bool,
) -> SmallVec<[usize; 4]> {
    let mut order: SmallVec<[usize; 8]> = (0..sizes.len()).collect();
    // Largest first; among equal sizes the earlier one (a stable order).
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut kept_bytes: DeviceSize = 0;
    let mut release: SmallVec<[usize; 4]> = SmallVec::new();
    for &i in &order {
        if kept_bytes
            .checked_add(sizes[i])
            .is_some_and(|total| total <= room)
        {
            kept_bytes += sizes[i];
        } else {
            release.push(i);
        }
    }
    if keep_one && !sizes.is_empty() && release.len() == sizes.len() {
        // None fits: the largest (released first) stays.
        release.remove(0);
    }
    release
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_mark_is_the_largest_sample_of_two_epochs() {
        let mut hw = HighWater::default();
        assert_eq!(hw.mark(), 0);
        hw.record(10, 2);
        hw.record(30, 2);
        assert_eq!(hw.mark(), 30);
        // Epoch two: 30 is still remembered.
        hw.record(5, 2);
        hw.record(7, 2);
        assert_eq!(hw.mark(), 30);
        // Epoch three: the first epoch is forgotten.
        hw.record(6, 2);
        assert_eq!(hw.mark(), 7);
        hw.record(1, 2);
        hw.record(2, 2);
        assert_eq!(hw.mark(), 6);
    }

    #[test]
    fn the_largest_blocks_stay_and_smaller_ones_fill_the_rest() {
        // 40 + 16 + 8 = 64 stay in a room of 70; 32 would go past it.
        assert_eq!(
            empty_to_release(&[16, 40, 32, 8], 70, false).as_slice(),
            &[2]
        );
        assert_eq!(
            empty_to_release(&[16, 40, 32, 8], 0, false).as_slice(),
            &[1, 2, 0, 3]
        );
        assert_eq!(
            empty_to_release(&[16, 40, 32, 8], 0, true).as_slice(),
            &[2, 0, 3]
        );
        // One fits: it stays, not the largest.
        assert_eq!(
            empty_to_release(&[16, 40, 32, 8], 10, true).as_slice(),
            &[1, 2, 0]
        );
        assert!(empty_to_release(&[], 0, true).is_empty());
    }

    proptest! {
        /// The mark is never below a sample of the current epoch, never above the largest
        /// sample ever taken, and forgets everything older than two epochs.
        #[test]
        fn the_mark_follows_the_recent_samples(
            samples in proptest::collection::vec(0u64..1000, 1..300),
            epoch in 1u32..20,
        ) {
            let mut hw = HighWater::default();
            for (n, &s) in samples.iter().enumerate() {
                hw.record(s, epoch);
                let mark = hw.mark();
                prop_assert!(mark >= s);
                // Samples of this epoch and the previous one stay.
                let epoch = epoch as usize;
                let start = n / epoch * epoch;
                let recent_start = start.saturating_sub(epoch);
                let recent = samples[recent_start..=n].iter().max().copied().unwrap();
                let this_epoch = samples[start..=n].iter().max().copied().unwrap();
                prop_assert!(mark >= this_epoch);
                prop_assert!(mark <= recent, "mark {} above the last two epochs' {}", mark, recent);
            }
        }

        /// What stays fits the room (but for the one block `keep_one` keeps), releases are
        /// distinct indices, and no released block would have fitted the room left.
        #[test]
        fn what_stays_fits_the_room(
            sizes in proptest::collection::vec(1u64..100, 0..12),
            room in 0u64..400,
            keep_one in any::<bool>(),
        ) {
            let release = empty_to_release(&sizes, room, keep_one);
            let mut released = vec![false; sizes.len()];
            for &i in &release {
                prop_assert!(!released[i], "released twice");
                released[i] = true;
            }
            let kept: Vec<_> = (0..sizes.len()).filter(|&i| !released[i]).collect();
            let kept_bytes: u64 = kept.iter().map(|&i| sizes[i]).sum();
            let largest = sizes.iter().copied().max().unwrap_or(0);
            if keep_one && !sizes.is_empty() {
                prop_assert!(!kept.is_empty(), "one stays");
                if kept_bytes > room {
                    prop_assert_eq!(kept.len(), 1);
                    prop_assert_eq!(sizes[kept[0]], largest, "the largest stays");
                    prop_assert!(sizes.iter().all(|&s| s > room), "one would have fitted");
                }
            } else {
                prop_assert!(kept_bytes <= room);
            }
            if kept_bytes <= room {
                for &i in &release {
                    prop_assert!(kept_bytes + sizes[i] > room, "block {} would have fitted", i);
                }
            }
        }
    }
}
