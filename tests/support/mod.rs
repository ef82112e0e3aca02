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
//! - optional extensions and features that lavapipe lacks are *claimed* ([`SimFeatures`]):
//!   `VK_EXT_memory_budget` (budget and usage per heap, set by the test), `VK_EXT_memory_priority`,
//!   `bufferDeviceAddress`, external memory and `protectedMemory`. The exact `pNext` chain of
//!   every `vkAllocateMemory` is recorded ([`AllocChain`]) and checked against the claims; the
//!   real driver only ever gets `VkMemoryDedicatedAllocateInfo`, and the budget structure is
//!   unlinked from `vkGetPhysicalDeviceMemoryProperties2[KHR]` before it reaches lavapipe;
//! - `vkGetPhysicalDeviceMemoryProperties2KHR` is handed out by the `vkGetInstanceProcAddr` of
//!   a custom `ash::Entry` ([`Sim::entry`]), for the Vulkan 1.0 path of the budget;
//! - `prefersDedicatedAllocation` and `requiresDedicatedAllocation` can be reported for every
//!   buffer and image;
//! - live and mapped memory objects are counted, and every call is checked against the rules
//!   a real driver relies on (double maps, maps of non-host-visible types, flush ranges not
//!   aligned to the simulated `nonCoherentAtomSize`, binds to a memory type the resource does
//!   not allow, misaligned or overlapping binds, buffer-image granularity conflicts, binds
//!   that break a dedicated allocation, structures of extensions the simulated device does not
//!   claim, protected memory without the feature). A broken
//!   rule is recorded as a *violation*; dropping the [`Sim`] fails the test if there was any.
//!
//! The wrappers are plain functions, so they find their per-test state in a global registry
//! keyed by the dispatchable handle they are called with (`VkInstance`, `VkPhysicalDevice` or
//! `VkDevice`).
//! Every test builds its own instance and device, so tests running in parallel never share
//! state. The validation layer sits *below* the wrappers and sees lavapipe's real memory type;
//! the simulated flags never turn into an invalid real call (flushing coherent memory is
//! valid, and the simulated atom sizes are multiples of lavapipe's).
#![allow(dead_code)]

pub mod coherence;
pub mod defrag;
#[path = "../../src/simulated_layouts.rs"]
pub mod layouts;
pub mod vma;
mod wrappers;

use crate::common::TestContext;
#[allow(unused_imports)] // Not every test file uses every helper.
pub use crate::common::{buffer_info, image_info, Rng};
use ash::vk;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

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

/// The optional extensions and features the simulated device claims to support and have
/// enabled. lavapipe supports none of them on the test device, so the simulated driver takes
/// their structures out of every call before it reaches lavapipe, and records a violation when
/// the crate passes a structure of one that is not claimed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFeatures {
    /// `VK_EXT_memory_budget`: `VkPhysicalDeviceMemoryBudgetPropertiesEXT` is filled from the
    /// simulated numbers ([`SimState::set_heap_budget`], [`SimState::set_other_usage`]).
    pub memory_budget: bool,
    /// `VK_EXT_memory_priority` with `memoryPriority`: `VkMemoryPriorityAllocateInfoEXT`.
    pub memory_priority: bool,
    /// `bufferDeviceAddress`: `VkMemoryAllocateFlagsInfo` with `DEVICE_ADDRESS`.
    pub buffer_device_address: bool,
    /// External memory, with export of any handle type: `VkExportMemoryAllocateInfo`.
    pub external_memory: bool,
    /// `protectedMemory`: memory types with `PROTECTED` may be allocated from.
    pub protected_memory: bool,
}

impl SimFeatures {
    /// Everything claimed.
    pub fn all() -> Self {
        Self {
            memory_budget: true,
            memory_priority: true,
            buffer_device_address: true,
            external_memory: true,
            protected_memory: true,
        }
    }

    /// The crate's features matching these claims.
    pub fn enabled(self) -> ash_memory::EnabledMemoryFeatures {
        ash_memory::EnabledMemoryFeatures {
            memory_budget: self.memory_budget,
            memory_priority: self.memory_priority,
            buffer_device_address: self.buffer_device_address,
            external_memory: self.external_memory,
            protected_memory: self.protected_memory,
            ..Default::default()
        }
    }
}

