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
    match which % 5 {
        0 => {
            if let Ok(m) = proto::FeipKeyBatch::decode(rest) {
                let _ = convert::feip_request_from_proto(m);
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
