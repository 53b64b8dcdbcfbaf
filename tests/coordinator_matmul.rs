//! Secure matrix products and element-wise operations against plaintext references.
//!
//! Every secure result is compared with the same product computed in the clear with ndarray
//! (`w.dot(&x)` over `i64`), which is exact for these bounds.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::{
    Authority, Client, CoordinatorError, DomainConfig, DomainId, FeboKeyRequest, FeipKeyRequest,
    InProcessKeyService, KeyVectorData, PolicyConfig, RequesterId, Server, SharedAuthority,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::encoding::FixedPoint;
use cryptonn::fe::error::FeError;
use cryptonn::fe::febo::{FeboOp, FeboParams};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use ndarray::{array, Array2};
use proptest::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn ristretto_table() -> Arc<BabyStepTable<Ristretto255>> {
    static T: OnceLock<Arc<BabyStepTable<Ristretto255>>> = OnceLock::new();
    T.get_or_init(|| Arc::new(BabyStepTable::new(Ristretto255, 1 << 14).unwrap()))
        .clone()
}

struct Setup<G: PrimeOrderGroup> {
    authority: SharedAuthority<G>,
    domain: DomainId,
    client: Client<G>,
    server: Server<G, InProcessKeyService<G>>,
}

fn setup<G: PrimeOrderGroup>(
    group: G,
    config: DomainConfig,
    table: Arc<BabyStepTable<G>>,
    seed: u8,
) -> Setup<G> {
    let authority = Arc::new(Mutex::new(Authority::from_seed(group.clone(), [seed; 32])));
    let domain = authority.lock().unwrap().create_domain(config).unwrap();
    let pk = authority.lock().unwrap().public_key(domain).unwrap();
    let client = Client::from_seed(group, pk, [seed.wrapping_add(1); 32]).unwrap();
    let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("server"));
    Setup {
        authority,
        domain,
        client,
        server: Server::new(keys, table),
    }
}

fn permissive(n: usize, x: u64, y: u64) -> DomainConfig {
    DomainConfig::new(FeipParams::new(n, x, y).unwrap()).with_policy(PolicyConfig::permissive())
}

fn random_matrix(rng: &mut ChaCha20Rng, shape: (usize, usize), bound: i64) -> Array2<i64> {
    Array2::from_shape_fn(shape, |_| rng.gen_range(-bound..=bound))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// W·X for random shapes (up to 12x24 · 24x6) and signed entries.
    #[test]
    fn secure_matmul_equals_plaintext(
        k in 1usize..=12, n in 1usize..=24, m in 1usize..=6, seed in any::<u64>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut s = setup(Ristretto255, permissive(n, 255, 255), ristretto_table(), 3);
        let x = random_matrix(&mut rng, (n, m), 255);
        let w = random_matrix(&mut rng, (k, n), 255);
        let enc = s.client.encrypt_matrix(&x).unwrap();
        prop_assert_eq!(enc.shape(), (n, m));
        prop_assert_eq!(s.server.secure_matmul(&w, &enc).unwrap(), w.dot(&x));
    }
}

/// The largest shape of the issue: W (128x128) times X (128x32), signed 8-bit entries; half of
/// W's rows sparse (sent in sparse form).
#[test]
fn secure_matmul_128x128() {
    let mut rng = ChaCha20Rng::seed_from_u64(128);
    let mut s = setup(
        Ristretto255,
        permissive(128, 127, 127),
        ristretto_table(),
        5,
    );
    let x = random_matrix(&mut rng, (128, 32), 127);
    let mut w = random_matrix(&mut rng, (128, 128), 127);
    for (r, mut row) in w.rows_mut().into_iter().enumerate() {
        if r % 2 == 0 {
            row.iter_mut().skip(20).for_each(|v| *v = 0);
        }
    }
    let enc = s.client.encrypt_matrix(&x).unwrap();
    assert_eq!(s.server.secure_matmul(&w, &enc).unwrap(), w.dot(&x));
}

