//! The bodies of the fuzz targets: every byte parser of cryptonn, fed arbitrary bytes. A target
//! fails (panics) only if a parser panics, or if something it accepted does not survive a
//! round trip (decode ∘ encode must be the identity on accepted input: the encodings are
//! canonical).
//!
//! Shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz, nightly) and `tests/fuzz_regressions.rs`
//! (stable `cargo test`, over the committed corpora in `fuzz/regressions/`).

use cryptonn::coordinator::audit::audit_reader;
use cryptonn::coordinator::net::{convert, proto};
use cryptonn::coordinator::persistent::journal::{
    encode_line, genesis, parse_journal, JournalEntry,
};
use cryptonn::coordinator::persistent::replay;
use cryptonn::coordinator::secure_prediction::EncryptedQuery;
use cryptonn::coordinator::secure_training::encrypted_dataset::{read_header, EncryptedDataset};
use cryptonn::coordinator::Authority;
use cryptonn::fe::febo::{FeboCiphertext, FeboFunctionKey, FeboPublicKey};
use cryptonn::fe::feip::{Ciphertext, FunctionKey, MasterPublicKey};
use cryptonn::fe::group::modp::ModpGroup;
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::fe::serialize::WireFormat;
use prost::Message;
use sha2::{Digest, Sha256};

/// Decodes `data` as a `T`; if accepted, its encoding must be `data` again.
fn round_trip<G: PrimeOrderGroup, T: WireFormat<G>>(group: &G, data: &[u8]) {
    if let Ok(v) = T::from_bytes(group, data) {
        assert_eq!(
            v.to_bytes(group),
            data,
            "a non-canonical encoding was accepted"
        );
    }
}

/// The six wire-format objects (selected by the first byte) over `group`.
fn wire<G: PrimeOrderGroup>(group: &G, data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => round_trip::<G, MasterPublicKey<G>>(group, rest),
        1 => round_trip::<G, Ciphertext<G>>(group, rest),
        2 => round_trip::<G, FunctionKey<G>>(group, rest),
        3 => round_trip::<G, FeboPublicKey<G>>(group, rest),
        4 => round_trip::<G, FeboCiphertext<G>>(group, rest),
        _ => round_trip::<G, FeboFunctionKey<G>>(group, rest),
    }
}

/// Public keys, ciphertexts and function keys (FEIP and FEBO) over Ristretto255.
pub fn wire_ristretto(data: &[u8]) {
    wire(&Ristretto255, data);
}

/// Public keys, ciphertexts and function keys (FEIP and FEBO) over Z_p* (the small test group:
/// the decoder is the same code for every modulus, and 256-bit subgroup checks keep the target
/// fast).
pub fn wire_modp(data: &[u8]) {
    thread_local! {
        static GROUP: ModpGroup = ModpGroup::insecure_test_group();
    }
    GROUP.with(|g| wire(g, data));
}

