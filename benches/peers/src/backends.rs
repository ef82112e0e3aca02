//! One adapter per allocator: allocate from raw memory requirements, free a handle.

use crate::trace::{Request, Usage};
use crate::vulkan::Vulkan;
use std::sync::{Mutex, OnceLock};

/// What the replay loop needs from an allocator. `&self`: shared by all replay threads.
pub trait Backend: Sync {
    type Handle: Send;
    fn allocate(&self, req: &Request) -> Self::Handle;
    fn free(&self, handle: Self::Handle);
    /// Called once on replay thread `i`, before the timed replay starts.
    fn bind_thread(&self, _i: usize) {}
}

/// Not an allocator: measures the replay harness itself (`--allocators null`).
pub struct Null;

impl Backend for Null {
    type Handle = u64;
    fn allocate(&self, req: &Request) -> u64 {
        std::hint::black_box(req.size)
    }
    fn free(&self, handle: u64) {
        std::hint::black_box(handle);
    }
}

// ---------------------------------------------------------------- bare algorithms

/// One value per replay thread, for the bare algorithms that have no lock: replay thread `i`
/// touches only value `i` (see [`bind`](Self::bind)). Each on cache lines of its own (128
/// bytes, adjacent-line prefetch included): two threads writing the ends of neighbouring
/// values would otherwise share a line, which no per-thread allocator does.
pub struct PerThread<T> {
    cells: Vec<OwnLines<std::cell::UnsafeCell<T>>>,
}

#[repr(align(128))]
struct OwnLines<T>(T);

// SAFETY: replay thread `i` only ever touches `cells[i]` (`bind` tells each thread its index
// before the replay), and each thread frees only what it allocated; the values move
// between threads only with the whole `PerThread`.
unsafe impl<T: Send> Sync for PerThread<T> {}

