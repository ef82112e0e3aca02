//! Sample frame graphs, as data: the transient resources of three typical frames with the
//! passes they live in. The tests, the `transient` bench and the `frame_graph` example plan
//! them; they are also a starting point for describing a renderer's own frame.
//!
//! Sizes come from formats and extents. [`GraphResource::estimated_resource`] turns a
//! resource into planner input with the requirements a desktop GPU typically reports
//! (optimal images aligned to 64 KiB and padded to it, buffers aligned to 256 bytes); on a
//! device, query the real requirements of the created resources instead, as the example does.

#![deny(unsafe_code)]

use super::TransientResource;
use crate::layout::{DeviceLayout, DeviceSize};
use crate::suballocator::AllocationType;
use ash::vk;

/// What a resource of a graph is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// A buffer of `size` bytes.
    Buffer {
        /// Its size in bytes.
        size: DeviceSize,
    },
    /// A 2D optimal-tiling image with one mip level.
    Image {
        /// Its format.
        format: vk::Format,
        /// Its width in texels.
        width: u32,
        /// Its height in texels.
        height: u32,
        /// Its array layers (shadow cascades in one image, for example).
        layers: u32,
    },
}

/// One transient resource of a sample graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GraphResource {
    /// A name for messages.
    pub name: String,
    /// What it is.
    pub kind: ResourceKind,
    /// The first pass that uses it.
    pub first_pass: u32,
    /// The last pass that uses it.
    pub last_pass: u32,
}

/// A frame: named passes in execution order and the transient resources between them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrameGraph {
    /// The graph's name.
    pub name: &'static str,
    /// The number of passes.
    pub passes: u32,
    /// The transient resources.
    pub resources: Vec<GraphResource>,
}

/// The bytes per texel of the formats the sample graphs use (depth-stencil formats as desktop
/// GPUs store them), or `None` for another format.
pub fn bytes_per_texel(format: vk::Format) -> Option<DeviceSize> {
    use vk::Format as F;
    Some(match format {
        F::R8_UNORM | F::R8_UINT => 1,
        F::R16_SFLOAT | F::R16_UINT | F::R8G8_UNORM => 2,
        F::R8G8B8A8_UNORM
        | F::R8G8B8A8_SRGB
        | F::B8G8R8A8_UNORM
        | F::A2B10G10R10_UNORM_PACK32
        | F::B10G11R11_UFLOAT_PACK32
        | F::R16G16_SFLOAT
        | F::R32_SFLOAT
        | F::R32_UINT
        | F::D32_SFLOAT
        | F::D24_UNORM_S8_UINT => 4,
        F::D32_SFLOAT_S8_UINT | F::R16G16B16A16_SFLOAT | F::R32G32_SFLOAT | F::R32G32_UINT => 8,
        F::R32G32B32A32_SFLOAT | F::R32G32B32A32_UINT => 16,
        _ => return None,
    })
}

/// The alignment desktop GPUs typically give optimal images (64 KiB pages).
pub const ESTIMATED_IMAGE_ALIGNMENT: DeviceSize = 64 << 10;
/// The alignment desktop GPUs typically give storage and uniform buffers.
pub const ESTIMATED_BUFFER_ALIGNMENT: DeviceSize = 256;
/// The `bufferImageGranularity` of NVIDIA GPUs, used when planning the estimates.
pub const ESTIMATED_GRANULARITY: DeviceSize = 1024;

impl GraphResource {
    fn new(name: impl Into<String>, kind: ResourceKind, first_pass: u32, last_pass: u32) -> Self {
        Self {
            name: name.into(),
            kind,
            first_pass,
            last_pass,
        }
    }

