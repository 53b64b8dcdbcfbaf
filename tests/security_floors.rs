//! The floors of the least-privilege review (part 1) and the cryptography review: each test
//! reproduces an attack or a hygiene defect found on main and checks that it now fails.
//!
//! - FEBO keys only for commitments the domain's owner registered, and only to the domain's
//!   bound requester (cryptography review, item 1);
//! - a domain's keys only to the requester(s) named at its creation: the "any token holder
//!   decrypts a shard" attack of the least-privilege review (hole 1);
//! - rotation does not reset the rank cap: the 16/16 attack of the least-privilege review (hole 2);
//! - the label permutation comes from the OS RNG, not the run seed, and lives in a 0600 file
//!   (cryptography review, item 2);
//! - `Debug` of secret types shows no key bytes (cryptography review, item 5);
//! - plaintext gRPC only on loopback, tokens files 0600, certificate files replaced atomically
//!   with their mode, client names checked (cryptography review, item 6).
#![allow(clippy::unwrap_used)] // tests

use std::sync::{Arc, Mutex};

use cryptonn::coordinator::secure_training::{create_shard_domains, EncryptionParams};
use cryptonn::coordinator::{
    AuditOutcome, Authority, Client, CoordinatorError, DomainAccess, DomainConfig, DomainId,
    FeboCommitmentRegistration, FeboKeyItem, FeboKeyRequest, FeipKeyRequest, InProcessKeyService,
    KeyService, KeyVectorData, PolicyConfig, PolicyRefusal, RequesterId,
};
use cryptonn::fe::febo::{Febo, FeboOp, FeboParams};
use cryptonn::fe::feip::{FeipParams, FunctionKey};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::nn::data::{LabelFileError, LabelPermutation, CLASSES};
use cryptonn::nn::first_layer::QuantConfig;
use cryptonn::nn::train::TrainConfig;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const G: Ristretto255 = Ristretto255;

