//! Noisy key domains over the networked key service (loopback, TLS): a data owner creates
//! noisy domains and registers its ciphertexts' `ct0`; the trainer gets ciphertext-bound noisy
//! keys that decrypt to `<x, y> + e`, the same keys when it asks again, and typed refusals for
//! plain keys, unregistered ciphertexts and a request beyond the privacy budget; roles that
//! may not register or take keys are denied.
#![cfg(feature = "net")]
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cryptonn::coordinator::accountant::{
    epsilon_for, gaussian_rdp_unit, sensitivities, Granularity, PrivacyBudget, DEFAULT_DELTA,
};
use cryptonn::coordinator::net::auth::{random_token, Role};
use cryptonn::coordinator::net::service::Listener;
use cryptonn::coordinator::net::tls::Pki;
use cryptonn::coordinator::net::{
    generate_pki, serve, RemoteConfig, RemoteKeyService, ServeConfig, ServerTls, TokenTable,
};
use cryptonn::coordinator::{
    CoordinatorError, FeipKeyRequest, KeyService, KeyVectorData, NoiseConfig,
    NoisyCiphertextRegistration, NoisyKeyItem, NoisyKeyRequest, PersistentAuthority, RequesterId,
    StateOptions,
};
use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::feip::{Feip, FeipParams};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const N: usize = 8;
const X: u64 = 255;
const SIGMA: u64 = 40;

struct Fixture {
    addr: SocketAddr,
    pki: Pki,
    client: String,
    server: String,
    _runtime: tokio::runtime::Runtime,
    dir: PathBuf,
}

