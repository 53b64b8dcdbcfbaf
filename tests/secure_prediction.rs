//! Secure prediction: an encrypted query gets bit-for-bit the probabilities of the quantised
//! plaintext model; a query moved to another domain, damaged bytes and mismatched parameters
//! are errors, never a wrong class.

use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::secure_prediction::{
    open_query_domain, EncryptedQuery, SecurePredictor,
};
use cryptonn::coordinator::secure_training::{EncryptionParams, SecureTrainingError};
use cryptonn::coordinator::{Authority, InProcessKeyService, RequesterId};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{LabelPermutation, Mnist};
use cryptonn::nn::first_layer::{FirstLayerBackend, QuantizedFirstLayer};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::TrainConfig;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

struct Fixture {
    authority: Arc<Mutex<Authority<Ristretto255>>>,
    predictor: SecurePredictor<Ristretto255, InProcessKeyService<Ristretto255>>,
    params: EncryptionParams,
    cfg: TrainConfig,
}

fn fixture() -> Fixture {
    let cfg = TrainConfig::default();
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, 1);
    let authority = Arc::new(Mutex::new(Authority::from_seed(Ristretto255, [3; 32])));
    let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("server"));
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 16).expect("table"));
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let predictor = SecurePredictor::new(model, cfg.quant, params, keys, table).expect("predictor");
    Fixture {
        authority,
        predictor,
        params,
        cfg,
    }
}

/// The client's side: a fresh query domain, then encryption under its public key.
fn encrypt_query(f: &Fixture, image: &[u8], seed: u64) -> EncryptedQuery<Ristretto255> {
    let mut authority = f.authority.lock().expect("authority");
    let domain = open_query_domain(&mut authority, &f.params).expect("query domain");
    let pk = authority.public_key(domain).expect("public key");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    EncryptedQuery::encrypt(&Ristretto255, &pk, &f.params, image, &mut rng).expect("encrypt")
}

#[test]
fn encrypted_queries_get_the_quantized_models_exact_probabilities() {
    let mut f = fixture();
    let data = mnist().test.take(6, "test").expect("subset");
    let model = LeNet5::lenet5(f.cfg.lenet, f.cfg.seed);
    let mut reference = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(cryptonn::nn::data::CLASSES),
        f.cfg.quant,
        cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
    )
    .expect("quantized");
    let wq = f
        .cfg
        .quant
        .encode_weights(model.first_weight())
        .expect("wq");
    let bias1 = model.first_bias().to_vec();
    let mut domains = Vec::new();
    for i in 0..data.len() {
        let query = encrypt_query(&f, data.image(i), i as u64);
        domains.push(query.domain());
        // Through the wire format, as a networked client would send it.
        let bytes = query.to_bytes(&Ristretto255);
        let query = EncryptedQuery::from_bytes(&Ristretto255, &bytes).expect("decode");
        let got = f.predictor.predict(&query).expect("secure prediction");

        let z = reference
            .forward(&[i], wq.view())
            .expect("quantized forward");
        let s1 = model
            .unflatten_first(
                f.cfg
                    .quant
                    .decode_forward(
                        &cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
                        z.view(),
                        &bias1,
                    )
                    .expect("decode"),
            )
            .expect("shape");
        let want = model.trunk_forward(s1).probs.row(0).to_vec();
        assert_eq!(got.probabilities, want, "image {i}: probabilities differ");
        let best = want
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, _)| k as u8);
        assert_eq!(Some(got.class), best, "image {i}");
    }
    // Every query had its own domain, and the server made one key request per query.
    domains.sort();
    domains.dedup();
    assert_eq!(domains.len(), data.len());
    assert_eq!(f.predictor.stats().key_requests, data.len() as u64);
    assert!(f.predictor.stats().decryptions >= 6 * 1_000);
}

#[test]
fn a_query_relabelled_with_another_domain_is_an_error() {
    let mut f = fixture();
    let data = mnist().test.take(2, "test").expect("subset");
    let a = encrypt_query(&f, data.image(0), 1);
    let b = encrypt_query(&f, data.image(1), 2);
    // Swap a's ciphertext into b's domain by editing the header bytes: the keys of b's domain
    // do not decrypt a's ciphertext, so decryption lands outside the bound.
    let a_bytes = a.to_bytes(&Ristretto255);
    let field = |d| format!("\"domain\":{}", serde_json::to_string(&d).expect("json"));
    let (a_domain, b_domain) = (field(a.domain()), field(b.domain()));
    assert_eq!(a_domain.len(), b_domain.len(), "same-width domain ids");
    let text = a_bytes.clone();
    let pos = text
        .windows(a_domain.len())
        .position(|w| w == a_domain.as_bytes())
        .expect("domain in header");
    let mut moved = text[..text.len() - 4].to_vec();
    moved[pos..pos + b_domain.len()].copy_from_slice(b_domain.as_bytes());
    let crc = crc32fast::hash(&moved);
    moved.extend_from_slice(&crc.to_le_bytes());
    let moved = EncryptedQuery::from_bytes(&Ristretto255, &moved).expect("well-formed");
    assert_eq!(moved.domain(), b.domain());
    match f.predictor.predict(&moved) {
        Err(SecureTrainingError::DlogOutOfRange { layer, .. }) => {
            assert!(layer.contains("prediction"));
        }
        other => panic!("expected DlogOutOfRange, got {other:?}"),
    }
    // The untouched queries still work.
    assert!(f.predictor.predict(&a).is_ok());
    assert!(f.predictor.predict(&b).is_ok());
}

#[test]
fn damaged_or_mismatched_queries_are_rejected() {
    let mut f = fixture();
    let image = mnist()
        .test
        .take(1, "test")
        .expect("subset")
        .image(0)
        .to_vec();
    let query = encrypt_query(&f, &image, 5);
    let bytes = query.to_bytes(&Ristretto255);
    let reject = |b: &[u8]| match EncryptedQuery::from_bytes(&Ristretto255, b) {
        Err(SecureTrainingError::Parameters(m)) => m,
        other => panic!("expected an error, got {other:?}"),
    };
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    assert!(reject(&flipped).contains("checksum"));
    assert!(reject(&bytes[..bytes.len() - 1]).contains("checksum"));
    assert!(reject(&bytes[..5]).contains("too short"));
    assert!(reject(&[]).contains("too short"));

    // A wrong image size.
    let mut authority = f.authority.lock().expect("authority");
    let domain = open_query_domain(&mut authority, &f.params).expect("domain");
    let pk = authority.public_key(domain).expect("pk");
    drop(authority);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    assert!(matches!(
        EncryptedQuery::encrypt(&Ristretto255, &pk, &f.params, &image[..700], &mut rng),
        Err(SecureTrainingError::Parameters(_))
    ));
    // A query encoded with another pixel scale is refused before any key request.
    let other = EncryptionParams {
        scale_x: f.params.scale_x * 2.0,
        ..f.params
    };
    let mut authority = f.authority.lock().expect("authority");
    let d2 = open_query_domain(&mut authority, &other).expect("domain");
    let pk2 = authority.public_key(d2).expect("pk");
    drop(authority);
    let q2 = EncryptedQuery::encrypt(&Ristretto255, &pk2, &other, &image, &mut rng).expect("enc");
    let before = f.predictor.stats().key_requests;
    assert!(matches!(
        f.predictor.predict(&q2),
        Err(SecureTrainingError::Parameters(_))
    ));
    assert_eq!(f.predictor.stats().key_requests, before);
}
