//! The two profiles: `--quick` (small sizes, <= 5 min on this 2-core machine, what CI runs)
//! and `--full` (the whole 60,000-image, 2-epoch comparison, more repetitions).

use crate::fe_bench::FePlan;
use crate::network::NetworkPlan;
use cryptonn::coordinator::net::load::LoadConfig;

/// Baby-step half-width of secure training's discrete-log table (train_lenet's default).
pub const SECURE_DLOG_HALF_WIDTH: u64 = 1 << 20;

/// Sizes and repetitions of one profile.
pub struct Profile {
    /// `quick` or `full`.
    pub name: &'static str,
    /// Training images (the first N of the 60,000).
    pub train_size: usize,
    /// Test images (the first N of the 10,000).
    pub test_size: usize,
    /// Epochs in every mode.
    pub epochs: usize,
    /// Training images the leakage section reconstructs.
    pub leakage_images: usize,
    /// FE plan for Ristretto255.
    pub ristretto: FePlan,
    /// FE plan for modp2048 (smaller in `--quick`: each operation costs 100x more).
    pub modp2048: FePlan,
    /// The networked key service on loopback.
    pub network: NetworkPlan,
    /// Training images of the scaling section (1 epoch at each thread count).
    pub scaling_train_size: usize,
}

/// 32 concurrent requesters, batches of 128 length-36 key vectors, fsync'd state.
fn load(seconds: u64) -> LoadConfig {
    LoadConfig {
        requesters: 32,
        seconds,
        batch: 128,
        dim: 36,
        fsync: true,
    }
}

/// The `--full` profile if `full`, else `--quick`.
pub fn profile(full: bool) -> Profile {
    if full {
        Profile {
            name: "full",
            train_size: 60_000,
            test_size: 10_000,
            epochs: 2,
            leakage_images: 8,
            ristretto: FePlan {
                reps_small: 21,
                reps_large: 7,
                reps_table: 3,
                table_half_width: 1 << 22,
                product_samples: 100,
                reps_product: 5,
                product_serial: true,
            },
            modp2048: FePlan {
                reps_small: 7,
                reps_large: 3,
                reps_table: 3,
                table_half_width: 1 << 20,
                product_samples: 100,
                reps_product: 3,
                product_serial: true,
            },
            network: NetworkPlan {
                train_size: 1_024,
                rounds: 3,
                load: load(30),
            },
            scaling_train_size: 4_096,
        }
    } else {
        Profile {
            name: "quick",
            train_size: 512,
            test_size: 1_000,
            epochs: 2,
            leakage_images: 2,
            ristretto: FePlan {
                reps_small: 7,
                reps_large: 3,
                reps_table: 1,
                table_half_width: 1 << 22,
                product_samples: 100,
                reps_product: 3,
                product_serial: true,
            },
            modp2048: FePlan {
                reps_small: 3,
                reps_large: 1,
                reps_table: 1,
                table_half_width: 1 << 16,
                product_samples: 10,
                reps_product: 1,
                product_serial: false,
            },
            network: NetworkPlan {
                train_size: 256,
                rounds: 2,
                load: load(5),
            },
            scaling_train_size: 64,
        }
    }
}
