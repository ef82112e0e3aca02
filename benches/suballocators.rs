//! Suballocator benchmarks (being written).
fn main() {}
