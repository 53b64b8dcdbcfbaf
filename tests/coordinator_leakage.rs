//! Leakage, measured: what a server reconstructs from the keys it obtained and the inner
//! products it decrypted, with and without the default policy.
//!
//! The inputs are MNIST-like: integer pixels in `0..=255`. Every figure printed here (run with
//! `cargo test --test coordinator_leakage -- --nocapture`) is quoted in
//! `docs/what-the-server-learns.md`.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use cryptonn::coordinator::leakage::reconstruct;
use cryptonn::coordinator::{
    Authority, Client, CoordinatorError, DomainConfig, DomainId, InProcessKeyService,
    KeyVectorData, PolicyConfig, PolicyRefusal, RequesterId, Server,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use ndarray::{concatenate, Array2, Axis};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type S = Server<Ristretto255, InProcessKeyService<Ristretto255>>;

fn table() -> Arc<BabyStepTable<Ristretto255>> {
    static T: OnceLock<Arc<BabyStepTable<Ristretto255>>> = OnceLock::new();
    T.get_or_init(|| Arc::new(BabyStepTable::new(Ristretto255, 1 << 14).unwrap()))
        .clone()
}

/// Authority, one domain, a client that encrypted `x` (n x m), and a server.
fn world(
    n: usize,
    policy: PolicyConfig,
    x: &Array2<i64>,
) -> (
    DomainId,
    cryptonn::coordinator::EncryptedMatrix<Ristretto255>,
    S,
) {
    let auth = Arc::new(Mutex::new(Authority::from_seed(
        Ristretto255,
        [n as u8; 32],
    )));
    let cfg = DomainConfig::new(FeipParams::new(n, 255, 127).unwrap()).with_policy(policy);
    let domain = auth.lock().unwrap().create_domain(cfg).unwrap();
    let pk = auth.lock().unwrap().public_key(domain).unwrap();
    let enc = Client::from_seed(Ristretto255, pk, [1; 32])
        .unwrap()
        .encrypt_matrix(x)
        .unwrap();
    let keys = InProcessKeyService::new(auth, RequesterId::new("curious-server"));
    (domain, enc, Server::new(keys, table()))
}

fn pixels(rng: &mut ChaCha20Rng, n: usize, m: usize) -> Array2<i64> {
    Array2::from_shape_fn((n, m), |_| rng.gen_range(0..=255))
}

fn rows_as_keys(w: &Array2<i64>) -> Vec<KeyVectorData> {
    w.rows()
        .into_iter()
        .map(|r| KeyVectorData::from_dense_compact(&r.to_vec()))
        .collect()
}

/// Mean recovered fraction and relative error over the columns of `x`.
fn measure(n: usize, w: &Array2<i64>, y: &Array2<i64>, x: &Array2<i64>) -> (usize, f64, f64, bool) {
    let recs = reconstruct(n, &rows_as_keys(w), y.view()).unwrap();
    let m = recs.len() as f64;
    let frac = recs.iter().map(|r| r.recovered_fraction()).sum::<f64>() / m;
    let err = recs
        .iter()
        .zip(x.columns())
        .map(|(r, c)| r.relative_error(&c.to_vec()))
        .sum::<f64>()
        / m;
    // Every value claimed exact must be the true value.
    for (r, c) in recs.iter().zip(x.columns()) {
        for (e, t) in r.exact().iter().zip(c.iter()) {
            if let Some(v) = e {
                assert_eq!(v, t, "leakage analysis claimed a wrong exact value");
            }
        }
    }
    let complete = recs.iter().all(|r| r.is_complete());
    (recs[0].rank(), frac, err, complete)
}

/// Without a policy, a server that asks for random dense keys recovers every input exactly as
/// soon as the rank of its keys reaches n — and not a single coordinate before.
#[test]
fn unrestricted_keys_recover_x_exactly_at_full_rank() {
    let n = 64;
    let mut rng = ChaCha20Rng::seed_from_u64(64);
    let x = pixels(&mut rng, n, 4);
    let (domain, enc, server) = world(n, PolicyConfig::permissive(), &x);
    let mut w = Array2::<i64>::zeros((0, n));
    let mut y = Array2::<i64>::zeros((0, 4));
    eprintln!("unrestricted, n = {n}, random dense keys in [-127, 127]:");
    for step in [16, 16, 16, 15, 1] {
        let batch = Array2::from_shape_fn((step, n), |_| rng.gen_range(-127..=127));
        let keys = server.request_keys(domain, &batch).unwrap();
        let out = server.secure_matmul_with_keys(&keys, &enc).unwrap();
        w = concatenate![Axis(0), w, batch];
        y = concatenate![Axis(0), y, out];
        let (rank, frac, err, complete) = measure(n, &w, &y, &x);
        eprintln!(
            "  keys {:>3}  rank {rank:>3}  recovered {frac:.3}  rel. error {err:.3}",
            w.nrows()
        );
        assert_eq!(rank, w.nrows());
        if rank < n {
            assert_eq!(frac, 0.0);
            assert!(err > 0.0);
        } else {
            assert!(complete);
            assert_eq!(err, 0.0);
        }
    }
}

/// The same at MNIST size, n = 784, with convolution-like sparse keys (36 non-zeros, like the
/// fused conv1 + average-pool keys), timed.
#[test]
fn unrestricted_sparse_keys_recover_mnist_sized_inputs() {
    let n = 784;
    let mut rng = ChaCha20Rng::seed_from_u64(784);
    let x = pixels(&mut rng, n, 2);
    let (domain, enc, server) = world(n, PolicyConfig::permissive(), &x);
    let mut idx: Vec<usize> = (0..n).collect();
    let w = Array2::from_shape_fn((n + 16, n), |_| 0i64);
    let mut w = w;
    for mut row in w.rows_mut() {
        idx.shuffle(&mut rng);
        for &i in &idx[..36] {
            row[i] = rng.gen_range(-127..=127);
        }
    }
    let keys = server.request_keys(domain, &w).unwrap();
    let y = server.secure_matmul_with_keys(&keys, &enc).unwrap();
    let t = Instant::now();
    let (rank, frac, err, complete) = measure(n, &w, &y, &x);
    eprintln!(
        "unrestricted, n = 784, {} sparse keys (36 non-zeros): rank {rank}, recovered {frac:.3}, rel. error {err:.2e}, analysis {:.2} s",
        w.nrows(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(rank, n);
    assert!(complete);
    assert_eq!(err, 0.0);
}

/// Under the default policy: probes are refused, the rank stops at n/2, and even a server that
/// picks its keys to concentrate on a block of coordinates determines at most n/2 of them.
#[test]
fn default_policy_bounds_what_can_be_recovered() {
    let n = 64;
    let cap = n / 2;
    let mut rng = ChaCha20Rng::seed_from_u64(65);
    let x = pixels(&mut rng, n, 4);

    // Attack 1: one-hot probes.
    let (_, enc, server) = world(n, PolicyConfig::default(), &x);
    let mut probe = Array2::zeros((1, n));
    probe[[0, 0]] = 1;
    assert!(matches!(
        server.secure_matmul(&probe, &enc),
        Err(CoordinatorError::Refused {
            reason: PolicyRefusal::TooFewNonZero { got: 1, min: 4 },
            ..
        })
    ));

    // Attack 2: weight-4 circulant vectors (1, 2, 3, 4) on the first `cap` coordinates, one
    // request at a time, until refused. They span that block, so each of its coordinates
    // becomes determined: the cap bounds the worst case, and this attack meets the bound.
    let block = cap;
    let mut w = Array2::<i64>::zeros((0, n));
    let mut y = Array2::<i64>::zeros((0, 4));
    let mut refused_at = None;
    for i in 0..block {
        let mut v = Array2::zeros((1, n));
        for (d, c) in [1, 2, 3, 4].into_iter().enumerate() {
            v[[0, (i + d) % block]] = c;
        }
        match server.secure_matmul(&v, &enc) {
            Ok(out) => {
                w = concatenate![Axis(0), w, v];
                y = concatenate![Axis(0), y, out];
            }
            Err(CoordinatorError::Refused {
                reason: PolicyRefusal::RankCapReached { rank, cap: c },
                ..
            }) => {
                assert_eq!((rank, c), (cap + 1, cap));
                refused_at = Some(i);
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    // The cap (32) is met with the block's own 32 vectors; the next direction is refused.
    assert_eq!(refused_at, None);
    let mut v = Array2::zeros((1, n));
    for d in 0..4 {
        v[[0, cap + d]] = 1;
    }
    assert!(matches!(
        server.secure_matmul(&v, &enc),
        Err(CoordinatorError::Refused {
            reason: PolicyRefusal::RankCapReached { .. },
            ..
        })
    ));
    let (rank, frac, err, complete) = measure(n, &w, &y, &x);
    eprintln!(
        "default policy, n = {n}, weight-4 block attack: served {} keys, rank {rank}, recovered {frac:.3}, rel. error {err:.3}",
        w.nrows()
    );
    assert_eq!(rank, cap);
    assert!(!complete);
    assert_eq!(frac, 0.5);
    assert!(err > 0.1);

    // Attack 3: training-like random dense keys, as many as the cap allows.
    let (domain, enc, server) = world(n, PolicyConfig::default(), &x);
    let w = Array2::from_shape_fn((cap, n), |_| rng.gen_range(-127..=127));
    let y = server.secure_matmul(&w, &enc).unwrap();
    let more = Array2::from_shape_fn((1, n), |_| rng.gen_range(1..=127));
    assert!(server.request_keys(domain, &more).is_err());
    let (rank, frac, err, complete) = measure(n, &w, &y, &x);
    eprintln!(
        "default policy, n = {n}, {cap} random dense keys (cap): rank {rank}, recovered {frac:.3}, rel. error {err:.3}"
    );
    assert_eq!(rank, cap);
    assert_eq!(frac, 0.0);
    assert!(!complete && err > 0.1);
}

/// The keys of LeNet-5's first layer (conv1 fused with 2x2 average pooling: 6 channels x 12 x 12
/// outputs, each a 6x6 window at stride 2 of the 28x28 image), and those of its weight gradient,
/// all lie in the span of the 729 indicators of 2x2 boxes (u..u+1, v..v+1): the fused kernel is
/// the 5x5 kernel convolved with a 2x2 box, and the gradient keys spread the pooled gradient
/// over 2x2 blocks. So a server running the forward pass learns every 2x2 box sum of each image
/// exactly: the image up to the 55-dimensional space of patterns whose 2x2 box sums all vanish.
/// This is architectural; the policy cannot prevent it for the server that trains on the data
/// (per-batch domains only keep the keys of one batch useless on the others).
#[test]
fn lenet_conv1_keys_reveal_every_2x2_box_sum() {
    let n = 28 * 28;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let x = pixels(&mut rng, n, 2);
    let mut w = Array2::<i64>::zeros((6 * 12 * 12, n));
    for c in 0..6 {
        let k5 = Array2::from_shape_fn((5, 5), |_| rng.gen_range(-20i64..=20));
        // Fused kernel: the sum of the four shifts of the 5x5 kernel (pool of 2x2 conv outputs).
        let mut k6 = Array2::<i64>::zeros((6, 6));
        for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            for a in 0..5 {
                for b in 0..5 {
                    k6[[a + di, b + dj]] += k5[[a, b]];
                }
            }
        }
        for i in 0..12 {
            for j in 0..12 {
                let row = c * 144 + i * 12 + j;
                for a in 0..6 {
                    for b in 0..6 {
                        w[[row, (2 * i + a) * 28 + 2 * j + b]] = k6[[a, b]];
                    }
                }
            }
        }
    }
    // The server in a per-batch domain (no rank cap, only all-zero vectors refused) gets these keys.
    let (domain, enc, server) = world(n, PolicyConfig::per_batch(), &x);
    let keys = server.request_keys(domain, &w).unwrap();
    let y = server.secure_matmul_with_keys(&keys, &enc).unwrap();
    assert_eq!(y, w.dot(&x));
    let t = Instant::now();
    let (rank, frac, err, complete) = measure(n, &w, &y, &x);
    eprintln!(
        "LeNet conv1+pool keys (864 x 784, 36 non-zeros): rank {rank}, recovered {frac:.3}, rel. error {err:.2e}, analysis {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert!(rank < n && !complete);

    // One training step adds the weight-gradient keys: for each channel c and kernel offset
    // (a, b), dK[c][a][b] = Σ_{p,q<24} δ[c][p/2][q/2] · x[p+a][q+b] (δ the pooled-output
    // gradient). With them the server's keys span the whole image space.
    let mut g = Array2::<i64>::zeros((6 * 25, n));
    for c in 0..6 {
        let delta = Array2::from_shape_fn((12, 12), |_| rng.gen_range(-50i64..=50));
        for a in 0..5 {
            for b in 0..5 {
                for p in 0..24 {
                    for q in 0..24 {
                        g[[c * 25 + a * 5 + b, (p + a) * 28 + q + b]] = delta[[p / 2, q / 2]];
                    }
                }
            }
        }
    }
    let keys = server.request_keys(domain, &g).unwrap();
    let yg = server.secure_matmul_with_keys(&keys, &enc).unwrap();
    let wall = concatenate![Axis(0), w, g];
    let yall = concatenate![Axis(0), y, yg];
    let (rank2, frac2, err2, complete2) = measure(n, &wall, &yall, &x);
    eprintln!(
        "LeNet conv1+pool forward + weight-gradient keys ({} x 784): rank {rank2}, recovered {frac2:.3}, rel. error {err2:.2e}",
        wall.nrows()
    );
    assert_eq!(rank, 27 * 27);
    assert_eq!(rank2, 27 * 27);
    assert!(!complete2 && frac2 == 0.0);
    assert!(err2 < 0.2);
    // Adding the keys of the 2x2 box sums themselves changes nothing: the server already knew
    // them.
    let boxes = Array2::from_shape_fn((27 * 27, n), |(r, i)| {
        let (u, v, p, q) = (r / 27, r % 27, i / 28, i % 28);
        i64::from((p == u || p == u + 1) && (q == v || q == v + 1))
    });
    let (rank3, _, _, _) = measure(
        n,
        &concatenate![Axis(0), wall, boxes],
        &concatenate![Axis(0), yall, boxes.dot(&x)],
        &x,
    );
    assert_eq!(rank3, 27 * 27);

    // Under the default policy (rank cap n/2) the same forward pass is refused.
    let (domain, _, server) = world(n, PolicyConfig::default(), &x);
    assert!(matches!(
        server.request_keys(domain, &w),
        Err(CoordinatorError::Refused {
            reason: PolicyRefusal::RankCapReached { .. },
            ..
        })
    ));
}
