//! Random requests: sizes, alignments, memory type bits and create infos, good and bad, and the
//! errors the entry points document.

use super::*;

pub(crate) const SIZES: [u64; 4] = [
    0,
    u64::MAX,
    DeviceLayout::MAX_SIZE,
    DeviceLayout::MAX_SIZE + 1,
];

pub(crate) fn pick_size(rng: &mut Rng) -> u64 {
    if rng.below(3) != 0 {
        let max = if rng.below(4) == 0 {
            256 * KIB
        } else {
            4 * KIB
        };
        return 1 + rng.below(max);
    }
    match rng.below(20) {
        0 => *rng.pick(&SIZES),
        1 => 1,
        2 => 1 << rng.range(20, 45),
        3 => 2 * MIB + rng.below(6 * MIB),
        4..=9 => 1 + rng.below(4 * KIB),
        _ => 1 + rng.below(256 * KIB),
    }
}

pub(crate) fn pick_alignment(rng: &mut Rng) -> u64 {
    if rng.below(3) != 0 {
        return 1 << rng.below(9);
    }
    match rng.below(16) {
        0 => 0,
        1 => 3 + 2 * rng.below(100),
        2 => 1 << 63,
        3 => u64::MAX,
        4 => 1 << rng.range(20, 40),
        _ => 1 << rng.below(13),
    }
}

pub(crate) fn pick_bits(rng: &mut Rng, all: u32) -> u32 {
    match rng.below(16) {
        0 => 0,
        1 => 1 << rng.range(all.count_ones() as u64, 32),
        2 => u32::MAX,
        3 => rng.next() as u32,
        4 => 1 << rng.below(all.count_ones() as u64),
        _ => all,
    }
}

pub(crate) fn pick_host_access(rng: &mut Rng) -> HostAccess {
    *rng.pick(&[
        HostAccess::NoAccess,
        HostAccess::SequentialWrite,
        HostAccess::Random,
        HostAccess::SequentialWriteOrTransfer,
        HostAccess::RandomOrTransfer,
    ])
}

pub(crate) fn pick_create_info(rng: &mut Rng) -> (AllocationCreateInfo, Option<u64>) {
    let usage = match rng.below(12) {
        0 => MemoryUsage::DeviceOnly,
        1..=4 => MemoryUsage::Upload,
        5 => MemoryUsage::Download,
        6 | 7 => MemoryUsage::Auto(pick_host_access(rng)),
        8 => MemoryUsage::AutoPreferDevice(pick_host_access(rng)),
        9 => MemoryUsage::AutoPreferHost(pick_host_access(rng)),
        _ => MemoryUsage::Custom(MemoryTypeFilter {
            required_flags: F::from_raw(rng.next() as u32 & 0x1f),
            preferred_flags: F::from_raw(rng.next() as u32 & 0x1f),
            not_preferred_flags: F::from_raw(rng.next() as u32 & 0x1f),
        }),
    };
    let resource_usage = match rng.below(3) {
        0 => ResourceUsage::Unknown,
        1 => ResourceUsage::Buffer(vk::BufferUsageFlags::from_raw(rng.next() as u32 & 0x1ff)),
        _ => ResourceUsage::Image(vk::ImageUsageFlags::from_raw(rng.next() as u32 & 0xff)),
    };
    let user = (rng.below(3) == 0).then(|| rng.next());
    let info = AllocationCreateInfo {
        usage,
        resource_usage,
        allocate_preference: *rng.pick(&[
            MemoryAllocatePreference::Auto,
            MemoryAllocatePreference::Auto,
            MemoryAllocatePreference::NeverAllocate,
            MemoryAllocatePreference::AlwaysAllocate,
        ]),
        name: (rng.below(2) == 0).then(|| format!("a{}", rng.below(1000)).into()),
        priority: match rng.below(16) {
            0 => Some(f32::NAN),
            1 => Some(-0.5),
            2 => Some(1.5),
            3 | 4 => Some(rng.below(101) as f32 / 100.0),
            _ => None,
        },
        within_budget: rng.below(8) == 0,
        user_data: user.map(|u| Arc::new(u) as Arc<dyn UserData>),
        min_alignment: DeviceAlignment::from_log2(rng.below(12) as u32 * (rng.below(3) as u32 / 2))
            .unwrap(),
        strategy: *rng.pick(&[
            AllocationStrategy::Default,
            AllocationStrategy::MinMemory,
            AllocationStrategy::MinTime,
            AllocationStrategy::MinOffset,
        ]),
        ..Default::default()
    };
    (info, user)
}

pub(crate) fn priority_ok(info: &AllocationCreateInfo) -> bool {
    info.priority.is_none_or(|p| (0.0..=1.0).contains(&p))
}

/// An error the allocation entry points document for bad input or exhausted memory: never
/// a raw Vulkan error, a failed map or a bind error unless the driver fails (`faults`).
pub(crate) fn documented(e: &AllocationError, faults: bool) -> bool {
    use AllocationError::*;
    let driver = matches!(
        e,
        OutOfHostMemory | MapFailed(vk::Result::ERROR_MEMORY_MAP_FAILED)
    );
    (faults && driver)
        || matches!(
            e,
            OutOfDeviceMemory
                | NoMemoryTypeBits
                | MemoryTypeBitsOutOfRange { .. }
                | MemoryTypeIndexOutOfRange { .. }
                | NoSuitableMemoryType { .. }
                | MemoryTypeNotUsable { .. }
                | SizeExceedsHeap { .. }
                | OutOfPoolMemory
                | DedicatedAllocationRequired
                | BlockSizeExceeded { .. }
                | SuballocatorBlockSizeExceeded
                | PoolMemoryTypeNotAllowed { .. }
                | PoolFull { .. }
                | Layout(_)
                | InvalidPriority(_)
                | BudgetExceeded(_)
        )
}
