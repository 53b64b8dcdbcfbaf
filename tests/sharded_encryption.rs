//! Sharded encryption: the parts of a dataset, written separately as `cryptonn client encrypt
//! --shards A..B` does, load from a directory in any order as one dataset and train to the
//! same weights as a one-part encryption (and as quantised training); missing, duplicate,
//! overlapping and foreign parts and a lone part are errors at load; a part under another
//! authority's keys fails the key check; a truncated part fails its load; a part changed after
//! the load stops training with an error that names the part's file and the shard.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cryptonn::coordinator::secure_training::encrypted_dataset::{
    encrypt_part_to_file, encrypt_to_file,
};
use cryptonn::coordinator::secure_training::{
    create_shard_domains, register_label_commitments, EncryptedDataset, EncryptionParams,
    MnistSamples, SecureFirstLayer, SecureTrainingError, ShardPublicKeys,
};
use cryptonn::coordinator::RequesterId;
use cryptonn::coordinator::{
    Authority, DomainAccess, DomainId, DomainPublicKey, InProcessKeyService,
};
use cryptonn::fe::dlog::BabyStepTable;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::nn::data::{Dataset, LabelPermutation, Mnist, CLASSES};
use cryptonn::nn::first_layer::QuantizedFirstLayer;
use cryptonn::nn::lenet::LeNet5;
use cryptonn::nn::train::{train_with_backend, BatchSchedule, Mode, TrainConfig};

const IMAGES: usize = 64;
const SHARD: usize = 16;

fn mnist() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(|| Mnist::load_default().expect("the committed MNIST files load"))
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cryptonn-sharded-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn config() -> TrainConfig {
    TrainConfig {
        mode: Mode::Secure,
        epochs: 1,
        batch_size: SHARD,
        schedule: BatchSchedule::FixedShards,
        ..TrainConfig::default()
    }
}

/// An authority with the shard domains of `IMAGES` images, and their public keys.
struct Owner {
    authority: Arc<Mutex<Authority<Ristretto255>>>,
    pks: Vec<DomainPublicKey<Ristretto255>>,
    params: EncryptionParams,
    train: Dataset,
    labels: LabelPermutation,
}

fn owner(seed: u8) -> Owner {
    let cfg = config();
    let mut authority = Authority::from_seed(Ristretto255, [seed; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, SHARD);
    let access = DomainAccess::new(RequesterId::new("owner"), RequesterId::new("server"));
    let domains = create_shard_domains(&mut authority, IMAGES, &params, &access).expect("domains");
    let pks = domains
        .iter()
        .map(|&d| authority.public_key(d).expect("public key"))
        .collect();
    Owner {
        authority: Arc::new(Mutex::new(authority)),
        pks,
        params,
        train: mnist().train.take(IMAGES, "training").expect("subset"),
        labels: LabelPermutation::from_seed(cfg.seed, CLASSES),
    }
}

impl Owner {
    /// Writes shards `range` as one part file `path`.
    fn part(&self, range: Range<usize>, path: &Path) {
        let source = MnistSamples::new(&self.train, &self.labels, &self.params).expect("source");
        encrypt_part_to_file(
            &Ristretto255,
            &source,
            &self.pks[range.clone()],
            &[],
            &self.params,
            range,
            path,
            &|_| {},
        )
        .expect("encrypt part");
    }

    /// Loads `path`, registers its label commitments and trains one epoch on it.
    fn train_on(&self, path: &Path) -> Result<String, cryptonn::nn::error::NnError> {
        let cfg = config();
        let data = EncryptedDataset::load(Ristretto255, path).expect("load");
        let owner =
            InProcessKeyService::new(Arc::clone(&self.authority), RequesterId::new("owner"));
        register_label_commitments(&data, &owner).expect("register");
        let keys =
            InProcessKeyService::new(Arc::clone(&self.authority), RequesterId::new("server"));
        let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 16).expect("table"));
        let mut backend = SecureFirstLayer::new(data, keys, table, cfg.quant).expect("backend");
        let test = mnist().test.take(16, "test").expect("test");
        let model = LeNet5::lenet5(cfg.lenet, cfg.seed);
        train_with_backend(&cfg, model, &mut backend, &test, &self.labels, &mut ())
            .map(|(_, r)| r.weights_sha256)
    }
}

