//! A simulated driver on top of the real one (lavapipe), for the reliability tests.
//!
//! [`Sim`] builds an `ash::Instance` and an `ash::Device` whose function tables are copies of
//! the real ones with the memory-related entry points replaced by the `extern "system"`
//! wrappers in [`wrappers`]. The crate under test only ever sees these wrapped handles, so the
//! tests control what the "driver" reports and when it fails without any test hook in the
//! crate's API:
//!
//! - the memory types, heaps and limits of a [`GpuLayout`] are reported instead of lavapipe's;
//!   every fake memory type is backed by lavapipe's memory type 0 in the real
//!   `vkAllocateMemory`, and `memoryTypeBits` of buffers and images are rewritten to the fake
//!   types the resource may use;
//! - simulated heap sizes and `maxMemoryAllocationCount` are enforced by failing the way a
//!   driver does (`ERROR_OUT_OF_DEVICE_MEMORY`, `ERROR_TOO_MANY_OBJECTS`);
//! - the N-th `vkAllocateMemory` or `vkMapMemory` can be made to fail ([`Faults`]);
//! - live and mapped memory objects are counted, and every call is checked against the rules
//!   a real driver relies on (double maps, maps of non-host-visible types, flush ranges not
//!   aligned to the simulated `nonCoherentAtomSize`, binds to a memory type the resource does
//!   not allow, misaligned or overlapping binds, buffer-image granularity conflicts). A broken
//!   rule is recorded as a *violation*; dropping the [`Sim`] fails the test if there was any.
//!
//! The wrappers are plain functions, so they find their per-test state in a global registry
//! keyed by the dispatchable handle they are called with (`VkPhysicalDevice` or `VkDevice`).
//! Every test builds its own instance and device, so tests running in parallel never share
//! state. The validation layer sits *below* the wrappers and sees lavapipe's real memory type;
//! the simulated flags never turn into an invalid real call (flushing coherent memory is
//! valid, and the simulated atom sizes are multiples of lavapipe's).
#![allow(dead_code)]

pub mod coherence;
pub mod layouts;
mod wrappers;

use crate::common::TestContext;
#[allow(unused_imports)] // Not every test file uses every helper.
pub use crate::common::{buffer_info, image_info, Rng};
use ash::vk;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

pub use layouts::GpuLayout;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Which calls fail, counted from 1 since the last [`SimState::reset_counters`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Fail the N-th `vkAllocateMemory` with this result...
    pub allocate_at: Option<(u64, vk::Result)>,
    /// ... and as many calls after it as this says (a driver that stays out of memory).
    pub allocate_more: u64,
    /// Fail the N-th `vkMapMemory` with `ERROR_MEMORY_MAP_FAILED`.
    pub map_at: Option<u64>,
}

/// One `vkAllocateMemory` call as the simulated driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocCall {
    /// 1-based index since the last counter reset.
    pub index: u64,
    /// The (simulated) memory type index asked for.
    pub memory_type: u32,
    pub size: u64,
    /// Whether `VkMemoryDedicatedAllocateInfo` was chained.
    pub dedicated: bool,
    pub result: vk::Result,
}

/// A live memory object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveMemory {
    pub memory_type: u32,
    pub heap: u32,
    pub size: u64,
    pub mapped: bool,
}

/// A resource bound to memory, for overlap and granularity checks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub resource: u64,
    pub offset: u64,
    pub size: u64,
    pub linear: bool,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub live: HashMap<vk::DeviceMemory, LiveMemory>,
    pub heap_used: Vec<u64>,
    pub max_live: u32,
    pub max_mapped: u32,
    pub calls: Vec<AllocCall>,
    /// image -> (tiling, usage)
    pub images: HashMap<vk::Image, (vk::ImageTiling, vk::ImageUsageFlags)>,
    pub bound: HashMap<vk::DeviceMemory, Vec<Bound>>,
    pub bound_to: HashMap<u64, vk::DeviceMemory>,
    /// (memory, offset, size, is_flush)
    pub syncs: Vec<(vk::DeviceMemory, u64, u64, bool)>,
    pub violations: Vec<String>,
}

