//! The authority's state under damage and hostile requests (hardening review, 1, 4 and 5):
//! refused requests never reach the journal, the journal and the audit file are hash-chained
//! against a head kept beside the seed, torn tails are repaired and reported, everything else
//! fails naming the file and the offset, and domain ids are never handed out twice.
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use std::path::{Path, PathBuf};

use cryptonn::coordinator::persistent::{AUDIT_FILE, HEAD_FILE, JOURNAL_FILE, SEED_FILE};
use cryptonn::coordinator::{
    read_audit_file, AuditRecord, CoordinatorError, DomainConfig, DomainId,
    FeboCommitmentRegistration, FeboKeyItem, FeboKeyRequest, FeipKeyRequest, KeyVectorData,
    PersistentAuthority, PolicyConfig, RequesterId, StateError, StateOptions,
};
use cryptonn::fe::febo::{FeboOp, FeboParams};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::fe::serialize::WireFormat;

const FAST: StateOptions = StateOptions {
    audit: cryptonn::coordinator::AuditConfig {
        store_vectors: false,
    },
    fsync: false,
};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-state-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn open(dir: &Path) -> Result<PersistentAuthority<Ristretto255>, StateError> {
    PersistentAuthority::open(Ristretto255, dir, FAST)
}

fn dense(domain: DomainId, y: Vec<i64>) -> FeipKeyRequest {
    FeipKeyRequest {
        domain,
        vectors: vec![KeyVectorData::Dense(y)],
    }
}

/// Everything a restart must restore, to compare two states.
/// A domain: id, status, public key (if active), issued rank (if tracked).
type DomainView = (DomainId, String, Option<Vec<u8>>, Option<usize>);

#[derive(Debug, PartialEq)]
struct Snapshot {
    domains: Vec<DomainView>,
    audit: Vec<AuditRecord>,
}

fn snapshot(a: &PersistentAuthority<Ristretto255>) -> Snapshot {
    let g = Ristretto255;
    let auth = a.authority();
    let domains = auth
        .domain_ids()
        .into_iter()
        .map(|d| {
            (
                d,
                format!("{:?}", auth.status(d).unwrap()),
                a.public_key(d).ok().map(|pk| pk.feip.to_bytes(&g)),
                auth.issued_rank(d).unwrap(),
            )
        })
        .collect();
    let audit = read_audit_file(a.audit_path())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    Snapshot { domains, audit }
}

/// A small state: a default-policy domain with FEBO (rank tracked, so key batches are
/// journaled), a rotating domain that rotated, a closed domain; issued keys, a refusal and a
/// rotation in the audit file.
fn small_state(dir: &Path) -> Snapshot {
    let who = RequesterId::new("server-1");
    let mut a = open(dir).unwrap();
    let params = FeipParams::new(8, 255, 100).unwrap();
    let d0 = a
        .create_domain(DomainConfig::new(params).with_febo(FeboParams::new(1000, 10).unwrap()))
        .unwrap();
    let d1 = a
        .create_domain(DomainConfig::new(params).with_policy(PolicyConfig::rotating()))
        .unwrap();
    let d2 = a.create_domain(DomainConfig::new(params)).unwrap();
    a.issue_feip_keys(&who, &dense(d0, vec![1, 2, 3, 4, 5, 6, 7, 8]))
        .unwrap();
    let refused = a.issue_feip_keys(
        &who,
        &FeipKeyRequest {
            domain: d0,
            vectors: vec![KeyVectorData::Sparse(vec![(3, 1)])],
        },
    );
    assert!(matches!(refused, Err(CoordinatorError::Refused { .. })));
    for i in 0..5 {
        let mut y = vec![1; 8];
        y[i] = 9;
        let _ = a.issue_feip_keys(&who, &dense(d1, y));
    }
    let g = Ristretto255;
    let cmt = g.element_to_bytes(&g.exp_generator(&g.scalar_from_i64(7)));
    // FEBO keys are issued only for registered commitments (crypto review); the registration is
    // journaled too.
    a.register_febo_commitments(
        &who,
        &FeboCommitmentRegistration {
            domain: d0,
            commitments: vec![cmt.clone()],
        },
    )
    .unwrap();
    a.issue_febo_keys(
        &who,
        &FeboKeyRequest {
            domain: d0,
            items: vec![FeboKeyItem {
                commitment: cmt,
                op: FeboOp::Add,
                operand: 3,
            }],
        },
    )
    .unwrap();
    a.close_domain(d2).unwrap();
    snapshot(&a)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        std::fs::copy(e.path(), &dst).unwrap();
    }
}

