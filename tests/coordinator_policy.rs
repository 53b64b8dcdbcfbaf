//! The key-request policy (weight filter, rank cap, rotation), the audit log and domain
//! lifecycle, exercised through the server's key service as a server would meet them.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::{
    AuditConfig, AuditOutcome, AuditedKey, Authority, Client, CoordinatorError, DomainConfig,
    DomainId, DomainStatus, FeipKeyRequest, InProcessKeyService, KeyPolicy, KeyService,
    KeyVectorData, PolicyConfig, PolicyRefusal, RankCap, RankCapAction, RequesterId, Server,
    SparseKeyVector, Verdict,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use ndarray::{array, Array1, Array2};
use rand::Rng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Auth = Arc<Mutex<Authority<Ristretto255>>>;

fn table() -> Arc<BabyStepTable<Ristretto255>> {
    static T: OnceLock<Arc<BabyStepTable<Ristretto255>>> = OnceLock::new();
    T.get_or_init(|| Arc::new(BabyStepTable::new(Ristretto255, 1 << 12).unwrap()))
        .clone()
}

fn authority(seed: u8) -> Auth {
    Arc::new(Mutex::new(Authority::from_seed(Ristretto255, [seed; 32])))
}

fn server(auth: &Auth, name: &str) -> Server<Ristretto255, InProcessKeyService<Ristretto255>> {
    let keys = InProcessKeyService::new(Arc::clone(auth), RequesterId::new(name));
    Server::new(keys, table())
}

fn client(auth: &Auth, domain: DomainId) -> Client<Ristretto255> {
    let pk = auth.lock().unwrap().public_key(domain).unwrap();
    Client::from_seed(Ristretto255, pk, [7; 32]).unwrap()
}

fn params(n: usize) -> FeipParams {
    FeipParams::new(n, 100, 100).unwrap()
}

/// A dense random row with entries in [1, 9] (never zero, so the weight filter passes).
fn dense_rows(rng: &mut ChaCha20Rng, k: usize, n: usize) -> Array2<i64> {
    Array2::from_shape_fn((k, n), |_| rng.gen_range(1..=9))
}

#[test]
fn one_hot_probe_is_refused_with_its_reason() {
    let auth = authority(1);
    let domain = auth
        .lock()
        .unwrap()
        .create_domain(DomainConfig::new(params(16)))
        .unwrap();
    let enc = client(&auth, domain)
        .encrypt_matrix(&Array2::from_elem((16, 1), 5))
        .unwrap();
    let s = server(&auth, "curious");
    let mut probe = Array2::zeros((1, 16));
    probe[[0, 3]] = 1;
    let err = s.secure_matmul(&probe, &enc).unwrap_err();
    match err {
        CoordinatorError::Refused {
            domain: d,
            index: 0,
            reason: PolicyRefusal::TooFewNonZero { got: 1, min: 4 },
        } => assert_eq!(d, domain),
        other => panic!("unexpected {other:?}"),
    }
    // Three non-zeros are still too few; four pass.
    let mut w = Array2::zeros((2, 16));
    w.row_mut(0).iter_mut().take(4).for_each(|v| *v = 1);
    w.row_mut(1).iter_mut().take(3).for_each(|v| *v = 1);
    assert!(matches!(
        s.secure_matmul(&w, &enc),
        Err(CoordinatorError::Refused {
            index: 1,
            reason: PolicyRefusal::TooFewNonZero { got: 3, min: 4 },
            ..
        })
    ));
    assert_eq!(
        s.secure_matmul(&w.select(ndarray::Axis(0), &[0]), &enc)
            .unwrap(),
        array![[20]]
    );
    // The refusals are in the audit log, with the refused vector's hash.
    let a = auth.lock().unwrap();
    let refused: Vec<_> = a
        .audit_log()
        .records()
        .iter()
        .filter(|r| matches!(r.outcome, AuditOutcome::Refused(_)))
        .collect();
    assert_eq!(refused.len(), 2);
    let probe_vec =
        SparseKeyVector::from_data(&KeyVectorData::Sparse(vec![(3, 1)]), 16, 100).unwrap();
    assert!(matches!(
        &refused[0].key,
        AuditedKey::Feip { vector_sha256, nnz: 1, .. } if *vector_sha256 == probe_vec.sha256()
    ));
}

