//! Noisy key domains at a persistent authority: a restart keeps a domain noisy with the same
//! sigma, keeps its registered ciphertexts, draws the same noise for the same `(ciphertext, y)`
//! (the noise key follows from the master seed), and keeps every sample's privacy ledger, so
//! that a restart can neither average the noise away nor reset a budget.
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::sync::Arc;

use cryptonn::coordinator::accountant::{Granularity, PrivacyBudget, DEFAULT_DELTA};
use cryptonn::coordinator::{
    CoordinatorError, DomainAccess, DomainConfig, DomainId, FeipKeyRequest, KeyVectorData,
    NoiseConfig, NoisyCiphertextRegistration, NoisyKeyItem, NoisyKeyRequest, PersistentAuthority,
    PolicyConfig, RequesterId, StateOptions,
};
use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::feip::{Ciphertext, Feip, FeipParams};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const N: usize = 8;
const X: u64 = 255;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-noisy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn open(dir: &std::path::Path) -> PersistentAuthority<Ristretto255> {
    PersistentAuthority::open(Ristretto255, dir, StateOptions::default()).unwrap()
}

fn ys() -> Vec<Vec<i64>> {
    vec![vec![1, 2, 3, 4, 5, 6, 7, 8], vec![-9, 0, 4, 0, 0, 1, 0, 2]]
}

fn request(domain: DomainId, cts: &[&Ciphertext<Ristretto255>]) -> NoisyKeyRequest {
    NoisyKeyRequest {
        keys: FeipKeyRequest {
            domain,
            vectors: ys().into_iter().map(KeyVectorData::Dense).collect(),
        },
        ciphertexts: cts
            .iter()
            .map(|ct| NoisyKeyItem {
                ct0: Ristretto255.element_to_bytes(ct.ct0()),
                vectors: vec![0, 1],
            })
            .collect(),
    }
}