fn owner() -> RequesterId {
    RequesterId::new("hospital")
}
fn trainer() -> RequesterId {
    RequesterId::new("trainer")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-floors-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two FEBO domains bound to (hospital, trainer), and the hospital's FEBO ciphertexts of
/// `values` in the first.
type FeboFixture = (
    Arc<Mutex<Authority<Ristretto255>>>,
    [DomainId; 2],
    Vec<cryptonn::fe::febo::FeboCiphertext<Ristretto255>>,
);

fn febo_fixture(values: &[i64]) -> FeboFixture {
    let mut a = Authority::from_seed(G, [3; 32]);
    let config = DomainConfig::new(FeipParams::new(4, 100, 100).unwrap())
        .with_febo(FeboParams::new(100, 100).unwrap());
    let access = DomainAccess::new(owner(), trainer());
    let d1 = a.create_domain_for(config, access.clone()).unwrap();
    let d2 = a.create_domain_for(config, access).unwrap();
    let pk = a.public_key(d1).unwrap();
    let mut client = Client::from_seed(G, pk, [5; 32]).unwrap();
    let x = ndarray::Array2::from_shape_vec((1, values.len()), values.to_vec()).unwrap();
    let enc = client.febo_encrypt_matrix(&x).unwrap();
    (
        Arc::new(Mutex::new(a)),
        [d1, d2],
        enc.ciphertexts().to_vec(),
    )
}

fn sub_item(commitment: Vec<u8>, operand: i64) -> FeboKeyItem {
    FeboKeyItem {
        commitment,
        op: FeboOp::Sub,
        operand,
    }
}

/// Cryptography review, item 1: FEBO keys for an unregistered or foreign commitment are refused; the
/// `cmt · g^t` disguise is refused; only the domain's owner registers, only its bound
/// requester gets keys; refusals are audited.
#[test]
fn febo_keys_only_for_registered_commitments_of_the_bound_requester() {
    let (authority, [d1, d2], cts) = febo_fixture(&[7, -3]);
    let server = InProcessKeyService::new(Arc::clone(&authority), trainer());
    let hospital = InProcessKeyService::new(Arc::clone(&authority), owner());
    let cmt: Vec<Vec<u8>> = cts
        .iter()
        .map(|c| G.element_to_bytes(c.commitment()))
        .collect();
    let request = |domain, items| FeboKeyRequest { domain, items };

    // Before registration: refused.
    let err = server
        .febo_keys(&request(d1, vec![sub_item(cmt[0].clone(), 2)]))
        .unwrap_err();
    assert!(
        matches!(err, CoordinatorError::UnregisteredCommitment { domain, index: 0 } if domain == d1),
        "{err}"
    );
    // Only the owner registers.
    let registration = FeboCommitmentRegistration {
        domain: d1,
        commitments: cmt.clone(),
    };
    assert!(matches!(
        server.register_febo_commitments(&registration).unwrap_err(),
        CoordinatorError::NotPermitted { .. }
    ));
    // A non-element is not registered.
    let bad = FeboCommitmentRegistration {
        domain: d1,
        commitments: vec![vec![0xff; 32]],
    };
    assert!(matches!(
        hospital.register_febo_commitments(&bad).unwrap_err(),
        CoordinatorError::Fe(_)
    ));
    assert_eq!(
        hospital.register_febo_commitments(&registration).unwrap(),
        2
    );
    assert_eq!(
        hospital.register_febo_commitments(&registration).unwrap(),
        0
    );

    // Registered: the bound requester gets keys, and they open x - y.
    let keys = server
        .febo_keys(&request(
            d1,
            vec![sub_item(cmt[0].clone(), 2), sub_item(cmt[1].clone(), 4)],
        ))
        .unwrap();
    let febo = Febo::new(G, FeboParams::new(100, 100).unwrap());
    for (ct, (key, want)) in cts.iter().zip(keys.keys.iter().zip([5i64, -7])) {
        let got = febo.vartime_decrypt_element(ct, key).unwrap();
        assert_eq!(got, G.exp_generator_i64(want, 1000));
    }
    // Foreign: the same commitment in another domain of the same parties.
    let err = server
        .febo_keys(&request(d2, vec![sub_item(cmt[0].clone(), 2)]))
        .unwrap_err();
    assert!(
        matches!(err, CoordinatorError::UnregisteredCommitment { domain, .. } if domain == d2),
        "{err}"
    );
    // The disguise cmt · g^t (to be divided by h^t afterwards) is not registered either; the
    // whole batch is refused, naming the item.
    let disguised = G.op(
        &G.element_from_bytes(&cmt[0]).unwrap(),
        &G.exp_generator_i64(12_345, 1 << 20),
    );
    let err = server
        .febo_keys(&request(
            d1,
            vec![
                sub_item(cmt[1].clone(), 1),
                sub_item(G.element_to_bytes(&disguised), 0),
            ],
        ))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoordinatorError::UnregisteredCommitment { index: 1, .. }
        ),
        "{err}"
    );
    // Another server: not bound to the domain.
    let other = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("other"));
    assert!(matches!(
        other
            .febo_keys(&request(d1, vec![sub_item(cmt[0].clone(), 2)]))
            .unwrap_err(),
        CoordinatorError::NotPermitted { .. }
    ));
    // The refusals are in the audit log, next to the two issued keys.
    let a = authority.lock().unwrap();
    let outcomes: Vec<_> = a
        .audit_log()
        .records()
        .iter()
        .map(|r| matches!(r.outcome, AuditOutcome::Issued))
        .collect();
    assert_eq!(outcomes.iter().filter(|&&issued| issued).count(), 2);
    assert_eq!(outcomes.iter().filter(|&&issued| !issued).count(), 3);
}

