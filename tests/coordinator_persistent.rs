//! The persistent authority: a restart restores every domain (same public keys, same function
//! keys, same policy state, rotations), the audit log continues where it stopped, torn tails
//! are cut, and a master seed readable by others is refused.
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

use cryptonn::coordinator::persistent::{AUDIT_FILE, JOURNAL_FILE, SEED_FILE};
use cryptonn::coordinator::{
    read_audit_file, AuditOutcome, CoordinatorError, DomainConfig, DomainId, DomainStatus,
    FeipKeyRequest, KeyVectorData, PersistentAuthority, PolicyConfig, RequesterId, StateError,
    StateOptions,
};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::serialize::WireFormat;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptonn-persist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn open(dir: &std::path::Path) -> PersistentAuthority<Ristretto255> {
    PersistentAuthority::open(Ristretto255, dir, StateOptions::default()).unwrap()
}

fn request(domain: DomainId, y: Vec<i64>) -> FeipKeyRequest {
    FeipKeyRequest {
        domain,
        vectors: vec![KeyVectorData::Dense(y)],
    }
}

#[test]
fn restart_restores_domains_policy_and_audit() {
    let dir = temp_dir("restore");
    let who = RequesterId::new("server-1");
    let params = FeipParams::new(8, 255, 100).unwrap();
    let (pk_bytes, key_bytes, rank) = {
        let mut a = open(&dir);
        let d0 = a.create_domain(DomainConfig::new(params)).unwrap();
        let d1 = a
            .create_domain(DomainConfig::new(params).with_policy(PolicyConfig::rotating()))
            .unwrap();
        let k = a
            .issue_feip_keys(&who, &request(d0, vec![1, 2, 3, 4, 0, 0, 0, 0]))
            .unwrap();
        a.issue_feip_keys(&who, &request(d0, vec![0, 0, 0, 0, 5, 6, 7, 8]))
            .unwrap();
        // Four independent vectors reach the cap n/2 = 4 of d1; the fifth rotates it.
        for i in 0..4 {
            let mut y = vec![1; 8];
            y[i] = 9;
            a.issue_feip_keys(&who, &request(d1, y)).unwrap();
        }
        let err = a
            .issue_feip_keys(&who, &request(d1, vec![1, 1, 1, 1, 9, 1, 1, 1]))
            .unwrap_err();
        assert!(
            matches!(err, CoordinatorError::DomainRotated { .. }),
            "{err}"
        );
        let g = *a.authority().group();
        (
            a.public_key(d0).unwrap().feip.to_bytes(&g),
            k.keys[0].to_bytes(&g),
            a.authority().issued_rank(d0).unwrap(),
        )
    };
    let mut a = open(&dir);
    let g = Ristretto255;
    assert_eq!(a.authority().domain_ids().len(), 3);
    assert_eq!(
        a.authority().status(DomainId(1)).unwrap(),
        DomainStatus::Rotated {
            successor: DomainId(2)
        }
    );
    assert_eq!(
        a.public_key(DomainId(0)).unwrap().feip.to_bytes(&g),
        pk_bytes
    );
    assert_eq!(a.authority().issued_rank(DomainId(0)).unwrap(), rank);
    assert_eq!(rank, Some(2));
    let again = a
        .issue_feip_keys(&who, &request(DomainId(0), vec![1, 2, 3, 4, 0, 0, 0, 0]))
        .unwrap();
    assert_eq!(again.keys[0].to_bytes(&g), key_bytes);
    // 2 + 4 issued, 1 rotation record, 1 issued after the restart: contiguous from 0.
    let records: Vec<_> = read_audit_file(dir.join(AUDIT_FILE))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 8);
    assert!(matches!(records[6].outcome, AuditOutcome::Rotated { .. }));
    assert_eq!(records[7].seq, 7);
    assert_eq!(a.authority().audit_log().len(), 8);
    drop(a);

    // A torn tail in the audit file and the journal is cut at the next start.
    let audit = dir.join(AUDIT_FILE);
    let mut bytes = std::fs::read(&audit).unwrap();
    bytes.extend_from_slice(&[2, 8, 0, 0]);
    std::fs::write(&audit, &bytes).unwrap();
    let journal = dir.join(JOURNAL_FILE);
    let mut text = std::fs::read(&journal).unwrap();
    text.extend_from_slice(b"{\"op\":\"clo");
    std::fs::write(&journal, &text).unwrap();
    let a = open(&dir);
    assert_eq!(a.authority().audit_log().len(), 8);
    assert_eq!(a.authority().domain_ids().len(), 3);
    drop(a);
    assert_eq!(read_audit_file(&audit).unwrap().count(), 8);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(unix)]
#[test]
fn seed_is_private_and_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("seed");
    drop(open(&dir));
    let seed = dir.join(SEED_FILE);
    assert_eq!(
        std::fs::metadata(&seed).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = PersistentAuthority::open(Ristretto255, &dir, StateOptions::default()).unwrap_err();
    assert!(
        matches!(err, StateError::InsecurePermissions { .. }),
        "{err}"
    );
    std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A journal without its seed is not silently replaced by a fresh authority.
    std::fs::remove_file(&seed).unwrap();
    let err = PersistentAuthority::open(Ristretto255, &dir, StateOptions::default()).unwrap_err();
    assert!(err.to_string().contains(SEED_FILE), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
