//! Wire-format round trips and rejection of malformed bytes, for every backend.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use cryptonn::fe::error::{GroupError, SerializationError};
use cryptonn::fe::febo::{
    Febo, FeboCiphertext, FeboFunctionKey, FeboOp, FeboParams, FeboPublicKey,
};
use cryptonn::fe::feip::{Ciphertext, Feip, FeipParams, FunctionKey, MasterPublicKey};
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::fe::serialize::WireFormat;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Round trip, then: every truncation, every single-bit flip (or a stride of them for long
/// encodings), an appended byte, and a version bump all give errors.
fn check_damage<G: PrimeOrderGroup, T: WireFormat<G> + PartialEq + std::fmt::Debug>(g: &G, v: &T) {
    let bytes = v.to_bytes(g);
    assert_eq!(&T::from_bytes(g, &bytes).unwrap(), v);
    let stride = (bytes.len() / 200).max(1);
    for len in (0..bytes.len()).step_by(stride) {
        assert!(
            T::from_bytes(g, &bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    for pos in (0..bytes.len()).step_by(stride) {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[pos] ^= 1 << bit;
            assert!(T::from_bytes(g, &b).is_err(), "flip byte {pos} bit {bit}");
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(T::from_bytes(g, &longer).is_err());
    let mut version = bytes.clone();
    version[4] = 2;
    assert_eq!(
        T::from_bytes(g, &version).unwrap_err(),
        SerializationError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
}

/// Re-frames a payload with a correct header and checksum, to reach the payload validation.
fn reframe<G: PrimeOrderGroup>(g: &G, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = b"CNFE".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.push(g.id().to_byte());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn suite<G: PrimeOrderGroup>(g: &G, n: usize) {
    let mut r = ChaCha20Rng::seed_from_u64(9);
    let feip = Feip::new(g.clone(), FeipParams::new(n, 100, 100).unwrap());
    let (msk, mpk) = feip.setup(&mut r);
    let x: Vec<i64> = (0..n as i64).map(|i| i - 3).collect();
    let ct = feip.encrypt(&mpk, &x, &mut r).unwrap();
    let key = feip.derive_key(&msk, &x).unwrap();
    check_damage(g, &mpk);
    check_damage(g, &ct);
    check_damage(g, &key);
    let febo = Febo::new(g.clone(), FeboParams::new(100, 100).unwrap());
    let (fmsk, fpk) = febo.setup(&mut r);
    let fct = febo.encrypt(&fpk, 7, &mut r).unwrap();
    let fkey = febo
        .derive_key(&fmsk, fct.commitment(), FeboOp::Mul, -3)
        .unwrap();
    check_damage(g, &fpk);
    check_damage(g, &fct);
    check_damage(g, &fkey);

    // Kind confusion: a ciphertext is not a public key.
    assert!(matches!(
        MasterPublicKey::<G>::from_bytes(g, &ct.to_bytes(g)),
        Err(SerializationError::KindMismatch {
            expected: 1,
            found: 2
        })
    ));
    // Payload-level errors behind a valid frame.
    let el = g.element_len();
    let bad_len = reframe(g, 1, &0u32.to_le_bytes());
    assert_eq!(
        MasterPublicKey::<G>::from_bytes(g, &bad_len).unwrap_err(),
        SerializationError::InvalidLength(0)
    );
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend(vec![0u8; el]);
    assert!(MasterPublicKey::<G>::from_bytes(g, &reframe(g, 1, &huge)).is_err());
    let mut short = 3u32.to_le_bytes().to_vec();
    short.extend(g.element_to_bytes(&g.generator()));
    assert_eq!(
        MasterPublicKey::<G>::from_bytes(g, &reframe(g, 1, &short)).unwrap_err(),
        SerializationError::Truncated
    );
    let mut invalid = 1u32.to_le_bytes().to_vec();
    invalid.extend(vec![0xFFu8; el]);
    assert!(matches!(
        MasterPublicKey::<G>::from_bytes(g, &reframe(g, 1, &invalid)),
        Err(SerializationError::Group(_))
    ));
    let non_canonical = vec![0xFFu8; g.scalar_len()];
    assert_eq!(
        FunctionKey::<G>::from_bytes(g, &reframe(g, 3, &non_canonical)).unwrap_err(),
        SerializationError::Group(GroupError::NonCanonicalScalar)
    );
    let mut bad_op = vec![9u8];
    bad_op.extend_from_slice(&1i64.to_le_bytes());
    bad_op.extend(g.element_to_bytes(&g.generator()));
    assert!(matches!(
        FeboFunctionKey::<G>::from_bytes(g, &reframe(g, 6, &bad_op)),
        Err(SerializationError::InvalidField(_))
    ));
    let _ = (
        Ciphertext::<G>::from_bytes(g, &[]),
        FeboCiphertext::<G>::from_bytes(g, &[]),
        FeboPublicKey::<G>::from_bytes(g, &[]),
    );
}

#[test]
fn ristretto255() {
    suite(&Ristretto255, 5);
}

#[test]
fn modp_insecure_test_group() {
    suite(&ModpGroup::insecure_test_group(), 5);
}

#[test]
fn modp2048() {
    suite(&ModpGroup::rfc3526_2048(), 2);
}

#[test]
fn group_mismatch_is_detected() {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let g = ModpGroup::insecure_test_group();
    let febo = Febo::new(g.clone(), FeboParams::new(10, 10).unwrap());
    let (_, pk) = febo.setup(&mut r);
    let bytes = pk.to_bytes(&g);
    assert!(matches!(
        FeboPublicKey::from_bytes(&ModpGroup::rfc3526_2048(), &bytes),
        Err(SerializationError::GroupMismatch { .. })
    ));
}

#[test]
fn serde_json_round_trip_on_ristretto() {
    let mut r = ChaCha20Rng::seed_from_u64(2);
    let feip = Feip::new(Ristretto255, FeipParams::new(3, 10, 10).unwrap());
    let (msk, mpk) = feip.setup(&mut r);
    let ct = feip.encrypt(&mpk, &[1, 2, 3], &mut r).unwrap();
    let key = feip.derive_key(&msk, &[1, 1, 1]).unwrap();
    let json = serde_json::to_string(&(&mpk, &ct, &key)).unwrap();
    let (mpk2, ct2, key2): (
        MasterPublicKey<Ristretto255>,
        Ciphertext<Ristretto255>,
        FunctionKey<Ristretto255>,
    ) = serde_json::from_str(&json).unwrap();
    assert_eq!((mpk2, ct2, key2), (mpk, ct.clone(), key));
    // Damaged JSON payloads are errors, not panics.
    let mut v: Vec<u8> = serde_json::from_str(&serde_json::to_string(&ct).unwrap()).unwrap();
    v[12] ^= 4;
    let damaged = serde_json::to_string(&v).unwrap();
    assert!(serde_json::from_str::<Ciphertext<Ristretto255>>(&damaged).is_err());
}