fn parts_reason(r: Result<EncryptedDataset<Ristretto255>, SecureTrainingError>) -> String {
    match r {
        Err(SecureTrainingError::Parts { reason, .. }) => reason,
        other => panic!("expected a Parts error, got {other:?}"),
    }
}

#[test]
fn parts_in_any_order_train_like_one_part_and_quantised_training() {
    let o = owner(3);
    let whole = dir("whole").join("whole.cnnenc");
    encrypt_to_file(
        &Ristretto255,
        &o.train,
        &o.labels,
        &o.pks,
        &o.params,
        &whole,
        &|_| {},
    )
    .expect("encrypt");
    // Three parts whose file names sort against the shard order.
    let parts = dir("parts");
    o.part(3..4, &parts.join("a.cnnenc"));
    o.part(0..1, &parts.join("b.cnnenc"));
    o.part(1..3, &parts.join("c.cnnenc"));
    // Litter the directory: a temporary file of an interrupted writer is not a part.
    std::fs::write(parts.join("d.tmp-4194399"), b"partial").expect("write");
    let joined = EncryptedDataset::load(Ristretto255, &parts).expect("load parts");
    assert_eq!(joined.len(), IMAGES);
    assert_eq!(
        joined.header().domains,
        o.pks.iter().map(|p| p.domain).collect::<Vec<_>>()
    );
    assert_eq!(joined.files().len(), 3);
    assert!(joined.files()[0].ends_with("b.cnnenc"));

    let from_parts = o.train_on(&parts).expect("train on parts");
    let from_whole = o.train_on(&whole).expect("train on one part");
    assert_eq!(from_parts, from_whole);
    // Both are quantised training with the same seed and permutation, bit for bit.
    let cfg = config();
    let mut quantized = QuantizedFirstLayer::new(
        &o.train,
        o.labels.clone(),
        cfg.quant,
        cryptonn::nn::first_layer::FirstLayerSpec::lenet5(),
    )
    .expect("quantized");
    let test = mnist().test.take(16, "test").expect("test");
    let (_, report) = train_with_backend(
        &cfg,
        LeNet5::lenet5(cfg.lenet, cfg.seed),
        &mut quantized,
        &test,
        &o.labels,
        &mut (),
    )
    .expect("quantised");
    assert_eq!(report.weights_sha256, from_parts);
    let _ = std::fs::remove_dir_all(parts);
    let _ = std::fs::remove_dir_all(whole.parent().expect("dir"));
}