thread_local! {
    static REPLAY_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<T> PerThread<T> {
    fn new(threads: usize, mut make: impl FnMut() -> T) -> Self {
        PerThread {
            cells: (0..threads)
                .map(|_| OwnLines(std::cell::UnsafeCell::new(make())))
                .collect(),
        }
    }

    /// Called once on replay thread `i`, before the replay: its value is `cells[i]`.
    fn bind(&self, i: usize) {
        REPLAY_THREAD.with(|t| t.set(i));
    }

    #[allow(clippy::mut_from_ref)]
    fn mine(&self) -> &mut T {
        // SAFETY: see the `Sync` impl: this thread's own value, never shared, and no other
        // reference to it is alive (each backend call takes it once).
        unsafe { &mut *self.cells[REPLAY_THREAD.with(|t| t.get())].0.get() }
    }
}

/// The bare algorithm: `offset-allocator` 0.2 (TLSF-like, O(1)), one per replay thread, with
/// no Vulkan, no alignment and no lock (`--allocators offset-allocator`). Sizes are counted
/// in 16-byte units of a 32 GiB range. The floor for what a whole allocator can cost.
pub struct OffsetAllocator(PerThread<offset_allocator::Allocator>);

const OFFSET_UNIT_LOG2: u32 = 4;

impl OffsetAllocator {
    pub fn new(threads: usize) -> Self {
        OffsetAllocator(PerThread::new(threads, || {
            offset_allocator::Allocator::with_max_allocs(u32::MAX >> 1, 1 << 18)
        }))
    }
}

impl Backend for OffsetAllocator {
    type Handle = offset_allocator::Allocation;
    fn bind_thread(&self, i: usize) {
        self.0.bind(i);
    }
    fn allocate(&self, req: &Request) -> Self::Handle {
        let units = (req.size + (1 << OFFSET_UNIT_LOG2) - 1) >> OFFSET_UNIT_LOG2;
        self.0
            .mine()
            .allocate(units as u32)
            .expect("offset-allocator out of room")
    }
    fn free(&self, handle: Self::Handle) {
        self.0.mine().free(handle)
    }
}

/// ash-memory's `FreeListAllocator` alone, one per replay thread, on a 32 GiB region:
/// alignment as requested, every request linear, no Vulkan, no lock (`--allocators
/// free-list`). Between the bare `offset-allocator` and the whole allocator: what the
/// suballocator costs on the trace, and what the allocator adds around it.
pub struct BareFreeList(PerThread<ash_memory::FreeListAllocator>);

impl BareFreeList {
    pub fn new(threads: usize) -> Self {
        use ash_memory::Suballocator;
        BareFreeList(PerThread::new(threads, || {
            ash_memory::FreeListAllocator::new(32 << 30)
        }))
    }
}

impl Backend for BareFreeList {
    type Handle = ash_memory::Suballocation;
    fn bind_thread(&self, i: usize) {
        self.0.bind(i);
    }
    fn allocate(&self, req: &Request) -> Self::Handle {
        use ash_memory::Suballocator;
        let layout = ash_memory::DeviceLayout::from_size_alignment(req.size, req.alignment)
            .expect("the trace's sizes and alignments are valid layouts");
        self.0
            .mine()
            .allocate(
                layout,
                ash_memory::AllocationType::Linear,
                ash_memory::DeviceAlignment::MIN,
            )
            .expect("free list out of room")
    }
    fn free(&self, handle: Self::Handle) {
        use ash_memory::Suballocator;
        // SAFETY: allocated by this thread's free list, freed once.
        unsafe { self.0.mine().deallocate(handle) }
    }
}

// ---------------------------------------------------------------- VMA (vk-mem 0.5)

/// AMD VMA 3.x through vk-mem 0.5. Internally synchronized: shared without a lock.
pub struct Vma {
    allocator: vk_mem::Allocator,
}

impl Vma {
    /// VMA with `--block-mib` as its preferred large-heap block size (unset: VMA's default).
    pub fn new(vk: &Vulkan) -> Self {
        Vma {
            allocator: Self::allocator(vk, BLOCK_SIZE.get().copied().unwrap_or(0)),
        }
    }

    /// A VMA allocator on the bench's device; `block_size` is `preferredLargeHeapBlockSize`
    /// (0: VMA's default, 256 MiB).
    pub fn allocator(vk: &Vulkan, block_size: u64) -> vk_mem::Allocator {
        let mut info =
            vk_mem::AllocatorCreateInfo::new(&vk.instance, &vk.device, vk.physical_device);
        info.vulkan_api_version = vk.api_version;
        info.preferred_large_heap_block_size = block_size;
        // SAFETY: instance/device outlive the allocator (dropped before `Vulkan`).
        unsafe { vk_mem::Allocator::new(info) }.expect("vmaCreateAllocator")
    }
}

impl Backend for Vma {
    type Handle = vk_mem::Allocation;
    #[allow(deprecated)] // GpuOnly/CpuToGpu/GpuToCpu: the usages that work without a buffer/image create info
    fn allocate(&self, req: &Request) -> Self::Handle {
        use vk_mem::Alloc;
        let info = vk_mem::AllocationCreateInfo {
            usage: match req.usage {
                Usage::DeviceLocal => vk_mem::MemoryUsage::GpuOnly,
                Usage::Upload => vk_mem::MemoryUsage::CpuToGpu,
                Usage::Download => vk_mem::MemoryUsage::GpuToCpu,
            },
            ..Default::default()
        };
        // SAFETY: valid requirements; freed through `free` below.
        unsafe { self.allocator.allocate_memory(&req.vk(), &info) }.expect("vmaAllocateMemory")
    }
    fn free(&self, mut handle: Self::Handle) {
        // SAFETY: allocated by this allocator, freed once.
        unsafe { self.allocator.free_memory(&mut handle) }
    }
}

// ---------------------------------------------------------------- gpu-allocator 0.28

/// gpu-allocator needs `&mut self`: users wrap it in a `Mutex`, and so do we.
pub struct GpuAllocator {
    allocator: Mutex<gpu_allocator::vulkan::Allocator>,
}

impl GpuAllocator {
    pub fn new(vk: &Vulkan) -> Self {
        let allocator =
            gpu_allocator::vulkan::Allocator::new(&gpu_allocator::vulkan::AllocatorCreateDesc {
                instance: vk.instance.clone(),
                device: vk.device.clone(),
                physical_device: vk.physical_device,
                debug_settings: Default::default(),
                buffer_device_address: false,
                allocation_sizes: Default::default(),
            })
            .expect("gpu_allocator::vulkan::Allocator::new");
        GpuAllocator {
            allocator: Mutex::new(allocator),
        }
    }
}

impl Backend for GpuAllocator {
    type Handle = gpu_allocator::vulkan::Allocation;
    fn allocate(&self, req: &Request) -> Self::Handle {
        let desc = gpu_allocator::vulkan::AllocationCreateDesc {
            name: "bench",
            requirements: req.vk(),
            location: match req.usage {
                Usage::DeviceLocal => gpu_allocator::MemoryLocation::GpuOnly,
                Usage::Upload => gpu_allocator::MemoryLocation::CpuToGpu,
                Usage::Download => gpu_allocator::MemoryLocation::GpuToCpu,
            },
            linear: req.linear,
            allocation_scheme: gpu_allocator::vulkan::AllocationScheme::GpuAllocatorManaged,
        };
        self.allocator
            .lock()
            .unwrap()
            .allocate(&desc)
            .expect("gpu-allocator allocate")
    }
    fn free(&self, handle: Self::Handle) {
        self.allocator
            .lock()
            .unwrap()
            .free(handle)
            .expect("gpu-allocator free")
    }
}

// ---------------------------------------------------------------- ash-memory

/// `--ash-block-arenas N`: ash-memory's `block_arenas` (unset: its default).
pub static ASH_BLOCK_ARENAS: OnceLock<usize> = OnceLock::new();

/// `--block-mib M`: the block size of ash-memory (on every heap) and VMA (its preferred
/// large-heap block size), in bytes (unset: each one's default). For packing at other block
/// sizes than the defaults' 256 MiB.
pub static BLOCK_SIZE: OnceLock<u64> = OnceLock::new();

/// ash-memory's `StandardMemoryAllocator` (free-list blocks), shared by `&self`.
pub struct AshMemory {
    allocator: ash_memory::StandardMemoryAllocator,
    /// The strategy of every allocation (`--ash-strategy` rows; `Default` otherwise).
    strategy: ash_memory::AllocationStrategy,
}

impl AshMemory {
    /// ash-memory with `debug` (all off: the plain `ash-memory` row) and
    /// `--ash-block-arenas` and `--block-mib`, everything else default.
    pub fn new(vk: &Vulkan, debug: ash_memory::DebugOptions) -> Self {
        Self::with_strategy(vk, debug, ash_memory::AllocationStrategy::Default)
    }

    /// As [`new`](Self::new), every allocation with `strategy`.
    pub fn with_strategy(
        vk: &Vulkan,
        debug: ash_memory::DebugOptions,
        strategy: ash_memory::AllocationStrategy,
    ) -> Self {
        AshMemory {
            strategy,
            allocator: Self::allocator(
                vk,
                ash_memory::GenericMemoryAllocatorCreateInfo {
                    block_arenas: ASH_BLOCK_ARENAS.get().copied(),
                    block_sizes: BLOCK_SIZE.get().map_or_else(Default::default, |&size| {
                        ash_memory::BlockSizeThresholds::uniform(size).expect("--block-mib M")
                    }),
                    debug,
                    ..Default::default()
                },
            ),
        }
    }

    /// An ash-memory allocator on the bench's device.
    pub fn allocator(
        vk: &Vulkan,
        create_info: ash_memory::GenericMemoryAllocatorCreateInfo,
    ) -> ash_memory::StandardMemoryAllocator {
        // SAFETY: the device comes from this physical device and instance, outlives the
        // allocator; the instance was created from `entry` for `vk.api_version`; no optional
        // feature is claimed.
        let device = unsafe {
            ash_memory::MemoryDevice::new(
                &vk.entry,
                &vk.instance,
                vk.physical_device,
                vk.device.clone(),
                vk.api_version,
                ash_memory::EnabledMemoryFeatures::default(),
            )
        }
        .expect("ash_memory::MemoryDevice::new");
        ash_memory::StandardMemoryAllocator::new(device, create_info)
            .expect("ash-memory configuration")
    }
}

/// One setting of ash-memory's `DebugOptions` for `--ash-debug`: an extra ash-memory row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugVariant {
    /// `margin` bytes before and after every suballocation.
    Margin(u64),
    /// `fill_patterns`.
    Fill,
    /// `log_allocations`, with no logger installed.
    Log,
    /// `capture_backtraces`.
    Backtrace,
    /// Every option, with this margin.
    All(u64),
}

