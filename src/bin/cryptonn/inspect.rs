//! `cryptonn inspect FILE`: what a file is, without revealing secrets, after verifying it.
//!
//! Recognised by their magic bytes: wire-format objects (`CNFE`: public keys, ciphertexts,
//! function keys), encrypted datasets (`CNNENCDS`), audit logs (`CNNAUDIT`), the authority's
//! master seed (`CNNSEED1`: only its permissions are shown) and state head (`CNNHEAD2`),
//! discrete-log tables (`CNNDLOG`), encrypted prediction queries (`CNNQ`, from `client predict
//! --save-query`), the authority's domain journal (hash-chained JSON lines), and saved models
//! (safetensors, from `--save`). Scalars (function keys) and seeds are never printed.
//!
//! What is described is verified first, and a file that fails exits non-zero: a wire object
//! must decode (over Ristretto255); a dataset's header must parse, its length match the header
//! and its SHA-256 trailer match (streamed, so a large file needs no memory); an audit file's
//! hash chain and sequence numbers must hold to the end; a journal's chain must hold; a saved
//! model must pass every check of `SavedModel::load` (container, metadata, spec, shapes, the
//! weights' and the state's SHA-256).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use cryptonn::coordinator::persistent::journal::{parse_journal_unanchored, JournalEntry};
use cryptonn::coordinator::secure_prediction::EncryptedQuery;
use cryptonn::coordinator::secure_training::encrypted_dataset::read_header;
use cryptonn::coordinator::{read_audit_file, AuditOutcome, AuditedKey};
use cryptonn::fe::febo::{FeboCiphertext, FeboFunctionKey, FeboPublicKey};
use cryptonn::fe::feip::{Ciphertext, FunctionKey, MasterPublicKey};
use cryptonn::fe::group::ristretto::Ristretto255;
use cryptonn::fe::group::PrimeOrderGroup;
use cryptonn::fe::serialize::WireFormat;
use cryptonn::nn::saved_model::SavedModel;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The file to describe.
    file: PathBuf,
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        1 => "FEIP master public key",
        2 => "FEIP ciphertext",
        3 => "FEIP function key (secret-ish: reveals <x, y> for every ciphertext of its domain; value not shown)",
        4 => "FEBO public key",
        5 => "FEBO ciphertext",
        6 => "FEBO function key (value not shown)",
        _ => "unknown kind",
    }
}

