//! Small text helpers shared by the JSON and SVG writers: flag names, byte sizes, escaping.

use crate::layout::DeviceSize;
use crate::suballocator::RangeKind;
use ash::vk;
use std::fmt::{self, Write};

const MEMORY_PROPERTY_NAMES: &[(vk::MemoryPropertyFlags, &str)] = &[
    (vk::MemoryPropertyFlags::DEVICE_LOCAL, "DEVICE_LOCAL"),
    (vk::MemoryPropertyFlags::HOST_VISIBLE, "HOST_VISIBLE"),
    (vk::MemoryPropertyFlags::HOST_COHERENT, "HOST_COHERENT"),
    (vk::MemoryPropertyFlags::HOST_CACHED, "HOST_CACHED"),
    (
        vk::MemoryPropertyFlags::LAZILY_ALLOCATED,
        "LAZILY_ALLOCATED",
    ),
    (vk::MemoryPropertyFlags::PROTECTED, "PROTECTED"),
    (
        vk::MemoryPropertyFlags::DEVICE_COHERENT_AMD,
        "DEVICE_COHERENT_AMD",
    ),
    (
        vk::MemoryPropertyFlags::DEVICE_UNCACHED_AMD,
        "DEVICE_UNCACHED_AMD",
    ),
    (vk::MemoryPropertyFlags::RDMA_CAPABLE_NV, "RDMA_CAPABLE_NV"),
];

const HEAP_FLAG_NAMES: &[(vk::MemoryHeapFlags, &str)] = &[
    (vk::MemoryHeapFlags::DEVICE_LOCAL, "DEVICE_LOCAL"),
    (vk::MemoryHeapFlags::MULTI_INSTANCE, "MULTI_INSTANCE"),
];

fn names(raw: u32, table: impl Iterator<Item = (u32, &'static str)>) -> Vec<String> {
    let mut known = 0;
    let mut out: Vec<String> = table
        .filter(|&(bit, _)| raw & bit != 0)
        .map(|(bit, name)| {
            known |= bit;
            name.to_owned()
        })
        .collect();
    if raw & !known != 0 {
        out.push(format!("{:#x}", raw & !known));
    }
    out
}

/// The names of the set memory property flags (unknown bits as one hex number).
pub(crate) fn memory_property_names(flags: vk::MemoryPropertyFlags) -> Vec<String> {
    names(
        flags.as_raw(),
        MEMORY_PROPERTY_NAMES.iter().map(|&(f, n)| (f.as_raw(), n)),
    )
}

/// The names of the set heap flags (unknown bits as one hex number).
pub(crate) fn heap_flag_names(flags: vk::MemoryHeapFlags) -> Vec<String> {
    names(
        flags.as_raw(),
        HEAP_FLAG_NAMES.iter().map(|&(f, n)| (f.as_raw(), n)),
    )
}

/// `"free"`, or the allocation type's name.
pub(crate) fn kind_name(kind: RangeKind) -> &'static str {
    match kind {
        RangeKind::Free => "free",
        RangeKind::Allocated(t) => t.name(),
    }
}

/// A byte count for people: `"512 B"`, `"1.5 KiB"`, `"64 MiB"`.
pub(crate) fn human_bytes(bytes: DeviceSize) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// Writes `s` as a JSON string literal, quotes included.
pub(crate) fn json_string(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '\u{8}' => out.write_str("\\b")?,
            '\u{c}' => out.write_str("\\f")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

/// Writes `s` escaped for XML text and attribute values. Characters XML 1.0 forbids (control
/// characters other than tab, newline and carriage return) become U+FFFD.
pub(crate) fn xml_escape(out: &mut impl Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '&' => out.write_str("&amp;")?,
            '<' => out.write_str("&lt;")?,
            '>' => out.write_str("&gt;")?,
            '"' => out.write_str("&quot;")?,
            '\'' => out.write_str("&apos;")?,
            '\t' | '\n' | '\r' => out.write_char(c)?,
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.write_char('\u{fffd}')?
            }
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names() {
        let f = vk::MemoryPropertyFlags::DEVICE_LOCAL | vk::MemoryPropertyFlags::HOST_VISIBLE;
        assert_eq!(memory_property_names(f), ["DEVICE_LOCAL", "HOST_VISIBLE"]);
        let odd = vk::MemoryPropertyFlags::from_raw(0x1 | 0x8000_0000);
        assert_eq!(memory_property_names(odd), ["DEVICE_LOCAL", "0x80000000"]);
        assert!(heap_flag_names(vk::MemoryHeapFlags::empty()).is_empty());
    }

    #[test]
    fn bytes_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(u64::MAX), "16384 PiB");
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\\c\n\u{1}é").unwrap();
        assert_eq!(s, r#""a\"b\\c\n\u0001é""#);
        let mut x = String::new();
        xml_escape(&mut x, "<a & 'b'>\"\u{1}").unwrap();
        assert_eq!(x, "&lt;a &amp; &apos;b&apos;&gt;&quot;\u{fffd}");
    }
}
