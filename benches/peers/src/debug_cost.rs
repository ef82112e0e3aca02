//! `--ash-debug`: what each of ash-memory's debug options costs, next to ash-memory with all
//! of them off in the same run.

use crate::vulkan::Vulkan;
use crate::{find, mib, Args, Cell, Peer};

pub fn print(args: &Args, cells: &[Cell], vk: &Vulkan) {
    if args.ash_debug.is_empty() {
        return;
    }
    println!("\n## Cost of ash-memory's debug options (vs ash-memory with all off, same run)\n");
    let types =
        &vk.memory_properties.memory_types[..vk.memory_properties.memory_type_count as usize];
    let host_visible = types
        .iter()
        .filter(|t| {
            t.property_flags
                .contains(ash::vk::MemoryPropertyFlags::HOST_VISIBLE)
        })
        .count();
    println!(
        "{host_visible} of the device's {} memory type(s) are HOST_VISIBLE: margins are filled and checked, and fill patterns written, only there{}.",
        types.len(),
        if host_visible == types.len() {
            " (here: every allocation, device-local ones included)"
        } else {
            ""
        }
    );
    if args.ash_debug.iter().any(|v| v.options().log_allocations) {
        println!(
            "`log_allocations` runs with no logger installed (`log`'s default, max level Off): the rows measure the check and the per-allocation bookkeeping the option turns on, not the writing of log records."
        );
    }
    println!(
        "\n| workload | threads | option | ns / alloc+free | time vs ash-memory | CPU ns / alloc+free | CPU vs ash-memory | vkAllocateMemory | peak reserved MiB | reserved / live | reserved/live vs ash-memory | runs |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &threads in &args.threads {
        for &w in &args.workloads {
            let Some(base) = find(cells, w, threads, Peer::AshMemory) else {
                continue;
            };
            let rows = std::iter::once(Peer::AshMemory)
                .chain(args.ash_debug.iter().map(|&v| Peer::AshDebug(v)));
            for p in rows {
                let Some(c) = find(cells, w, threads, p) else {
                    continue;
                };
                println!(
                    "| {} | {} | {} | {:.0} | {:.2}x | {:.0} | {:.2}x | {} | {:.1} | {:.3} | {:.2}x | {} |",
                    w.name(),
                    threads,
                    match p {
                        Peer::AshDebug(v) => v.label(),
                        _ => "all off".into(),
                    },
                    c.ns_per_op,
                    c.ns_per_op / base.ns_per_op,
                    c.cpu_ns_per_op,
                    c.cpu_ns_per_op / base.cpu_ns_per_op,
                    c.allocate_calls,
                    mib(c.peak_reserved),
                    c.waste,
                    c.waste / base.waste,
                    c.runs
                );
            }
        }
    }
}
