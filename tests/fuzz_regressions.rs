//! The fuzz targets of `fuzz/` under stable `cargo test`: every input committed in
//! `fuzz/regressions/<target>/` (crashes the fuzzers found, and seeds that reach deep into each
//! parser) runs through its target's body, which panics on a parser panic or a broken round
//! trip. The fuzzers themselves run with `cargo +nightly fuzz run <target>` (see `.ci/run`).
#![allow(clippy::unwrap_used)] // test helpers, as clippy.toml allows in tests

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::Path;

/// A fuzz target's body.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("wire_ristretto", targets::wire_ristretto),
    ("wire_modp", targets::wire_modp),
    ("encrypted_dataset", targets::encrypted_dataset),
    ("encrypted_query", targets::encrypted_query),
    ("audit_file", targets::audit_file),
    ("domain_journal", targets::domain_journal),
    ("proto_conversions", targets::proto_conversions),
    ("model_spec", targets::model_spec),
    ("dataset_breast_cancer", targets::dataset_breast_cancer),
    ("dataset_digits", targets::dataset_digits),
    ("dataset_mnist", targets::dataset_mnist),
];

#[test]
fn committed_fuzz_inputs_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap();
            let result = std::panic::catch_unwind(|| target(&bytes));
            assert!(result.is_ok(), "{name}: {} panics", file.display());
            ran += 1;
        }
    }
    assert!(ran > 0, "no committed fuzz input under {}", root.display());
}

/// Empty and tiny inputs, for every target.
#[test]
fn tiny_inputs_do_not_panic() {
    for (_, target) in TARGETS {
        for input in [
            &b""[..],
            b"\0",
            b"\xff",
            b"\n",
            b"{}\n",
            b"CNNAUDIT\x02\x00",
        ] {
            target(input);
        }
    }
}