/// Least-privilege review, hole 1: a token holder that is not the shard's trainer asked for 784 one-hot keys
/// of a shard domain and decrypted every pixel. The shard domains are now bound to their
/// trainer: the other requester gets a typed refusal and no key.
#[test]
fn another_server_gets_no_key_of_a_shard_domain() {
    let mut a = Authority::from_seed(G, [9; 32]);
    let cfg = TrainConfig::default();
    let params = EncryptionParams::new(&QuantConfig::default(), cfg.normalization, 8);
    let access = DomainAccess::new(owner(), trainer());
    let domains = create_shard_domains(&mut a, 8, &params, &access).unwrap();
    let n = params.feip_params().unwrap().n();
    let one_hot = FeipKeyRequest {
        domain: domains[0],
        vectors: (0..n)
            .map(|i| KeyVectorData::Sparse(vec![(i, 1)]))
            .collect(),
    };
    let authority = Arc::new(Mutex::new(a));
    let attacker = InProcessKeyService::new(
        Arc::clone(&authority),
        RequesterId::new("some-other-server"),
    );
    match attacker.feip_keys(&one_hot).unwrap_err() {
        CoordinatorError::NotPermitted {
            domain, requester, ..
        } => {
            assert_eq!(domain, domains[0]);
            assert_eq!(requester, RequesterId::new("some-other-server"));
        }
        e => panic!("expected NotPermitted, got {e}"),
    }
    // The data owner itself is no requester of its domains either.
    let owner_service = InProcessKeyService::new(Arc::clone(&authority), owner());
    assert!(matches!(
        owner_service.feip_keys(&one_hot).unwrap_err(),
        CoordinatorError::NotPermitted { .. }
    ));
    // The bound trainer is served (per-batch policy: no cap on a shard domain).
    let server = InProcessKeyService::new(Arc::clone(&authority), trainer());
    assert_eq!(server.feip_keys(&one_hot).unwrap().keys.len(), n);
}

