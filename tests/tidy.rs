//! The conventions of `src/`, checked by reading it (in the spirit of rust-analyzer's `tidy`
//! tests), so that a reviewer need not police them by hand:
//!
//! - **Layers.** Each module belongs to one layer of [`LAYERS`] (the table in
//!   `docs/architecture.md`, bottom up) and imports only from its own layer and the layers
//!   below; two modules never import each other.
//! - **Unsafe.** Every `unsafe` block and `unsafe impl` has a `// SAFETY:` comment in the
//!   lines just above it (clippy checks blocks only).
//! - **No test code in the library.** No `src` file includes a file from `tests/`.
//! - **Small files.** No library file is longer than [`MAX_LINES`] lines (unit tests in their
//!   own files do not count), and no inline test module is longer than
//!   [`MAX_INLINE_TEST_LINES`]: longer tests go to a `tests.rs` beside the module's `mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom up: `(name, module paths)`. A module path names a module and everything
/// inside it; the longest match decides a file's layer.
const LAYERS: &[(&str, &[&str])] = &[
    ("base", &["layout", "non_exhaustive", "simulated_layouts"]),
    ("patterns", &["corruption"]),
    ("suballocators", &["suballocator"]),
    (
        "device",
        &[
            "device",
            "memory_callbacks",
            "budget",
            "device_memory",
            "device_bind",
            "device_requirements",
        ],
    ),
    ("allocation", &["allocation", "aliasing", "mapped"]),
    ("observability", &["stats"]),
    (
        "policy",
        &[
            "allocator::memory_type",
            "allocator::intent",
            "allocator::type_cache",
            "allocator::placement",
            "transient::plan",
        ],
    ),
    ("block vectors", &["allocator::block_vec"]),
    ("allocator", &["allocator", "lib"]),
    ("transient memory", &["transient"]),
];

/// The most lines a library file may have, its unit tests in their own file not counted.
const MAX_LINES: usize = 800;

/// The most lines an inline `mod tests { .. }` may have.
const MAX_INLINE_TEST_LINES: usize = 150;

/// How far above an `unsafe` a `// SAFETY:` comment may start (a comment of a few lines, an
/// attribute, the start of a statement).
const SAFETY_REACH: usize = 8;

/// A library file: its module path (`allocator::block_vec` for `src/allocator/block_vec/mod.rs`)
/// and its text.
struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    text: String,
}

impl SourceFile {
    /// A file of unit tests (`tests.rs`, a `tests/` folder, the shared `testing.rs`).
    fn is_tests(&self) -> bool {
        self.module.iter().any(|m| m == "tests" || m == "testing")
    }
}

fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).expect("under src");
                let mut module: Vec<String> = rel
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if module.last().is_some_and(|m| m == "mod") {
                    module.pop();
                }
                let text = std::fs::read_to_string(&path).expect("read file");
                out.push(SourceFile { path, module, text });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The layer of a module path: the index in [`LAYERS`] of its longest match.
fn layer_of(module: &[String]) -> Option<usize> {
    let joined = if module.is_empty() {
        "lib".to_string()
    } else {
        module.join("::")
    };
    let mut best: Option<(usize, usize)> = None;
    for (layer, (_, paths)) in LAYERS.iter().enumerate() {
        for p in *paths {
            let matches = joined == *p || joined.starts_with(&format!("{p}::"));
            if matches && best.is_none_or(|(len, _)| p.len() > len) {
                best = Some((p.len(), layer));
            }
        }
    }
    best.map(|(_, layer)| layer)
}

/// The module a file belongs to for the "never both ways" rule: its layer's entry (the
/// longest module path of the table that contains it).
fn unit_of(module: &[String]) -> String {
    let joined = if module.is_empty() {
        "lib".to_string()
    } else {
        module.join("::")
    };
    LAYERS
        .iter()
        .flat_map(|(_, paths)| paths.iter())
        .filter(|p| joined == **p || joined.starts_with(&format!("{p}::")))
        .max_by_key(|p| p.len())
        .map_or(joined.clone(), |p| {
            // Inside the allocator, each file or folder is a module of its own.
            if *p == "allocator" && module.len() > 1 {
                format!("allocator::{}", module[1])
            } else {
                p.to_string()
            }
        })
}

/// The text without comments and without string and char literals (so that a path in a doc
/// comment or a message is not taken for an import).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut code = String::new();
        let mut chars = line.chars().peekable();
        let mut in_str = false;
        while let Some(c) = chars.next() {
            if in_str {
                if c == '\\' {
                    chars.next();
                } else if c == '"' {
                    in_str = false;
                }
                continue;
            }
            if c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' {
                in_str = true;
                continue;
            }
            code.push(c);
        }
        out.push_str(&code);
        out.push('\n');
    }
    out
}

/// Whether `line` opens an inline module (`mod name {`, `pub(crate) mod name {`, ...).
fn opens_inline_module(line: &str) -> bool {
    let line = line.trim();
    let line = line
        .strip_prefix("pub(crate) ")
        .or_else(|| line.strip_prefix("pub "))
        .unwrap_or(line);
    line.starts_with("mod ") && line.ends_with('{')
}

