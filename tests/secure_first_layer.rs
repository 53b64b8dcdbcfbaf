//! The generic secure first layer over FEIP/FEBO ciphertexts, checked value for value against
//! plaintext integer arithmetic for geometries other than LeNet-5's: convolutions with any
//! channels, kernel, stride, padding and folded pool, and a dense layer whose weight gradient
//! comes from feature-major ciphertexts. Small synthetic samples (tens of features), on
//! Ristretto255 and on the insecure test group of Z_p*.

use std::sync::Arc;

use cryptonn::coordinator::secure_training::{
    ConvGeometry, DataLayout, EncodedSamples, EncryptionParams, FirstLayerGeometry, LinearGeometry,
    SecureFirstLayer, SecureTrainingError, SecureTrainingSession,
};
use cryptonn::coordinator::InProcessKeyService;
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::first_layer::QuantConfig;
use rand::{Rng, SeedableRng};

/// Random encoded samples: `xq` in `[-x, x]`, classes in `0..classes`.
struct Synthetic {
    xq: Vec<Vec<i64>>,
    classes: Vec<usize>,
}

impl Synthetic {
    fn new(n: usize, d: usize, x: i64, classes: usize, seed: u64) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        Self {
            xq: (0..n)
                .map(|_| (0..d).map(|_| rng.gen_range(-x..=x)).collect())
                .collect(),
            classes: (0..n).map(|_| rng.gen_range(0..classes)).collect(),
        }
    }
}

impl EncodedSamples for Synthetic {
    fn len(&self) -> usize {
        self.xq.len()
    }
    fn encode(&self, i: usize) -> Result<Vec<i64>, SecureTrainingError> {
        Ok(self.xq[i].clone())
    }
    fn class(&self, i: usize) -> usize {
        self.classes[i]
    }
    fn digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (x, c) in self.xq.iter().zip(&self.classes) {
            for v in x {
                h.update(v.to_le_bytes());
            }
            h.update((*c as u64).to_le_bytes());
        }
        h.finalize().into()
    }
}

fn random(rng: &mut rand_chacha::ChaCha8Rng, n: usize, lim: i64, zeros: f64) -> Vec<i64> {
    (0..n)
        .map(|_| {
            if rng.gen_bool(zeros) {
                0
            } else {
                rng.gen_range(-lim..=lim)
            }
        })
        .collect()
}

/// Plain `z = <xq, y> + padding` of every output, from the geometry's input-space key vectors.
fn plain_outputs(
    outs: &[cryptonn::coordinator::secure_training::geometry::LinearOutput],
    xq: &[i64],
) -> Vec<i64> {
    outs.iter()
        .map(|o| o.pixel_terms.iter().map(|&(q, y)| xq[q] * y).sum::<i64>() + o.padding)
        .collect()
}

struct Run<G: PrimeOrderGroup> {
    backend: SecureFirstLayer<G, InProcessKeyService<G>>,
    samples: Synthetic,
    dir: std::path::PathBuf,
    session: SecureTrainingSession<G>,
    authority: cryptonn::coordinator::key_service::SharedAuthority<G>,
    path: std::path::PathBuf,
}

fn setup<G: PrimeOrderGroup>(
    group: G,
    geometry: FirstLayerGeometry,
    shape: Option<[usize; 3]>,
    n: usize,
    shard: usize,
    classes: usize,
    name: &str,
) -> Run<G> {
    let d = geometry.input_len();
    let dir = std::env::temp_dir().join(format!(
        "cryptonn-first-layer-{}-{name}",
        std::process::id()
    ));
    let session = SecureTrainingSession::new(group, &dir).dlog_half_width(1 << 12);
    let samples = Synthetic::new(n, d, 40, classes, 7);
    let quant = QuantConfig {
        scale_x: 16.0,
        ..QuantConfig::default()
    };
    let layout = DataLayout {
        input_len: d,
        input_shape: shape,
        classes,
        x_bound: 40,
        padding_value: -3,
        feature_major: matches!(geometry, FirstLayerGeometry::Linear(_)),
    };
    let params = EncryptionParams::new(&quant, Default::default(), shard).with_layout(layout);
    let local = session.local_authority().expect("authority");
    let input = session
        .encrypt(&local.authority, name, &samples, &params, &|_| {})
        .expect("encrypt");
    assert!(!input.reused);
    let table = session.dlog_table().expect("table");
    let backend = session
        .server(
            session.in_process_keys(&local.authority),
            &input.path,
            table,
            quant,
            geometry,
        )
        .expect("backend");
    Run {
        backend,
        samples,
        dir,
        session,
        authority: local.authority,
        path: input.path,
    }
}