#[test]
fn rank_cap_is_enforced_and_combinations_stay_free() {
    let auth = authority(2);
    let n = 16;
    let domain = auth
        .lock()
        .unwrap()
        .create_domain(DomainConfig::new(params(n)))
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let s = server(&auth, "server");
    // Default cap: n/2 = 8. Eight independent dense rows are served ...
    let w = dense_rows(&mut rng, 8, n);
    s.request_keys(domain, &w).unwrap();
    assert_eq!(auth.lock().unwrap().issued_rank(domain).unwrap(), Some(8));
    // ... integer combinations of them add no rank and are served too ...
    let combo = (&w.row(0) + &w.row(1) * 2 - w.row(5)).insert_axis(ndarray::Axis(0));
    s.request_keys(domain, &combo).unwrap();
    // ... a ninth direction is refused, in a batch with admissible rows: nothing is issued.
    let before = auth.lock().unwrap().audit_log().issued_in(domain).count();
    let mut batch = Array2::zeros((2, n));
    batch.row_mut(0).assign(&w.row(3));
    batch
        .row_mut(1)
        .assign(&Array1::from_shape_fn(n, |_| rng.gen_range(1..=9)));
    let err = s.request_keys(domain, &batch).unwrap_err();
    assert!(matches!(
        err,
        CoordinatorError::Refused {
            index: 1,
            reason: PolicyRefusal::RankCapReached { rank: 9, cap: 8 },
            ..
        }
    ));
    let a = auth.lock().unwrap();
    assert_eq!(a.audit_log().issued_in(domain).count(), before);
    assert_eq!(a.issued_rank(domain).unwrap(), Some(8));
}

/// The whole rotation story: rank cap reached under `Rotate`, the server learns the successor,
/// the client re-encrypts, the server is served there; the old domain stays closed.
#[test]
fn rotation_end_to_end() {
    let auth = authority(3);
    let n = 8;
    let cfg = DomainConfig::new(params(n)).with_policy(PolicyConfig {
        min_nonzero: 2,
        rank_cap: RankCap::AtMost(3),
        on_rank_cap: RankCapAction::Rotate,
    });
    let old = auth.lock().unwrap().create_domain(cfg).unwrap();
    let mut c = client(&auth, old);
    let s = server(&auth, "trainer");
    let x = Array2::from_shape_fn((n, 4), |(i, j)| (i as i64 * 3 - j as i64 * 5) % 17);
    let enc_old = c.encrypt_matrix(&x).unwrap();

    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let w1 = dense_rows(&mut rng, 2, n);
    assert_eq!(s.secure_matmul(&w1, &enc_old).unwrap(), w1.dot(&x));
    let w2 = dense_rows(&mut rng, 2, n);
    // 2 + 2 > 3: the domain rotates; the server is told where to.
    let successor = match s.secure_matmul(&w2, &enc_old) {
        Err(CoordinatorError::DomainRotated { retired, successor }) => {
            assert_eq!(retired, old);
            successor
        }
        other => panic!("expected a rotation, got {other:?}"),
    };
    assert_ne!(successor, old);
    {
        let a = auth.lock().unwrap();
        assert_eq!(a.status(old).unwrap(), DomainStatus::Rotated { successor });
        assert_eq!(a.status(successor).unwrap(), DomainStatus::Active);
        // Rank accounting follows the data: the successor carries the span issued so far.
        assert_eq!(a.issued_rank(successor).unwrap(), Some(2));
        let last = a.audit_log().records().last().unwrap();
        assert_eq!(last.outcome, AuditOutcome::Rotated { successor });
    }
    // The old domain issues nothing more, not even keys that fit its cap, and has no public key.
    assert!(matches!(
        s.secure_matmul(&w1, &enc_old),
        Err(CoordinatorError::DomainRotated { retired, successor: s2 }) if retired == old && s2 == successor
    ));
    assert!(matches!(
        s.key_service().public_key(old),
        Err(CoordinatorError::DomainRotated { .. })
    ));
    // The client re-encrypts under the successor; the server is served there.
    c.rekey(s.key_service().public_key(successor).unwrap())
        .unwrap();
    let enc_new = c.encrypt_matrix(&x).unwrap();
    assert_eq!(enc_new.domain(), successor);
    // What was issued before the rotation is served again on the re-encrypted data ...
    assert_eq!(s.secure_matmul(&w1, &enc_new).unwrap(), w1.dot(&x));
    // ... but the batch that reached the cap is refused, not served afresh: re-encrypting the
    // same x must not reset the cap (least-privilege review, hole 2).
    assert!(matches!(
        s.secure_matmul(&w2, &enc_new),
        Err(CoordinatorError::Refused {
            reason: PolicyRefusal::RankCapReached { cap: 3, .. },
            ..
        })
    ));
    // Keys of the new domain do not open the old ciphertexts (typed error, not garbage).
    let batch = s
        .request_keys(successor, &w1.select(ndarray::Axis(0), &[0]))
        .unwrap();
    assert!(matches!(
        s.secure_matmul_with_keys(&batch, &enc_old),
        Err(CoordinatorError::DomainMismatch { .. })
    ));
    // Even forging the domain id on the keys gives no plaintext: the dlog finds nothing.
    let forged = cryptonn::coordinator::FeipKeyBatch::new(
        old,
        params(n),
        batch.vectors().to_vec(),
        s.key_service()
            .feip_keys(&FeipKeyRequest {
                domain: successor,
                vectors: batch.vectors().to_vec(),
            })
            .unwrap()
            .keys,
    )
    .unwrap();
    assert!(matches!(
        s.secure_matmul_with_keys(&forged, &enc_old),
        Err(CoordinatorError::ProductOutOfRange { .. })
    ));
    // A batch no fresh domain could serve is refused, not rotated.
    let w4 = dense_rows(&mut rng, 4, n);
    assert!(matches!(
        s.secure_matmul(&w4, &enc_new),
        Err(CoordinatorError::Refused {
            reason: PolicyRefusal::RankCapReached { cap: 3, .. },
            ..
        })
    ));
}

