//! Noisy key domains at the authority (the noise defence against inference from intermediate values): ciphertext-bound noisy keys decrypt
//! to `<x, y> + e`, the same `(ciphertext, y)` always gets the same `e`, only registered
//! ciphertexts are served, plain keys are refused, and every release is charged to its sample
//! with the stated sensitivities until the budget refuses.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use cryptonn::coordinator::accountant::{
    epsilon_for, gaussian_rdp_unit, Granularity, PrivacyBudget,
};
use cryptonn::coordinator::{
    Authority, CoordinatorError, DomainAccess, DomainConfig, FeipKeyRequest, KeyVectorData,
    NoiseConfig, NoisyCiphertextRegistration, NoisyKeyItem, NoisyKeyRequest, PolicyConfig,
    RequesterId,
};
use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::feip::{Ciphertext, Feip, FeipParams};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const N: usize = 16;
const X: u64 = 255;

struct Fixture {
    authority: Authority<Ristretto255>,
    domain: cryptonn::coordinator::DomainId,
    feip: Feip<Ristretto255>,
    xs: Vec<Vec<i64>>,
    cts: Vec<Ciphertext<Ristretto255>>,
    owner: RequesterId,
    server: RequesterId,
    dlog: DlogSolver<Ristretto255>,
}

fn fixture(sigma: DiscreteGaussian) -> Fixture {
    let mut authority = Authority::from_seed(Ristretto255, [5; 32]);
    let params = FeipParams::new(N, X, 1000).unwrap();
    let owner = RequesterId::new("owner");
    let server = RequesterId::new("server");
    let domain = authority
        .create_domain_for(
            DomainConfig::new(params).with_policy(PolicyConfig::permissive()),
            DomainAccess::new(owner.clone(), server.clone()),
        )
        .unwrap();
    authority
        .make_noisy(
            domain,
            NoiseConfig {
                sigma,
                coordinate_range: 2 * X,
            },
        )
        .unwrap();
    let pk = authority.public_key(domain).unwrap();
    let feip = Feip::new(Ristretto255, params);
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let xs: Vec<Vec<i64>> = (0..4)
        .map(|s| {
            (0..N as i64)
                .map(|i| (i * 31 + s * 7) % 511 - 255)
                .collect()
        })
        .collect();
    let cts: Vec<_> = xs
        .iter()
        .map(|x| feip.encrypt(&pk.feip, x, &mut rng).unwrap())
        .collect();
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 12).unwrap());
    let dlog = DlogSolver::new(table, 1 << 26).unwrap();
    Fixture {
        authority,
        domain,
        feip,
        xs,
        cts,
        owner,
        server,
        dlog,
    }
}

impl Fixture {
    fn register(&mut self) {
        let ciphertexts = self
            .cts
            .iter()
            .enumerate()
            .map(|(i, ct)| (Ristretto255.element_to_bytes(ct.ct0()), 100 + i as u64))
            .collect();
        let reg = NoisyCiphertextRegistration {
            domain: self.domain,
            ciphertexts,
        };
        assert_eq!(
            self.authority
                .register_noisy_ciphertexts(&self.owner, &reg)
                .unwrap(),
            4
        );
    }

    fn request(&self, vectors: Vec<Vec<(usize, i64)>>, cts: &[usize]) -> NoisyKeyRequest {
        let count = vectors.len() as u32;
        NoisyKeyRequest {
            keys: FeipKeyRequest {
                domain: self.domain,
                vectors: vectors.into_iter().map(KeyVectorData::Sparse).collect(),
            },
            ciphertexts: cts
                .iter()
                .map(|&c| NoisyKeyItem {
                    ct0: Ristretto255.element_to_bytes(self.cts[c].ct0()),
                    vectors: (0..count).collect(),
                })
                .collect(),
        }
    }