/// Least-privilege review, hole 2: under `PolicyConfig::rotating()` a server used 8 keys of 4 non-zeros in a
/// domain, got it rotated, had the client re-encrypt the same 16-vector under the successor
/// and used 8 more keys there: 16 independent equations, all 16 coordinates. Rank accounting
/// now follows the data: the successor inherits the issued span and refuses at the cap, so
/// the attacker is left with 8 equations in 16 unknowns.
#[test]
fn rotation_does_not_reset_the_rank_cap_16_of_16_attack_fails() {
    let n = 16;
    let mut a = Authority::from_seed(G, [1; 32]);
    let d = a
        .create_domain(
            DomainConfig::new(FeipParams::new(n, 1000, 100).unwrap())
                .with_policy(PolicyConfig::rotating()),
        )
        .unwrap();
    let who = RequesterId::new("server");
    // Key j has four non-zeros at j, j+1, j+2, j+3 (mod 16): 16 of them span Q^16.
    let key = |j: usize| {
        let mut y = vec![0i64; n];
        for k in 0..4 {
            y[(j + k) % n] = 1 + k as i64;
        }
        KeyVectorData::Dense(y)
    };
    let ask = |a: &mut Authority<Ristretto255>, domain, j| {
        a.issue_feip_keys(
            &who,
            &FeipKeyRequest {
                domain,
                vectors: vec![key(j)],
            },
        )
    };
    let mut equations = 0;
    for j in 0..8 {
        ask(&mut a, d, j).unwrap();
        equations += 1;
    }
    // The ninth reaches the cap n/2 = 8: the domain rotates.
    let successor = match ask(&mut a, d, 8).unwrap_err() {
        CoordinatorError::DomainRotated { successor, .. } => successor,
        e => panic!("expected a rotation, got {e}"),
    };
    // The client re-encrypts the same x under the successor; the attacker goes on there.
    assert_eq!(a.issued_rank(successor).unwrap(), Some(8));
    for j in 8..16 {
        match ask(&mut a, successor, j) {
            Ok(_) => equations += 1,
            Err(CoordinatorError::Refused {
                reason: PolicyRefusal::RankCapReached { cap: 8, .. },
                ..
            }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(
        equations, 8,
        "8 independent equations in 16 unknowns: no coordinate is forced"
    );
    // Keys inside the issued span stay available in the successor.
    ask(&mut a, successor, 3).unwrap();
    assert_eq!(a.issued_rank(successor).unwrap(), Some(8));
}

/// Cryptography review, item 2: π is drawn from the OS RNG (two data owners with the same run seed get
/// different permutations) and kept in a 0600 file; a group-readable file is refused.
#[test]
fn label_permutation_is_random_private_and_not_from_the_seed() {
    let dir = temp_dir("labels");
    let draws: Vec<LabelPermutation> = (0..3)
        .map(|i| {
            let path = dir.join(format!("owner-{i}/labels"));
            let (p, created) = LabelPermutation::load_or_create(&path, CLASSES).unwrap();
            assert!(created);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600);
            }
            // Read back: the same permutation.
            assert_eq!(LabelPermutation::read_file(&path).unwrap(), p);
            p
        })
        .collect();
    // Three independent draws of 10! permutations: equal with probability < 1e-13.
    assert!(draws[0] != draws[1] || draws[1] != draws[2]);
    // None is the permutation a run seed would give (the server could compute that one).
    let seeded = LabelPermutation::from_seed(TrainConfig::default().seed, 10);
    assert!(draws.iter().filter(|p| **p == seeded).count() <= 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("owner-0/labels");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            LabelPermutation::read_file(&path).unwrap_err(),
            LabelFileError::InsecurePermissions { mode: 0o644, .. }
        ));
    }
    assert!(matches!(
        LabelPermutation::checked_from_forward(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 8]).unwrap_err(),
        LabelFileError::NotAPermutation
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every way `bytes` could appear in a `Debug` string: lowercase and uppercase hex, and the
/// decimal byte list that a derived `Debug` of a byte array prints.
fn shows(debug: &str, bytes: &[u8]) -> bool {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{bytes:?}");
    let inner = list.trim_start_matches('[').trim_end_matches(']');
    debug.contains(&hex) || debug.contains(&hex.to_uppercase()) || debug.contains(inner)
}

/// Cryptography review, item 5: `Debug` of every secret type is redacted.
#[test]
fn debug_of_secret_types_shows_no_key_bytes() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let feip = cryptonn::fe::feip::Feip::new(G, FeipParams::new(4, 100, 100).unwrap());
    let (msk, _mpk) = feip.setup(&mut rng);
    let key: FunctionKey<Ristretto255> = feip.derive_key(&msk, &[1, 2, 3, 4]).unwrap();
    let sk_bytes = G.scalar_to_bytes(key.scalar());
    let debug = format!("{key:?}");
    assert!(!shows(&debug, &sk_bytes), "{debug}");
    assert!(!debug.contains(&format!("{:?}", key.scalar())), "{debug}");
    let debug = format!("{msk:?}");
    assert!(!shows(&debug, &sk_bytes) && debug.len() < 40, "{debug}");

    let febo = Febo::new(G, FeboParams::new(100, 100).unwrap());
    let (fsk, fpk) = febo.setup(&mut rng);
    assert!(format!("{fsk:?}").len() < 40);
    let ct = febo.encrypt(&fpk, 9, &mut rng).unwrap();
    let fkey = febo
        .derive_key(&fsk, ct.commitment(), FeboOp::Add, 1)
        .unwrap();
    let debug = format!("{fkey:?}");
    assert!(
        !shows(&debug, &G.element_to_bytes(fkey.element())),
        "{debug}"
    );

    // Z_p* scalars (the test-size group's and a real one's).
    let modp = cryptonn::fe::group::modp::ModpGroup::rfc3526_2048();
    let s = modp.random_scalar(&mut rng);
    let debug = format!("{s:?}");
    assert!(!shows(&debug, &modp.scalar_to_bytes(&s)), "{debug}");
    assert!(debug.len() < 40, "{debug}");

    // The authority and a client (their RNG states), the label permutation.
    let mut a = Authority::from_seed(G, [0xab; 32]);
    let d = a
        .create_domain(DomainConfig::new(FeipParams::new(4, 100, 100).unwrap()))
        .unwrap();
    let debug = format!("{a:?}");
    assert!(!shows(&debug, &[0xab; 32]), "{debug}");
    let client = Client::from_seed(G, a.public_key(d).unwrap(), [0xcd; 32]).unwrap();
    let debug = format!("{client:?}");
    assert!(!shows(&debug, &[0xcd; 32]), "{debug}");
    let p = LabelPermutation::from_seed(3, 10);
    let debug = format!("{p:?}");
    assert!(!shows(&debug, &p.forward()), "{debug}");
}