    /// The planner input with estimated requirements (see the [module docs](self)): images
    /// are [`NonLinear`](AllocationType::NonLinear) and may use memory types 1 and 2, buffers
    /// are [`Linear`](AllocationType::Linear) and may use types 0 to 2. `None` for an image
    /// of a format [`bytes_per_texel`] does not know, or a size that is zero or too large for
    /// a [`DeviceLayout`].
    pub fn estimated_resource(&self) -> Option<TransientResource> {
        let (size, alignment, bits, kind) = match self.kind {
            ResourceKind::Buffer { size } => (
                size,
                ESTIMATED_BUFFER_ALIGNMENT,
                0b111,
                AllocationType::Linear,
            ),
            ResourceKind::Image {
                format,
                width,
                height,
                layers,
            } => {
                // Checked all the way: three `u32` extents can pass `u64` together.
                let bytes = bytes_per_texel(format)?
                    .checked_mul(u64::from(width))?
                    .checked_mul(u64::from(height))?
                    .checked_mul(u64::from(layers))?;
                let padded = crate::layout::align_up(
                    bytes,
                    crate::layout::DeviceAlignment::new(ESTIMATED_IMAGE_ALIGNMENT)?,
                )?;
                (
                    padded,
                    ESTIMATED_IMAGE_ALIGNMENT,
                    0b110,
                    AllocationType::NonLinear,
                )
            }
        };
        let layout = DeviceLayout::from_size_alignment(size, alignment).ok()?;
        Some(TransientResource::new(
            layout,
            bits,
            kind,
            self.first_pass,
            self.last_pass,
        ))
    }
}

impl FrameGraph {
    /// Planner input for every resource, with estimated requirements; `None` if a resource
    /// has none (see [`GraphResource::estimated_resource`]).
    pub fn estimated_resources(&self) -> Option<Vec<TransientResource>> {
        self.resources
            .iter()
            .map(GraphResource::estimated_resource)
            .collect()
    }
}

fn image(format: vk::Format, width: u32, height: u32) -> ResourceKind {
    ResourceKind::Image {
        format,
        width,
        height,
        layers: 1,
    }
}

fn buffer(size: DeviceSize) -> ResourceKind {
    ResourceKind::Buffer { size }
}

