//! The JSON dump of a [`MemorySnapshot`]; the schema is in the [module docs](super#json-dump).

use super::format::{heap_flag_names, json_string, kind_name, memory_property_names};
use super::snapshot::{BlockSnapshot, MemorySnapshot};
use super::summary::{SizeStats, Statistics};
use std::fmt::{self, Write};

/// The `"version"` of the dump's schema.
pub const JSON_SCHEMA_VERSION: u32 = 2;

impl MemorySnapshot {
    /// The snapshot as JSON (schema in the [module docs](super#json-dump)).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        // Writing to a `String` cannot fail.
        let _ = self.write_json(&mut out);
        out
    }

    /// Writes the snapshot as JSON to `out`.
    pub fn write_json(&self, out: &mut impl Write) -> fmt::Result {
        let s = &self.statistics;
        write!(out, "{{\n\"version\": {JSON_SCHEMA_VERSION},\n\"total\": ")?;
        write_statistics(out, &s.total)?;
        out.write_str(",\n\"heaps\": [")?;
        for (i, h) in s.heaps.iter().enumerate() {
            out.write_str(if i == 0 { "\n  " } else { ",\n  " })?;
            write!(out, "{{\"index\": {}, \"flags\": ", h.index)?;
            write_names(out, &heap_flag_names(h.flags))?;
            let b = &h.budget;
            write!(
                out,
                ", \"size\": {}, \"budget\": {{\"usage\": {}, \"budget\": {}, \
                 \"crate_usage\": {}, \"from_extension\": {}}}, \"statistics\": ",
                b.heap_size, b.usage, b.budget, b.crate_usage, b.from_extension
            )?;
            write_statistics(out, &h.statistics)?;
            out.write_char('}')?;
        }
        out.write_str("\n],\n\"memory_types\": [")?;
        for (i, t) in s.memory_types.iter().enumerate() {
            out.write_str(if i == 0 { "\n  " } else { ",\n  " })?;
            write!(
                out,
                "{{\"index\": {}, \"heap_index\": {}, \"flags\": ",
                t.index, t.heap_index
            )?;
            write_names(out, &memory_property_names(t.property_flags))?;
            out.write_str(", \"statistics\": ")?;
            write_statistics(out, &t.statistics)?;
            out.write_char('}')?;
        }
        out.write_str("\n],\n\"pools\": [")?;
        for (i, p) in s.pools.iter().enumerate() {
            out.write_str(if i == 0 { "\n  " } else { ",\n  " })?;
            out.write_str("{\"name\": ")?;
            json_string(out, &p.name)?;
            write!(
                out,
                ", \"memory_type_index\": {}, \"statistics\": ",
                p.memory_type_index
            )?;
            write_statistics(out, &p.statistics)?;
            out.write_char('}')?;
        }
        out.write_str("\n],\n\"blocks\": [")?;
        for (i, b) in self.blocks.iter().enumerate() {
            out.write_str(if i == 0 { "\n  " } else { ",\n  " })?;
            write_block(out, b)?;
        }
        out.write_str("\n]\n}\n")
    }
}

fn write_block(out: &mut impl Write, b: &BlockSnapshot) -> fmt::Result {
    write!(
        out,
        "{{\"memory_type_index\": {}, \"heap_index\": {}, \"memory\": \"{:#x}\", \
         \"size\": {}, \"dedicated\": {}, \"pool\": ",
        b.memory_type_index, b.heap_index, b.memory, b.size, b.dedicated
    )?;
    write_optional(out, &b.pool)?;
    write!(
        out,
        ", \"allocation_count\": {}, \"statistics\": ",
        b.allocation_count
    )?;
    write_statistics(out, &b.statistics().statistics)?;
    out.write_str(",\n   \"ranges\": [")?;
    for (i, r) in b.ranges.iter().enumerate() {
        out.write_str(if i == 0 { "\n    " } else { ",\n    " })?;
        write!(
            out,
            "{{\"offset\": {}, \"size\": {}, \"kind\": \"{}\", \"name\": ",
            r.offset,
            r.size,
            kind_name(r.kind)
        )?;
        write_optional(out, &r.name)?;
        out.write_str(", \"user_data\": ")?;
        write_optional(out, &r.user_data)?;
        out.write_str(", \"backtrace\": ")?;
        write_optional(out, &r.backtrace)?;
        out.write_char('}')?;
    }
    out.write_str("]}")
}

/// A JSON string, or `null`.
fn write_optional(out: &mut impl Write, text: &Option<std::sync::Arc<str>>) -> fmt::Result {
    match text {
        Some(t) => json_string(out, t),
        None => out.write_str("null"),
    }
}