impl DebugVariant {
    /// `margin[=N]` (16 bytes by default), `fill`, `log`, `backtrace`, `all[=N]`.
    pub fn parse(s: &str) -> Option<Self> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.parse().ok()?)),
            None => (s, None),
        };
        Some(match (key, value) {
            ("margin" | "margins", v) => DebugVariant::Margin(v.unwrap_or(16)),
            ("all", v) => DebugVariant::All(v.unwrap_or(16)),
            ("fill", None) => DebugVariant::Fill,
            ("log", None) => DebugVariant::Log,
            ("backtrace" | "backtraces", None) => DebugVariant::Backtrace,
            _ => return None,
        })
    }

    pub fn options(self) -> ash_memory::DebugOptions {
        let mut o = ash_memory::DebugOptions::default();
        match self {
            DebugVariant::Margin(m) => o.margin = m,
            DebugVariant::Fill => o.fill_patterns = true,
            DebugVariant::Log => o.log_allocations = true,
            DebugVariant::Backtrace => o.capture_backtraces = true,
            DebugVariant::All(m) => {
                o.margin = m;
                o.fill_patterns = true;
                o.log_allocations = true;
                o.capture_backtraces = true;
            }
        }
        o
    }

    pub fn label(self) -> String {
        match self {
            DebugVariant::Margin(m) => format!("ash-memory (margins {m} B)"),
            DebugVariant::Fill => "ash-memory (fill patterns)".into(),
            DebugVariant::Log => "ash-memory (log, no logger)".into(),
            DebugVariant::Backtrace => "ash-memory (backtraces)".into(),
            DebugVariant::All(m) => format!("ash-memory (all, margins {m} B)"),
        }
    }
}