/// A scratch file per thread for the file-based loaders.
fn scratch(data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "cryptonn-fuzz-{}-{:?}.bin",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// The encrypted dataset file: header, sizes, trailer and every record. The input is tried as
/// it is, and with a correct SHA-256 trailer appended, so that the records behind the hash are
/// reached too.
pub fn encrypted_dataset(data: &[u8]) {
    let mut fixed = data.to_vec();
    fixed.extend_from_slice(&Sha256::digest(data));
    for bytes in [data, &fixed[..]] {
        let path = scratch(bytes);
        let _ = read_header(&path);
        if let Ok(ds) = EncryptedDataset::load(Ristretto255, &path) {
            for i in 0..ds.len().min(4) {
                let _ = ds.image_ciphertext(i);
                let _ = ds.label_ciphertexts(i);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// An encrypted prediction query (`client predict --save-query`).
pub fn encrypted_query(data: &[u8]) {
    let _ = EncryptedQuery::from_bytes(&Ristretto255, data);
}

/// The audit file: every record, the hash chain, the sequence numbers.
pub fn audit_file(data: &[u8]) {
    if let Ok(reader) = audit_reader(data) {
        for record in reader {
            if record.is_err() {
                break;
            }
        }
    }
}

/// The largest dimension a fuzzed journal may create (larger ones are valid but slow).
const MAX_FUZZ_N: usize = 64;

/// The domain journal: the input is parsed as a journal (chain and all); then each of its lines
/// is read as an entry, the entries are chained properly, parsed back (must give the same
/// entries) and replayed into an authority (validation errors are fine, panics are not).
pub fn domain_journal(data: &[u8]) {
    let start = genesis(&[0u8; 32]);
    let _ = parse_journal(data, start, Some(data.len() as u64 / 2));
    let entries: Vec<JournalEntry> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect();
    let mut chain = start;
    let mut bytes = Vec::new();
    for e in &entries {
        let (line, next) = encode_line(&chain, e).expect("entries encode");
        bytes.extend_from_slice(&line);
        chain = next;
    }
    let scan = parse_journal(&bytes, start, Some(chain.bytes)).expect("a chained journal parses");
    assert_eq!(scan.end, chain);
    assert_eq!(scan.checkpoint, Some(chain));
    assert_eq!(scan.entries.len(), entries.len());
    let mut authority = Authority::from_seed(Ristretto255, [7; 32]);
    for (_, e) in scan.entries {
        if let JournalEntry::Create { n, .. } = &e {
            if *n > MAX_FUZZ_N {
                continue;
            }
        }
        if let JournalEntry::Review { vectors, .. } = &e {
            if vectors.len() > 64 {
                continue;
            }
        }
        let _ = replay(&mut authority, e);
    }
}

/// The protobuf messages to domain objects: requests (server side) and replies (client side).
pub fn proto_conversions(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let g = Ristretto255;
    match which % 8 {
        0 => {
            if let Ok(m) = proto::FeipKeyBatch::decode(rest) {
                let _ = convert::feip_request_from_proto(m);
            }
        }
        5 => {
            if let Ok(m) = proto::NoisyFeipKeyBatch::decode(rest) {
                let _ = convert::noisy_request_from_proto(m);
            }
        }
        6 => {
            if let Ok(m) = proto::NoisyCiphertextBatch::decode(rest) {
                let _ = convert::noisy_registration_from_proto(m);
            }
        }
        7 => {
            if let Ok(m) = proto::NoisyFeipKeyReply::decode(rest) {
                // A request that the reply answers in shape: one item per list, as many
                // vectors as keys (bounded).
                let request = cryptonn::coordinator::NoisyKeyRequest {
                    keys: cryptonn::coordinator::FeipKeyRequest {
                        domain: cryptonn::coordinator::DomainId(m.domain),
                        vectors: vec![cryptonn::coordinator::KeyVectorData::Dense(vec![1])],
                    },
                    ciphertexts: m
                        .keys
                        .iter()
                        .take(1 << 10)
                        .map(|l| cryptonn::coordinator::NoisyKeyItem {
                            ct0: Vec::new(),
                            vectors: vec![0; l.keys.len().min(1 << 10)],
                        })
                        .collect(),
                };
                let _ = convert::noisy_response_from_proto(&g, "fuzz", &request, &m);
            }
        }
        1 => {
            if let Ok(m) = proto::FeboKeyBatch::decode(rest) {
                let _ = convert::febo_request_from_proto(m);
            }
        }
        2 => {
            if let Ok(m) = proto::CreateDomainsRequest::decode(rest) {
                let _ = convert::feip_params_from_proto(m.feip.as_ref());
                if let Some(f) = &m.febo {
                    let _ = convert::febo_params_from_proto(f);
                }
                if let Some(n) = &m.noise {
                    let _ = convert::noise_from_proto(n);
                }
            }
        }
        3 => {
            if let Ok(m) = proto::PublicKeyReply::decode(rest) {
                let _ = convert::public_key_from_proto(&g, "fuzz", &m);
            }
        }
        _ => {
            if let Ok(m) = proto::FeipKeyReply::decode(rest) {
                let request = cryptonn::coordinator::FeipKeyRequest {
                    domain: cryptonn::coordinator::DomainId(m.domain),
                    vectors: vec![
                        cryptonn::coordinator::KeyVectorData::Dense(vec![1]);
                        m.keys.len().min(1 << 12)
                    ],
                };
                let _ = convert::feip_response_from_proto(&g, "fuzz", &request, &m);
            }
        }
    }
}

/// Bounds a fuzzed model must stay within for the target to build and run it (larger ones are
/// valid but slow; the spec's own limits are checked by `validate`).
const MAX_FUZZ_PARAMETERS: usize = 1 << 16;
const MAX_FUZZ_VALUES: usize = 1 << 14;

/// A model file (the first byte selects TOML or JSON; the rest is the text): parsing gives a
/// typed error or a valid spec; a valid spec survives a round trip through both formats, and a
/// small one builds into a [`Model`](cryptonn::nn::model::Model) that runs forward on one
/// sample to finite probabilities.
pub fn model_spec(data: &[u8]) {
    use cryptonn::nn::first_layer::FirstLayerSpec;
    use cryptonn::nn::model::{Model, ModelSpec};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let parsed = if which % 2 == 0 {
        ModelSpec::from_toml_str(&text)
    } else {
        ModelSpec::from_json_str(&text)
    };
    let Ok(spec) = parsed else {
        return;
    };
    spec.validate().expect("a parsed spec is valid");
    let toml_text = toml::to_string(&spec).expect("a valid spec serialises to TOML");
    assert_eq!(
        ModelSpec::from_toml_str(&toml_text).expect("its TOML parses"),
        spec
    );
    let json_text = serde_json::to_string(&spec).expect("a valid spec serialises to JSON");
    assert_eq!(
        ModelSpec::from_json_str(&json_text).expect("its JSON parses"),
        spec
    );
    let size = spec.size().expect("a valid spec has a size");
    let parameters = size.parameters;
    if parameters > MAX_FUZZ_PARAMETERS || size.largest_activation > MAX_FUZZ_VALUES {
        return;
    }
    let model = Model::new(&spec, 1).expect("a valid spec builds");
    assert_eq!(
        model
            .parameters()
            .iter()
            .map(|(_, p)| p.len())
            .sum::<usize>(),
        parameters
    );
    let x = match *model.first_layer() {
        FirstLayerSpec::Linear { inputs, .. } => ndarray::ArrayD::zeros(vec![1, inputs]),
        FirstLayerSpec::Conv {
            channels,
            height,
            width,
            padding,
            ..
        } => ndarray::ArrayD::zeros(vec![1, channels, height + 2 * padding, width + 2 * padding]),
    };
    let probs = model.predict_proba(x.view());
    assert_eq!(probs.shape(), [1, spec.classes]);
    assert!(probs.iter().all(|p| p.is_finite()));
}

/// A table dataset that parsed: the rest of the loading path (fixed split, the declared
/// encoding fitted on the training split, the datasets) gives a typed error or datasets.
fn table_pipeline(table: &cryptonn::nn::datasets::Table) {
    if let Ok(split) = cryptonn::nn::datasets::fixed_split(table) {
        if let Ok(sets) = cryptonn::nn::data::encode_table_split(&split) {
            assert_eq!(sets.train.len() + sets.test.len(), table.len());
        }
    }
}

/// The breast-cancer CSV (`breast_cancer.csv`), and what loading does with the table.
pub fn dataset_breast_cancer(data: &[u8]) {
    if let Ok(table) = cryptonn::nn::datasets::parse_breast_cancer_from_bytes(data) {
        table_pipeline(&table);
    }
}

/// The digits CSV: the first byte selects gzipped (`digits.csv.gz`) or plain (`digits.csv`).
pub fn dataset_digits(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let parsed = if which % 2 == 0 {
        cryptonn::nn::datasets::parse_digits_from_bytes(rest)
    } else {
        cryptonn::nn::datasets::parse_digits_csv_from_bytes(rest)
    };
    if let Ok(table) = parsed {
        table_pipeline(&table);
    }
}

/// An MNIST image file and label file (IDX, each gzipped or not). Layout: one byte of flags
/// (bit 0: the images are gzipped, bit 1: the labels are), a little-endian `u16` length of the
/// image file, the image file, the label file.
pub fn dataset_mnist(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let flags = data[0];
    let split = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let rest = &data[3..];
    let (images, labels) = rest.split_at(split.min(rest.len()));
    let name = |base: &str, gz: bool| {
        std::path::PathBuf::from(if gz {
            format!("{base}.gz")
        } else {
            base.to_owned()
        })
    };
    let image_path = name(cryptonn::nn::data::TEST_IMAGES, flags & 1 != 0);
    let label_path = name(cryptonn::nn::data::TEST_LABELS, flags & 2 != 0);
    if let Ok(set) =
        cryptonn::nn::data::mnist_set_from_bytes(&image_path, images, &label_path, labels)
    {
        for i in 0..set.len().min(4) {
            assert!(set.label(i) < 10);
            assert_eq!(set.image(i).len(), 784);
        }
    }
}