#[cfg(feature = "net")]
mod net {
    use super::*;
    use cryptonn::coordinator::net::auth::{random_token, Role, TokenError};
    use cryptonn::coordinator::net::service::{check_transport, Listener};
    use cryptonn::coordinator::net::tls::{validate_client_name, write_file, PkiError};
    use cryptonn::coordinator::net::{
        generate_pki, LoopbackAuthority, RemoteConfig, RemoteKeyService, ServeConfig, ServeError,
        TokenTable,
    };
    use cryptonn::coordinator::{PersistentAuthority, StateOptions};

    fn code(e: &CoordinatorError) -> &str {
        match e {
            CoordinatorError::Remote { code, .. } => code,
            _ => "typed",
        }
    }

    /// Plaintext gRPC to a non-loopback address is refused on both sides; loopback stays
    /// allowed for experiments.
    #[test]
    fn plaintext_grpc_only_on_loopback() {
        for url in [
            "http://10.1.2.3:7443",
            "http://authority.example.org:7443",
            "http://0.0.0.0:7443",
        ] {
            let err = RemoteKeyService::connect(G, RemoteConfig::new(url, random_token(), None))
                .unwrap_err();
            assert_eq!(code(&err), "Plaintext", "{url}: {err}");
            assert!(err.to_string().contains("loopback"), "{err}");
        }
        for url in [
            "http://127.0.0.1:7443",
            "http://localhost:7443",
            "http://[::1]:7443",
        ] {
            RemoteKeyService::connect(G, RemoteConfig::new(url, random_token(), None)).unwrap();
        }
        let plaintext = ServeConfig::default();
        let wide = Listener::bind("0.0.0.0:0".parse().unwrap()).unwrap();
        assert!(matches!(
            check_transport(&wide, &plaintext).unwrap_err(),
            ServeError::PlaintextNotLoopback { .. }
        ));
        let local = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        check_transport(&local, &plaintext).unwrap();
    }