    /// Decrypts the response: `values[c][k]` for ciphertext `cts[c]` and vector `k`.
    fn values(&mut self, vectors: &[Vec<(usize, i64)>], cts: &[usize]) -> Vec<Vec<i64>> {
        let req = self.request(vectors.to_vec(), cts);
        let resp = self
            .authority
            .issue_noisy_feip_keys(&self.server, &req)
            .unwrap();
        cts.iter()
            .zip(&resp.keys)
            .map(|(&c, keys)| {
                vectors
                    .iter()
                    .zip(keys)
                    .map(|(y, k)| {
                        self.feip
                            .vartime_noisy_decrypt_sparse(&self.cts[c], y, k, &self.dlog)
                            .unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    fn exact(&self, c: usize, y: &[(usize, i64)]) -> i64 {
        y.iter().map(|&(i, v)| self.xs[c][i] * v).sum()
    }
}

fn vectors() -> Vec<Vec<(usize, i64)>> {
    vec![
        vec![(0, 3), (5, -4), (15, 1)],
        vec![(1, 1)],
        (0..N)
            .map(|i| (i, i as i64 - 8))
            .filter(|t| t.1 != 0)
            .collect(),
    ]
}

#[test]
fn noisy_keys_give_the_inner_product_plus_repeatable_noise() {
    let mut f = fixture(DiscreteGaussian::new(40, 1).unwrap());
    f.register();
    let ys = vectors();
    let first = f.values(&ys, &[0, 1, 2, 3]);
    let again = f.values(&ys, &[2, 0]);
    // The same (ciphertext, y) gets the same noise, whatever the request.
    assert_eq!(again[0], first[2]);
    assert_eq!(again[1], first[0]);
    let mut noises = Vec::new();
    for (c, row) in first.iter().enumerate() {
        for (y, &v) in ys.iter().zip(row) {
            noises.push(v - f.exact(c, y));
        }
    }
    // σ = 40: 12 noise values, not all zero, none beyond 8σ.
    assert!(noises.iter().any(|&e| e != 0), "{noises:?}");
    assert!(noises.iter().all(|e| e.abs() < 320), "{noises:?}");
    // Different ciphertexts of the same y get independent noise.
    assert!(
        noises
            .chunks(3)
            .map(|c| c[0])
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1
    );
    // Each release is charged to its sample: per pixel Δ = 2X·max|y|, per image Δ = 2X·‖y‖₁.
    let sigma = 40.0;
    let r = 2.0 * X as f64;
    let pixel: f64 = [4.0, 1.0, 8.0]
        .iter()
        .map(|m| gaussian_rdp_unit(r * m, sigma))
        .sum();
    let image: f64 = [8.0, 1.0, 64.0]
        .iter()
        .map(|l| gaussian_rdp_unit(r * l, sigma))
        .sum();
    let loss = f.authority.accountant().loss(100);
    assert_eq!(loss.releases, 6); // three vectors, asked twice for sample 100
    assert!((loss.pixel - 2.0 * pixel).abs() < 1e-9 * pixel);
    assert!((loss.image - 2.0 * image).abs() < 1e-9 * image);
    assert_eq!(f.authority.accountant().loss(101).releases, 3);
    let eps = loss.epsilon(Granularity::Image, 1e-5);
    assert!((eps - epsilon_for(2.0 * image, 1e-5)).abs() < 1e-12);
    assert!(loss.epsilon(Granularity::Pixel, 1e-5) < eps);
}

#[test]
fn a_noisy_domain_refuses_plain_keys_and_unregistered_ciphertexts() {
    let mut f = fixture(DiscreteGaussian::new(2, 1).unwrap());
    // Plain keys would reveal the noise: refused.
    let plain = FeipKeyRequest {
        domain: f.domain,
        vectors: vec![KeyVectorData::Sparse(vec![(0, 1), (1, 1)])],
    };
    assert!(matches!(
        f.authority.issue_feip_keys(&f.server, &plain),
        Err(CoordinatorError::NoisyDomain(_))
    ));
    // Nothing registered yet: the authority is no oracle on arbitrary ct0.
    let req = f.request(vectors(), &[0]);
    assert!(matches!(
        f.authority.issue_noisy_feip_keys(&f.server, &req),
        Err(CoordinatorError::UnregisteredCiphertext { index: 0, .. })
    ));
    // Only the owner registers.
    let reg = NoisyCiphertextRegistration {
        domain: f.domain,
        ciphertexts: vec![(Ristretto255.element_to_bytes(f.cts[0].ct0()), 1)],
    };
    assert!(matches!(
        f.authority.register_noisy_ciphertexts(&f.server, &reg),
        Err(CoordinatorError::NotPermitted { .. })
    ));
    f.register();
    // The same ct0 under another sample id is refused.
    let twice = NoisyCiphertextRegistration {
        domain: f.domain,
        ciphertexts: vec![(Ristretto255.element_to_bytes(f.cts[0].ct0()), 7)],
    };
    assert!(f
        .authority
        .register_noisy_ciphertexts(&f.owner, &twice)
        .is_err());
    // Another requester gets nothing.
    assert!(matches!(
        f.authority
            .issue_noisy_feip_keys(&RequesterId::new("other"), &f.request(vectors(), &[0])),
        Err(CoordinatorError::NotPermitted { .. })
    ));
    // A vector index beyond the request is a typed error.
    let mut bad = f.request(vectors(), &[0]);
    bad.ciphertexts[0].vectors.push(9);
    assert!(matches!(
        f.authority.issue_noisy_feip_keys(&f.server, &bad),
        Err(CoordinatorError::ShapeMismatch { .. })
    ));
    // A plain domain serves no noisy keys.
    let mut other = Authority::from_seed(Ristretto255, [1; 32]);
    let d = other
        .create_domain(DomainConfig::new(FeipParams::new(N, X, 10).unwrap()))
        .unwrap();
    let mut req = f.request(vectors(), &[0]);
    req.keys.domain = d;
    assert!(matches!(
        other.issue_noisy_feip_keys(&f.server, &req),
        Err(CoordinatorError::NotNoisy(_))
    ));
}

#[test]
fn the_budget_refuses_a_request_and_charges_nothing() {
    let mut f = fixture(DiscreteGaussian::new(10_000, 1).unwrap());
    f.register();
    // σ = 10^4, y = (1) on one pixel: Δ_image = 510, S = 510²/(2·10^8) = 1.3e-3 per release.
    let unit = gaussian_rdp_unit(510.0, 10_000.0);
    let budget = PrivacyBudget {
        epsilon: epsilon_for(unit * 10.5, 1e-5),
        delta: 1e-5,
        granularity: Granularity::Image,
    };
    f.authority.set_privacy_budget(Some(budget));
    let y = vec![vec![(3, 1)]];
    for _ in 0..10 {
        f.values(&y, &[0]);
    }
    assert_eq!(f.authority.accountant().loss(100).releases, 10);
    let req = f.request(y.clone(), &[0]);
    let err = f
        .authority
        .issue_noisy_feip_keys(&f.server, &req)
        .unwrap_err();
    match err {
        CoordinatorError::PrivacyBudgetExceeded {
            sample, epsilon, ..
        } => {
            assert_eq!(sample, 100);
            assert!(epsilon > budget.epsilon);
        }
        other => panic!("{other}"),
    }
    assert_eq!(f.authority.accountant().loss(100).releases, 10);
    // Other samples still have budget.
    f.values(&y, &[1]);
    assert_eq!(f.authority.accountant().loss(101).releases, 1);
}

#[test]
fn sigma_zero_releases_the_exact_value() {
    let mut f = fixture(DiscreteGaussian::zero());
    f.register();
    let ys = vectors();
    let v = f.values(&ys, &[3]);
    for (y, &got) in ys.iter().zip(&v[0]) {
        assert_eq!(got, f.exact(3, y));
    }
    // ... and the accountant says so: ε = ∞.
    assert_eq!(
        f.authority
            .accountant()
            .loss(103)
            .epsilon(Granularity::Pixel, 1e-5),
        f64::INFINITY
    );
}
