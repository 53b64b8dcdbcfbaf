//! Secure training of a declared model's first layer over encrypted data (CryptoNN's
//! CryptoCNN, generalised): a convolution of any kernel, stride, padding and channels with an
//! optional folded average pool, or a dense layer (its weight gradient over feature-major
//! ciphertexts, as NN-EMD). LeNet-5 on MNIST is the running example below.
//!
//! The roles:
//!
//! ```text
//!  Authority ── shard domains (one per mini-batch) ──▶ data owner: encrypts each sample once
//!      ▲                                                 (FEIP, its d features) and its label
//!      │ key requests (fresh every step, audited)        (FEBO, one-hot entries) → file
//!      │                                                            │
//!  SecureFirstLayer (server) ◀── EncryptedDataset (ciphertexts only) ┘
//! ```
//!
//! - [`session`]: [`SecureTrainingSession`], the one way every driver builds a run.
//! - [`geometry`]: the linear algebra of the first layer in input space (any conv + folded
//!   pool, or dense): the key vectors (placements) of the forward outputs and of the weight
//!   gradient, and the public padding terms.
//! - [`encrypted_dataset`]: the data owner's encryption, the versioned on-disk format, the
//!   cache logic and the load-time checks.
//! - [`backend`]: [`SecureFirstLayer`], the server's
//!   [`FirstLayerBackend`](crate::nn::first_layer::FirstLayerBackend) over ciphertexts,
//!   function keys and a discrete-log table.
//! - [`server_view`]: a key service that records what the server receives, and what the
//!   server can rebuild of a shard from it ([`shard_leakage`]).
//! - [`error`]: the error type, [`SecureTrainingError`].
//!
//! # Layout: one FEIP ciphertext per image
//!
//! Each image's 784 real pixels `xq` (the nn module's integer encoding) form one FEIP
//! plaintext vector: `ct0` plus 784 components, 785 · 32 bytes ≈ 25 KB on Ristretto255, so all
//! 60,000 training images take ≈ 1.5 GB. Per-patch (im2col) encryption would repeat every
//! pixel in 25 patches (and 4,704 patch ciphertexts per image): ≈ 25x the size. The padding
//! pixels are the public constant `xq(0)` and are not encrypted: the server adds their known
//! contribution to every decrypted value.
//!
//! The server multiplies the four components of each 2x2 box homomorphically
//! (`Bct[u][v] = ∏ ct_p` over the real pixels `p` of the box: a ciphertext component of the
//! box sum `B[u][v]` under the aggregated key), so that each pooled conv1 output is a
//! 25-term product `∏ Bct^{wq}` and each weight-gradient entry a 196-term product
//! `∏ Bct^{dq}`; dividing by `ct0^{sk_y}` with the key for the equivalent pixel-space vector
//! `y` leaves `g^{<xq, y>}`.
//!
//! # Key domains and policy
//!
//! The authority creates one key domain per *shard* — a fixed mini-batch of the training set —
//! at encryption time. A shard's keys are useless on every other shard's ciphertexts (another
//! master secret key), and the held-out test set is never keyed. Within a shard the rank cap
//! of the default policy is off ([`PolicyConfig::per_batch`](crate::coordinator::PolicyConfig::per_batch)):
//! conv1's 1,176 pooled outputs per image already determine the image (1,176 equations in 784
//! unknowns), so a cap could not hold and would not help. For the same reason the low-weight
//! filter refuses only the all-zero vector there (`t = 1`): a weight-gradient key with 1–3
//! non-zero coefficients (sparse `dZ1`, border blocks) is legitimate and reveals nothing the
//! forward keys do not. Other domains keep the default `t = 4`. The training loop must
//! therefore use fixed batches
//! ([`BatchSchedule::FixedShards`](crate::nn::train::BatchSchedule::FixedShards)).
//!
//! # Timing
//! Everything the server computes is on public values (ciphertexts, key vectors, function keys
//! and the results it is entitled to): the decryption paths are variable time (`vartime_`).

pub mod backend;
pub mod encrypted_dataset;
pub mod error;
pub mod geometry;
pub mod in_process;
pub mod multiexp;
pub mod noise;
pub mod registration;
pub mod server_view;
pub mod session;

pub use backend::{SecureFirstLayer, SecureStats};
pub use encrypted_dataset::{
    create_feature_domains, create_shard_domains, encrypt_or_reuse, encrypt_part_or_reuse,
    encrypt_samples_or_reuse, sweep_stale_temp_files, DataLayout, DatasetPart, DatasetSamples,
    EncodedSamples, EncryptedDataset, EncryptedDatasetHeader, EncryptionParams, MnistSamples,
    ShardPublicKeys, StaleTempFile,
};
pub use error::SecureTrainingError;
pub use geometry::{ConvGeometry, FirstLayerGeometry, LinearGeometry};
pub use in_process::{
    train_secure_in_process, InProcessOptions, InProcessSummary, IN_MEMORY_AUDIT,
};
pub use noise::{
    enable_noise, make_domains_noisy, privacy_summary, register_noisy_ciphertexts,
    training_noise_key, NoisyReference, Observation,
};
pub use registration::register_label_commitments;
pub use server_view::{
    shard_leakage, RecordedRequest, RecordingKeyService, ShardLeakage, ViewLeakage,
};
pub use session::{
    group_name, run_summary, EncryptedInput, LocalAuthority, SecureSummary, SecureTrainingSession,
    DEFAULT_DLOG_HALF_WIDTH,
};