/// A deferred renderer at `width` × `height` (3840 × 2160 for 4K): four shadow cascades,
/// depth prepass, a five-target G-buffer, a depth pyramid, SSAO with a separable blur,
/// clustered lighting, a six-level bloom chain down and up, tone mapping, anti-aliasing and
/// a luminance histogram. 25 passes.
pub fn deferred(width: u32, height: u32) -> FrameGraph {
    use vk::Format as F;
    let (w, h) = (width, height);
    let (hw, hh) = (w.div_ceil(2), h.div_ceil(2));
    let mut r = Vec::new();
    // Passes 0-3: one shadow cascade each; all four are read by lighting (pass 10).
    for c in 0..4 {
        r.push(GraphResource::new(
            format!("shadow cascade {c}"),
            image(F::D32_SFLOAT, 2048, 2048),
            c,
            10,
        ));
    }
    // Pass 4: depth prepass; depth is read up to the transparent pass (11).
    r.push(GraphResource::new(
        "depth",
        image(F::D32_SFLOAT_S8_UINT, w, h),
        4,
        11,
    ));
    // Pass 5: G-buffer, read by SSAO (normals) and lighting.
    let gbuffer = [
        ("albedo", F::R8G8B8A8_SRGB),
        ("normals", F::A2B10G10R10_UNORM_PACK32),
        ("material", F::R8G8B8A8_UNORM),
        ("motion vectors", F::R16G16_SFLOAT),
        ("emissive", F::B10G11R11_UFLOAT_PACK32),
    ];
    for (name, format) in gbuffer {
        let last = if name == "motion vectors" { 23 } else { 10 };
        r.push(GraphResource::new(name, image(format, w, h), 5, last));
    }
    // Pass 6: depth pyramid (half resolution, R32F), read by SSAO.
    r.push(GraphResource::new(
        "depth pyramid",
        image(F::R32_SFLOAT, hw, hh),
        6,
        7,
    ));
    // Passes 7-9: SSAO at half resolution, blurred horizontally then vertically.
    r.push(GraphResource::new(
        "ssao raw",
        image(F::R8_UNORM, hw, hh),
        7,
        8,
    ));
    r.push(GraphResource::new(
        "ssao blur h",
        image(F::R8_UNORM, hw, hh),
        8,
        9,
    ));
    r.push(GraphResource::new(
        "ssao",
        image(F::R8_UNORM, hw, hh),
        9,
        10,
    ));
    // Pass 9 also culls lights into clusters (16 × 9 × 24), read by lighting.
    let clusters: DeviceSize = 16 * 9 * 24;
    r.push(GraphResource::new(
        "light grid",
        buffer(clusters * 8),
        9,
        10,
    ));
    r.push(GraphResource::new(
        "light indices",
        buffer(clusters * 256 * 4),
        9,
        10,
    ));
    // Pass 10: lighting into HDR; pass 11: transparents on top.
    r.push(GraphResource::new(
        "hdr",
        image(F::R16G16B16A16_SFLOAT, w, h),
        10,
        23,
    ));
    // Passes 12-17: bloom down, 1/2 to 1/64; passes 18-22: up again.
    for level in 1..=6u32 {
        let (lw, lh) = ((w >> level).max(1), (h >> level).max(1));
        let first = 11 + level;
        // Level k is read by the next level down and by the up pass that adds it.
        let last = if level == 6 { 18 } else { 18 + (6 - level) - 1 };
        r.push(GraphResource::new(
            format!("bloom down {level}"),
            image(F::B10G11R11_UFLOAT_PACK32, lw, lh),
            first,
            last,
        ));
    }
    for level in (1..=5u32).rev() {
        let (lw, lh) = ((w >> level).max(1), (h >> level).max(1));
        let first = 18 + (5 - level);
        r.push(GraphResource::new(
            format!("bloom up {level}"),
            image(F::R16G16B16A16_SFLOAT, lw, lh),
            first,
            first + 1,
        ));
    }
    // Pass 22 also builds a luminance histogram, pass 23 reduces it to an exposure.
    r.push(GraphResource::new(
        "luminance histogram",
        buffer(256 * 4),
        22,
        23,
    ));
    r.push(GraphResource::new("exposure", buffer(16), 23, 23));
    // Pass 23: tone mapping to LDR; pass 24: temporal anti-aliasing into the output.
    r.push(GraphResource::new(
        "ldr",
        image(F::R8G8B8A8_UNORM, w, h),
        23,
        24,
    ));
    r.push(GraphResource::new(
        "taa output",
        image(F::R8G8B8A8_UNORM, w, h),
        24,
        24,
    ));
    FrameGraph {
        name: "deferred",
        passes: 25,
        resources: r,
    }
}

/// A forward+ renderer at `width` × `height` with 4× MSAA: depth prepass, clustered light
/// culling (a 16 × 9 × 24 grid, up to 256 lights per cluster), a shadow atlas, opaque and
/// transparent passes into multisampled targets, resolve, and post-processing. 12 passes.
pub fn forward_plus(width: u32, height: u32) -> FrameGraph {
    use vk::Format as F;
    let (w, h) = (width, height);
    let clusters: DeviceSize = 16 * 9 * 24;
    let msaa = |format, w, h| ResourceKind::Image {
        format,
        width: w,
        height: h,
        // Four samples stored like four layers: the same bytes.
        layers: 4,
    };
    let r = vec![
        GraphResource::new("depth msaa", msaa(F::D32_SFLOAT, w, h), 0, 4),
        GraphResource::new("cluster bounds", buffer(clusters * 32), 1, 2),
        GraphResource::new("light list", buffer(4096 * 64), 1, 4),
        GraphResource::new("light grid", buffer(clusters * 8), 2, 4),
        GraphResource::new("light indices", buffer(clusters * 256 * 4), 2, 4),
        GraphResource::new("shadow atlas", image(F::D32_SFLOAT, 8192, 8192), 3, 4),
        GraphResource::new("color msaa", msaa(F::R16G16B16A16_SFLOAT, w, h), 4, 6),
        GraphResource::new("velocity msaa", msaa(F::R16G16_SFLOAT, w, h), 4, 6),
        GraphResource::new(
            "transparent accum",
            image(F::R16G16B16A16_SFLOAT, w, h),
            5,
            6,
        ),
        GraphResource::new("transparent reveal", image(F::R8_UNORM, w, h), 5, 6),
        GraphResource::new("hdr", image(F::R16G16B16A16_SFLOAT, w, h), 6, 9),
        GraphResource::new("velocity", image(F::R16G16_SFLOAT, w, h), 6, 10),
        GraphResource::new(
            "bloom half",
            image(F::B10G11R11_UFLOAT_PACK32, w / 2, h / 2),
            7,
            8,
        ),
        GraphResource::new(
            "bloom quarter",
            image(F::B10G11R11_UFLOAT_PACK32, w / 4, h / 4),
            7,
            8,
        ),
        GraphResource::new("bloom", image(F::R16G16B16A16_SFLOAT, w / 2, h / 2), 8, 9),
        GraphResource::new("ldr", image(F::R8G8B8A8_UNORM, w, h), 9, 10),
        GraphResource::new("taa output", image(F::R8G8B8A8_UNORM, w, h), 10, 11),
        GraphResource::new("ui", image(F::R8G8B8A8_UNORM, w, h), 11, 11),
    ];
    FrameGraph {
        name: "forward+",
        passes: 12,
        resources: r,
    }
}

