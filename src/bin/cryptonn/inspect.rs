//! `cryptonn inspect FILE`: what a file is, without revealing secrets.
//!
//! Recognised by their magic bytes: wire-format objects (`CNFE`: public keys, ciphertexts,
//! function keys), encrypted datasets (`CNNENCDS`), audit logs (`CNNAUDIT`), the authority's
//! master seed (`CNNSEED1`: only its permissions are shown), discrete-log tables
//! (`CNNDLOG`), encrypted prediction queries (`CNNQ`, from `client predict --save-query`), and
//! the authority's domain journal (JSON lines). Scalars (function keys) and seeds are never
//! printed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use cryptonn::coordinator::secure_prediction::EncryptedQuery;
use cryptonn::coordinator::secure_training::encrypted_dataset::read_header;
use cryptonn::coordinator::{read_audit_file, AuditOutcome, AuditedKey};
use cryptonn::fe::group::ristretto::Ristretto255;

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
    } else if head.starts_with(b"CNNENCDS") {
        let h = read_header(path).with_context(|| format!("reading {}", path.display()))?;
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
            "  audit log: {records} records over {} domains",
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
    } else if head.starts_with(b"CNNDLOG") {
        println!("  baby-step table of the discrete logarithm (public precomputation)");
    } else if head.starts_with(b"{\"op\":") {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut ops: BTreeMap<String, usize> = BTreeMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}: not a domain journal", path.display()))?;
            let op = v.get("op").and_then(|o| o.as_str()).unwrap_or("?");
            *ops.entry(op.to_string()).or_default() += 1;
        }
        println!("  the authority's domain journal: {ops:?}");
    } else {
        // Its bytes are not shown: an unknown file may be a secret (a raw seed, a tokens file).
        anyhow::bail!(
            "{}: not a cryptonn file (unknown magic bytes)",
            path.display()
        );
    }
    Ok(())
}
