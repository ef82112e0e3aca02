//! The allocator's peak: kept empty blocks never raise the most memory it reserved, of one
//! memory type or of several, nor when a custom pool of it grows (see the block vectors'
//! docs, "Releasing").

use super::GenericMemoryAllocator;
use crate::allocator::block_memory::{allocate_releasing_kept, DeviceBlockVec};
use crate::allocator::block_vec::Neighbours;
use crate::allocator::memory_pool::AllocatorPeak;
use crate::allocator::AllocationError;
use crate::device::MemoryDevice;
use crate::device_memory::{MemoryObject, MemoryObjectCreateInfo};
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// The allocator's peak, and the rule that keeps kept empty blocks from raising it: before a
/// default block vector (or a custom pool of the allocator) makes a memory object that would
/// take the device past the most memory it held through this crate when the allocator last
/// made one, the other default vectors give back their kept blocks as far as needed (those
/// whose list is free within a moment), then the vector its own (see the block vectors'
/// "Releasing"). Each vector keeps
/// its blocks under its own high-water mark too; without this rule, the blocks that one
/// memory type kept added to the peak while another type grew.
pub(super) struct PeakState<S> {
    device: Arc<MemoryDevice>,
    /// Bytes of the memory objects alive through the device's crate, at their most after
    /// each memory object the allocator made.
    peak: AtomicU64,
    /// The default block vectors (weak: each holds this state through its guard).
    vecs: Vec<Weak<DeviceBlockVec<S>>>,
}

impl<S: Suballocator + Send + 'static> AllocatorPeak for PeakState<S> {
    fn make_way(&self, size: DeviceSize) {
        PeakState::make_way(self, usize::MAX, size);
    }

    fn made(&self) {
        PeakState::made(self);
    }
}

/// The [`Neighbours`] of default vector `own`.
struct VecNeighbours<S> {
    state: Arc<PeakState<S>>,
    own: usize,
}

impl<S: Suballocator + Send + 'static> Neighbours for VecNeighbours<S> {
    fn make_way(&self, size: DeviceSize) -> DeviceSize {
        self.state.make_way(self.own, size)
    }

    fn epoch_passed(&self) {
        self.state.epoch_passed(self.own);
    }
}

impl<S: Suballocator + Send + 'static> PeakState<S> {
    /// The peak of an allocator with the default vectors `vecs`, each told of the others.
    pub(super) fn install(
        device: &Arc<MemoryDevice>,
        vecs: &[Arc<DeviceBlockVec<S>>],
    ) -> Arc<Self> {
        let state = Arc::new(Self {
            device: device.clone(),
            peak: AtomicU64::new(0),
            vecs: vecs.iter().map(Arc::downgrade).collect(),
        });
        for (own, vec) in vecs.iter().enumerate() {
            let state = state.clone();
            vec.set_neighbours(Box::new(VecNeighbours { state, own }));
        }
        state
    }

    /// Bytes by which a new memory object of `size` bytes takes the device past the peak.
    fn over(&self, size: DeviceSize) -> DeviceSize {
        self.device
            .live_memory_bytes()
            .saturating_add(size)
            .saturating_sub(self.peak.load(Ordering::Relaxed))
    }

    /// [`Neighbours::make_way`] for vector `own`: gives back the other vectors' kept blocks as
    /// far as a memory object of `size` bytes needs, and returns what is still over the peak.
    fn make_way(&self, own: usize, size: DeviceSize) -> DeviceSize {
        let mut over = self.over(size);
        for (i, vec) in self.vecs.iter().enumerate() {
            if over == 0 {
                break;
            }
            if i != own {
                if let Some(vec) = vec.upgrade() {
                    over = over.saturating_sub(vec.try_release_kept_bytes(over));
                }
            }
        }
        over
    }

    /// [`Neighbours::epoch_passed`] for vector `own`: each other vector hears of it.
    fn epoch_passed(&self, own: usize) {
        for (i, vec) in self.vecs.iter().enumerate() {
            if i != own {
                if let Some(vec) = vec.upgrade() {
                    vec.neighbour_epoch_passed();
                }
            }
        }
    }

    /// A memory object of the allocator was made.
    pub(super) fn made(&self) {
        self.peak
            .fetch_max(self.device.live_memory_bytes(), Ordering::Relaxed);
    }
}

impl<S: Suballocator + Send + 'static> GenericMemoryAllocator<S> {
    /// Makes, with `make`, a memory object of `size` bytes of `memory_type_index` outside the
    /// blocks (a dedicated allocation or an import, which `make` registers): the type's kept
    /// empty blocks give way first, as for a new block, so that they never raise its peak,
    /// and the memory in use is a sample of its mark after (see the block vectors'
    /// "Releasing").
    pub(super) fn outside_blocks<T>(
        &self,
        memory_type_index: u32,
        size: DeviceSize,
        make: impl FnOnce() -> Result<T, AllocationError>,
    ) -> Result<T, AllocationError> {
        let vec = self.block_vecs.get(memory_type_index as usize);
        if let Some(vec) = vec {
            vec.make_room_outside(size);
        }
        let made = make()?;
        if let Some(vec) = vec {
            vec.outside_made();
        }
        Ok(made)
    }

    /// Makes the memory object of `info` (a block of its type's default vector when
    /// `for_block`: the caller holds that vector's list). The vector gave back its kept
    /// blocks, and the others theirs, as far as the object needs not to raise the
    /// allocator's peak (see [`PeakState`]); out of memory or budget, the kept blocks of the
    /// heap are given back and the object is tried once more.
    pub(super) fn make_memory(
        &self,
        info: &MemoryObjectCreateInfo,
        for_block: bool,
    ) -> Result<MemoryObject, AllocationError> {
        let memory = allocate_releasing_kept(&self.device, info, || {
            self.release_kept_empty_blocks(info.memory_type_index, for_block)
        })?;
        self.peak.made();
        Ok(memory)
    }
}