fn write_names(out: &mut impl Write, names: &[String]) -> fmt::Result {
    out.write_char('[')?;
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.write_str(", ")?;
        }
        json_string(out, n)?;
    }
    out.write_char(']')
}

fn write_sizes(out: &mut impl Write, s: &SizeStats) -> fmt::Result {
    write!(
        out,
        "{{\"count\": {}, \"total\": {}, \"min\": {}, \"max\": {}, \"avg\": {}}}",
        s.count,
        s.total,
        s.min,
        s.max,
        s.average()
    )
}

fn write_statistics(out: &mut impl Write, s: &Statistics) -> fmt::Result {
    write!(
        out,
        "{{\"blocks\": {}, \"dedicated_allocations\": {}, \"allocations\": {}, \
         \"reserved_bytes\": {}, \"allocated_bytes\": {}, \"free_bytes\": {}, \
         \"free_ranges\": {}, \"largest_free_range\": {}, \"allocation_sizes\": ",
        s.block_count,
        s.dedicated_count,
        s.allocation_count,
        s.reserved_bytes,
        s.allocated_bytes(),
        s.free_bytes(),
        s.free_ranges.count,
        s.largest_free_range()
    )?;
    write_sizes(out, &s.allocations)?;
    out.write_str(", \"free_range_sizes\": ")?;
    write_sizes(out, &s.free_ranges)?;
    out.write_char('}')
}

#[cfg(test)]
mod tests {
    use crate::stats::sample;
    use serde_json::Value;

    #[test]
    fn dump_parses_and_round_trips() {
        let snap = sample::snapshot();
        let json = snap.to_json();
        let v: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(v["version"], 2);
        let total = &v["total"];
        let t = &snap.statistics.total;
        assert_eq!(total["blocks"], t.block_count);
        assert_eq!(total["dedicated_allocations"], 1);
        assert_eq!(total["allocations"], 4);
        assert_eq!(total["reserved_bytes"], 3 << 20);
        assert_eq!(total["allocated_bytes"], t.allocated_bytes());
        assert_eq!(total["free_ranges"], 2);
        assert_eq!(total["largest_free_range"], t.largest_free_range());
        assert_eq!(total["allocation_sizes"]["min"], 256);
        assert_eq!(
            total["allocation_sizes"]["avg"].as_f64(),
            Some(t.allocations.average())
        );
        assert_eq!(v["heaps"][0]["flags"][0], "DEVICE_LOCAL");
        assert_eq!(v["heaps"][0]["budget"]["budget"], (1u64 << 30) / 10 * 8);
        assert_eq!(v["heaps"][1]["statistics"]["dedicated_allocations"], 1);
        assert_eq!(v["memory_types"][1]["flags"][1], "HOST_COHERENT");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0]["memory"], "0xdeadbeef");
        assert_eq!(blocks[1]["memory"], "0xffffffffffffffff");
        assert_eq!(blocks[1]["dedicated"], true);
        for (b, sb) in blocks.iter().zip(&snap.blocks) {
            let ranges = b["ranges"].as_array().unwrap();
            assert_eq!(ranges.len(), sb.ranges.len());
            for (r, sr) in ranges.iter().zip(&sb.ranges) {
                assert_eq!(r["offset"], sr.offset);
                assert_eq!(r["size"], sr.size);
                assert_eq!(r["name"].as_str(), sr.name.as_deref());
            }
        }
        assert_eq!(blocks[0]["ranges"][0]["kind"], "linear");
        assert_eq!(blocks[0]["ranges"][1]["kind"], "free");
        assert_eq!(blocks[0]["ranges"][2]["kind"], "non_linear");
        assert_eq!(blocks[0]["ranges"][3]["kind"], "unknown");
        assert_eq!(blocks[0]["ranges"][1]["name"], Value::Null);
        assert_eq!(blocks[0]["pool"], Value::Null);
        assert_eq!(blocks[1]["pool"], "staging \"pool\"");
        let staging = &blocks[1]["ranges"][0];
        assert_eq!(staging["user_data"], "Frame { index: 3 }");
        assert_eq!(staging["backtrace"], "at main.rs:1");
        assert_eq!(blocks[0]["ranges"][0]["user_data"], Value::Null);
        let pools = v["pools"].as_array().unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0]["name"], "staging \"pool\"");
        assert_eq!(pools[0]["memory_type_index"], 1);
        assert_eq!(pools[0]["statistics"]["dedicated_allocations"], 1);
    }

    #[test]
    fn empty_snapshot_is_valid_json() {
        let json = crate::stats::MemorySnapshot::default().to_json();
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["blocks"].as_array().map(Vec::len), Some(0));
        assert_eq!(v["total"]["allocation_sizes"]["avg"], 0.0);
    }
}
