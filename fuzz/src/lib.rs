//! The fuzz targets' bodies, shared with the stable regression test
//! (`tests/fuzz_regressions.rs`, which includes `targets.rs`).
pub mod targets;