#[test]
fn missing_duplicate_overlapping_foreign_and_lone_parts_are_refused() {
    let o = owner(4);
    let d = dir("refused");
    let (p0, p12, p3) = (
        d.join("p0.cnnenc"),
        d.join("p12.cnnenc"),
        d.join("p3.cnnenc"),
    );
    o.part(0..1, &p0);
    o.part(1..3, &p12);
    o.part(3..4, &p3);
    assert!(EncryptedDataset::load(Ristretto255, &d).is_ok());

    // A lone part is not the dataset.
    let reason = parts_reason(EncryptedDataset::load(Ristretto255, &p12));
    assert!(reason.contains("shards 0..1 of 4 are missing"), "{reason}");
    // Missing: shards 1..3.
    let stash = d.join("p12.stash");
    std::fs::rename(&p12, &stash).expect("rename");
    let reason = parts_reason(EncryptedDataset::load(Ristretto255, &d));
    assert!(reason.contains("shards 1..3 of 4 are missing"), "{reason}");
    std::fs::rename(&stash, &p12).expect("rename");
    // Missing at the end.
    std::fs::rename(&p3, &stash).expect("rename");
    let reason = parts_reason(EncryptedDataset::load(Ristretto255, &d));
    assert!(reason.contains("shards 3..4 of 4 are missing"), "{reason}");
    std::fs::rename(&stash, &p3).expect("rename");
    // Duplicate: the same part twice (copied under another name).
    let copy = d.join("p12-copy.cnnenc");
    std::fs::copy(&p12, &copy).expect("copy");
    let reason = parts_reason(EncryptedDataset::load(Ristretto255, &d));
    assert!(reason.contains("duplicate parts"), "{reason}");
    assert!(
        reason.contains("p12-copy.cnnenc") && reason.contains("p12.cnnenc"),
        "{reason}"
    );
    std::fs::remove_file(&copy).expect("remove");
    // Overlapping: 2..4 beside 1..3 and 3..4.
    let over = d.join("p23.cnnenc");
    o.part(2..4, &over);
    let reason = parts_reason(EncryptedDataset::load(Ristretto255, &d));
    assert!(reason.contains("overlapping parts"), "{reason}");
    std::fs::remove_file(&over).expect("remove");
    // Foreign: a part of another encryption (another label permutation, so another source).
    let other = Owner {
        labels: LabelPermutation::from_seed(99, CLASSES),
        ..owner(4)
    };
    other.part(3..4, &p3);
    let reason = parts_reason(EncryptedDataset::load(Ristretto255, &d));
    assert!(reason.contains("different encryptions"), "{reason}");
    // An empty directory.
    let empty = dir("empty");
    let reason = parts_reason(EncryptedDataset::load(Ristretto255, &empty));
    assert!(reason.contains("no encrypted dataset"), "{reason}");
    let _ = std::fs::remove_dir_all(d);
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn a_part_under_another_key_or_truncated_is_refused_at_load() {
    let o = owner(5);
    let d = dir("keys");
    o.part(0..2, &d.join("p01.cnnenc"));
    o.part(2..4, &d.join("p23.cnnenc"));
    // Shards 2..4 again, under another authority's keys for the same domain ids.
    let foreign = owner(6);
    foreign.part(2..4, &d.join("p23.cnnenc"));
    let data = EncryptedDataset::load(Ristretto255, &d).expect("load");
    let keys = InProcessKeyService::new(Arc::clone(&o.authority), RequesterId::new("server"));
    let err = data.verify_keys(&keys).unwrap_err();
    assert!(
        matches!(err, SecureTrainingError::WrongKey { shard: 2, .. }),
        "{err}"
    );
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 10).expect("table"));
    assert!(matches!(
        SecureFirstLayer::new(data, keys, table, config().quant),
        Err(SecureTrainingError::WrongKey { shard: 2, .. })
    ));
    // A truncated part (an interrupted copy) fails its own length check, named.
    o.part(2..4, &d.join("p23.cnnenc"));
    let bytes = std::fs::read(d.join("p23.cnnenc")).expect("read");
    std::fs::write(d.join("p23.cnnenc"), &bytes[..bytes.len() - 1000]).expect("write");
    match EncryptedDataset::load(Ristretto255, &d) {
        Err(SecureTrainingError::Corrupt { path, reason }) => {
            assert!(path.ends_with("p23.cnnenc"), "{}", path.display());
            assert!(reason.contains("truncated"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_part_changed_after_the_load_stops_training_naming_the_shard() {
    let o = owner(7);
    let d = dir("changed");
    o.part(0..2, &d.join("p01.cnnenc"));
    let p23 = d.join("p23.cnnenc");
    o.part(2..4, &p23);
    // The data owner registers its label commitments (from its own load of the parts).
    let owner_keys = InProcessKeyService::new(Arc::clone(&o.authority), RequesterId::new("owner"));
    register_label_commitments(
        &EncryptedDataset::load(Ristretto255, &d).expect("load"),
        &owner_keys,
    )
    .expect("register");
    // The server loads and verifies the parts; then shard 3 (the second shard of p23) changes
    // on disk: one bit of its first record.
    let data = EncryptedDataset::load(Ristretto255, &d).expect("load");
    let mut bytes = std::fs::read(&p23).expect("read");
    let hlen = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes")) as usize;
    bytes[14 + hlen + SHARD * data.header().record_len() + 64] ^= 1;
    std::fs::write(&p23, bytes).expect("write");
    let cfg = config();
    let keys = InProcessKeyService::new(Arc::clone(&o.authority), RequesterId::new("server"));
    let table = Arc::new(BabyStepTable::new(Ristretto255, 1 << 16).expect("table"));
    let mut backend = SecureFirstLayer::new(data, keys, table, cfg.quant).expect("backend");
    let test = mnist().test.take(16, "test").expect("test");
    // Shards 0..3 train; shard 3 stops the run with an error naming it and its file.
    let err = train_with_backend(
        &cfg,
        LeNet5::lenet5(cfg.lenet, cfg.seed),
        &mut backend,
        &test,
        &o.labels,
        &mut (),
    )
    .unwrap_err();
    let msg = format!("{err}");
    assert!(msg.contains("shard 3"), "{msg}");
    assert!(msg.contains("p23.cnnenc"), "{msg}");
    assert!(msg.contains("changed after it was loaded"), "{msg}");
    // The next load refuses the part.
    assert!(matches!(
        EncryptedDataset::load(Ristretto255, &d),
        Err(SecureTrainingError::Corrupt { .. })
    ));
    let _ = std::fs::remove_dir_all(d);
}

/// Shard keys fetched one at a time from the authority (as the session's encryption does),
/// counting the fetches.
struct FetchedKeys<'a> {
    authority: &'a Mutex<Authority<Ristretto255>>,
    domains: Vec<DomainId>,
    fetches: AtomicUsize,
}

impl ShardPublicKeys<Ristretto255> for FetchedKeys<'_> {
    fn len(&self) -> usize {
        self.domains.len()
    }
    fn domain(&self, k: usize) -> DomainId {
        self.domains[k]
    }
    fn sha256(&self, _group: &Ristretto255, k: usize) -> Result<[u8; 32], SecureTrainingError> {
        let a = self.authority.lock().expect("authority");
        Ok(a.public_key_sha256(self.domains[k])?)
    }
    fn public_key(
        &self,
        k: usize,
    ) -> Result<Cow<'_, DomainPublicKey<Ristretto255>>, SecureTrainingError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let a = self.authority.lock().expect("authority");
        Ok(Cow::Owned(a.public_key(self.domains[k])?))
    }
}

#[test]
fn authority_keeps_digests_and_the_encryption_fetches_each_shard_key_once() {
    const MANY: usize = 16 * SHARD;
    let cfg = config();
    let mut authority = Authority::from_seed(Ristretto255, [9; 32]);
    let params = EncryptionParams::new(&cfg.quant, cfg.normalization, SHARD);
    let access = DomainAccess::new(RequesterId::new("owner"), RequesterId::new("server"));
    let domains = create_shard_domains(&mut authority, MANY, &params, &access).expect("domains");
    // The authority's digest is that of the key it derives again, every time the same.
    for &d in &domains[..3] {
        let pk = authority.public_key(d).expect("public key");
        assert_eq!(
            authority.public_key_sha256(d).expect("digest"),
            pk.sha256(&Ristretto255)
        );
        let again = authority.public_key(d).expect("public key");
        assert_eq!(again.sha256(&Ristretto255), pk.sha256(&Ristretto255));
    }
    // A closed domain has neither a key nor a digest any more.
    let closed = domains[domains.len() - 1];
    let authority = Mutex::new(authority);
    let keys = FetchedKeys {
        authority: &authority,
        domains: domains.clone(),
        fetches: AtomicUsize::new(0),
    };
    let train = mnist().train.take(MANY, "training").expect("subset");
    let labels = LabelPermutation::from_seed(cfg.seed, CLASSES);
    let path = dir("fetched").join("fetched.cnnenc");
    let header = encrypt_to_file(
        &Ristretto255,
        &train,
        &labels,
        &keys,
        &params,
        &path,
        &|_| {},
    )
    .expect("encrypt");
    assert_eq!(keys.fetches.load(Ordering::SeqCst), domains.len());
    assert_eq!(header.domains, domains);
    drop(keys);
    // The file's keys check against the authority's digests (what a server does at load).
    let data = EncryptedDataset::load(Ristretto255, &path).expect("load");
    let shared = Arc::new(authority);
    let server = InProcessKeyService::new(Arc::clone(&shared), RequesterId::new("server"));
    data.verify_keys(&server).expect("the keys match");
    shared
        .lock()
        .expect("authority")
        .close_domain(closed)
        .expect("close");
    let a = shared.lock().expect("authority");
    assert!(a.public_key(closed).is_err());
    assert!(a.public_key_sha256(closed).is_err());
    drop(a);
    assert!(matches!(
        data.verify_keys(&server),
        Err(SecureTrainingError::WrongKey { .. })
    ));
    let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
}
