//! Declared neural networks on `ndarray` and `rayon`, from scratch: a small layer vocabulary,
//! models as sequences of layers (LeNet-5, an MLP, a small CNN built in, or read from a file),
//! and plain / quantised / backend-driven training.
//!
//! # Layout
//!
//! | module | contents |
//! |---|---|
//! | [`data`] | the generic [`data::Dataset`] (input shape, encoding, classes), MNIST IDX loading, the random label permutation |
//! | [`conv`] | 2-D convolution by im2col + GEMM |
//! | [`pool`] | average and max pooling, the box mean used by fused convolution + average pooling |
//! | [`flatten`] | flattening |
//! | [`activation`] | ReLU, tanh, sigmoid |
//! | [`linear`] | fully connected layers |
//! | [`loss`] | softmax cross-entropy |
//! | [`optim`] | SGD with optional momentum |
//! | [`init`] | seeded weight initialisation |
//! | [`first_layer`] | the first layer ([`first_layer::FirstLayerSpec`]: dense, or convolution with folded average pooling) as integer arithmetic, and the [`first_layer::FirstLayerBackend`] trait secure training plugs into |
//! | [`model`] | declared models ([`model::ModelSpec`], TOML/JSON files, built-ins) and [`model::Model`]: forward and backward over a chunk of samples |
//! | [`lenet`] | LeNet-5's architecture options (both layer orders) |
//! | [`train`] | the training loop, evaluation, and the run summary |
//! | [`saved_model`] | trained models and checkpoints in the safetensors format: save, verify, resume |
//! | [`error`] | the error types |
//!
//! # Conventions
//!
//! Tensors are `f32`, laid out `[n, channels, height, width]` (NCHW). Layers take views and
//! return owned outputs; a layer's backward pass takes the upstream gradient of the **summed**
//! loss over the samples it sees and returns gradients summed over those samples. The training
//! loop divides parameter gradients by the mini-batch size once, at the end (so the loss is the
//! batch mean, as usual).
//!
//! Parallelism is over samples: a mini-batch is cut into chunks of a fixed size
//! ([`train::TrainConfig::chunk_size`]) that does not depend on the number of threads, each chunk
//! is processed by one rayon task, and the per-chunk gradients are added in chunk order. The
//! result is therefore bit-for-bit the same whatever the size of the thread pool. (It is
//! reproducible on one machine; across CPUs it may differ in the last bits, because
//! `matrixmultiply` picks its SIMD kernel — e.g. FMA or not — at run time. The integer first
//! layer is exact everywhere.)

//! # Example
//!
//! Train for one epoch on 1,000 images in quantised mode and look at the summary:
//!
//! ```
//! use cryptonn::nn::data::Mnist;
//! use cryptonn::nn::model::ModelSpec;
//! use cryptonn::nn::train::{train, Mode, TrainConfig};
//!
//! let mnist = Mnist::load_default()?;
//! let cfg = TrainConfig { mode: Mode::Quantized, epochs: 1, ..TrainConfig::default() };
//! let (model, report) = train(
//!     &cfg,
//!     &ModelSpec::lenet5(cfg.lenet),
//!     &mnist.train.take(1000, "training")?,
//!     &mnist.test.take(500, "test")?,
//!     &mut (), // no progress display
//! )?;
//! assert!(report.test_accuracy[0] > 0.5);
//! assert_eq!(report.weights_sha256, model.weights_sha256());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod activation;
pub mod conv;
pub mod data;
pub mod datasets;
pub mod error;
pub mod first_layer;
pub mod flatten;
pub mod gemm;
pub mod init;
pub mod lenet;
pub mod linear;
pub mod loss;
pub mod model;
pub mod optim;
pub mod pool;
pub mod saved_model;
pub mod train;

pub use error::{DataError, NnError};
