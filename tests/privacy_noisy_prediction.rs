//! Secure prediction over a noisy query domain: the server gets the quantised model's
//! prediction on `z + e`, bit for bit, where `e` is the noise the authority's key draws for the
//! query's sample id and each key vector; every release is charged to the query; an
//! unregistered query and plain keys for a noisy query are refused.

use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::accountant::{Granularity, DEFAULT_DELTA};
use cryptonn::coordinator::messages::noise_input;
use cryptonn::coordinator::secure_prediction::{
    classify_first_layer, open_noisy_query_domain, query_sample_id, EncryptedQuery, SecurePredictor,
};
use cryptonn::coordinator::secure_training::{ConvGeometry, EncryptionParams, SecureTrainingError};
use cryptonn::coordinator::{
    Authority, CoordinatorError, DomainAccess, InProcessKeyService, RequesterId,
};
use cryptonn::fe::discrete_gaussian::{DiscreteGaussian, NoiseKey};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{LabelPermutation, Mnist, CLASSES};
use cryptonn::nn::first_layer::{FirstLayerBackend, FirstLayerSpec, QuantizedFirstLayer};
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::TrainConfig;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

const NOISE_KEY: [u8; 32] = [9; 32];

type Predictor = SecurePredictor<Ristretto255, InProcessKeyService<Ristretto255>>;

struct Fixture {
    authority: Arc<Mutex<Authority<Ristretto255>>>,
    predictor: Predictor,
    client: InProcessKeyService<Ristretto255>,
    params: EncryptionParams,
    cfg: TrainConfig,
}

fn fixture(noisy: bool) -> Fixture {
    let cfg = TrainConfig::default();
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, 1);
    let authority = Arc::new(Mutex::new(
        Authority::from_seed(Ristretto255, [5; 32]).with_noise_key(NoiseKey::from_bytes(NOISE_KEY)),
    ));
    let keys = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("server"));
    let client = InProcessKeyService::new(Arc::clone(&authority), RequesterId::new("client"));
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 16).expect("table"));
    let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
    let predictor = SecurePredictor::new(model, cfg.quant, params, keys, table)
        .expect("predictor")
        .with_noisy_queries(noisy);
    Fixture {
        authority,
        predictor,
        client,
        params,
        cfg,
    }
}

fn noisy_query(f: &Fixture, image: &[u8], sigma: DiscreteGaussian) -> EncryptedQuery<Ristretto255> {
    let mut authority = f.authority.lock().expect("authority");
    let access = DomainAccess::new(RequesterId::new("client"), RequesterId::new("server"));
    let domain =
        open_noisy_query_domain(&mut authority, &f.params, access, sigma).expect("noisy domain");
    let pk = authority.public_key(domain).expect("public key");
    let mut rng = ChaCha20Rng::seed_from_u64(domain.0);
    EncryptedQuery::encrypt(&Ristretto255, &pk, &f.params, image, &mut rng).expect("encrypt")
}

#[test]
fn noisy_queries_get_the_quantized_prediction_on_the_same_noisy_values() {
    let mut f = fixture(true);
    let sigma = DiscreteGaussian::new(20_000, 1).expect("sigma");
    let data = mnist().test.take(3, "test").expect("subset");
    let model = LeNet5::lenet5(f.cfg.lenet, f.cfg.seed);
    let mut reference = QuantizedFirstLayer::new(
        &data,
        LabelPermutation::identity(CLASSES),
        f.cfg.quant,
        FirstLayerSpec::lenet5(),
    )
    .expect("quantized");
    let wq = f
        .cfg
        .quant
        .encode_weights(model.first_weight())
        .expect("wq");
    let outputs = ConvGeometry::lenet5()
        .forward_outputs(&wq.iter().copied().collect::<Vec<_>>(), 0)
        .expect("outputs");
    let key = NoiseKey::from_bytes(NOISE_KEY);
    let mut differs = 0;
    for i in 0..data.len() {
        let query = noisy_query(&f, data.image(i), sigma);
        let sample = query
            .register_noisy(&Ristretto255, &f.client)
            .expect("register");
        assert_eq!(sample, query_sample_id(query.domain()));
        let got = f.predictor.predict(&query).expect("noisy prediction");

        let exact: Vec<i64> = reference
            .forward(&[i], wq.view())
            .expect("z")
            .iter()
            .copied()
            .collect();
        let noisy: Vec<i64> = exact
            .iter()
            .zip(&outputs)
            .map(|(&z, o)| {
                let e = if o.pixel_terms.is_empty() {
                    0
                } else {
                    key.sample(&sigma, &noise_input(sample, &o.pixel_terms))
                };
                z + e
            })
            .collect();
        assert_ne!(noisy, exact, "sigma 20,000 moves some values");
        let want = classify_first_layer(&model, &f.cfg.quant, noisy).expect("reference");
        assert_eq!(
            got, want,
            "image {i}: secure noisy = quantised on z + e, bit for bit"
        );
        let plain = classify_first_layer(&model, &f.cfg.quant, exact).expect("exact");
        differs += usize::from(plain.probabilities != got.probabilities);

        // Every non-constant output was charged to the query's sample id.
        let authority = f.authority.lock().expect("authority");
        let loss = authority.accountant().loss(sample);
        let live = outputs.iter().filter(|o| !o.pixel_terms.is_empty()).count() as u64;
        assert_eq!(loss.releases, live);
        assert!(loss.epsilon(Granularity::Pixel, DEFAULT_DELTA).is_finite());
    }
    assert_eq!(differs, data.len(), "the noise changes the probabilities");
}

#[test]
fn unregistered_and_plain_keyed_noisy_queries_are_refused() {
    let sigma = DiscreteGaussian::new(300, 1).expect("sigma");
    let image = mnist().test.image(0);

    // A noisy query whose ct0 the client did not register: the authority is no oracle.
    let mut f = fixture(true);
    let query = noisy_query(&f, image, sigma);
    match f.predictor.predict(&query) {
        Err(SecureTrainingError::Coordinator(CoordinatorError::UnregisteredCiphertext {
            ..
        })) => {}
        other => panic!("expected UnregisteredCiphertext, got {other:?}"),
    }

    // A predictor asking plain keys for a noisy domain.
    let mut f = fixture(false);
    let query = noisy_query(&f, image, sigma);
    query
        .register_noisy(&Ristretto255, &f.client)
        .expect("register");
    match f.predictor.predict(&query) {
        Err(SecureTrainingError::Coordinator(CoordinatorError::NoisyDomain(d))) => {
            assert_eq!(d, query.domain())
        }
        other => panic!("expected NoisyDomain, got {other:?}"),
    }

    // Only the query's owner registers it.
    let f = fixture(true);
    let query = noisy_query(&f, image, sigma);
    let server = InProcessKeyService::new(Arc::clone(&f.authority), RequesterId::new("server"));
    match query.register_noisy(&Ristretto255, &server) {
        Err(SecureTrainingError::Coordinator(CoordinatorError::NotPermitted { .. })) => {}
        other => panic!("expected NotPermitted, got {other:?}"),
    }
}
