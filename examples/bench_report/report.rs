//! The report's data: every section's figures in one serialisable value, the figures derived
//! from them (ratios, comparisons with the paper), and the reasons for every `null`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fe_bench::FeResults;
use crate::leakage::LeakageResults;
use crate::machine::MachineInfo;
use crate::network::NetworkResults;
use crate::paper::{self, PaperFigure};
use crate::training::ModeFigures;

/// The `training` object.
#[derive(Debug, Clone, Serialize)]
pub struct Training {
    /// Training images (the first N of the 60,000).
    pub train_size: usize,
    /// Test images (the first N of the 10,000).
    pub test_size: usize,
    /// Epochs.
    pub epochs: usize,
    /// Seed of weights, shuffles and label permutation.
    pub seed: u64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Plaintext training.
    pub plain: ModeFigures,
    /// The integer first layer on plaintext data.
    pub quantized: ModeFigures,
    /// The first layer over ciphertexts.
    pub secure: ModeFigures,
    /// Secure seconds per epoch / plain seconds per epoch.
    pub ratio_secure_to_plain: Option<f64>,
    /// Quantised seconds per epoch / plain seconds per epoch.
    pub ratio_quantized_to_plain: Option<f64>,
    /// Whether secure training's final weights hash equals quantised training's.
    pub weights_identical: Option<bool>,
}

/// The `fe` object.
#[derive(Debug, Clone, Serialize)]
pub struct Fe {
    /// Ristretto255.
    pub ristretto: FeResults,
    /// The RFC 3526 2048-bit group.
    pub modp2048: FeResults,
}

/// Our figures beside the paper's, as factors (paper / ours: > 1 means we are faster).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Hours 2 epochs of full MNIST would take in secure mode at the measured throughput.
    pub secure_2_epochs_full_mnist_hours_projected: Option<f64>,
    /// The same for plain training.
    pub plain_2_epochs_full_mnist_hours_projected: Option<f64>,
    /// Paper's 57 h / our projected secure hours.
    pub secure_training_speedup_vs_paper: Option<f64>,
    /// Paper's 4 h / our projected plain hours.
    pub plain_training_speedup_vs_paper: Option<f64>,
    /// Paper's (3.0 + 0.56 + 7.7) s / our Ristretto255 product.
    pub product_speedup_vs_paper_parallel: Option<f64>,
    /// Paper's 93 min / our Ristretto255 serial decryption of the product.
    pub product_serial_decrypt_speedup_vs_paper: Option<f64>,
    /// Paper follow-up's 0.2 ms / our Ristretto255 length-25 decryption.
    pub decrypt_len25_speedup_vs_paper: Option<f64>,
}

/// The whole report.json.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `quick` or `full`.
    pub profile: String,
    /// The exact command line.
    pub command: String,
    /// `git rev-parse HEAD` (+ `-dirty`).
    pub git_commit: Option<String>,
    /// Seconds since the Unix epoch at start.
    pub started_unix: u64,
    /// Wall seconds of the whole run.
    pub total_seconds: f64,
    /// Peak resident memory of the whole process in MB.
    pub process_peak_rss_mb: Option<f64>,
    /// The machine.
    pub machine: MachineInfo,
    /// Training section.
    pub training: Training,
    /// Every built-in model on its dataset: model → dataset → row.
    pub architectures: crate::architectures::Architectures,
    /// FE microbenchmarks.
    pub fe: Fe,
    /// Leakage section.
    pub leakage: LeakageResults,
    /// The networked key service on loopback.
    pub network: NetworkResults,
    /// Noisy first-layer values: the accuracy / reconstruction / epsilon curve.
    pub privacy: crate::privacy::PrivacyResults,
    /// Images/s per thread count, with the weights compared.
    pub scaling: crate::scaling::Scaling,
    /// The paper's published figures (not measured here).
    pub paper: Vec<PaperFigure>,
    /// Where the paper's figures come from.
    pub paper_setup: &'static str,
    /// Derived comparisons.
    pub comparison: Comparison,
    /// For each contract key that is `null`: why.
    pub missing: BTreeMap<String, String>,
    /// Anything a reader must know to read the figures (reduced sizes, load).
    pub notes: Vec<String>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Training {
    /// Fills the derived fields from the three modes.
    pub fn derive(&mut self) {
        self.ratio_secure_to_plain = ratio(self.secure.epoch_seconds, self.plain.epoch_seconds);
        self.ratio_quantized_to_plain =
            ratio(self.quantized.epoch_seconds, self.plain.epoch_seconds);
        self.weights_identical = match (&self.secure.weights_sha256, &self.quantized.weights_sha256)
        {
            (Some(s), Some(q)) => Some(s == q),
            _ => None,
        };
    }
}

impl Comparison {
    /// Our figures against the paper's.
    pub fn derive(t: &Training, fe: &Fe) -> Self {
        let hours = |ips: Option<f64>| {
            ips.filter(|v| *v > 0.0)
                .map(|v| paper::LENET_IMAGES_2_EPOCHS / v / 3600.0)
        };
        let secure_h = hours(t.secure.images_per_second);
        let plain_h = hours(t.plain.images_per_second);
        let r = &fe.ristretto;
        let paper_product =
            paper::PRODUCT_ENCRYPT_S + paper::PRODUCT_KEYS_S + paper::PRODUCT_DECRYPT_PARALLEL_S;
        Self {
            secure_2_epochs_full_mnist_hours_projected: secure_h,
            plain_2_epochs_full_mnist_hours_projected: plain_h,
            secure_training_speedup_vs_paper: ratio(Some(paper::LENET_SECURE_HOURS), secure_h),
            plain_training_speedup_vs_paper: ratio(Some(paper::LENET_PLAIN_HOURS), plain_h),
            product_speedup_vs_paper_parallel: ratio(Some(paper_product), r.paper_product_s),
            product_serial_decrypt_speedup_vs_paper: ratio(
                Some(paper::PRODUCT_DECRYPT_SERIAL_S),
                r.paper_product
                    .decrypt_serial_s
                    .filter(|_| r.paper_product.samples == 100),
            ),
            decrypt_len25_speedup_vs_paper: ratio(
                Some(paper::DECRYPT_LEN25_FOLLOWUP_MS * 1e3),
                r.decrypt_len25_us,
            ),
        }
    }
}
