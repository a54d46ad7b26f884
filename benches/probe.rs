//! Placeholder, replaced by the probe benchmark.
fn main() {}