/// The state of one simulated device, shared by its wrappers.
pub struct SimState {
    pub layout: GpuLayout,
    pub(crate) real_instance: ash::Instance,
    pub(crate) real_device: ash::Device,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) allocate_calls: AtomicU64,
    pub(crate) map_calls: AtomicU64,
    /// Report `prefersDedicatedAllocation` for every buffer and image.
    pub prefers_dedicated: AtomicBool,
    pub(crate) inner: Mutex<Inner>,
    /// Device copies of mapped non-coherent memory (see [`coherence`]).
    pub(crate) coherence: coherence::Coherence,
}

impl SimState {
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// Restarts the call counters (for fault indices) and clears the call and sync logs.
    pub fn reset_counters(&self) {
        self.allocate_calls.store(0, Ordering::SeqCst);
        self.map_calls.store(0, Ordering::SeqCst);
        let mut inner = self.inner();
        inner.calls.clear();
        inner.syncs.clear();
    }

    /// `vkAllocateMemory` calls since the last reset (failed ones included).
    pub fn allocate_calls(&self) -> u64 {
        self.allocate_calls.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> Vec<AllocCall> {
        self.inner().calls.clone()
    }

    pub fn live_objects(&self) -> u32 {
        self.inner().live.len() as u32
    }

    pub fn mapped_objects(&self) -> u32 {
        self.inner().live.values().filter(|m| m.mapped).count() as u32
    }

    /// The most memory objects that were ever alive at once.
    pub fn max_live_objects(&self) -> u32 {
        self.inner().max_live
    }

    pub fn heap_used(&self, heap: u32) -> u64 {
        self.inner().heap_used[heap as usize]
    }

    /// The simulated memory type a live memory object was allocated from.
    pub fn memory_type_of(&self, memory: vk::DeviceMemory) -> Option<u32> {
        self.inner().live.get(&memory).map(|m| m.memory_type)
    }

    /// `(memory, offset, size, is_flush)` of every flush and invalidate since the last reset.
    pub fn syncs(&self) -> Vec<(vk::DeviceMemory, u64, u64, bool)> {
        self.inner().syncs.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner().violations.clone()
    }

    pub(crate) fn violation(&self, text: String) {
        eprintln!("simulated driver: violation: {text}");
        self.inner().violations.push(text);
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    pub physical_devices: HashMap<vk::PhysicalDevice, Arc<SimState>>,
    pub devices: HashMap<vk::Device, Arc<SimState>>,
}

pub(crate) fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// A test context whose instance and device report a simulated GPU.
pub struct Sim {
    pub state: Arc<SimState>,
    /// The wrapped instance: give it to `ash_memory::Device::new`.
    pub instance: ash::Instance,
    /// The wrapped device: create and destroy resources through it.
    pub device: ash::Device,
    pub ctx: TestContext,
}

impl Sim {
    pub fn new(layout: GpuLayout) -> Self {
        let ctx = TestContext::new();
        let state = Arc::new(SimState {
            inner: Mutex::new(Inner {
                heap_used: vec![0; layout.heaps.len()],
                ..Default::default()
            }),
            layout,
            real_instance: ctx.instance.clone(),
            real_device: ctx.device.clone(),
            faults: Mutex::default(),
            allocate_calls: AtomicU64::new(0),
            map_calls: AtomicU64::new(0),
            prefers_dedicated: AtomicBool::new(false),
            coherence: Default::default(),
        });
        {
            let mut r = registry();
            r.physical_devices
                .insert(ctx.physical_device, state.clone());
            r.devices.insert(ctx.device.handle(), state.clone());
        }
        let (instance, device) = wrappers::wrap(&ctx.instance, &ctx.device);
        Self {
            state,
            instance,
            device,
            ctx,
        }
    }

    /// The crate's view of the simulated device: the instance's Vulkan 1.2 (so the
    /// `vkGet*MemoryRequirements2` paths and dedicated allocation info are used), no optional
    /// extension claimed.
    pub fn memory_device(&self) -> Arc<ash_memory::Device> {
        // SAFETY: the wrapped handles forward to the context's real instance and device,
        // which outlive every allocator of a test (tests drop them before the `Sim`); the
        // instance was created for `common::API_VERSION`; no optional extension is claimed.
        unsafe {
            ash_memory::Device::new(
                &self.ctx.entry,
                &self.instance,
                self.ctx.physical_device,
                self.device.clone(),
                crate::common::API_VERSION,
                ash_memory::EnabledMemoryFeatures::default(),
            )
        }
        .expect("ash_memory::Device::new on the simulated device")
    }

    /// Asserts that no memory object is alive or mapped.
    pub fn assert_nothing_allocated(&self) {
        assert_eq!(self.state.live_objects(), 0, "memory objects leaked");
        assert_eq!(self.state.mapped_objects(), 0, "memory objects left mapped");
        let inner = self.state.inner();
        assert!(
            inner.heap_used.iter().all(|&u| u == 0),
            "heap usage left: {:?}",
            inner.heap_used
        );
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        {
            let mut r = registry();
            r.physical_devices.remove(&self.ctx.physical_device);
            r.devices.remove(&self.ctx.device.handle());
        }
        let violations = self.state.violations();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "{} simulated-driver violation(s):\n{}",
                violations.len(),
                violations.join("\n")
            );
        }
    }
}