/// Reproduction 1: a request that fails validation (here, every kind of refused request) is
/// written nowhere, and the authority restarts afterwards with the same state.
#[test]
fn refused_requests_never_reach_the_journal_and_restart_works() {
    let dir = temp_dir("refused");
    let who = RequesterId::new("server-1");
    let before = {
        let mut a = open(&dir).unwrap();
        let params = FeipParams::new(8, 255, 100).unwrap();
        let d = a.create_domain(DomainConfig::new(params)).unwrap();
        let closed = a.create_domain(DomainConfig::new(params)).unwrap();
        a.close_domain(closed).unwrap();
        let rotated = a.create_domain(DomainConfig::new(params)).unwrap();
        a.rotate(rotated).unwrap();
        a.issue_feip_keys(&who, &dense(d, vec![1, 2, 3, 4, 5, 6, 7, 8]))
            .unwrap();
        let journal = std::fs::read(dir.join(JOURNAL_FILE)).unwrap();
        let bad: Vec<FeipKeyRequest> = vec![
            // The reproduction: one entry too many.
            dense(d, vec![1; 9]),
            dense(d, vec![1; 7]),
            dense(d, vec![101, 1, 1, 1, 1, 1, 1, 1]),
            FeipKeyRequest {
                domain: d,
                vectors: vec![],
            },
            FeipKeyRequest {
                domain: d,
                vectors: vec![KeyVectorData::Sparse(vec![(3, 1), (1, 1), (2, 1), (4, 1)])],
            },
            FeipKeyRequest {
                domain: d,
                vectors: vec![KeyVectorData::Sparse(vec![(1, 1), (2, 1), (3, 1), (8, 1)])],
            },
            dense(DomainId(99), vec![1; 8]),
            dense(closed, vec![1; 8]),
            dense(rotated, vec![1; 8]),
        ];
        for r in &bad {
            assert!(a.issue_feip_keys(&who, r).is_err(), "{r:?}");
        }
        let febo = FeboKeyRequest {
            domain: d,
            items: vec![FeboKeyItem {
                commitment: vec![0xff; 32],
                op: FeboOp::Add,
                operand: 1,
            }],
        };
        assert!(a.issue_febo_keys(&who, &febo).is_err());
        let disabled = FeboKeyRequest {
            domain: closed,
            items: vec![],
        };
        assert!(a.issue_febo_keys(&who, &disabled).is_err());
        assert_eq!(
            std::fs::read(dir.join(JOURNAL_FILE)).unwrap(),
            journal,
            "a refused request reached the journal"
        );
        // A policy refusal (a one-hot probe) passed validation: journaled, and replayed.
        let probe = FeipKeyRequest {
            domain: d,
            vectors: vec![KeyVectorData::Sparse(vec![(3, 1)])],
        };
        assert!(matches!(
            a.issue_feip_keys(&who, &probe),
            Err(CoordinatorError::Refused { .. })
        ));
        snapshot(&a)
    };
    let a = open(&dir).expect("restart after refused requests");
    assert_eq!(snapshot(&a), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reproduction 4: a flipped length field in a refusal record used to make the restart cut the
/// audit file to its header; a flip inside a hash field went unnoticed.
#[test]
fn audit_flips_fail_the_restart_naming_file_and_offset() {
    let dir = temp_dir("audit-flip");
    small_state(&dir);
    let audit = dir.join(AUDIT_FILE);
    let pristine = std::fs::read(&audit).unwrap();
    // The refusal's reason is JSON: find its length field (just before the '{').
    let json = pristine
        .windows(2)
        .position(|w| w == b"{\"")
        .expect("a refusal record");
    let mut flip_len = pristine.clone();
    flip_len[json - 2] ^= 0x40;
    // The first record's vector hash: after the requester entry (1 + 32 + 4 + 2 + 8 bytes)
    // and the record's tag, chain hash, seq, time, domain, requester id and key kind.
    let first_record = 10 + 1 + 32 + 4 + 2 + "server-1".len();
    let mut flip_hash = pristine.clone();
    flip_hash[first_record + 1 + 32 + 8 + 8 + 8 + 4 + 1 + 5] ^= 0x01;
    for (what, bytes) in [("length", flip_len), ("hash", flip_hash)] {
        std::fs::write(&audit, &bytes).unwrap();
        let err = open(&dir).expect_err(what).to_string();
        assert!(err.contains(AUDIT_FILE), "{what}: {err}");
        assert!(err.contains("offset"), "{what}: {err}");
        assert_eq!(
            std::fs::read(&audit).unwrap(),
            bytes,
            "{what}: the file was changed"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reproduction 5: a truncated or deleted journal (or audit file, or head) fails the restart;
/// it no longer starts with fewer domains and hands out their ids and keys again.
#[test]
fn lost_journal_entries_fail_the_restart() {
    let dir = temp_dir("journal-loss");
    small_state(&dir);
    let journal = dir.join(JOURNAL_FILE);
    let text = std::fs::read(&journal).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    assert!(lines.len() >= 6, "{}", lines.len());
    // Cut to fewer complete lines (each cut point is a line boundary: no torn tail).
    for keep in [0, 1, lines.len() / 2, lines.len() - 1] {
        std::fs::write(&journal, lines[..keep].concat()).unwrap();
        let err = open(&dir).expect_err("truncated journal").to_string();
        assert!(err.contains(JOURNAL_FILE), "{err}");
        assert!(err.contains("offset"), "{err}");
    }
    std::fs::write(&journal, &text).unwrap();
    for file in [JOURNAL_FILE, AUDIT_FILE, HEAD_FILE] {
        let saved = std::fs::read(dir.join(file)).unwrap();
        std::fs::remove_file(dir.join(file)).unwrap();
        let err = open(&dir).expect_err(file).to_string();
        assert!(err.contains(file), "{err}");
        std::fs::write(dir.join(file), saved).unwrap();
    }
    // Intact again: opens.
    open(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Torn last writes (a line without its newline, an audit entry cut short) are cut and
/// reported, and nothing else changes.
#[test]
fn torn_tails_are_repaired_and_reported() {
    let dir = temp_dir("torn");
    let before = small_state(&dir);
    let journal = dir.join(JOURNAL_FILE);
    let audit = dir.join(AUDIT_FILE);
    let (j, au) = (
        std::fs::read(&journal).unwrap(),
        std::fs::read(&audit).unwrap(),
    );
    let mut torn = j.clone();
    torn.extend_from_slice(b"{\"prev\":\"00");
    std::fs::write(&journal, &torn).unwrap();
    let mut torn = au.clone();
    torn.extend_from_slice(&[2, 1, 2, 3]);
    std::fs::write(&audit, &torn).unwrap();
    let a = open(&dir).unwrap();
    let report = *a.restore_report();
    assert_eq!(report.journal_torn_bytes, 11);
    assert_eq!(report.audit_torn_bytes, 4);
    assert!(report.to_string().contains("torn"), "{report}");
    assert_eq!(snapshot(&a), before);
    drop(a);
    assert_eq!(std::fs::read(&journal).unwrap(), j);
    assert_eq!(std::fs::read(&audit).unwrap(), au);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Domain ids are never handed out twice: ids reserved by a creation that never finished are
/// skipped after a restart, and the keys of later domains differ from every earlier one.
#[test]
fn domain_ids_and_keys_are_never_reused() {
    let dir = temp_dir("ids");
    let params = FeipParams::new(8, 255, 100).unwrap();
    let g = Ristretto255;
    let first = {
        let mut a = open(&dir).unwrap();
        let d = a.create_domain(DomainConfig::new(params)).unwrap();
        // Reserve three ids, then "crash" before the domains are journaled.
        let pending = a
            .begin_create_domains(DomainConfig::new(params), 3)
            .unwrap();
        drop(pending);
        (d, a.public_key(d).unwrap().feip.to_bytes(&g))
    };
    let mut a = open(&dir).unwrap();
    assert_eq!(a.public_key(first.0).unwrap().feip.to_bytes(&g), first.1);
    let next = a.create_domain(DomainConfig::new(params)).unwrap();
    assert_eq!(next, DomainId(4), "reserved ids 1..=3 must not be reused");
    assert_ne!(a.public_key(next).unwrap().feip.to_bytes(&g), first.1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A state directory of an older cryptonn (no head, format-1 journal) is refused with a
/// message that says so.
#[test]
fn old_state_format_is_refused_clearly() {
    let dir = temp_dir("v1");
    small_state(&dir);
    std::fs::remove_file(dir.join(HEAD_FILE)).unwrap();
    let err = open(&dir).unwrap_err().to_string();
    assert!(err.contains("older cryptonn"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Flip every byte of a small state directory, one at a time (xor 0x01; xor 0xff too on the
/// seed and the head): each flip is either detected (the restart fails) or harmless (the
/// restart restores exactly the same domains, keys, policy state and audit records). None
/// silently loses a record. (Two threads, about 20 s.)
#[test]
fn every_byte_flip_is_detected_or_harmless() {
    let dir = temp_dir("flip-src");
    let before = small_state(&dir);
    let mut trials = Vec::new();
    for file in [SEED_FILE, HEAD_FILE, JOURNAL_FILE, AUDIT_FILE] {
        let len = std::fs::read(dir.join(file)).unwrap().len();
        let masks: &[u8] = if file == SEED_FILE || file == HEAD_FILE {
            &[0x01, 0xff]
        } else {
            &[0x01]
        };
        for i in 0..len {
            for &mask in masks {
                trials.push((file, i, mask));
            }
        }
    }
    let (detected, harmless) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let (dir, before, trials) = (&dir, &before, &trials);
                s.spawn(move || {
                    let work = temp_dir(&format!("flip-work-{w}"));
                    let (mut detected, mut harmless) = (0usize, 0usize);
                    for &(file, i, mask) in trials.iter().skip(w).step_by(2) {
                        copy_dir(dir, &work);
                        let mut bytes = std::fs::read(dir.join(file)).unwrap();
                        bytes[i] ^= mask;
                        std::fs::write(work.join(file), &bytes).unwrap();
                        match open(&work) {
                            Err(_) => detected += 1,
                            Ok(a) => {
                                assert_eq!(
                                    &snapshot(&a),
                                    before,
                                    "{file} byte {i} ^ {mask:#x} changed the restored state"
                                );
                                // Only the head has redundancy (two slots); elsewhere every
                                // bit counts.
                                assert_eq!(file, HEAD_FILE, "byte {i} ^ {mask:#x} went unnoticed");
                                harmless += 1;
                            }
                        }
                    }
                    let _ = std::fs::remove_dir_all(&work);
                    (detected, harmless)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    });
    assert_eq!(detected + harmless, trials.len());
    assert!(detected > 1000, "{detected} detected, {harmless} harmless");
    std::fs::remove_dir_all(&dir).unwrap();
}