pub fn run(a: &InspectArgs) -> anyhow::Result<()> {
    let path = &a.file;
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("reading {}", path.display()))?;
    let head = &head[..n];
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    println!("{}: {size} bytes", path.display());
    if head.starts_with(b"CNFE") && head.len() >= 8 {
        let version = u16::from_le_bytes([head[4], head[5]]);
        println!(
            "  cryptonn wire-format object, version {version}, group id {}, {}",
            head[6],
            kind_name(head[7])
        );
        if matches!(head[7], 1 | 2) && head.len() >= 12 {
            let dim = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            println!("  dimension n = {dim}");
        }
        verify_wire(path, head[6], head[7])?;
    } else if head.starts_with(b"CNNENCDS") {
        let h = read_header(path).with_context(|| format!("reading {}", path.display()))?;
        verify_dataset(path, size, h.images, h.record_len())?;
        println!(
            "  encrypted MNIST dataset: {} images, group id {}, {} shards of {} (domains {}..={}), \
             pixel bound {}, padding value {}",
            h.images,
            h.group,
            h.domains.len(),
            h.params.shard_size,
            h.domains.first().map_or(0, |d| d.0),
            h.domains.last().map_or(0, |d| d.0),
            h.pixel_bound,
            h.padding_value
        );
        println!("  encryption parameters: {:?}", h.params);
        println!("  source digest {}", h.source_digest);
    } else if head.starts_with(b"CNNAUDIT") {
        let reader =
            read_audit_file(path).with_context(|| format!("reading {}", path.display()))?;
        let mut per_requester: BTreeMap<String, [u64; 4]> = BTreeMap::new();
        let mut domains = std::collections::BTreeSet::new();
        let mut records = 0u64;
        let mut span = (u64::MAX, 0u64);
        for r in reader {
            let r = r.with_context(|| format!("{} after {records} records", path.display()))?;
            records += 1;
            domains.insert(r.domain);
            span = (span.0.min(r.unix_time), span.1.max(r.unix_time));
            let e = per_requester.entry(r.requester.to_string()).or_default();
            match (&r.key, &r.outcome) {
                (AuditedKey::Feip { .. }, AuditOutcome::Issued) => e[0] += 1,
                (AuditedKey::Febo { .. }, AuditOutcome::Issued) => e[1] += 1,
                (_, AuditOutcome::Refused(_)) => e[2] += 1,
                _ => e[3] += 1,
            }
        }
        println!(
            "  audit log: {records} records over {} domains (hash chain verified)",
            domains.len()
        );
        if records > 0 {
            println!("  unix time {}..={}", span.0, span.1);
        }
        for (who, [feip, febo, refused, rotated]) in per_requester {
            println!(
                "  {who}: {feip} FEIP keys, {febo} FEBO keys issued; {refused} refusals, \
                 {rotated} rotations"
            );
        }
    } else if head.starts_with(b"CNNSEED1") {
        #[cfg(unix)]
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            format!(
                "{:o}",
                std::fs::metadata(path)?.permissions().mode() & 0o777
            )
        };
        #[cfg(not(unix))]
        let mode = "?".to_string();
        println!(
            "  the authority's master seed (SECRET: every master key follows from it; not \
             shown), group id {}, mode {mode}",
            head.get(8).copied().unwrap_or(0)
        );
    } else if head.starts_with(b"CNNQ") {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let q = EncryptedQuery::from_bytes(&Ristretto255, &bytes)
            .with_context(|| format!("{}: not a valid encrypted query", path.display()))?;
        println!(
            "  encrypted prediction query (Ristretto255): query domain {}, FEIP ciphertext of n = \
             {} pixels; encoding {:?}",
            q.domain(),
            q.ciphertext().components().len(),
            q.params()
        );
    } else if head.starts_with(b"CNNHEAD2") {
        println!(
            "  the authority's state head (where the journal and the audit file end, the domain \
             id high-water mark, the seed's fingerprint)"
        );
        if size != 368 {
            anyhow::bail!("{}: {size} bytes, a state head has 368", path.display());
        }
    } else if head.len() >= 9 && head[8] == b'{' && head[..8].iter().skip(4).all(|b| *b == 0) {
        describe_model(path)?;
    } else if head.starts_with(b"CNNDLOG") {
        println!("  baby-step table of the discrete logarithm (public precomputation)");
    } else if head.starts_with(b"{\"prev\":") || head.starts_with(b"{\"op\":") {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let scan = parse_journal_unanchored(&bytes)
            .with_context(|| format!("{}: not an intact domain journal", path.display()))?;
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, e) in &scan.entries {
            let op = match e {
                JournalEntry::Create { .. } => "create",
                JournalEntry::Rotate { .. } => "rotate",
                JournalEntry::Close { .. } => "close",
                JournalEntry::Review { .. } => "review",
                JournalEntry::Register { .. } => "register",
                _ => "other",
            };
            *ops.entry(op).or_default() += 1;
        }
        println!(
            "  the authority's domain journal: {ops:?} (hash chain verified; its start is \
             anchored in the state head, which only the authority checks)"
        );
        if scan.torn > 0 {
            anyhow::bail!(
                "{}: the last {} bytes are a torn line (the authority cuts it at its next start)",
                path.display(),
                scan.torn
            );
        }
    } else {
        // Its bytes are not shown: an unknown file may be a secret (a raw seed, a tokens file).
        anyhow::bail!(
            "{}: not a cryptonn file (unknown magic bytes)",
            path.display()
        );
    }
    Ok(())
}