#[test]
fn a_restart_keeps_noise_registrations_and_the_ledger() {
    let dir = temp_dir("restart");
    let owner = RequesterId::new("owner");
    let server = RequesterId::new("server");
    let params = FeipParams::new(N, X, 100).unwrap();
    let config = NoiseConfig {
        sigma: DiscreteGaussian::new(40, 1).unwrap(),
        coordinate_range: 2 * X,
    };
    let feip = Feip::new(Ristretto255, params);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let xs: Vec<Vec<i64>> = (0..3)
        .map(|s| {
            (0..N as i64)
                .map(|i| (i * 57 + s * 13) % 511 - 255)
                .collect()
        })
        .collect();

    // First life: a noisy domain, two registered ciphertexts, one batch of noisy keys.
    let mut a = open(&dir);
    let domain = a
        .create_domain_for(
            DomainConfig::new(params).with_policy(PolicyConfig::permissive()),
            DomainAccess::new(owner.clone(), server.clone()),
        )
        .unwrap();
    a.make_noisy(domain, config).unwrap();
    let pk = a.public_key(domain).unwrap();
    let cts: Vec<Ciphertext<Ristretto255>> = xs
        .iter()
        .map(|x| feip.encrypt(&pk.feip, x, &mut rng).unwrap())
        .collect();
    let registration = NoisyCiphertextRegistration {
        domain,
        ciphertexts: vec![
            (Ristretto255.element_to_bytes(cts[0].ct0()), 10),
            (Ristretto255.element_to_bytes(cts[1].ct0()), 11),
        ],
    };
    assert_eq!(
        a.register_noisy_ciphertexts(&owner, &registration).unwrap(),
        2
    );
    let req = request(domain, &[&cts[0], &cts[1]]);
    let first = a.issue_noisy_feip_keys(&server, &req).unwrap();
    let after_one = a.authority().accountant().loss(10);
    assert_eq!(after_one.releases, 2);
    // The keys decrypt to <x, y> + e, with noise of the configured size.
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 10).unwrap());
    let dlog = DlogSolver::new(table, 1 << 20).unwrap();
    let mut noise = Vec::new();
    for (c, keys) in first.keys.iter().enumerate() {
        for (y, key) in ys().iter().zip(keys) {
            let terms: Vec<(usize, i64)> = y.iter().copied().enumerate().collect();
            let value = feip
                .vartime_noisy_decrypt_sparse(&cts[c], &terms, key, &dlog)
                .unwrap();
            let exact: i64 = xs[c].iter().zip(y).map(|(a, b)| a * b).sum();
            noise.push(value - exact);
        }
    }
    assert!(
        noise.iter().any(|&e| e != 0),
        "no noise at sigma 40: {noise:?}"
    );
    assert!(noise.iter().all(|&e| e.abs() < 40 * 12), "{noise:?}");
    drop(a);

    // Second life: the domain is still noisy with the same sigma; the same request gets the
    // same keys (same registrations, same noise key), and the ledger continues.
    let mut a = open(&dir);
    assert_eq!(a.authority().noise_config(domain).unwrap(), Some(config));
    let restored = a.authority().accountant().loss(10);
    assert_eq!(restored.pixel.to_bits(), after_one.pixel.to_bits());
    assert_eq!(restored.image.to_bits(), after_one.image.to_bits());
    assert_eq!(restored.releases, 2);
    let again = a.issue_noisy_feip_keys(&server, &req).unwrap();
    assert_eq!(again.keys, first.keys, "a restart drew other noise");
    let after_two = a.authority().accountant().loss(10);
    assert_eq!(after_two.releases, 4);
    // Plain keys stay refused, and so does a ciphertext nobody registered.
    let plain = a.issue_feip_keys(&server, &req.keys).unwrap_err();
    assert!(
        matches!(plain, CoordinatorError::NoisyDomain(d) if d == domain),
        "{plain}"
    );
    let unregistered = a
        .issue_noisy_feip_keys(&server, &request(domain, &[&cts[2]]))
        .unwrap_err();
    assert!(
        matches!(
            unregistered,
            CoordinatorError::UnregisteredCiphertext { .. }
        ),
        "{unregistered}"
    );
    drop(a);

    // Third life: a budget between two and three batches' loss refuses the third batch,
    // which it would not if the restart had reset the ledger.
    let mut a = open(&dir);
    let spent = a
        .authority()
        .accountant()
        .loss(10)
        .epsilon(Granularity::Image, DEFAULT_DELTA);
    assert!(spent.is_finite() && spent > 0.0);
    let mut three = after_two;
    three.pixel += after_one.pixel;
    three.image += after_one.image;
    let next = three.epsilon(Granularity::Image, DEFAULT_DELTA);
    assert!(next > spent);
    let budget = PrivacyBudget {
        epsilon: (spent + next) / 2.0,
        delta: DEFAULT_DELTA,
        granularity: Granularity::Image,
    };
    a.set_privacy_budget(Some(budget)).unwrap();
    let refused = a.issue_noisy_feip_keys(&server, &req).unwrap_err();
    assert!(
        matches!(
            refused,
            CoordinatorError::PrivacyBudgetExceeded {
                sample: 10 | 11,
                ..
            }
        ),
        "{refused}"
    );
    assert_eq!(a.authority().accountant().loss(10).releases, 4);
    // A budget that is not positive and finite is refused.
    assert!(a
        .set_privacy_budget(Some(PrivacyBudget {
            epsilon: f64::NAN,
            ..budget
        }))
        .is_err());
    drop(a);

    // Fourth life: the budget was journaled too, so a restart that does not set it again
    // still refuses.
    let mut a = open(&dir);
    assert_eq!(a.authority().accountant().budget(), Some(budget));
    let refused = a.issue_noisy_feip_keys(&server, &req).unwrap_err();
    assert!(
        matches!(refused, CoordinatorError::PrivacyBudgetExceeded { .. }),
        "{refused}"
    );
    // Removing it is journaled as well.
    a.set_privacy_budget(None).unwrap();
    drop(a);
    let mut a = open(&dir);
    assert_eq!(a.authority().accountant().budget(), None);
    a.issue_noisy_feip_keys(&server, &req).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_registration_under_another_sample_id_is_refused_after_a_restart() {
    let dir = temp_dir("twice");
    let owner = RequesterId::new("owner");
    let server = RequesterId::new("server");
    let params = FeipParams::new(N, X, 100).unwrap();
    let mut a = open(&dir);
    let domain = a
        .create_domain_for(
            DomainConfig::new(params).with_policy(PolicyConfig::permissive()),
            DomainAccess::new(owner.clone(), server),
        )
        .unwrap();
    a.make_noisy(
        domain,
        NoiseConfig {
            sigma: DiscreteGaussian::new(5, 2).unwrap(),
            coordinate_range: 2 * X,
        },
    )
    .unwrap();
    let pk = a.public_key(domain).unwrap();
    let feip = Feip::new(Ristretto255, params);
    let ct = feip
        .encrypt(&pk.feip, &[1; N], &mut ChaCha20Rng::seed_from_u64(1))
        .unwrap();
    let ct0 = Ristretto255.element_to_bytes(ct.ct0());
    let register = |sample| NoisyCiphertextRegistration {
        domain,
        ciphertexts: vec![(ct0.clone(), sample)],
    };
    assert_eq!(
        a.register_noisy_ciphertexts(&owner, &register(7)).unwrap(),
        1
    );
    drop(a);
    let mut a = open(&dir);
    // The same pair again is harmless; under another id it is refused (the journal kept it).
    assert_eq!(
        a.register_noisy_ciphertexts(&owner, &register(7)).unwrap(),
        0
    );
    let err = a
        .register_noisy_ciphertexts(&owner, &register(8))
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::InvalidConfig(_)), "{err}");
    // Making it noisy twice is refused after the restart too (the journal kept that as well).
    let err = a
        .make_noisy(
            domain,
            NoiseConfig {
                sigma: DiscreteGaussian::new(1, 1).unwrap(),
                coordinate_range: 1,
            },
        )
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::InvalidConfig(_)), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