    /// A 0644 tokens file is refused (as a 0644 master seed is).
    #[test]
    fn world_readable_tokens_file_is_refused() {
        let dir = temp_dir("tokens");
        let path = dir.join("tokens");
        std::fs::write(&path, format!("server s1 {}\n", random_token())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = TokenTable::from_file(&path).unwrap_err();
            assert!(
                matches!(err, TokenError::InsecurePermissions { .. }),
                "{err}"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(TokenTable::from_file(&path).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A private key written over an existing 0644 file ends up 0600; client names that are
    /// not plain file names are refused.
    #[test]
    fn certificate_files_and_names() {
        let dir = temp_dir("certs");
        let key = dir.join("authority.key");
        std::fs::write(&key, "old").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            write_file(&key, b"secret", true).unwrap();
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
        for bad in ["../evil", "a/b", "", ".hidden", "-x", "a b"] {
            assert!(
                matches!(validate_client_name(bad), Err(PkiError::InvalidName(_))),
                "{bad:?}"
            );
            assert!(generate_pki(&["localhost".into()], &[bad.into()]).is_err());
        }
        validate_client_name("server-1").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Least-privilege review, hole 1 over gRPC: domains created by a client are bound to the requester it
    /// names; another server token gets PERMISSION_DENIED, the operator gets no function keys,
    /// and FEBO keys need the owner's registration.
    #[test]
    fn grpc_domain_ownership_and_registration() {
        let dir = temp_dir("grpc");
        let state =
            PersistentAuthority::open(G, &dir.join("state"), StateOptions::default()).unwrap();
        let (client, trainer_token, other, operator) = (
            random_token(),
            random_token(),
            random_token(),
            random_token(),
        );
        let mut table = TokenTable::new();
        table.add(Role::Client, "hospital", &client).unwrap();
        table.add(Role::Server, "trainer", &trainer_token).unwrap();
        table.add(Role::Server, "other", &other).unwrap();
        table.add(Role::Operator, "ops", &operator).unwrap();
        let state = Arc::new(Mutex::new(state));
        let lb = LoopbackAuthority::start(Arc::clone(&state), table).unwrap();
        let connect = |token: &str, who: RequesterId| {
            RemoteKeyService::connect(G, lb.remote_config(token, who)).unwrap()
        };
        let hospital = connect(&client, owner());
        let feip = FeipParams::new(4, 100, 100).unwrap();
        let febo = FeboParams::new(100, 100).unwrap();
        // Unbound creation is refused.
        let err = hospital
            .create_domains(feip, Some(febo), 1, true, &[])
            .unwrap_err();
        assert_eq!(code(&err), "InvalidArgument", "{err}");
        let [d] = hospital
            .create_domains(feip, Some(febo), 1, true, &[trainer()])
            .unwrap()[..]
        else {
            panic!("one domain");
        };
        let request = FeipKeyRequest {
            domain: d,
            vectors: vec![KeyVectorData::Dense(vec![1, 2, 3, 4])],
        };
        let err = connect(&other, RequesterId::new("other"))
            .feip_keys(&request)
            .unwrap_err();
        assert!(
            matches!(&err, CoordinatorError::NotPermitted { requester, .. } if requester.0 == "other"),
            "{err}"
        );
        let err = connect(&operator, RequesterId::new("ops"))
            .feip_keys(&request)
            .unwrap_err();
        assert_eq!(code(&err), "PermissionDenied", "{err}");
        let server = connect(&trainer_token, trainer());
        assert_eq!(server.feip_keys(&request).unwrap().keys.len(), 1);

        // FEBO: refused before the owner registers, issued after.
        let pk = hospital.public_key(d).unwrap();
        let mut c = Client::from_seed(G, pk, [4; 32]).unwrap();
        let enc = c
            .febo_encrypt_matrix(&ndarray::Array2::from_elem((1, 1), 6i64))
            .unwrap();
        let cmt = G.element_to_bytes(enc.ciphertexts()[0].commitment());
        let items = FeboKeyRequest {
            domain: d,
            items: vec![sub_item(cmt.clone(), 1)],
        };
        let err = server.febo_keys(&items).unwrap_err();
        assert!(
            matches!(err, CoordinatorError::UnregisteredCommitment { .. }),
            "{err}"
        );
        let registration = FeboCommitmentRegistration {
            domain: d,
            commitments: vec![cmt],
        };
        // Servers cannot register, not even for their own domains.
        let err = server.register_febo_commitments(&registration).unwrap_err();
        assert_eq!(code(&err), "PermissionDenied", "{err}");
        assert_eq!(
            hospital.register_febo_commitments(&registration).unwrap(),
            1
        );
        assert_eq!(server.febo_keys(&items).unwrap().keys.len(), 1);
        drop(lb);
        // The binding and the registration survive a restart (journal).
        let state = Arc::try_unwrap(state).ok().unwrap().into_inner().unwrap();
        drop(state);
        let mut again =
            PersistentAuthority::open(G, &dir.join("state"), StateOptions::default()).unwrap();
        // The state directory is 0700 and every file in it 0600 (least-privilege review: secrets apart).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.join("state")), 0o700);
            for f in std::fs::read_dir(dir.join("state")).unwrap() {
                let f = f.unwrap().path();
                assert_eq!(mode(&f), 0o600, "{}", f.display());
            }
        }
        assert_eq!(again.authority().access(d).unwrap().unwrap().owner, owner());
        assert_eq!(
            again
                .issue_febo_keys(&trainer(), &items)
                .unwrap()
                .keys
                .len(),
            1
        );
        assert!(matches!(
            again
                .issue_feip_keys(&RequesterId::new("other"), &request)
                .unwrap_err(),
            CoordinatorError::NotPermitted { .. }
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
