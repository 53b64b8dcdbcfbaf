//! The discrete-log table's disk cache: round trip, and every kind of damage is detected or
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns
//! harmless (a result is never silently wrong).

use std::path::PathBuf;
use std::sync::Arc;

use cryptonn::fe::dlog::{BabyStepTable, DlogSolver};
use cryptonn::fe::error::DlogError;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use sha2::{Digest, Sha256};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cryptonn-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const HALF: u64 = 2000;

fn solves_correctly(table: BabyStepTable<Ristretto255>) {
    let solver = DlogSolver::new(Arc::new(table), 50_000).unwrap();
    let g = Ristretto255;
    let zs = [
        -50_000i64, -4001, -2000, -1, 0, 1, 1999, 2001, 12345, 50_000,
    ];
    let elems: Vec<_> = zs.iter().map(|&z| g.vartime_exp_generator_i64(z)).collect();
    for (z, r) in zs.iter().zip(solver.vartime_solve_batch(&elems)) {
        assert_eq!(r.unwrap(), *z);
    }
    assert!(solver
        .vartime_solve(&g.vartime_exp_generator_i64(50_001))
        .is_err());
}

#[test]
fn save_load_roundtrip_and_load_or_build() {
    let dir = temp_dir("roundtrip");
    let built = BabyStepTable::load_or_build(Ristretto255, HALF, &dir).unwrap();
    let path = dir.join(BabyStepTable::cache_file_name(&Ristretto255, HALF));
    assert!(path.exists());
    solves_correctly(built);
    let loaded = BabyStepTable::load(Ristretto255, HALF, &path).unwrap();
    solves_correctly(loaded);
    // Asking for another size does not accept this file.
    assert!(matches!(
        BabyStepTable::load(Ristretto255, HALF + 1, &path),
        Err(DlogError::CorruptCache(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_files_are_rejected_and_rebuilt() {
    let dir = temp_dir("damage");
    let path = dir.join(BabyStepTable::cache_file_name(&Ristretto255, HALF));
    BabyStepTable::new(Ristretto255, HALF)
        .unwrap()
        .save(&path)
        .unwrap();
    let good = std::fs::read(&path).unwrap();

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    cases.push(("truncated", good[..good.len() / 2].to_vec()));
    cases.push(("empty", Vec::new()));
    let mut flipped = good.clone();
    flipped[100] ^= 0x10;
    cases.push(("bit flip in slots", flipped));
    let mut version = good.clone();
    version[8] = 99;
    cases.push(("version", version));
    let mut magic = good.clone();
    magic[0] = b'X';
    cases.push(("magic", magic));
    let mut group = good.clone();
    group[10] = 2;
    cases.push(("group id", group));
    for (what, bytes) in cases {
        std::fs::write(&path, &bytes).unwrap();
        assert!(
            BabyStepTable::load(Ristretto255, HALF, &path).is_err(),
            "{what} accepted"
        );
        // load_or_build replaces the damaged file with a good one.
        let t = BabyStepTable::load_or_build(Ristretto255, HALF, &dir).unwrap();
        solves_correctly(t);
        assert_eq!(std::fs::read(&path).unwrap(), good, "{what} not rewritten");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn forged_table_with_valid_checksum_never_gives_a_wrong_answer() {
    let dir = temp_dir("forged");
    let path = dir.join("forged.bin");
    BabyStepTable::new(Ristretto255, HALF)
        .unwrap()
        .save(&path)
        .unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let header = 36;
    let body_end = bytes.len() - 32;
    // Rotate every stored exponent by one (j -> j + 1), keeping tags: a consistent-looking but
    // wrong table. Then fix up the checksum so the file is accepted.
    let entries = HALF + 1;
    for chunk in bytes[header..body_end].chunks_exact_mut(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let s = u64::from_le_bytes(w);
        if s != 0 {
            let v = s & 0xFFFF_FFFF;
            let v2 = v % entries + 1;
            chunk.copy_from_slice(&((s & !0xFFFF_FFFF) | v2).to_le_bytes());
        }
    }
    let digest = Sha256::digest(&bytes[..body_end]);
    bytes[body_end..].copy_from_slice(&digest);
    std::fs::write(&path, &bytes).unwrap();
    let table = BabyStepTable::load(Ristretto255, HALF, &path).unwrap();
    let solver = DlogSolver::table_only(Arc::new(table));
    let g = Ristretto255;
    for z in -50i64..=50 {
        // Every hit is verified, so the forged entries can only cause misses.
        match solver.vartime_solve(&g.vartime_exp_generator_i64(z)) {
            Ok(found) => assert_eq!(found, z),
            Err(DlogError::OutOfRange { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