/// The resource named by a `VkMemoryDedicatedAllocateInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedicatedTo {
    pub buffer: vk::Buffer,
    pub image: vk::Image,
}

impl DedicatedTo {
    /// The raw handle of the resource (the buffer's, or the image's when the buffer is null).
    pub fn resource(self) -> u64 {
        if self.buffer != vk::Buffer::null() {
            vk::Handle::as_raw(self.buffer)
        } else {
            vk::Handle::as_raw(self.image)
        }
    }
}

/// The `pNext` chain of one `vkAllocateMemory` call, as the simulated driver received it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocChain {
    /// The `sType` of every chained structure, in chain order (unknown ones included).
    pub s_types: Vec<vk::StructureType>,
    /// `VkMemoryDedicatedAllocateInfo`.
    pub dedicated: Option<DedicatedTo>,
    /// `VkExportMemoryAllocateInfo::handleTypes`.
    pub export_handle_types: Option<vk::ExternalMemoryHandleTypeFlags>,
    /// `VkMemoryAllocateFlagsInfo`: `(flags, deviceMask)`.
    pub allocate_flags: Option<(vk::MemoryAllocateFlags, u32)>,
    /// `VkMemoryPriorityAllocateInfoEXT::priority`.
    pub priority: Option<f32>,
}

impl AllocChain {
    /// Whether the chain holds exactly these structures, each once, in any order, and
    /// nothing else.
    pub fn is_exactly(&self, s_types: &[vk::StructureType]) -> bool {
        let mut have = self.s_types.clone();
        let mut want = s_types.to_vec();
        have.sort_unstable_by_key(|s| s.as_raw());
        want.sort_unstable_by_key(|s| s.as_raw());
        have == want
    }

    /// Whether a structure of type `s_type` is chained.
    pub fn has(&self, s_type: vk::StructureType) -> bool {
        self.s_types.contains(&s_type)
    }
}

/// One `vkAllocateMemory` call as the simulated driver saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocCall {
    /// 1-based index since the last counter reset.
    pub index: u64,
    /// The (simulated) memory type index asked for.
    pub memory_type: u32,
    pub size: u64,
    /// The `pNext` chain.
    pub chain: AllocChain,
    pub result: vk::Result,
    /// The memory object made (null when the call failed).
    pub memory: vk::DeviceMemory,
}

impl AllocCall {
    /// Whether `VkMemoryDedicatedAllocateInfo` was chained.
    pub fn dedicated(&self) -> bool {
        self.chain.dedicated.is_some()
    }
}

/// Which `vkGetPhysicalDeviceMemoryProperties2` entry point was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryPoint {
    /// `vkGetPhysicalDeviceMemoryProperties2` (core 1.1).
    Core,
    /// `vkGetPhysicalDeviceMemoryProperties2KHR`, as handed out by [`Sim::entry`].
    Khr,
}

/// One `vkGetPhysicalDeviceMemoryProperties2[KHR]` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Properties2Call {
    pub entry: EntryPoint,
    /// Whether `VkPhysicalDeviceMemoryBudgetPropertiesEXT` was chained.
    pub budget: bool,
}

/// A live memory object.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveMemory {
    pub memory_type: u32,
    pub heap: u32,
    pub size: u64,
    pub mapped: bool,
    /// The raw handle of the resource of its `VkMemoryDedicatedAllocateInfo`.
    pub dedicated_to: Option<u64>,
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
    /// The most bytes ever live at once per heap, since the last [`SimState::reset_peaks`].
    pub heap_peak: Vec<u64>,
    /// `heapBudget` per heap, reported with `VK_EXT_memory_budget`.
    pub heap_budget: Vec<u64>,
    /// Bytes of each heap that "other" allocations of the process (outside the crate) use;
    /// added to the live bytes in the reported `heapUsage`.
    pub heap_other: Vec<u64>,
    pub max_live: u32,
    pub max_mapped: u32,
    pub calls: Vec<AllocCall>,
    pub properties2_calls: Vec<Properties2Call>,
    /// `vkGetInstanceProcAddr(instance, "vkGetPhysicalDeviceMemoryProperties2KHR")` lookups.
    pub khr_lookups: u32,
    /// image -> (tiling, usage)
    pub images: HashMap<vk::Image, (vk::ImageTiling, vk::ImageUsageFlags)>,
    /// Resources whose requirements said `requiresDedicatedAllocation`.
    pub dedicated_required: HashSet<u64>,
    pub bound: HashMap<vk::DeviceMemory, Vec<Bound>>,
    pub bound_to: HashMap<u64, vk::DeviceMemory>,
    /// (memory, offset, size, is_flush)
    pub syncs: Vec<(vk::DeviceMemory, u64, u64, bool)>,
    pub violations: Vec<String>,
}

