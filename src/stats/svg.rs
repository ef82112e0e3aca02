//! The memory map: a [`MemorySnapshot`] drawn as a standalone SVG picture.

use super::format::{heap_flag_names, human_bytes, kind_name, xml_escape};
use super::snapshot::{BlockSnapshot, MemorySnapshot};
use crate::suballocator::RangeKind;
use std::fmt::{self, Write};

const LABEL_WIDTH: f64 = 250.0;
const BAR_WIDTH: f64 = 900.0;
const MARGIN: f64 = 12.0;
const ROW: f64 = 24.0;
const BAR_HEIGHT: f64 = 16.0;
const WIDTH: f64 = MARGIN * 2.0 + LABEL_WIDTH + BAR_WIDTH;

const STYLE: &str = "text { font-family: sans-serif; font-size: 12px; fill: #222; }
.title { font-size: 16px; font-weight: bold; }
.heap { font-size: 13px; font-weight: bold; }
.note { fill: #666; }
.range { stroke: #fff; stroke-width: 0.5; }
.free { fill: #e4e4e4; stroke: none; }
.linear { fill: #4e79a7; }
.non_linear { fill: #f28e2b; }
.unknown { fill: #b07aa1; }
.outline { fill: none; stroke: #555; stroke-width: 1; }
.outline.dedicated { stroke: #d62728; stroke-width: 2; stroke-dasharray: 5 3; }
.tag { fill: #d62728; font-weight: bold; }
.pool { fill: #2c7f4f; font-weight: bold; }
";

impl MemorySnapshot {
    /// The snapshot as a standalone SVG picture: one row per memory object, grouped under a
    /// heading per heap; each row is drawn at full width (its size is in its label), free
    /// ranges grey, buffers (`linear`) blue, images (`non_linear`) orange, unknown purple;
    /// dedicated allocations have a dashed red outline and a `DEDICATED` tag. Every range is
    /// one `<rect class="range ...">` with a `<title>` tooltip (kind, name, offset, size).
    pub fn to_svg(&self) -> String {
        let mut out = String::new();
        // Writing to a `String` cannot fail.
        let _ = self.write_svg(&mut out);
        out
    }

    /// Writes the SVG picture of [`to_svg`](Self::to_svg) to `out`.
    pub fn write_svg(&self, out: &mut impl Write) -> fmt::Result {
        let heaps = &self.statistics.heaps;
        let orphans = self
            .blocks
            .iter()
            .filter(|b| !heaps.iter().any(|h| h.index == b.heap_index))
            .count();
        let heading_rows = heaps.len() + usize::from(orphans > 0);
        let empty_heaps = heaps
            .iter()
            .filter(|h| !self.blocks.iter().any(|b| b.heap_index == h.index))
            .count();
        let rows = 4 + 2 * heading_rows + empty_heaps + self.blocks.len();
        let height = MARGIN * 2.0 + ROW * rows as f64;
        writeln!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\">\n<style>\n{STYLE}</style>\n\
             <rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#fff\"/>"
        )?;
        let mut y = MARGIN;
        self.write_header(out, &mut y)?;
        for h in heaps {
            y += ROW * 0.5;
            let b = &h.budget;
            let flags = heap_flag_names(h.flags).join(" | ");
            writeln!(
                out,
                "<text class=\"heap\" x=\"{MARGIN}\" y=\"{:.1}\">Heap {} ({}) — {}; budget {} ({}), \
                 process usage {}; this allocator: {} in {} block(s) + {} dedicated</text>",
                y + 14.0,
                h.index,
                if flags.is_empty() { "no flags" } else { &flags },
                human_bytes(b.heap_size),
                human_bytes(b.budget),
                if b.from_extension {
                    "VK_EXT_memory_budget"
                } else {
                    "estimated"
                },
                human_bytes(b.usage),
                human_bytes(h.statistics.reserved_bytes),
                h.statistics.block_count,
                h.statistics.dedicated_count,
            )?;
            y += ROW * 1.5;
            let mut any = false;
            for block in self.blocks.iter().filter(|b| b.heap_index == h.index) {
                write_block(out, block, y)?;
                y += ROW;
                any = true;
            }
            if !any {
                writeln!(
                    out,
                    "<text class=\"note\" x=\"{:.1}\" y=\"{:.1}\">no memory from this allocator</text>",
                    MARGIN + 10.0,
                    y + 14.0
                )?;
                y += ROW;
            }
        }
        if orphans > 0 {
            y += ROW * 0.5;
            writeln!(
                out,
                "<text class=\"heap\" x=\"{MARGIN}\" y=\"{:.1}\">Other heaps</text>",
                y + 14.0
            )?;
            y += ROW * 1.5;
            for block in self
                .blocks
                .iter()
                .filter(|b| !heaps.iter().any(|h| h.index == b.heap_index))
            {
                write_block(out, block, y)?;
                y += ROW;
            }
        }
        out.write_str("</svg>\n")
    }

    fn write_header(&self, out: &mut impl Write, y: &mut f64) -> fmt::Result {
        let t = &self.statistics.total;
        writeln!(
            out,
            "<text class=\"title\" x=\"{MARGIN}\" y=\"{:.1}\">ash-memory memory map</text>",
            *y + 16.0
        )?;
        *y += ROW;
        writeln!(
            out,
            "<text x=\"{MARGIN}\" y=\"{:.1}\">{} block(s), {} dedicated allocation(s), {} live \
             allocation(s); reserved {}, allocated {}, free {} in {} range(s), largest free range {}</text>",
            *y + 14.0,
            t.block_count,
            t.dedicated_count,
            t.allocation_count,
            human_bytes(t.reserved_bytes),
            human_bytes(t.allocated_bytes()),
            human_bytes(t.free_bytes()),
            t.free_ranges.count,
            human_bytes(t.largest_free_range()),
        )?;
        *y += ROW;
        // Legend.
        let mut x = MARGIN;
        for (class, label) in [
            ("linear", "buffer (linear)"),
            ("non_linear", "image (non-linear)"),
            ("unknown", "unknown"),
            ("free", "free"),
        ] {
            writeln!(
                out,
                "<rect class=\"legend {class}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"14\" height=\"14\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{label}</text>",
                *y + 3.0,
                x + 19.0,
                *y + 14.0
            )?;
            x += 150.0;
        }
        writeln!(
            out,
            "<rect class=\"outline dedicated\" x=\"{x:.1}\" y=\"{:.1}\" width=\"26\" height=\"14\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">dedicated allocation</text>",
            *y + 3.0,
            x + 31.0,
            *y + 14.0
        )?;
        *y += ROW;
        Ok(())
    }
}

fn write_block(out: &mut impl Write, b: &BlockSnapshot, y: f64) -> fmt::Result {
    let bar_y = y + (ROW - BAR_HEIGHT) / 2.0;
    out.write_str("<g class=\"block\">\n")?;
    let (x, y_text) = (MARGIN + 10.0, y + 16.0);
    let type_size = format!("type {} · {}", b.memory_type_index, human_bytes(b.size));
    write!(out, "<text x=\"{x:.1}\" y=\"{y_text:.1}\">")?;
    if let Some(pool) = &b.pool {
        out.write_str("<tspan class=\"pool\">")?;
        xml_escape(out, pool)?;
        out.write_str("</tspan> · ")?;
    }
    if b.dedicated {
        write!(
            out,
            "{type_size} · <tspan class=\"tag\">DEDICATED</tspan></text>"
        )?;
    } else {
        write!(out, "{type_size} · {} alloc(s)</text>", b.allocation_count)?;
    }
    out.write_char('\n')?;
    let x0 = MARGIN + LABEL_WIDTH;
    let scale = if b.size == 0 {
        0.0
    } else {
        BAR_WIDTH / b.size as f64
    };
    for r in &b.ranges {
        let x = x0 + r.offset as f64 * scale;
        let mut w = r.size as f64 * scale;
        if r.kind != RangeKind::Free {
            // Keep tiny allocations visible.
            w = w.max(1.0);
        }
        let kind = kind_name(r.kind);
        write!(
            out,
            "<rect class=\"range {kind}\" x=\"{x:.2}\" y=\"{bar_y:.1}\" width=\"{w:.2}\" \
             height=\"{BAR_HEIGHT}\"><title>{kind}"
        )?;
        if let Some(name) = &r.name {
            out.write_str(" “")?;
            xml_escape(out, name)?;
            out.write_str("”")?;
        }
        write!(
            out,
            ": offset {}, size {} ({} bytes)",
            r.offset,
            human_bytes(r.size),
            r.size
        )?;
        if let Some(data) = &r.user_data {
            out.write_str("\nuser data: ")?;
            xml_escape(out, data)?;
        }
        if let Some(backtrace) = &r.backtrace {
            out.write_str("\nallocated at:\n")?;
            xml_escape(out, backtrace)?;
        }
        out.write_str("</title></rect>\n")?;
    }
    write!(
        out,
        "<rect class=\"outline{}\" x=\"{x0:.1}\" y=\"{bar_y:.1}\" width=\"{BAR_WIDTH}\" \
         height=\"{BAR_HEIGHT}\"><title>memory {:#x}, {} bytes</title></rect>\n</g>\n",
        if b.dedicated { " dedicated" } else { "" },
        b.memory,
        b.size
    )
}

#[cfg(test)]
mod tests {
    use crate::stats::sample;

    #[test]
    fn one_rect_per_range_and_names_escaped() {
        let snap = sample::snapshot();
        let svg = snap.to_svg();
        let ranges: usize = snap.blocks.iter().map(|b| b.ranges.len()).sum();
        assert_eq!(svg.matches("<rect class=\"range ").count(), ranges);
        assert_eq!(svg.matches("<rect class=\"range free\"").count(), 2);
        assert_eq!(svg.matches("<rect class=\"range non_linear\"").count(), 1);
        assert_eq!(svg.matches("<rect class=\"outline dedicated\"").count(), 2); // legend + row
        assert!(svg.contains("vertices &quot;&lt;&amp;&gt;&quot; \\ \n\u{fffd} ünï"));
        assert!(!svg.contains("\"<&>\""));
        assert!(svg.contains("Heap 0 (DEVICE_LOCAL)"));
        assert!(svg.contains("Heap 1 (no flags)"));
        assert!(svg.contains("DEDICATED"));
        assert!(svg.contains("<tspan class=\"pool\">staging &quot;pool&quot;</tspan>"));
        assert!(svg.contains("\nuser data: Frame { index: 3 }"));
        assert!(svg.contains("\nallocated at:\nat main.rs:1"));
        assert!(svg.starts_with("<?xml"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn blocks_of_unknown_heaps_are_still_drawn() {
        let mut snap = sample::snapshot();
        snap.statistics.heaps.truncate(1);
        let svg = snap.to_svg();
        assert!(svg.contains("Other heaps"));
        let ranges: usize = snap.blocks.iter().map(|b| b.ranges.len()).sum();
        assert_eq!(svg.matches("<rect class=\"range ").count(), ranges);
    }
}
