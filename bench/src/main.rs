//! quiver-bench (placeholder until the engine benchmark lands).

fn main() {}