impl Backend for AshMemory {
    type Handle = ash_memory::MemoryAlloc;
    fn allocate(&self, req: &Request) -> Self::Handle {
        use ash_memory::MemoryAllocator;
        let requirements =
            ash_memory::AllocationRequirements::from_vk(req.vk()).expect("requirements");
        let create_info = ash_memory::AllocationCreateInfo {
            usage: match req.usage {
                Usage::DeviceLocal => ash_memory::MemoryUsage::DeviceOnly,
                Usage::Upload => ash_memory::MemoryUsage::Upload,
                Usage::Download => ash_memory::MemoryUsage::Download,
            },
            strategy: self.strategy,
            ..Default::default()
        };
        let ty = if req.linear {
            ash_memory::AllocationType::Linear
        } else {
            ash_memory::AllocationType::NonLinear
        };
        self.allocator
            .allocate(requirements, ty, &create_info, None)
            .expect("ash-memory allocate")
    }
    fn free(&self, handle: Self::Handle) {
        drop(handle)
    }
}

// ---------------------------------------------------------------- vulkano 0.35

/// A vulkano `Loader` whose lookups hand out the counting `vkAllocateMemory`/`vkFreeMemory`.
struct CountingLoader;

// SAFETY: returns valid function pointers for the whole process lifetime.
unsafe impl vulkano::library::Loader for CountingLoader {
    unsafe fn get_instance_proc_addr(
        &self,
        instance: ash::vk::Instance,
        name: *const std::ffi::c_char,
    ) -> ash::vk::PFN_vkVoidFunction {
        // SAFETY: forwarded to the counting/real loader entry point.
        unsafe { crate::vulkan::counting_get_instance_proc_addr(instance, name) }
    }
}

