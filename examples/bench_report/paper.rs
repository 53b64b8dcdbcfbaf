//! The CryptoNN paper's published figures (Xu, Joshi, Li: "CryptoNN: Training Neural Networks
//! over Encrypted Data", ICDCS 2019) and the follow-up's decryption figure, quoted with where
//! they were measured. None of these was measured by this program.

use serde::Serialize;

/// One published figure.
#[derive(Debug, Clone, Serialize)]
pub struct PaperFigure {
    /// What was measured.
    pub what: &'static str,
    /// The value, in `unit`.
    pub value: f64,
    /// Unit of `value`.
    pub unit: &'static str,
    /// Where the figure comes from and on what it was measured.
    pub source: &'static str,
}

/// Hardware / software note common to the paper's figures.
pub const PAPER_SETUP: &str = "the authors' own prototype (Python, Charm-Crypto, Z_p* groups) on \
    the authors' own hardware as described in the paper — not this machine, not re-measured here";

const ICDCS: &str = "CryptoNN (ICDCS 2019), the authors' prototype and hardware";

/// LeNet-5, 2 epochs of full MNIST, plaintext training: 4 h.
pub const LENET_PLAIN_HOURS: f64 = 4.0;
/// LeNet-5, 2 epochs of full MNIST, secure training: 57 h.
pub const LENET_SECURE_HOURS: f64 = 57.0;
/// Test accuracy, plaintext: 95.48 %.
pub const LENET_PLAIN_ACCURACY: f64 = 0.9548;
/// Test accuracy, secure: 95.49 %.
pub const LENET_SECURE_ACCURACY: f64 = 0.9549;
/// 10,000 length-10 inner products (100x10 · 10x100): encryption, s.
pub const PRODUCT_ENCRYPT_S: f64 = 3.0;
/// ... function keys, s.
pub const PRODUCT_KEYS_S: f64 = 0.56;
/// ... serial decryption: 93 min.
pub const PRODUCT_DECRYPT_SERIAL_S: f64 = 93.0 * 60.0;
/// ... "parallel" decryption: 7.7 s.
pub const PRODUCT_DECRYPT_PARALLEL_S: f64 = 7.7;
/// Length-25 inner-product decryption in the follow-up work: 0.2 ms.
pub const DECRYPT_LEN25_FOLLOWUP_MS: f64 = 0.2;
/// Training images in 2 epochs of full MNIST.
pub const LENET_IMAGES_2_EPOCHS: f64 = 120_000.0;

/// All figures, for report.json.
pub fn figures() -> Vec<PaperFigure> {
    vec![
        PaperFigure {
            what: "LeNet-5, 2 epochs of MNIST, plaintext training",
            value: LENET_PLAIN_HOURS,
            unit: "h",
            source: ICDCS,
        },
        PaperFigure {
            what: "LeNet-5, 2 epochs of MNIST, secure training",
            value: LENET_SECURE_HOURS,
            unit: "h",
            source: ICDCS,
        },
        PaperFigure {
            what: "LeNet-5 test accuracy, plaintext",
            value: LENET_PLAIN_ACCURACY,
            unit: "fraction",
            source: ICDCS,
        },
        PaperFigure {
            what: "LeNet-5 test accuracy, secure",
            value: LENET_SECURE_ACCURACY,
            unit: "fraction",
            source: ICDCS,
        },
        PaperFigure {
            what: "10k length-10 inner products: encrypt",
            value: PRODUCT_ENCRYPT_S,
            unit: "s",
            source: ICDCS,
        },
        PaperFigure {
            what: "10k length-10 inner products: function keys",
            value: PRODUCT_KEYS_S,
            unit: "s",
            source: ICDCS,
        },
        PaperFigure {
            what: "10k length-10 inner products: serial decrypt",
            value: PRODUCT_DECRYPT_SERIAL_S,
            unit: "s",
            source: ICDCS,
        },
        PaperFigure {
            what: "10k length-10 inner products: parallel decrypt",
            value: PRODUCT_DECRYPT_PARALLEL_S,
            unit: "s",
            source: ICDCS,
        },
        PaperFigure {
            what: "length-25 decryption (follow-up work)",
            value: DECRYPT_LEN25_FOLLOWUP_MS,
            unit: "ms",
            source: "the authors' follow-up work, their implementation and hardware",
        },
    ]
}