/// Keys are requested once and reused for several encrypted matrices; the result does not
/// depend on the number of threads.
#[test]
fn keys_reused_and_thread_count_irrelevant() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut s = setup(Ristretto255, permissive(16, 100, 100), ristretto_table(), 7);
    let w = random_matrix(&mut rng, (40, 16), 100);
    let batch = s.server.request_keys(s.domain, &w).unwrap();
    for _ in 0..2 {
        let x = random_matrix(&mut rng, (16, 5), 100);
        let enc = s.client.encrypt_matrix(&x).unwrap();
        let parallel = s.server.secure_matmul_with_keys(&batch, &enc).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let serial = pool
            .install(|| s.server.secure_matmul_with_keys(&batch, &enc))
            .unwrap();
        assert_eq!(parallel, w.dot(&x));
        assert_eq!(serial, parallel);
    }
    // 40 keys issued once, not per matrix.
    assert_eq!(s.authority.lock().unwrap().audit_log().len(), 40);
}

/// A seeded client produces the same ciphertexts whatever the number of threads.
#[test]
fn encryption_is_deterministic_given_the_seed() {
    let x = array![[1, 2], [3, 4], [5, 6]];
    let s = setup(Ristretto255, permissive(3, 10, 10), ristretto_table(), 1);
    let pk = s.authority.lock().unwrap().public_key(s.domain).unwrap();
    let mut a = Client::from_seed(Ristretto255, pk.clone(), [9; 32]).unwrap();
    let mut b = Client::from_seed(Ristretto255, pk, [9; 32]).unwrap();
    let ea = a.encrypt_matrix(&x).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let eb = pool.install(|| b.encrypt_matrix(&x)).unwrap();
    assert_eq!(ea.ciphertexts(), eb.ciphertexts());
    // ... and a second encryption of the same data differs (fresh randomness).
    assert_ne!(
        a.encrypt_matrix(&x).unwrap().ciphertexts(),
        ea.ciphertexts()
    );
}

#[test]
fn float_matmul_through_fixed_point() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut s = setup(
        Ristretto255,
        permissive(8, 1000, 1000),
        ristretto_table(),
        8,
    );
    let x = Array2::from_shape_fn((8, 3), |_| rng.gen_range(-1.0..1.0));
    let w = Array2::from_shape_fn((5, 8), |_| rng.gen_range(-1.0..1.0));
    let xc = FixedPoint::with_bound(1000.0, 1000).unwrap();
    let wc = FixedPoint::with_bound(1000.0, 1000).unwrap();
    let enc = s.client.encrypt_matrix_f64(&x, xc).unwrap();
    let got = s.server.secure_matmul_f64(&w, &wc, &enc).unwrap();
    // Exactly the decoded integer product of the encodings.
    let xi = x.mapv(|v| xc.encode(v).unwrap());
    let wi = w.mapv(|v| wc.encode(v).unwrap());
    let want = wi.dot(&xi).mapv(|z| z as f64 / 1e6);
    assert_eq!(got, want);
    // ... which is close to the real product.
    let real = w.dot(&x);
    assert!(got
        .iter()
        .zip(real.iter())
        .all(|(a, b)| (a - b).abs() < 8.0 * 1e-3));
    // NaN is refused at encoding.
    let mut bad = x.clone();
    bad[[0, 0]] = f64::NAN;
    assert!(matches!(
        s.client.encrypt_matrix_f64(&bad, xc),
        Err(CoordinatorError::Encoding(_))
    ));
}