/// Run by the simulated driver inside a budget query, after the budget numbers were taken and
/// before the call returns (with no lock of the simulated driver held).
pub type BudgetHook = Arc<dyn Fn() + Send + Sync>;

/// The state of one simulated device, shared by its wrappers.
pub struct SimState {
    pub layout: GpuLayout,
    /// What the simulated device claims.
    pub features: SimFeatures,
    pub(crate) real_instance: ash::Instance,
    pub(crate) real_device: ash::Device,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) allocate_calls: AtomicU64,
    pub(crate) map_calls: AtomicU64,
    /// Report `prefersDedicatedAllocation` for every buffer and image.
    pub prefers_dedicated: AtomicBool,
    /// Report `requiresDedicatedAllocation` (and `prefersDedicatedAllocation`) for every
    /// buffer and image.
    pub requires_dedicated: AtomicBool,
    /// Microseconds every `vkAllocateMemory` waits before it takes the driver's lock, to
    /// widen the window between a caller's budget check and its memory object.
    pub(crate) allocate_delay_us: AtomicU64,
    pub(crate) budget_hook: Mutex<Option<BudgetHook>>,
    pub(crate) inner: Mutex<Inner>,
    /// Device copies of mapped non-coherent memory (see [`coherence`]).
    pub(crate) coherence: coherence::Coherence,
}

impl SimState {
    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Restarts the call counters (for fault indices) and clears the call and sync logs.
    pub fn reset_counters(&self) {
        self.allocate_calls.store(0, Ordering::SeqCst);
        self.map_calls.store(0, Ordering::SeqCst);
        let mut inner = self.inner();
        inner.calls.clear();
        inner.syncs.clear();
        inner.properties2_calls.clear();
    }

