//! Device-memory callbacks: every memory object the crate makes on a device is reported once
//! right after `vkAllocateMemory` succeeded (the simulated driver already holds it) and once
//! right before `vkFreeMemory` (the driver still holds it), with its memory type and size,
//! for blocks, dedicated allocations, pools and raw memory objects; failed calls (injected)
//! report nothing.

mod common;
mod support;

use ash::vk;
use ash_memory::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use support::{buffer_info, Faults, GpuLayout, Sim, SimState, MIB};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    Allocated(u32, vk::DeviceMemory, u64),
    Freeing(u32, vk::DeviceMemory, u64),
}

struct Recorder {
    state: Arc<SimState>,
    events: Mutex<Vec<Event>>,
}

impl DeviceMemoryCallbacks for Recorder {
    fn allocated(&self, memory_type_index: u32, memory: vk::DeviceMemory, size: u64) {
        let live = self.state.inner().live.get(&memory).copied();
        let live = live.expect("reported before vkAllocateMemory returned it");
        assert_eq!((live.memory_type, live.size), (memory_type_index, size));
        self.events
            .lock()
            .unwrap()
            .push(Event::Allocated(memory_type_index, memory, size));
    }

    fn freeing(&self, memory_type_index: u32, memory: vk::DeviceMemory, size: u64) {
        assert!(
            self.state.inner().live.contains_key(&memory),
            "reported after vkFreeMemory"
        );
        self.events
            .lock()
            .unwrap()
            .push(Event::Freeing(memory_type_index, memory, size));
    }
}

#[test]
fn every_memory_object_is_reported_after_its_allocation_and_before_its_free() {
    let sim = Sim::new(GpuLayout::nvidia_discrete());
    {
        let device = sim.memory_device();
        let recorder = Arc::new(Recorder {
            state: sim.state.clone(),
            events: Mutex::default(),
        });
        device.set_memory_callbacks(Some(recorder.clone()));
        let allocator = StandardMemoryAllocator::new_default(device.clone());
        let pool = allocator
            .create_pool::<FreeListAllocator>(&PoolCreateInfo {
                block_size: 4 * MIB,
                min_block_count: 1,
                ..Default::default()
            })
            .unwrap();
        let mut live = Vec::new();
        for i in 0..40u64 {
            let size = if i % 3 == 0 {
                MIB
            } else {
                (i % 7 + 1) * 3 * MIB
            };
            let info = buffer_info(size, vk::BufferUsageFlags::STORAGE_BUFFER);
            let made = if i % 3 == 0 {
                // SAFETY: a valid create info.
                unsafe { pool.create_buffer(&info, &Default::default()) }
            } else {
                // SAFETY: a valid create info.
                unsafe { allocator.create_buffer(&info, &Default::default()) }
            };
            live.push(made.unwrap());
            if i % 4 == 3 {
                let (buffer, alloc) = live.remove(0);
                // SAFETY: unused.
                unsafe { sim.device.destroy_buffer(buffer, None) };
                drop(alloc);
            }
        }
        // Injected failures report nothing.
        let calls_before = sim.state.allocate_calls();
        sim.state.set_faults(Faults {
            allocate_at: Some((calls_before + 1, vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)),
            allocate_more: 100,
            ..Default::default()
        });
        let huge = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: 64 * MIB,
                ..Default::default()
            },
        );
        assert_eq!(huge.err(), Some(MemoryObjectError::OutOfDeviceMemory));
        sim.state.set_faults(Faults::default());
        // A raw memory object.
        let raw = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: MIB,
                memory_type_index: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let raw_handle = raw.handle();
        drop(raw);
        for (buffer, alloc) in live.drain(..) {
            // SAFETY: unused.
            unsafe { sim.device.destroy_buffer(buffer, None) };
            drop(alloc);
        }
        drop((pool, allocator));
        sim.assert_nothing_allocated();

        // Every successful vkAllocateMemory is reported once, then its free once, in order.
        let events = recorder.events.lock().unwrap().clone();
        let made: Vec<_> = sim
            .state
            .calls()
            .into_iter()
            .filter(|c| c.result == vk::Result::SUCCESS)
            .map(|c| c.memory)
            .collect();
        let mut seen: HashMap<vk::DeviceMemory, (u32, u64, bool)> = HashMap::new();
        let mut allocated = 0;
        for e in &events {
            match *e {
                Event::Allocated(t, m, s) => {
                    assert!(seen.get(&m).is_none_or(|x| x.2), "{m:?} reported twice");
                    seen.insert(m, (t, s, false));
                    allocated += 1;
                }
                Event::Freeing(t, m, s) => {
                    let entry = seen.get_mut(&m).expect("freed before allocated");
                    assert_eq!((entry.0, entry.1), (t, s));
                    assert!(!entry.2, "{m:?} freed twice");
                    entry.2 = true;
                }
            }
        }
        assert_eq!(
            allocated,
            made.len(),
            "one report per successful vkAllocateMemory"
        );
        assert!(seen.values().all(|x| x.2), "every object reported freed");
        assert!(seen.contains_key(&raw_handle));
        assert!(allocated > 5, "blocks, dedicated and raw objects were made");

        // Removed: nothing more is reported.
        device.set_memory_callbacks(None);
        let n = events.len();
        let again = MemoryObject::allocate(
            device.clone(),
            &MemoryObjectCreateInfo {
                size: MIB,
                ..Default::default()
            },
        )
        .unwrap();
        drop(again);
        assert_eq!(recorder.events.lock().unwrap().len(), n);
    }
}