#[test]
fn bound_violations_are_typed_errors() {
    let mut s = setup(Ristretto255, permissive(3, 10, 10), ristretto_table(), 2);
    // A plaintext entry above X.
    let err = s
        .client
        .encrypt_matrix(&array![[11], [0], [0]])
        .unwrap_err();
    assert!(matches!(
        err,
        CoordinatorError::Fe(FeError::PlaintextOutOfBound {
            value: 11,
            bound: 10,
            ..
        })
    ));
    let enc = s.client.encrypt_matrix(&array![[10], [-10], [7]]).unwrap();
    // A weight above Y.
    let err = s
        .server
        .secure_matmul(&array![[1, -11, 0]], &enc)
        .unwrap_err();
    assert!(matches!(
        err,
        CoordinatorError::Fe(FeError::KeyOutOfBound {
            value: -11,
            bound: 10,
            ..
        })
    ));
    // Wrong number of columns of W, wrong number of rows of X.
    assert!(matches!(
        s.server.secure_matmul(&array![[1, 1]], &enc),
        Err(CoordinatorError::ShapeMismatch {
            expected: 3,
            got: 2,
            ..
        })
    ));
    assert!(matches!(
        s.client.encrypt_matrix(&array![[1], [2]]),
        Err(CoordinatorError::ShapeMismatch { .. })
    ));
    // A product outside the server's discrete-log range: 10·10 + 10·10 + 7·10 = 270 > 100.
    let table = Arc::new(BabyStepTable::new(Ristretto255, 16).unwrap());
    let keys = InProcessKeyService::new(Arc::clone(&s.authority), RequesterId::new("small"));
    let small = Server::new(keys, table).with_dlog_bound(100);
    let err = small
        .secure_matmul(&array![[1, 1, 1], [10, -10, 10]], &enc)
        .unwrap_err();
    assert!(matches!(
        err,
        CoordinatorError::ProductOutOfRange {
            row: 1,
            column: 0,
            bound: 100
        }
    ));
    // Within range it works with the same small server.
    assert_eq!(
        small.secure_matmul(&array![[1, 1, 1]], &enc).unwrap(),
        array![[7]]
    );
}

#[test]
fn keys_of_another_domain_are_refused() {
    let mut s = setup(Ristretto255, permissive(4, 10, 10), ristretto_table(), 11);
    let other = s
        .authority
        .lock()
        .unwrap()
        .create_domain(permissive(4, 10, 10))
        .unwrap();
    let enc = s
        .client
        .encrypt_matrix(&array![[1], [2], [3], [4]])
        .unwrap();
    let batch = s.server.request_keys(other, &array![[1, 1, 1, 1]]).unwrap();
    assert!(matches!(
        s.server.secure_matmul_with_keys(&batch, &enc),
        Err(CoordinatorError::DomainMismatch { .. })
    ));
    // Unknown domains and malformed requests are typed errors too.
    let ks = s.server.key_service();
    use cryptonn::coordinator::KeyService;
    let req = FeipKeyRequest {
        domain: DomainId(99),
        vectors: vec![KeyVectorData::Dense(vec![1, 1, 1, 1])],
    };
    assert!(matches!(
        ks.feip_keys(&req),
        Err(CoordinatorError::UnknownDomain(DomainId(99)))
    ));
    let req = FeipKeyRequest {
        domain: s.domain,
        vectors: vec![KeyVectorData::Sparse(vec![(2, 1), (1, 1)])],
    };
    assert!(matches!(
        ks.feip_keys(&req),
        Err(CoordinatorError::Fe(FeError::InvalidSparseIndex { .. }))
    ));
    let req = FeipKeyRequest {
        domain: s.domain,
        vectors: vec![],
    };
    assert!(matches!(
        ks.feip_keys(&req),
        Err(CoordinatorError::Empty(_))
    ));
}