/// Writes valid inputs of every parser to `fuzz/regressions/<target>/seed-*` (the seeds of the
/// fuzzers' corpora, and regression inputs that reach deep into each parser). Run after a
/// format change: `cargo test --test fuzz_regressions -- --ignored write_seeds`.
#[test]
#[ignore = "writes files under fuzz/regressions/"]
fn write_seeds() {
    use cryptonn::coordinator::net::convert;
    use cryptonn::coordinator::secure_prediction::{open_query_domain, EncryptedQuery};
    use cryptonn::coordinator::secure_training::encrypted_dataset::encrypt_to_file;
    use cryptonn::coordinator::secure_training::EncryptionParams;
    use cryptonn::coordinator::{
        Authority, DomainConfig, DomainId, FeboKeyItem, FeboKeyRequest, FeipKeyRequest,
        KeyVectorData, PersistentAuthority, RequesterId, StateOptions,
    };
    use cryptonn::fe::febo::{Febo, FeboOp, FeboParams};
    use cryptonn::fe::feip::{Feip, FeipParams};
    use cryptonn::fe::group::modp::ModpGroup;
    use cryptonn::fe::group::ristretto::Ristretto255;
    use cryptonn::fe::group::PrimeOrderGroup;
    use cryptonn::fe::serialize::WireFormat;
    use cryptonn::nn::data::{Dataset, LabelPermutation, PixelNormalization};
    use cryptonn::nn::first_layer::QuantConfig;
    use prost::Message;
    use rand::SeedableRng;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    fn wire_seeds<G: PrimeOrderGroup>(g: &G) -> Vec<Vec<u8>> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let feip = Feip::new(g.clone(), FeipParams::new(3, 100, 100).unwrap());
        let (msk, mpk) = feip.setup(&mut rng);
        let ct = feip.encrypt(&mpk, &[1, -2, 3], &mut rng).unwrap();
        let sk = feip.derive_key(&msk, &[3, 2, 1]).unwrap();
        let febo = Febo::new(g.clone(), FeboParams::new(1000, 10).unwrap());
        let (fsk, fpk) = febo.setup(&mut rng);
        let fct = febo.encrypt(&fpk, 42, &mut rng).unwrap();
        let fkey = febo
            .derive_key(&fsk, fct.commitment(), FeboOp::Add, 3)
            .unwrap();
        let objects = [
            mpk.to_bytes(g),
            ct.to_bytes(g),
            sk.to_bytes(g),
            fpk.to_bytes(g),
            fct.to_bytes(g),
            fkey.to_bytes(g),
        ];
        objects
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let mut v = vec![i as u8];
                v.extend_from_slice(&b);
                v
            })
            .collect()
    }
    for (i, s) in wire_seeds(&Ristretto255).iter().enumerate() {
        put("wire_ristretto", &i.to_string(), s);
    }
    for (i, s) in wire_seeds(&ModpGroup::insecure_test_group())
        .iter()
        .enumerate()
    {
        put("wire_modp", &i.to_string(), s);
    }

    // An encrypted dataset of 3 images in 2 shards, and an encrypted query.
    let g = Ristretto255;
    let mut authority = Authority::from_seed(g, [3; 32]);
    let params = EncryptionParams::new(&QuantConfig::default(), PixelNormalization::default(), 2);
    let images: Vec<u8> = (0..3 * 784).map(|i| (i % 251) as u8).collect();
    let data = Dataset::new(images, vec![1, 7, 3]).unwrap();
    let pks: Vec<_> = (0..2)
        .map(|_| {
            let d = authority
                .create_domain(params.domain_config().unwrap())
                .unwrap();
            authority.public_key(d).unwrap()
        })
        .collect();
    let tmp = std::env::temp_dir().join(format!("cryptonn-seeds-{}.cnnds", std::process::id()));
    encrypt_to_file(
        &g,
        &data,
        &LabelPermutation::from_seed(1, 10),
        &pks,
        &params,
        &tmp,
        &|_| {},
    )
    .unwrap();
    let file = std::fs::read(&tmp).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    put("encrypted_dataset", "file", &file);
    // The target appends the trailer itself: the body alone reaches the records.
    put("encrypted_dataset", "body", &file[..file.len() - 32]);
    let q = open_query_domain(
        &mut authority,
        &params,
        cryptonn::coordinator::DomainAccess::new(
            cryptonn::coordinator::RequesterId::new("client"),
            cryptonn::coordinator::RequesterId::new("server"),
        ),
    )
    .unwrap();
    let qpk = authority.public_key(q).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
    let query = EncryptedQuery::encrypt(&g, &qpk, &params, data.image(0), &mut rng).unwrap();
    put("encrypted_query", "query", &query.to_bytes(&g));

    // A state directory's journal and audit file.
    let dir = std::env::temp_dir().join(format!("cryptonn-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let who = RequesterId::new("server-1");
        let mut a = PersistentAuthority::open(
            g,
            &dir,
            StateOptions {
                fsync: false,
                ..StateOptions::default()
            },
        )
        .unwrap();
        let p = FeipParams::new(4, 255, 100).unwrap();
        let d = a
            .create_domain(DomainConfig::new(p).with_febo(FeboParams::new(1000, 10).unwrap()))
            .unwrap();
        let d2 = a.create_domain(DomainConfig::new(p)).unwrap();
        a.issue_feip_keys(
            &who,
            &FeipKeyRequest {
                domain: d,
                vectors: vec![
                    KeyVectorData::Dense(vec![1, 2, 3, 4]),
                    KeyVectorData::Sparse(vec![(0, 5), (1, 1), (2, 7), (3, -2)]),
                ],
            },
        )
        .unwrap();
        let _ = a.issue_feip_keys(
            &who,
            &FeipKeyRequest {
                domain: d,
                vectors: vec![KeyVectorData::Sparse(vec![(2, 1)])],
            },
        );
        let cmt = g.element_to_bytes(&g.exp_generator(&g.scalar_from_i64(9)));
        a.issue_febo_keys(
            &who,
            &FeboKeyRequest {
                domain: d,
                items: vec![FeboKeyItem {
                    commitment: cmt.clone(),
                    op: FeboOp::Mul,
                    operand: -3,
                }],
            },
        )
        .unwrap();
        a.rotate(d2).unwrap();
        a.close_domain(DomainId(d2.0 + 1)).unwrap();
        let feip = convert::feip_request_to_proto(&FeipKeyRequest {
            domain: d,
            vectors: vec![
                KeyVectorData::Dense(vec![1, 2, 3, 4]),
                KeyVectorData::Sparse(vec![(0, 5), (3, -2)]),
            ],
        });
        put(
            "proto_conversions",
            "0",
            &[&[0u8][..], &feip.encode_to_vec()].concat(),
        );
        let febo = convert::febo_request_to_proto(&FeboKeyRequest {
            domain: d,
            items: vec![FeboKeyItem {
                commitment: cmt,
                op: FeboOp::Sub,
                operand: 4,
            }],
        });
        put(
            "proto_conversions",
            "1",
            &[&[1u8][..], &febo.encode_to_vec()].concat(),
        );
        let create = cryptonn::coordinator::net::proto::CreateDomainsRequest {
            requesters: vec!["trainer".into()],
            feip: Some(convert::feip_params_to_proto(&p)),
            febo: Some(convert::febo_params_to_proto(
                &FeboParams::new(1000, 10).unwrap(),
            )),
            count: 2,
            policy: 1,
            noise: None,
        };
        put(
            "proto_conversions",
            "2",
            &[&[2u8][..], &create.encode_to_vec()].concat(),
        );
        let pk = convert::public_key_to_proto(&g, &a.public_key(d).unwrap());
        put(
            "proto_conversions",
            "3",
            &[&[3u8][..], &pk.encode_to_vec()].concat(),
        );
    }
    put(
        "domain_journal",
        "journal",
        &std::fs::read(dir.join("domains.journal")).unwrap(),
    );
    put(
        "audit_file",
        "audit",
        &std::fs::read(dir.join("audit.cnnaudit")).unwrap(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Writes valid inputs of the model and dataset loaders to `fuzz/regressions/<target>/seed-*`:
/// model files (the built-ins and `examples/models/`, in TOML and JSON), the shipped
/// breast-cancer and digits files (whole, so that the fuzzers reach the split and the encoding)
/// and a small MNIST pair. Run after a format change:
/// `cargo test --test fuzz_regressions -- --ignored write_loader_seeds`.
#[test]
#[ignore = "writes files under fuzz/regressions/"]
fn write_loader_seeds() {
    use cryptonn::nn::data::InputShape;
    use cryptonn::nn::lenet::LeNetConfig;
    use cryptonn::nn::model::ModelSpec;
    use std::io::Write;

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = repo.join("fuzz/regressions");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let tagged = |tag: u8, body: &[u8]| [&[tag][..], body].concat();

    // Model files: byte 0 even = TOML, odd = JSON.
    let digits = InputShape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    let specs = [
        ModelSpec::lenet5(LeNetConfig::default()),
        ModelSpec::builtin("mlp", InputShape::Flat(30), 2).unwrap(),
        ModelSpec::builtin("cnn-small", digits, 10).unwrap(),
        ModelSpec::builtin("mlp", digits, 10).unwrap(),
    ];
    for (i, spec) in specs.iter().enumerate() {
        put(
            "model_spec",
            &format!("{i}-toml"),
            &tagged(0, toml::to_string(spec).unwrap().as_bytes()),
        );
        put(
            "model_spec",
            &format!("{i}-json"),
            &tagged(1, serde_json::to_string(spec).unwrap().as_bytes()),
        );
    }
    let clinic = std::fs::read(repo.join("examples/models/clinic-mlp.toml")).unwrap();
    put("model_spec", "clinic-mlp", &tagged(0, &clinic));

    // The shipped tables, whole (byte 0 of dataset_digits: even = gzipped, odd = plain CSV).
    let bc = std::fs::read(repo.join("data/breast_cancer.csv")).unwrap();
    put("dataset_breast_cancer", "file", &bc);
    let head: Vec<u8> = bc
        .split_inclusive(|&b| b == b'\n')
        .take(6)
        .flatten()
        .copied()
        .collect();
    put("dataset_breast_cancer", "head", &head);
    let gz = std::fs::read(repo.join("data/digits.csv.gz")).unwrap();
    put("dataset_digits", "gz", &tagged(0, &gz));
    // The whole plain CSV (265 kB) is left out: it would slow every fuzzer execution.
    let mut csv = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut csv).unwrap();
    let head: Vec<u8> = csv
        .split_inclusive(|&b| b == b'\n')
        .take(5)
        .flatten()
        .copied()
        .collect();
    put("dataset_digits", "csv-head", &tagged(1, &head));

    // A 3-image MNIST pair: flags (bit 0: images gzipped, bit 1: labels), u16 LE image length.
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend((0..3 * 784).map(|i| (i % 256) as u8));
    let labels = [0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9];
    let gzip = |b: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    for flags in 0u8..4 {
        let img = if flags & 1 != 0 {
            gzip(&images)
        } else {
            images.clone()
        };
        let lab = if flags & 2 != 0 {
            gzip(&labels)
        } else {
            labels.to_vec()
        };
        let len = u16::try_from(img.len()).unwrap().to_le_bytes();
        put(
            "dataset_mnist",
            &format!("pair-{flags}"),
            &[&[flags][..], &len, &img, &lab].concat(),
        );
    }
}

/// Writes valid inputs of the noisy-domain messages to `fuzz/regressions/<target>/seed-noisy-*`
/// (deterministic): the noisy key request, registration and reply, a `CreateDomains` with
/// noise, and journal entries that create a noisy domain, register a ciphertext and charge
/// the ledger. Run after a format change:
/// `cargo test --test fuzz_regressions -- --ignored write_noisy_seeds`.
#[test]
#[ignore = "writes files under fuzz/regressions/"]
fn write_noisy_seeds() {
    use cryptonn::coordinator::net::{convert, proto};
    use cryptonn::coordinator::persistent::journal::{JournalEntry, LedgerEntry};
    use cryptonn::coordinator::{
        DomainId, FeipKeyRequest, KeyVectorData, NoiseConfig, NoisyCiphertextRegistration,
        NoisyKeyItem, NoisyKeyRequest, PolicyConfig,
    };
    use cryptonn::fe::discrete_gaussian::DiscreteGaussian;
    use cryptonn::fe::feip::FeipParams;
    use cryptonn::fe::group::ristretto::Ristretto255;
    use cryptonn::fe::group::PrimeOrderGroup;
    use prost::Message;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-noisy-{name}")), bytes).unwrap();
    };
    let g = Ristretto255;
    let ct0 = g.element_to_bytes(&g.generator());
    let domain = DomainId(1);
    let request = NoisyKeyRequest {
        keys: FeipKeyRequest {
            domain,
            vectors: vec![
                KeyVectorData::Dense(vec![1, -2, 3, 4]),
                KeyVectorData::Sparse(vec![(0, 5), (3, -1)]),
            ],
        },
        ciphertexts: vec![NoisyKeyItem {
            ct0: ct0.clone(),
            vectors: vec![0, 1],
        }],
    };
    let batch = convert::noisy_request_to_proto(&request);
    put(
        "proto_conversions",
        "request",
        &[&[5u8][..], &batch.encode_to_vec()].concat(),
    );
    let registration = convert::noisy_registration_to_proto(&NoisyCiphertextRegistration {
        domain,
        ciphertexts: vec![(ct0.clone(), 7)],
    });
    put(
        "proto_conversions",
        "registration",
        &[&[6u8][..], &registration.encode_to_vec()].concat(),
    );
    let params = FeipParams::new(4, 255, 100).unwrap();
    let reply = proto::NoisyFeipKeyReply {
        domain: domain.0,
        params: Some(convert::feip_params_to_proto(&params)),
        keys: vec![proto::NoisyKeyList {
            keys: vec![ct0.clone(), ct0.clone()],
        }],
    };
    put(
        "proto_conversions",
        "reply",
        &[&[7u8][..], &reply.encode_to_vec()].concat(),
    );
    let noise = NoiseConfig {
        sigma: DiscreteGaussian::new(3, 2).unwrap(),
        coordinate_range: 510,
    };
    let create = proto::CreateDomainsRequest {
        requesters: vec!["trainer".into()],
        feip: Some(convert::feip_params_to_proto(&params)),
        febo: None,
        count: 1,
        policy: 1,
        noise: Some(convert::noise_to_proto(&noise)),
    };
    put(
        "proto_conversions",
        "create",
        &[&[2u8][..], &create.encode_to_vec()].concat(),
    );
    let digest = cryptonn::coordinator::messages::ct0_digest(&ct0);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let entries = [
        JournalEntry::Create {
            domain: 1,
            epoch: 0,
            n: 4,
            x_bound: 255,
            y_bound: 100,
            febo: None,
            policy: PolicyConfig::permissive(),
            access: None,
        },
        JournalEntry::MakeNoisy {
            domain: 1,
            sigma_num: 3,
            sigma_den: 2,
            coordinate_range: 510,
        },
        JournalEntry::RegisterNoisy {
            domain: 1,
            digests: hex,
            samples: vec![7],
        },
        JournalEntry::Budget {
            epsilon_bits: Some(8.0f64.to_bits()),
            delta_bits: 1e-5f64.to_bits(),
            granularity: "image".into(),
        },
        JournalEntry::Charge {
            entries: vec![LedgerEntry {
                sample: 7,
                pixel_bits: 0.5f64.to_bits(),
                image_bits: 2.0f64.to_bits(),
                releases: 2,
            }],
        },
    ];
    let mut journal = Vec::new();
    for e in &entries {
        journal.extend_from_slice(serde_json::to_string(e).unwrap().as_bytes());
        journal.push(b'\n');
    }
    put("domain_journal", "entries", &journal);
}