impl Fixture {
    fn connect(&self, token: &str) -> RemoteKeyService<Ristretto255> {
        let mut c = RemoteConfig::new(
            format!("https://{}", self.addr),
            token,
            Some(self.pki.ca_cert_pem.clone().into_bytes()),
        );
        c.tls_domain = Some("localhost".into());
        c.retry_for = Duration::ZERO;
        RemoteKeyService::connect(Ristretto255, c).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(budget: Option<PrivacyBudget>) -> Fixture {
    let dir = std::env::temp_dir().join(format!("cryptonn-net-noisy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pki = generate_pki(&["localhost".into()], &[]).unwrap();
    let (client, server) = (random_token(), random_token());
    let mut table = TokenTable::new();
    table.add(Role::Client, "owner", &client).unwrap();
    table.add(Role::Server, "trainer", &server).unwrap();
    let mut state =
        PersistentAuthority::open(Ristretto255, &dir.join("state"), StateOptions::default())
            .unwrap();
    state.set_privacy_budget(budget).unwrap();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServeConfig {
        tls: Some(ServerTls {
            cert_pem: pki.server.cert_pem.clone().into_bytes(),
            key_pem: pki.server.key_pem.clone().into_bytes(),
            client_ca_pem: None,
        }),
        max_message_bytes: 1 << 20,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.spawn(serve(
        Arc::new(Mutex::new(state)),
        Arc::new(table),
        listener,
        config,
        std::future::pending(),
    ));
    Fixture {
        addr,
        pki,
        client,
        server,
        _runtime: runtime,
        dir,
    }
}

fn ys() -> Vec<Vec<i64>> {
    vec![vec![1, 2, 3, 4, 5, 6, 7, 8], vec![0, -9, 0, 4, 0, 1, 0, 2]]
}

#[test]
fn noisy_domains_over_grpc() {
    // The budget admits two requests' releases for a sample, not three.
    let sigma = SIGMA as f64;
    let slope: f64 = ys()
        .iter()
        .map(|y| {
            let terms: Vec<(usize, i64)> = y.iter().copied().enumerate().collect();
            gaussian_rdp_unit(sensitivities(&terms, 2 * X).1, sigma)
        })
        .sum();
    let (two, three) = (
        epsilon_for(2.0 * slope, DEFAULT_DELTA),
        epsilon_for(3.0 * slope, DEFAULT_DELTA),
    );
    assert!(two < three);
    let f = start(Some(PrivacyBudget {
        epsilon: (two + three) / 2.0,
        delta: DEFAULT_DELTA,
        granularity: Granularity::Image,
    }));
    let owner = f.connect(&f.client);
    let trainer = f.connect(&f.server);
    let params = FeipParams::new(N, X, 100).unwrap();
    let noise = NoiseConfig {
        sigma: DiscreteGaussian::new(SIGMA, 1).unwrap(),
        coordinate_range: 2 * X,
    };
    let domain = owner
        .create_domains_with_noise(
            params,
            None,
            1,
            true,
            &[RequesterId::new("trainer")],
            Some(noise),
        )
        .unwrap()[0];
    let pk = owner.public_key(domain).unwrap();
    let feip = Feip::new(Ristretto255, params);
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let xs: Vec<Vec<i64>> = (0..3)
        .map(|s| {
            (0..N as i64)
                .map(|i| (i * 41 + s * 17) % 511 - 255)
                .collect()
        })
        .collect();
    let cts: Vec<_> = xs
        .iter()
        .map(|x| feip.encrypt(&pk.feip, x, &mut rng).unwrap())
        .collect();
    let ct0 = |i: usize| Ristretto255.element_to_bytes(cts[i].ct0());
    let registration = NoisyCiphertextRegistration {
        domain,
        ciphertexts: vec![(ct0(0), 100), (ct0(1), 101)],
    };
    // Only the owner registers (the trainer's token is denied at the gate).
    let denied = trainer
        .register_noisy_ciphertexts(&registration)
        .unwrap_err();
    assert!(
        matches!(&denied, CoordinatorError::Remote { code, .. } if code == "PermissionDenied"),
        "{denied}"
    );
    assert_eq!(owner.register_noisy_ciphertexts(&registration).unwrap(), 2);

    let keys = FeipKeyRequest {
        domain,
        vectors: ys().into_iter().map(KeyVectorData::Dense).collect(),
    };
    let request = |items: &[usize]| NoisyKeyRequest {
        keys: keys.clone(),
        ciphertexts: items
            .iter()
            .map(|&i| NoisyKeyItem {
                ct0: ct0(i),
                vectors: vec![0, 1],
            })
            .collect(),
    };
    // The owner's token takes no keys.
    let denied = owner.noisy_feip_keys(&request(&[0])).unwrap_err();
    assert!(
        matches!(&denied, CoordinatorError::Remote { code, .. } if code == "PermissionDenied"),
        "{denied}"
    );
    // The trainer's noisy keys decrypt to <x, y> + e.
    let first = trainer.noisy_feip_keys(&request(&[0, 1])).unwrap();
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 10).unwrap());
    let dlog = DlogSolver::new(table, 1 << 20).unwrap();
    let mut noise_drawn = Vec::new();
    for (c, ks) in first.keys.iter().enumerate() {
        for (y, k) in ys().iter().zip(ks) {
            let terms: Vec<(usize, i64)> = y.iter().copied().enumerate().collect();
            let value = feip
                .vartime_noisy_decrypt_sparse(&cts[c], &terms, k, &dlog)
                .unwrap();
            let exact: i64 = xs[c].iter().zip(y).map(|(a, b)| a * b).sum();
            noise_drawn.push(value - exact);
        }
    }
    assert!(noise_drawn.iter().any(|&e| e != 0), "{noise_drawn:?}");
    assert!(
        noise_drawn.iter().all(|&e| e.unsigned_abs() < 12 * SIGMA),
        "{noise_drawn:?}"
    );
    // Asking again gives the same noise (the ledger charges it again).
    let again = trainer.noisy_feip_keys(&request(&[0, 1])).unwrap();
    assert_eq!(again.keys, first.keys);
    // Typed refusals: plain keys, an unregistered ciphertext, the budget.
    let plain = trainer.feip_keys(&keys).unwrap_err();
    assert!(
        matches!(plain, CoordinatorError::NoisyDomain(d) if d == domain),
        "{plain}"
    );
    let unregistered = trainer.noisy_feip_keys(&request(&[2])).unwrap_err();
    assert!(
        matches!(
            unregistered,
            CoordinatorError::UnregisteredCiphertext { domain: d, index: 0 } if d == domain
        ),
        "{unregistered}"
    );
    let over = trainer.noisy_feip_keys(&request(&[1])).unwrap_err();
    match over {
        CoordinatorError::PrivacyBudgetExceeded {
            domain: d,
            sample,
            epsilon,
            granularity,
            ..
        } => {
            assert_eq!((d, sample, granularity), (domain, 101, Granularity::Image));
            assert!(
                (epsilon - three).abs() <= 1e-9 * three,
                "{epsilon} vs {three}"
            );
        }
        other => panic!("expected the budget refusal, got {other}"),
    }
}