/// A saved model (safetensors): verified by [`SavedModel::load`], then described.
fn describe_model(path: &std::path::Path) -> anyhow::Result<()> {
    let saved = SavedModel::load(path)?;
    let spec = saved.model().spec();
    let cfg = saved.config();
    println!(
        "  saved model (safetensors) `{}`: input {}, {} classes, {} layers",
        spec.name,
        spec.input,
        spec.classes,
        spec.layers.len()
    );
    for (i, l) in spec.layers.iter().enumerate() {
        println!("    layers.{i}: {}", serde_json::to_string(l)?);
    }
    println!("  tensors (float32):");
    for (name, shape) in saved.tensor_shapes() {
        println!("    {name} {shape:?}");
    }
    let d = saved.dataset();
    println!(
        "  trained on {} ({} examples, encoding {}), {} mode, seed {}",
        d.name,
        d.train_size,
        serde_json::to_string(&d.encoding)?,
        cfg.mode,
        cfg.seed
    );
    println!(
        "  fixed-point scales: {}",
        serde_json::to_string(&cfg.quant)?
    );
    println!(
        "  epoch {} of {} (step {} of {}){}",
        saved.epochs_done(),
        cfg.epochs,
        saved.steps_done(),
        saved.total_steps(),
        if saved.velocity().is_empty() {
            ""
        } else {
            ", with momentum buffers (resumable)"
        }
    );
    println!(
        "  weights sha256 {} (verified, as is the state hash)",
        saved.weights_sha256()
    );
    Ok(())
}

/// Decodes a wire-format object of kind `kind` over Ristretto255 (the group the binary runs).
fn verify_wire(path: &std::path::Path, group: u8, kind: u8) -> anyhow::Result<()> {
    let g = Ristretto255;
    if group != g.id().to_byte() {
        anyhow::bail!(
            "{}: group id {group}; this binary verifies Ristretto255 objects (id {}) only",
            path.display(),
            g.id().to_byte()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let ok = match kind {
        1 => MasterPublicKey::from_bytes(&g, &bytes).map(|_| ()),
        2 => Ciphertext::from_bytes(&g, &bytes).map(|_| ()),
        3 => FunctionKey::from_bytes(&g, &bytes).map(|_| ()),
        4 => FeboPublicKey::from_bytes(&g, &bytes).map(|_| ()),
        5 => FeboCiphertext::from_bytes(&g, &bytes).map(|_| ()),
        6 => FeboFunctionKey::from_bytes(&g, &bytes).map(|_| ()),
        _ => anyhow::bail!("{}: unknown wire-format kind {kind}", path.display()),
    };
    ok.with_context(|| format!("{}: does not decode", path.display()))?;
    println!("  decodes (canonical encoding, valid group elements)");
    Ok(())
}

/// Checks an encrypted dataset's length against its header and its SHA-256 trailer, streaming.
fn verify_dataset(
    path: &std::path::Path,
    size: u64,
    images: usize,
    record_len: usize,
) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut prefix = [0u8; 14];
    f.read_exact(&mut prefix)
        .with_context(|| format!("{}: truncated before the header", path.display()))?;
    let header_len = u64::from(u32::from_le_bytes([
        prefix[10], prefix[11], prefix[12], prefix[13],
    ]));
    let expected = (images as u64)
        .checked_mul(record_len as u64)
        .and_then(|r| r.checked_add(14 + header_len + 32))
        .with_context(|| format!("{}: absurd sizes in the header", path.display()))?;
    if size != expected {
        anyhow::bail!(
            "{}: {size} bytes, the header announces {expected} (truncated, unfinished or padded \
             file)",
            path.display()
        );
    }
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    let mut left = size - 14 - 32;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        f.read_exact(&mut buf[..n])
            .with_context(|| format!("reading {}", path.display()))?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer)
        .with_context(|| format!("reading {}", path.display()))?;
    if hasher.finalize().as_slice() != trailer {
        anyhow::bail!(
            "{}: SHA-256 trailer mismatch (damaged or tampered file)",
            path.display()
        );
    }
    println!("  length and SHA-256 trailer verified");
    Ok(())
}