fn check_conv<G: PrimeOrderGroup>(group: G, dims: [usize; 8]) {
    let [c, h, w, f, k, s, p, pool] = dims;
    let g = ConvGeometry::new(c, h, w, f, k, s, p, pool).expect("geometry");
    let mut run = setup(
        group,
        FirstLayerGeometry::Conv(g.clone()),
        Some([c, h, w]),
        6,
        3,
        4,
        &format!("conv-{c}-{h}-{w}-{f}-{k}-{s}-{p}-{pool}"),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let wq = random(&mut rng, f * c * k * k, 60, 0.2);
    let fw = g.forward_outputs(&wq, -3).expect("outputs");
    for batch in [vec![0, 2, 1], vec![5, 3]] {
        let z = run.backend.forward_values(&batch, &wq).expect("forward");
        let want: Vec<i64> = batch
            .iter()
            .flat_map(|&i| plain_outputs(&fw, &run.samples.xq[i]))
            .collect();
        assert_eq!(z, want, "forward {dims:?}");
        let dq = random(&mut rng, batch.len() * g.outputs(), 300, 0.3);
        let got = run
            .backend
            .weight_gradient_values(&batch, &dq)
            .expect("gradient");
        let mut want = vec![0i64; g.gradient_outputs_len()];
        for (d, &i) in dq.chunks_exact(g.outputs()).zip(&batch) {
            let outs = g.gradient_outputs(d, -3).expect("outputs");
            for (a, v) in want
                .iter_mut()
                .zip(plain_outputs(&outs, &run.samples.xq[i]))
            {
                *a += v;
            }
        }
        assert_eq!(got, want, "gradient {dims:?}");
        // The output error of four classes.
        let pq = random(&mut rng, batch.len() * 4, 4096, 0.0)
            .into_iter()
            .map(i64::abs)
            .collect::<Vec<_>>();
        let eq = run
            .backend
            .output_error_values(&batch, &pq)
            .expect("output error");
        for (r, &i) in batch.iter().enumerate() {
            for k in 0..4 {
                let y = if run.samples.classes[i] == k { 4096 } else { 0 };
                assert_eq!(eq[r * 4 + k], pq[r * 4 + k] - y);
            }
        }
    }
    std::fs::remove_dir_all(&run.dir).ok();
}

#[test]
fn conv_geometries_equal_plain_integers_on_ristretto() {
    // cnn-small's first layer on 8x8 digits (3x3, padding 1, no folded pool), and a strided,
    // dilated, multi-channel geometry with a folded pool.
    check_conv(Ristretto255, [1, 8, 8, 3, 3, 1, 1, 1]);
    check_conv(Ristretto255, [2, 7, 6, 2, 3, 2, 1, 2]);
}

#[test]
fn conv_geometries_equal_plain_integers_on_the_zp_test_group() {
    check_conv(ModpGroup::insecure_test_group(), [1, 6, 6, 2, 3, 1, 1, 2]);
}

fn check_linear<G: PrimeOrderGroup>(group: G) {
    let (inputs, outputs) = (12, 5);
    let g = LinearGeometry::new(inputs, outputs).expect("geometry");
    // 7 samples in shards of 3: the last shard is short (one sample, two empty slots).
    let mut run = setup(
        group,
        FirstLayerGeometry::Linear(g),
        None,
        7,
        3,
        2,
        "linear",
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let wq = random(&mut rng, outputs * inputs, 90, 0.1);
    for batch in [vec![2, 0, 1], vec![6], vec![4, 3]] {
        let z = run.backend.forward_values(&batch, &wq).expect("forward");
        let want: Vec<i64> = batch
            .iter()
            .flat_map(|&i| {
                wq.chunks_exact(inputs)
                    .map(|row| row.iter().zip(&run.samples.xq[i]).map(|(w, x)| w * x).sum())
                    .collect::<Vec<i64>>()
            })
            .collect();
        assert_eq!(z, want, "forward");
        let dq = random(&mut rng, batch.len() * outputs, 700, 0.3);
        let got = run
            .backend
            .weight_gradient_values(&batch, &dq)
            .expect("gradient");
        let mut want = vec![0i64; outputs * inputs];
        for (d, &i) in dq.chunks_exact(outputs).zip(&batch) {
            for (o, &dv) in d.iter().enumerate() {
                for (q, &x) in run.samples.xq[i].iter().enumerate() {
                    want[o * inputs + q] += dv * x;
                }
            }
        }
        assert_eq!(got, want, "gradient of {batch:?}");
    }
    // A batch across shards is refused.
    assert!(run.backend.forward_values(&[2, 3], &wq).is_err());
    std::fs::remove_dir_all(&run.dir).ok();
}

#[test]
fn a_dense_layer_equals_plain_integers_on_ristretto() {
    check_linear(Ristretto255);
}

#[test]
fn a_dense_layer_equals_plain_integers_on_the_zp_test_group() {
    check_linear(ModpGroup::insecure_test_group());
}

#[test]
fn a_dense_layer_needs_feature_major_ciphertexts() {
    let g = ConvGeometry::new(1, 4, 3, 2, 3, 1, 1, 1).expect("geometry");
    let run = setup(
        Ristretto255,
        FirstLayerGeometry::Conv(g),
        Some([1, 4, 3]),
        4,
        2,
        2,
        "no-feature-major",
    );
    let keys = run.session.in_process_keys(&run.authority);
    let table =
        Arc::new(cryptonn::fe::dlog::BabyStepTable::new(Ristretto255, 1 << 8).expect("table"));
    let err = run
        .session
        .server(
            keys,
            &run.path,
            table,
            QuantConfig {
                scale_x: 16.0,
                ..QuantConfig::default()
            },
            FirstLayerGeometry::Linear(LinearGeometry::new(12, 3).expect("geometry")),
        )
        .unwrap_err();
    assert!(err.to_string().contains("feature-major"), "{err}");
    std::fs::remove_dir_all(&run.dir).ok();
}