/// The code of a file without its inline `#[cfg(test)]` modules (tests may reach further).
fn without_test_modules(code: &str) -> String {
    let mut out = String::new();
    let mut lines = code.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            if let Some(next) = lines.peek() {
                if opens_inline_module(next) {
                    let mut depth = 0i32;
                    for l in lines.by_ref() {
                        depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                        if depth <= 0 {
                            break;
                        }
                    }
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The module paths a file's code names: `crate::a::b` and `super::a` (resolved against the
/// file's own module path), as full module paths.
fn referenced_modules(file: &SourceFile, code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let segments_after = |rest: &str| -> Vec<String> {
        let mut segs = Vec::new();
        let mut rest = rest;
        loop {
            let id = ident(rest);
            if id.is_empty() {
                break;
            }
            rest = &rest[id.len()..];
            segs.push(id);
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        segs
    };
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        out.insert(segments_after(&code[i + "crate::".len()..]));
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut rest = &code[i..];
        let mut base = file.module.clone();
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        let mut path = base;
        path.extend(segments_after(rest));
        out.insert(path);
    }
    out
}

#[test]
fn modules_import_only_from_their_layer_and_below_and_never_both_ways() {
    let files = source_files();
    // The crate's top-level modules.
    let top: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.module.first().cloned())
        .collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !f.is_tests()) {
        let Some(layer) = layer_of(&file.module) else {
            problems.push(format!("{}: in no layer of LAYERS", file.path.display()));
            continue;
        };
        let code = without_test_modules(&code_only(&file.text));
        let from = unit_of(&file.module);
        for mut target in referenced_modules(file, &code) {
            // A path to an item of the crate root (a re-export, say) is an import from the
            // root, whatever the item is.
            if !target.first().is_some_and(|m| top.contains(m)) {
                target.clear();
            }
            let Some(target_layer) = layer_of(&target) else {
                continue;
            };
            let to = unit_of(&target);
            if to != from && !target.is_empty() {
                edges.entry(from.clone()).or_default().insert(to.clone());
            }
            if target_layer > layer {
                let name = if target.is_empty() {
                    "the crate root".to_string()
                } else {
                    target.join("::")
                };
                problems.push(format!(
                    "{} ({}) imports {name} ({}), a layer above",
                    file.path.display(),
                    LAYERS[layer].0,
                    LAYERS[target_layer].0
                ));
            }
        }
    }
    for (a, tos) in &edges {
        for b in tos {
            if a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                problems.push(format!("{a} and {b} import each other"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_unsafe_block_and_impl_has_a_safety_comment() {
    let mut problems = Vec::new();
    for file in source_files() {
        let lines: Vec<&str> = file.text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let opens_block = code.contains("unsafe {") || code.trim_end().ends_with("unsafe");
            let is_impl = code.contains("unsafe impl");
            if !(opens_block || is_impl) || code.contains("unsafe fn") {
                continue;
            }
            let from = i.saturating_sub(SAFETY_REACH);
            let commented = lines[from..=i].iter().any(|l| l.contains("SAFETY:"));
            if !commented {
                problems.push(format!(
                    "{}:{}: {}",
                    file.path.display(),
                    i + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "unsafe without a `// SAFETY:` comment:\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_library_file_includes_a_test_file() {
    let offenders: Vec<String> = source_files()
        .into_iter()
        .filter(|f| {
            f.text.lines().any(|l| {
                let l = l.trim();
                (l.starts_with("#[path") || l.contains("include!(") || l.contains("include_str!("))
                    && l.contains("tests/")
            })
        })
        .map(|f| f.path.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn library_files_and_inline_test_modules_stay_small() {
    let mut problems = Vec::new();
    for file in source_files().iter().filter(|f| !f.is_tests()) {
        let lines: Vec<&str> = file.text.lines().collect();
        // Inline test modules, measured and left out of the file's count.
        let mut test_lines = 0;
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim() == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|l| opens_inline_module(l))
            {
                let start = i;
                let mut depth = 0i32;
                i += 1;
                while i < lines.len() {
                    depth +=
                        lines[i].matches('{').count() as i32 - lines[i].matches('}').count() as i32;
                    i += 1;
                    if depth <= 0 {
                        break;
                    }
                }
                let len = i - start;
                test_lines += len;
                if len > MAX_INLINE_TEST_LINES {
                    problems.push(format!(
                        "{}: an inline test module of {len} lines (at most {MAX_INLINE_TEST_LINES}: \
                         move it to a tests.rs beside the module)",
                        file.path.display()
                    ));
                }
                continue;
            }
            i += 1;
        }
        let own = lines.len() - test_lines;
        if own > MAX_LINES {
            problems.push(format!(
                "{}: {own} lines (at most {MAX_LINES})",
                file.path.display()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