/// A compute pipeline of `stages` passes (50 or more in the bench) over chained buffers:
/// stage `i` reads the buffer of stage `i - 1` and writes its own; every fourth stage also
/// reads the buffer of four stages back (a skip connection, as in a residual network).
/// Sizes cycle through a mixed set from 64 KiB to 48 MiB.
pub fn compute_chain(stages: u32) -> FrameGraph {
    const SIZES_KIB: [DeviceSize; 11] = [
        4096, 1024, 16384, 256, 8192, 49152, 64, 2048, 12288, 512, 32768,
    ];
    let resources = (0..stages)
        .map(|i| {
            // Read by the next stage, and by stage i + 4 when that one has a skip connection.
            let last = if i % 4 == 0 && i.checked_add(4).is_some_and(|j| j < stages) {
                i + 4
            } else {
                (i + 1).min(stages - 1)
            };
            let size = SIZES_KIB[(i as usize * 7) % SIZES_KIB.len()] << 10;
            GraphResource::new(format!("stage {i}"), buffer(size), i, last)
        })
        .collect();
    FrameGraph {
        name: "compute chain",
        passes: stages,
        resources,
    }
}

/// A random graph of `count` resources over `count / 5` passes (at least one), reproducible
/// from `seed`: lifetimes of 1 to 16 passes, sizes from 4 KiB to 32 MiB spread evenly on a
/// logarithmic scale, half images and half buffers. The bench plans 500 of them.
pub fn random(count: u32, seed: u64) -> FrameGraph {
    let mut state = seed;
    let mut next = move || {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let passes = (count / 5).max(1);
    let resources = (0..count)
        .map(|i| {
            let first = (next() % u64::from(passes)) as u32;
            let len = 1 + (next() % 16) as u32;
            let last = (first + len - 1).min(passes - 1);
            let log_kib = 2 + next() % 14; // 4 KiB ..= 32 MiB
            let size = (1u64 << (log_kib + 10)) + (next() % (1 << (log_kib + 9)));
            let kind = if i % 2 == 0 {
                buffer(size)
            } else {
                // A square RGBA8 image of about `size` bytes.
                let side = ((size / 4) as f64).sqrt().max(1.0) as u32;
                image(vk::Format::R8G8B8A8_UNORM, side, side)
            };
            GraphResource::new(format!("resource {i}"), kind, first, last)
        })
        .collect();
    FrameGraph {
        name: "random",
        passes,
        resources,
    }
}

/// The three sample graphs of the bench and the tests: [`deferred`] at 4K, [`forward_plus`]
/// at 1440p, and [`compute_chain`] of 60 stages.
pub fn samples() -> Vec<FrameGraph> {
    vec![
        deferred(3840, 2160),
        forward_plus(2560, 1440),
        compute_chain(60),
    ]
}