#[test]
fn febo_elementwise_operations() {
    let febo = FeboParams::new(1000, 100).unwrap();
    let mut s = setup(
        Ristretto255,
        permissive(2, 10, 10).with_febo(febo),
        ristretto_table(),
        12,
    );
    let x = array![[-84, 0, 7], [1000, -1000, 42]];
    let enc = s.client.febo_encrypt_matrix(&x).unwrap();
    // The data owner registers its ciphertexts' commitments: FEBO keys exist for nothing else.
    {
        use cryptonn::coordinator::KeyService;
        let owner = InProcessKeyService::new(Arc::clone(&s.authority), RequesterId::new("owner"));
        let registration = enc.registration(&Ristretto255);
        assert_eq!(registration.domain, s.domain);
        assert_eq!(owner.register_febo_commitments(&registration).unwrap(), 6);
    }
    let y = array![[5, -3, 7], [100, 7, -6]];
    let server = &s.server;
    assert_eq!(
        server.secure_elementwise(&enc, FeboOp::Add, &y).unwrap(),
        &x + &y
    );
    assert_eq!(
        server.secure_elementwise(&enc, FeboOp::Sub, &y).unwrap(),
        &x - &y
    );
    assert_eq!(
        server.secure_elementwise(&enc, FeboOp::Mul, &y).unwrap(),
        &x * &y
    );
    let d = array![[-7, 1, 7], [10, -3, 6]]; // -1000 / -3 is not an integer
    assert!(matches!(
        server.secure_elementwise(&enc, FeboOp::Div, &d),
        Err(CoordinatorError::Fe(FeError::InexactDivision))
    ));
    let d = array![[-7, 1, 7], [10, -10, 6]];
    assert_eq!(
        server.secure_elementwise(&enc, FeboOp::Div, &d).unwrap(),
        array![[12, 0, 1], [100, 100, 7]]
    );
    // Division by zero and operands above Y are refused by the authority.
    let z = array![[1, 1, 0], [1, 1, 1]];
    assert!(matches!(
        server.secure_elementwise(&enc, FeboOp::Div, &z),
        Err(CoordinatorError::Fe(FeError::DivisionByZero))
    ));
    let big = array![[101, 1, 1], [1, 1, 1]];
    assert!(server.secure_elementwise(&enc, FeboOp::Add, &big).is_err());
    // Every FEBO key is audited.
    let auth = s.authority.lock().unwrap();
    // + - * and two divisions were served (6 keys each); the refused requests issued none.
    assert_eq!(auth.audit_log().issued_in(s.domain).count(), 5 * 6);
    // A commitment that was never registered (here not even a group element) is refused.
    drop(auth);
    use cryptonn::coordinator::{FeboKeyItem, KeyService};
    let req = FeboKeyRequest {
        domain: s.domain,
        items: vec![FeboKeyItem {
            commitment: vec![0xFF; 32],
            op: FeboOp::Add,
            operand: 1,
        }],
    };
    assert!(matches!(
        server.key_service().febo_keys(&req),
        Err(CoordinatorError::UnregisteredCommitment { index: 0, .. })
    ));
    // FEBO on a domain without FEBO.
    let mut plain = setup(Ristretto255, permissive(2, 10, 10), ristretto_table(), 13);
    assert!(matches!(
        plain.client.febo_encrypt_matrix(&x),
        Err(CoordinatorError::FeboDisabled(_))
    ));
}

/// Requests are plain data: they survive a JSON round trip.
#[test]
fn requests_serialise() {
    let req = FeipKeyRequest {
        domain: DomainId(3),
        vectors: vec![
            KeyVectorData::Dense(vec![1, -2]),
            KeyVectorData::Sparse(vec![(0, 5)]),
        ],
    };
    let json = serde_json::to_string(&req).unwrap();
    assert_eq!(serde_json::from_str::<FeipKeyRequest>(&json).unwrap(), req);
    let req = FeboKeyRequest {
        domain: DomainId(1),
        items: vec![cryptonn::coordinator::FeboKeyItem {
            commitment: vec![1, 2, 3],
            op: FeboOp::Div,
            operand: -4,
        }],
    };
    let json = serde_json::to_string(&req).unwrap();
    assert_eq!(serde_json::from_str::<FeboKeyRequest>(&json).unwrap(), req);
}

/// The Z_p* backend, on the insecure test group (fast) ...
#[test]
fn secure_matmul_on_modp_test_group() {
    let g = ModpGroup::insecure_test_group();
    let table = Arc::new(BabyStepTable::new(g.clone(), 1 << 10).unwrap());
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let mut s = setup(g, permissive(6, 50, 50), table, 21);
    let x = random_matrix(&mut rng, (6, 3), 50);
    let w = random_matrix(&mut rng, (4, 6), 50);
    let enc = s.client.encrypt_matrix(&x).unwrap();
    assert_eq!(s.server.secure_matmul(&w, &enc).unwrap(), w.dot(&x));
}

/// ... and one small case on the real RFC 3526 2048-bit group.
#[test]
fn secure_matmul_on_modp2048() {
    let g = ModpGroup::rfc3526_2048();
    let table = Arc::new(BabyStepTable::new(g.clone(), 1 << 8).unwrap());
    let mut s = setup(g, permissive(3, 20, 20), table, 22);
    let x = array![[1, -20], [7, 3], [-5, 20]];
    let w = array![[2, 3, 4], [-20, 1, 0]];
    let enc = s.client.encrypt_matrix(&x).unwrap();
    assert_eq!(s.server.secure_matmul(&w, &enc).unwrap(), w.dot(&x));
}