/// A small deterministic PRNG (splitmix64).
/// A byte pattern determined by `seed`, `len` bytes long.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the pattern of `seed` into the first `len` bytes of `alloc` (host-visible only).
pub fn fill(alloc: &mut ash_memory::MemoryAlloc, seed: u64, len: u64) {
    alloc
        .write(0, &pattern(seed, len as usize))
        .expect("write to a host-visible allocation");
}

/// Checks that the first `len` bytes of `alloc` still hold the pattern of `seed`.
pub fn verify(alloc: &ash_memory::MemoryAlloc, seed: u64, len: u64, what: &str) {
    let mut back = vec![0u8; len as usize];
    alloc.read(0, &mut back).expect("read");
    assert!(
        back == pattern(seed, len as usize),
        "{what}: data of the allocation at {:?}+{} was overwritten",
        alloc.memory(),
        alloc.offset()
    );
}

/// Checks the invariants of live allocations on their real `(memory, offset, size)` triples:
/// ranges lie inside their memory object, never overlap, and a linear and a non-linear
/// neighbour never share a `granularity` page.
pub fn check_triples(
    allocs: &[(&ash_memory::MemoryAlloc, u64)],
    state: &SimState,
    granularity: u64,
) {
    let inner = state.inner();
    let mut by_memory: HashMap<vk::DeviceMemory, Vec<(u64, u64, ash_memory::AllocationType)>> =
        HashMap::new();
    for &(a, alignment) in allocs {
        let live = inner
            .live
            .get(&a.memory())
            .unwrap_or_else(|| panic!("allocation in memory {:?} that is not alive", a.memory()));
        assert!(
            a.offset() + a.size() <= live.size,
            "range {}+{} is past the end of its memory ({} bytes)",
            a.offset(),
            a.size(),
            live.size
        );
        assert_eq!(
            a.offset() % alignment,
            0,
            "offset not aligned to {alignment}"
        );
        assert_eq!(a.memory_type_index(), live.memory_type);
        by_memory
            .entry(a.memory())
            .or_default()
            .push((a.offset(), a.size(), a.allocation_type()));
    }
    for ranges in by_memory.values_mut() {
        ranges.sort_unstable_by_key(|r| r.0);
        for w in ranges.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!(a.0 + a.1 <= b.0, "ranges {a:?} and {b:?} overlap");
            if a.2.conflicts_with(b.2) {
                assert!(
                    (a.0 + a.1 - 1) / granularity < b.0 / granularity,
                    "ranges {a:?} and {b:?} share a {granularity}-byte granularity page"
                );
            }
        }
    }
}