#[test]
fn audit_log_records_every_issued_key() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000));
    let c2 = Arc::clone(&clock);
    let auth: Auth = Arc::new(Mutex::new(
        Authority::from_seed(Ristretto255, [4; 32])
            .with_audit_config(AuditConfig {
                store_vectors: true,
            })
            .with_clock(move || c2.fetch_add(1, Ordering::SeqCst)),
    ));
    let d1 = auth
        .lock()
        .unwrap()
        .create_domain(DomainConfig::new(params(6)).with_policy(PolicyConfig::permissive()))
        .unwrap();
    let d2 = auth
        .lock()
        .unwrap()
        .create_domain(DomainConfig::new(params(6)).with_policy(PolicyConfig::permissive()))
        .unwrap();
    let a = server(&auth, "alice");
    let b = server(&auth, "bob");
    let w = array![[1, 2, 3, 4, 5, 6], [0, 0, -1, 0, 0, 0], [1, 0, 0, 0, 0, 9]];
    a.request_keys(d1, &w).unwrap();
    b.request_keys(d2, &w.select(ndarray::Axis(0), &[1]))
        .unwrap();
    let auth = auth.lock().unwrap();
    let log = auth.audit_log();
    assert_eq!(log.len(), 4);
    for (i, r) in log.records().iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.outcome, AuditOutcome::Issued);
    }
    let expect = [
        (d1, "alice", 0),
        (d1, "alice", 1),
        (d1, "alice", 2),
        (d2, "bob", 1),
    ];
    for (r, (d, who, row)) in log.records().iter().zip(expect) {
        assert_eq!(r.domain, d);
        assert_eq!(r.requester, RequesterId::new(who));
        let y =
            SparseKeyVector::from_data(&KeyVectorData::Dense(w.row(row).to_vec()), 6, 100).unwrap();
        match &r.key {
            AuditedKey::Feip {
                vector_sha256,
                nnz,
                vector,
            } => {
                assert_eq!(*vector_sha256, y.sha256());
                assert_eq!(*nnz, y.nnz());
                assert_eq!(vector.as_ref(), Some(&y));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Times come from the clock: one reading per batch.
    assert_eq!(log.records()[0].unix_time, 1_700_000_000);
    assert_eq!(log.records()[3].unix_time, 1_700_000_001);
    assert_eq!(log.issued_in(d2).count(), 1);
    // Exported as JSON lines, one per record, readable back.
    let lines = log.to_json_lines().unwrap();
    assert_eq!(lines.lines().count(), 4);
    let back: cryptonn::coordinator::AuditRecord =
        serde_json::from_str(lines.lines().nth(3).unwrap()).unwrap();
    assert_eq!(&back, &log.records()[3]);
    // Dense and sparse forms of the same vector hash the same.
    let dense = SparseKeyVector::from_data(&KeyVectorData::Dense(vec![0, 0, 5, 0]), 4, 9).unwrap();
    let sparse =
        SparseKeyVector::from_data(&KeyVectorData::Sparse(vec![(1, 0), (2, 5)]), 4, 9).unwrap();
    assert_eq!(dense.sha256(), sparse.sha256());
}

#[test]
fn per_batch_domains_and_closing() {
    let auth = authority(5);
    let n = 8;
    let cfg = DomainConfig::new(params(n)).with_policy(PolicyConfig::per_batch());
    let d = auth.lock().unwrap().create_domain(cfg).unwrap();
    let s = server(&auth, "trainer");
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    // No rank cap: a full-rank batch is served ...
    s.request_keys(d, &dense_rows(&mut rng, 2 * n, n)).unwrap();
    assert_eq!(auth.lock().unwrap().issued_rank(d).unwrap(), None);
    // ... and low-weight vectors are served (the filter only refuses all-zero vectors, which
    // the server API never sends: see the next test).
    s.request_keys(d, &array![[0, 0, 0, 0, 0, 0, 1, 1]])
        .unwrap();
    assert_eq!(PolicyConfig::per_batch().min_nonzero_for(n), 1);
    // Closing erases the key: nothing more is issued.
    auth.lock().unwrap().close_domain(d).unwrap();
    assert!(matches!(
        s.request_keys(d, &dense_rows(&mut rng, 1, n)),
        Err(CoordinatorError::DomainClosed(_))
    ));
    assert_eq!(
        auth.lock().unwrap().status(d).unwrap(),
        DomainStatus::Closed
    );
}

/// A custom policy plugs in and its reason reaches the server.
#[test]
fn custom_policy() {
    #[derive(Debug)]
    struct OnlyNonNegative;
    impl KeyPolicy for OnlyNonNegative {
        fn review(&mut self, batch: &[SparseKeyVector]) -> Verdict {
            match batch
                .iter()
                .position(|v| v.terms().iter().any(|&(_, y)| y < 0))
            {
                Some(index) => Verdict::Refuse {
                    index,
                    reason: PolicyRefusal::Custom("negative weights are not allowed".into()),
                },
                None => Verdict::Admit,
            }
        }
        fn fresh(&self) -> Box<dyn KeyPolicy> {
            Box::new(OnlyNonNegative)
        }
    }
    let auth = authority(6);
    let d = auth
        .lock()
        .unwrap()
        .create_domain_with_policy(DomainConfig::new(params(3)), Box::new(OnlyNonNegative))
        .unwrap();
    let s = server(&auth, "s");
    s.request_keys(d, &array![[1, 0, 2]]).unwrap();
    let err = s
        .request_keys(d, &array![[1, 0, 2], [1, -1, 0]])
        .unwrap_err();
    assert!(err.to_string().contains("negative weights"));
}

/// The same requests against an in-memory log and a file-backed one: the file holds every
/// record (issued and refused), with contiguous sequence numbers, and reads back identical.
#[test]
fn audit_file_sink_records_every_key_and_reads_back() {
    use cryptonn::coordinator::{read_audit_file, AuditFileOptions, AuditFileSink, AuditLog};
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-audit.cnnaudit");
    let sink = AuditFileSink::create(&path, AuditFileOptions { fsync: true }).unwrap();
    let make = |log: Option<AuditLog>| -> Auth {
        let mut a = Authority::from_seed(Ristretto255, [9; 32]).with_clock(|| 1_700_000_000);
        if let Some(log) = log {
            a = a.with_audit_log(log);
        }
        Arc::new(Mutex::new(a))
    };
    let memory = make(None);
    let file = make(Some(AuditLog::with_sink(
        AuditConfig::default(),
        Box::new(sink),
    )));
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    // Five distinct rows, repeated: the rank stays under the default cap n/2.
    let w = dense_rows(&mut rng, 5, 12);
    let mut probe = Array2::zeros((1, 12));
    probe[[0, 3]] = 1;
    for auth in [&memory, &file] {
        let d = auth
            .lock()
            .unwrap()
            .create_domain(DomainConfig::new(params(12)))
            .unwrap();
        let s = server(auth, "trainer");
        for chunk in 0..4 {
            let rows: Vec<usize> = (0..10).map(|i| (chunk + i) % 5).collect();
            s.request_keys(d, &w.select(ndarray::Axis(0), &rows))
                .unwrap_or_else(|e| panic!("chunk {chunk}: {e}"));
        }
        assert!(matches!(
            s.request_keys(d, &probe),
            Err(CoordinatorError::Refused { .. })
        ));
    }
    let memory = memory.lock().unwrap();
    let file = file.lock().unwrap();
    assert!(file.audit_log().is_streamed());
    assert!(file.audit_log().records().is_empty());
    assert_eq!(file.audit_log().len(), memory.audit_log().len());
    let back: Vec<_> = read_audit_file(&path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back.len(), memory.audit_log().len());
    for (i, r) in back.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
    }
    assert_eq!(back.as_slice(), memory.audit_log().records());
    assert!(matches!(
        back.last().unwrap().outcome,
        AuditOutcome::Refused(PolicyRefusal::TooFewNonZero { got: 1, .. })
    ));
    // A truncated file is an error, not a shorter log.
    let bytes = std::fs::read(&path).unwrap();
    let cut = path.with_extension("cut");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let read: Result<Vec<_>, _> = read_audit_file(&cut).unwrap().collect();
    assert!(read.is_err());
}

/// In a shard domain (`per_batch`), a legitimate weight-gradient key with one non-zero pixel
/// coefficient — a border block for a one-hot `dq` — is issued; in a default-policy domain a
/// one-hot probe is still refused; the all-zero vector is refused everywhere.
#[test]
fn shard_domain_issues_sparse_gradient_keys_default_refuses_probes() {
    use cryptonn::coordinator::secure_training::geometry::gradient_outputs;
    let auth = authority(12);
    let n = 784;
    let p = FeipParams::new(n, 255, 1 << 20).unwrap();
    // dq one-hot at (f=0, i=0, j=0): output G[0, a=1, b=1] reads box (1, 1) of the padded image,
    // which holds a single real pixel (0, 0).
    let mut dq = vec![0i64; 1176];
    dq[0] = 3;
    let outputs = gradient_outputs(&dq, -1);
    let g = &outputs[5 + 1];
    assert_eq!(g.pixel_terms, vec![(0, 3)]);
    let mut row = Array2::<i64>::zeros((1, n));
    row[[0, 0]] = 3;
    let (shard, ordinary) = {
        let mut a = auth.lock().unwrap();
        (
            a.create_domain(DomainConfig::new(p).with_policy(PolicyConfig::per_batch()))
                .unwrap(),
            a.create_domain(DomainConfig::new(p)).unwrap(),
        )
    };
    let s = server(&auth, "trainer");
    let keys = s.request_keys(shard, &row).unwrap();
    assert_eq!(keys.len(), 1);
    // The same vector is a one-hot probe to an ordinary domain: refused, with the reason.
    assert!(matches!(
        s.request_keys(ordinary, &row),
        Err(CoordinatorError::Refused {
            reason: PolicyRefusal::TooFewNonZero { got: 1, min: 4 },
            ..
        })
    ));
    // The all-zero vector is refused in the shard domain too.
    let zero = KeyVectorData::Sparse(vec![]);
    let err = auth
        .lock()
        .unwrap()
        .issue_feip_keys(
            &RequesterId::new("trainer"),
            &FeipKeyRequest {
                domain: shard,
                vectors: vec![zero],
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoordinatorError::Refused {
                reason: PolicyRefusal::TooFewNonZero { got: 0, min: 1 },
                ..
            }
        ),
        "{err}"
    );
}
