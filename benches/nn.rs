//! Criterion benchmarks of the network (filled in below).

fn main() {}