/// vulkano's view of the bench's own instance and device (wrapped with `from_handle`; never
/// dropped, so vulkano never destroys the handles the rest of the bench owns).
pub struct VulkanoDevice(std::sync::Arc<vulkano::device::Device>);

impl VulkanoDevice {
    pub fn new(vk: &Vulkan) -> Self {
        use vulkano::device::{Device, DeviceCreateInfo, QueueCreateInfo};
        use vulkano::instance::{Instance, InstanceCreateInfo};
        use vulkano::VulkanObject;
        let library = vulkano::VulkanLibrary::with_loader(CountingLoader).expect("vulkano library");
        // SAFETY: the handles were created from the same loader with matching create infos
        // (API 1.3, no layers or extensions; one queue of family 0, no features).
        unsafe {
            let instance = Instance::from_handle(
                library,
                vk.instance.handle(),
                InstanceCreateInfo {
                    max_api_version: Some(vulkano::Version::V1_3),
                    ..Default::default()
                },
            );
            let physical = instance
                .enumerate_physical_devices()
                .expect("vulkano: enumerate physical devices")
                .find(|p| {
                    ash::vk::Handle::as_raw(p.handle())
                        == ash::vk::Handle::as_raw(vk.physical_device)
                })
                .expect("vulkano: physical device");
            let (device, queues) = Device::from_handle(
                physical,
                vk.device.handle(),
                DeviceCreateInfo {
                    queue_create_infos: vec![QueueCreateInfo {
                        queue_family_index: 0,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
            std::mem::forget(queues.collect::<Vec<_>>());
            std::mem::forget(instance);
            // Keep one reference forever: vulkano must not destroy the bench's device.
            std::mem::forget(device.clone());
            VulkanoDevice(device)
        }
    }
}

pub struct Vulkano {
    allocator: vulkano::memory::allocator::StandardMemoryAllocator,
}

impl Vulkano {
    pub fn new(device: &VulkanoDevice) -> Self {
        Vulkano {
            allocator: vulkano::memory::allocator::StandardMemoryAllocator::new_default(
                device.0.clone(),
            ),
        }
    }
}

impl Backend for Vulkano {
    type Handle = vulkano::memory::allocator::MemoryAlloc;
    fn allocate(&self, req: &Request) -> Self::Handle {
        use vulkano::memory::allocator::{
            AllocationCreateInfo, AllocationType, DeviceLayout, MemoryAllocator, MemoryTypeFilter,
        };
        let requirements = vulkano::memory::MemoryRequirements {
            layout: DeviceLayout::from_size_alignment(req.size, req.alignment).expect("layout"),
            memory_type_bits: req.memory_type_bits,
            prefers_dedicated_allocation: false,
            requires_dedicated_allocation: false,
        };
        let create_info = AllocationCreateInfo {
            memory_type_filter: match req.usage {
                Usage::DeviceLocal => MemoryTypeFilter::PREFER_DEVICE,
                Usage::Upload => {
                    MemoryTypeFilter::PREFER_DEVICE | MemoryTypeFilter::HOST_SEQUENTIAL_WRITE
                }
                Usage::Download => {
                    MemoryTypeFilter::PREFER_HOST | MemoryTypeFilter::HOST_RANDOM_ACCESS
                }
            },
            ..Default::default()
        };
        let ty = if req.linear {
            AllocationType::Linear
        } else {
            AllocationType::NonLinear
        };
        self.allocator
            .allocate(requirements, ty, create_info, None)
            .expect("vulkano allocate")
    }
    fn free(&self, handle: Self::Handle) {
        use vulkano::memory::allocator::MemoryAllocator;
        // SAFETY: allocated by this allocator, freed once.
        unsafe { self.allocator.deallocate(handle) }
    }
}

/// `--ash-strategy` names: `min-memory`, `min-time`, `min-offset`.
pub fn parse_strategy(s: &str) -> Option<ash_memory::AllocationStrategy> {
    Some(match s {
        "min-memory" => ash_memory::AllocationStrategy::MinMemory,
        "min-time" => ash_memory::AllocationStrategy::MinTime,
        "min-offset" => ash_memory::AllocationStrategy::MinOffset,
        _ => return None,
    })
}