    /// `vkAllocateMemory` calls since the last reset (failed ones included).
    pub fn allocate_calls(&self) -> u64 {
        self.allocate_calls.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> Vec<AllocCall> {
        self.inner().calls.clone()
    }

    /// The call that made `memory` (a live or freed memory object).
    pub fn call_of(&self, memory: vk::DeviceMemory) -> Option<AllocCall> {
        self.inner()
            .calls
            .iter()
            .rev()
            .find(|c| c.memory == memory && c.result == vk::Result::SUCCESS)
            .cloned()
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

    /// The most bytes ever live at once in `heap` since the last [`reset_peaks`].
    ///
    /// [`reset_peaks`]: Self::reset_peaks
    pub fn heap_peak(&self, heap: u32) -> u64 {
        self.inner().heap_peak[heap as usize]
    }

    /// Restarts the peaks at the bytes live now.
    pub fn reset_peaks(&self) {
        let mut inner = self.inner();
        inner.heap_peak = inner.heap_used.clone();
    }

    /// Sets the `heapBudget` that `VK_EXT_memory_budget` reports for `heap` (the heap's size
    /// until set).
    pub fn set_heap_budget(&self, heap: u32, budget: u64) {
        self.inner().heap_budget[heap as usize] = budget;
    }

    /// Sets the bytes of `heap` that the rest of the process uses, outside the crate: part of
    /// the reported `heapUsage` (0 until set).
    pub fn set_other_usage(&self, heap: u32, bytes: u64) {
        self.inner().heap_other[heap as usize] = bytes;
    }

    /// `(heapUsage, heapBudget)` of `heap` as `VK_EXT_memory_budget` would report them now.
    pub fn budget_of(&self, heap: u32) -> (u64, u64) {
        let inner = self.inner();
        let h = heap as usize;
        (
            inner.heap_used[h].saturating_add(inner.heap_other[h]),
            inner.heap_budget[h],
        )
    }

    /// Every `vkGetPhysicalDeviceMemoryProperties2[KHR]` call since the last reset.
    pub fn properties2_calls(&self) -> Vec<Properties2Call> {
        self.inner().properties2_calls.clone()
    }

    /// How often the KHR entry point was looked up through [`Sim::entry`].
    pub fn khr_lookups(&self) -> u32 {
        self.inner().khr_lookups
    }

    /// Makes every `vkAllocateMemory` wait this long first.
    pub fn set_allocate_delay(&self, delay: Duration) {
        self.allocate_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Sets (or clears) the hook run inside every budget query.
    pub fn set_budget_hook(&self, hook: Option<BudgetHook>) {
        *self.budget_hook.lock().unwrap_or_else(|e| e.into_inner()) = hook;
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
    pub instances: HashMap<vk::Instance, Arc<SimState>>,
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
    /// The wrapped instance: give it to `ash_memory::MemoryDevice::new`.
    pub instance: ash::Instance,
    /// The wrapped device: create and destroy resources through it.
    pub device: ash::Device,
    /// A loader entry whose `vkGetInstanceProcAddr` hands out the simulated
    /// `vkGetPhysicalDeviceMemoryProperties2KHR` (see [`Sim::entry`]).
    entry: ash::Entry,
    pub ctx: TestContext,
}

impl Sim {
    /// A simulated device that claims no optional extension or feature.
    pub fn new(layout: GpuLayout) -> Self {
        Self::with_features(layout, SimFeatures::default())
    }

    /// A simulated device that claims `features`.
    pub fn with_features(layout: GpuLayout, features: SimFeatures) -> Self {
        Self::on(TestContext::new(), layout, features)
    }

    /// A simulated device whose memory handles are lavapipe's own (see
    /// [`TestContext::with_reused_handles`]): a handle freed is soon given to a new memory
    /// object, as drivers do.
    #[allow(dead_code)]
    pub fn with_reused_handles(layout: GpuLayout) -> Self {
        Self::on(
            TestContext::with_reused_handles(),
            layout,
            SimFeatures::default(),
        )
    }

    /// A simulated device on the real context `ctx`, claiming `features`.
    fn on(ctx: TestContext, layout: GpuLayout, features: SimFeatures) -> Self {
        let heaps = layout.heaps.len();
        let state = Arc::new(SimState {
            inner: Mutex::new(Inner {
                heap_used: vec![0; heaps],
                heap_peak: vec![0; heaps],
                heap_budget: layout.heaps.iter().map(|h| h.0).collect(),
                heap_other: vec![0; heaps],
                ..Default::default()
            }),
            layout,
            features,
            real_instance: ctx.instance.clone(),
            real_device: ctx.device.clone(),
            faults: Mutex::default(),
            allocate_calls: AtomicU64::new(0),
            map_calls: AtomicU64::new(0),
            prefers_dedicated: AtomicBool::new(false),
            coherence: Default::default(),
            requires_dedicated: AtomicBool::new(false),
            allocate_delay_us: AtomicU64::new(0),
            budget_hook: Mutex::new(None),
        });
        {
            let mut r = registry();
            r.instances.insert(ctx.instance.handle(), state.clone());
            r.physical_devices
                .insert(ctx.physical_device, state.clone());
            r.devices.insert(ctx.device.handle(), state.clone());
        }
        let (instance, device) = wrappers::wrap(&ctx.instance, &ctx.device);
        let entry = wrappers::entry();
        Self {
            state,
            instance,
            device,
            entry,
            ctx,
        }
    }

    /// The loader entry to give `ash_memory::MemoryDevice::new`: its `vkGetInstanceProcAddr`
    /// returns the simulated `vkGetPhysicalDeviceMemoryProperties2KHR` for that name and
    /// forwards every other name to the real loader.
    pub fn entry(&self) -> &ash::Entry {
        &self.entry
    }

    /// The crate's view of the simulated device: the instance's Vulkan 1.2 (so the
    /// `vkGet*MemoryRequirements2` paths and dedicated allocation info are used), no optional
    /// extension claimed.
    pub fn memory_device(&self) -> Arc<ash_memory::MemoryDevice> {
        self.memory_device_with(
            crate::common::API_VERSION,
            ash_memory::EnabledMemoryFeatures::default(),
        )
    }

    /// The crate's view of the simulated device at Vulkan 1.2 with every feature the
    /// simulated device claims.
    pub fn memory_device_claimed(&self) -> Arc<ash_memory::MemoryDevice> {
        self.memory_device_with(crate::common::API_VERSION, self.state.features.enabled())
    }

    /// The crate's view of the simulated device, told that the instance was created for
    /// `api_version` and that `features` are enabled. Claim only what the [`SimFeatures`] of
    /// this `Sim` claim (the simulated driver records a violation for any structure of an
    /// extension it does not claim).
    pub fn memory_device_with(
        &self,
        api_version: u32,
        features: ash_memory::EnabledMemoryFeatures,
    ) -> Arc<ash_memory::MemoryDevice> {
        // SAFETY: the wrapped handles forward to the context's real instance and device,
        // which outlive every allocator of a test (tests drop them before the `Sim`); the
        // real instance was created for `common::API_VERSION`, and every version up to it
        // is served by the same function tables; the features are those the simulated
        // driver claims (it implements their structures itself), and the KHR entry point of
        // a Vulkan 1.0 budget comes from `self.entry`, which serves the wrapped instance.
        unsafe {
            ash_memory::MemoryDevice::new(
                &self.entry,
                &self.instance,
                self.ctx.physical_device,
                self.device.clone(),
                api_version,
                features,
            )
        }
        .expect("ash_memory::MemoryDevice::new on the simulated device")
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
        self.state.set_budget_hook(None);
        {
            let mut r = registry();
            r.instances.remove(&self.ctx.instance.handle());
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

/// A host-visible (`MemoryUsage::Upload`) linear allocation of `size` bytes aligned to
/// `alignment`, of any memory type, filled with the pattern of `seed`.
pub fn patterned_upload(
    allocator: &dyn ash_memory::MemoryAllocator,
    device: &ash_memory::MemoryDevice,
    size: u64,
    alignment: u64,
    seed: u64,
) -> ash_memory::MemoryAlloc {
    let requirements = ash_memory::AllocationRequirements {
        layout: ash_memory::DeviceLayout::from_size_alignment(size, alignment).unwrap(),
        memory_type_bits: device.memory_properties().all_types_mask(),
        prefers_dedicated_allocation: false,
        requires_dedicated_allocation: false,
    };
    let info = ash_memory::AllocationCreateInfo {
        usage: ash_memory::MemoryUsage::Upload,
        ..Default::default()
    };
    let mut alloc = allocator
        .allocate(
            requirements,
            ash_memory::AllocationType::Linear,
            &info,
            None,
        )
        .expect("a host-visible allocation");
    fill(&mut alloc, seed, size);
    alloc
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

/// [`verify`] for each `(allocation, pattern seed, size)` of `patterned`.
pub fn verify_each<'a>(
    patterned: impl IntoIterator<Item = &'a (ash_memory::MemoryAlloc, u64, u64)>,
    what: &str,
) {
    for (alloc, seed, len) in patterned {
        verify(alloc, *seed, *len, what);
    }
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

/// Writes `byte` at `offset_in_block` of the (mapped) block `alloc` lives in, outside the
/// allocation: damage to a margin, for the corruption checks (no flush).
///
/// # Safety
///
/// `offset_in_block` lies in one of `alloc`'s margins (its own memory) inside the mapped
/// block.
pub unsafe fn poke(alloc: &ash_memory::MemoryAlloc, offset_in_block: u64, byte: u8) {
    let base = alloc
        .mapped_ptr()
        .unwrap()
        .as_ptr()
        .wrapping_sub(alloc.offset() as usize);
    // SAFETY: the caller's contract; the block is mapped whole.
    unsafe { *base.add(offset_in_block as usize) = byte };
}
