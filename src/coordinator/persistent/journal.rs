//! The domain journal (`domains.journal`, format 2): one JSON line per state change, each
//! carrying the SHA-256 of the line before it.
//!
//! A line is `{"prev":"<hex SHA-256 of the previous line's bytes, newline included>","entry":
//! {…}}` followed by `\n`; the first line's `prev` is `SHA-256("cryptonn journal chain" ‖ seed
//! fingerprint)`, which ties the journal to its master seed. The entries:
//! - `create`: a domain's id, key epoch, FEIP and FEBO bounds, policy configuration and, for a
//!   bound domain, its access (owner and requesters);
//! - `rotate`: a domain retired, its successor's id and key epoch;
//! - `close`: a domain closed;
//! - `review`: a validated FEIP key batch of a domain whose policy tracks the issued rank
//!   (written before the batch is reviewed, so that a crash can only make the restored rank
//!   higher than the keys actually handed out, never lower);
//! - `register`: the digests of FEBO commitments a domain's owner registered (validated first);
//! - `make_noisy`: a domain made noisy, with its sigma (as a ratio) and coordinate range;
//! - `register_noisy`: the `ct0` digests a noisy domain's owner registered, with their sample
//!   ids (validated first);
//! - `budget`: the privacy budget of noisy domains set (or removed);
//! - `charge`: the privacy ledger entries a noisy key batch changed, as they are after it
//!   (written after the keys are derived and before any is returned, so that a crash can only
//!   make the restored ledger higher than what was handed out, never lower).
//!
//! Format 1 (lines without a chain) is refused with a message saying so.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::coordinator::messages::{DomainAccess, KeyVectorData};
use crate::coordinator::policy::PolicyConfig;

/// One state change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum JournalEntry {
    /// A domain was created.
    Create {
        /// Its id.
        domain: u64,
        /// Its key epoch.
        epoch: u64,
        /// FEIP dimension.
        n: usize,
        /// FEIP input bound.
        x_bound: u64,
        /// FEIP key bound.
        y_bound: u64,
        /// FEBO bounds, if any.
        febo: Option<(u64, u64)>,
        /// The default policy's configuration.
        policy: PolicyConfig,
        /// Who may use the domain (absent for an unbound domain).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access: Option<DomainAccess>,
    },
    /// A domain was rotated.
    Rotate {
        /// The retired domain.
        domain: u64,
        /// Its successor.
        successor: u64,
        /// The successor's key epoch.
        epoch: u64,
    },
    /// A domain was closed.
    Close {
        /// The domain.
        domain: u64,
    },
    /// A validated key batch was reviewed by a rank-tracking policy.
    Review {
        /// The domain.
        domain: u64,
        /// The batch.
        vectors: Vec<KeyVectorData>,
    },
    /// FEBO commitments registered by the domain's owner.
    Register {
        /// The domain.
        domain: u64,
        /// Their digests ([`commitment_digest`](crate::coordinator::messages::commitment_digest)),
        /// hex, concatenated.
        digests: String,
    },
    /// A domain was made noisy.
    MakeNoisy {
        /// The domain.
        domain: u64,
        /// Sigma's numerator (in lowest terms).
        sigma_num: u64,
        /// Sigma's denominator.
        sigma_den: u64,
        /// The width of every input coordinate's interval (the sensitivity model).
        coordinate_range: u64,
    },
    /// Ciphertexts registered in a noisy domain by its owner.
    RegisterNoisy {
        /// The domain.
        domain: u64,
        /// Their `ct0` digests ([`ct0_digest`](crate::coordinator::messages::ct0_digest)), hex,
        /// concatenated.
        digests: String,
        /// The sample id of each digest, in the same order.
        samples: Vec<u64>,
    },
    /// The privacy budget of noisy domains was set, or removed (`epsilon_bits` absent).
    Budget {
        /// `f64::to_bits` of the budget's `ε`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epsilon_bits: Option<u64>,
        /// `f64::to_bits` of its `δ`.
        delta_bits: u64,
        /// What it protects: `"image"` or `"pixel"`.
        granularity: String,
    },
    /// Privacy ledger entries after a noisy key batch.
    Charge {
        /// The changed entries.
        entries: Vec<LedgerEntry>,
    },
}

/// One sample's composed privacy loss in a [`JournalEntry::Charge`]. The slopes travel as
/// their IEEE-754 bits, so the restored ledger is bit-identical (infinite for sigma = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    /// The sample id.
    pub sample: u64,
    /// `f64::to_bits` of the per-pixel RDP slope.
    pub pixel_bits: u64,
    /// `f64::to_bits` of the per-image RDP slope.
    pub image_bits: u64,
    /// Noisy values the sample released.
    pub releases: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    prev: String,
    entry: JournalEntry,
}

/// A position in the journal's chain: after `entries` lines, `bytes` bytes, the last line
/// hashing to `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalChain {
    /// Lines up to here.
    pub entries: u64,
    /// Bytes up to here.
    pub bytes: u64,
    /// SHA-256 of the last line (of the chain seed at the start).
    pub hash: [u8; 32],
}

/// The chain's start for a seed with this fingerprint.
#[must_use]
pub fn genesis(seed_fingerprint: &[u8; 32]) -> JournalChain {
    let mut h = Sha256::new();
    h.update(b"cryptonn journal chain");
    h.update(seed_fingerprint);
    JournalChain {
        entries: 0,
        bytes: 0,
        hash: h.finalize().into(),
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Encodes `entry` as the line after `chain`, and the chain after it.
///
/// # Errors
/// A [`serde_json::Error`] (not expected for these types).
pub fn encode_line(
    chain: &JournalChain,
    entry: &JournalEntry,
) -> Result<(Vec<u8>, JournalChain), serde_json::Error> {
    let mut line = serde_json::to_vec(&Line {
        prev: hex(&chain.hash),
        entry: entry.clone(),
    })?;
    line.push(b'\n');
    let next = JournalChain {
        entries: chain.entries + 1,
        bytes: chain.bytes + line.len() as u64,
        hash: Sha256::digest(&line).into(),
    };
    Ok((line, next))
}

/// A damaged journal: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} (byte offset {offset}): {reason}")]
pub struct JournalDamage {
    /// The line at fault (1-based).
    pub line: u64,
    /// Its first byte.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// What [`parse_journal`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalScan {
    /// The entries, each with the byte offset of its line.
    pub entries: Vec<(u64, JournalEntry)>,
    /// The chain after the last complete line.
    pub end: JournalChain,
    /// The chain at the requested checkpoint offset, if a line ends there.
    pub checkpoint: Option<JournalChain>,
    /// Bytes after the last complete line (a torn last write).
    pub torn: u64,
}

/// Parses and verifies a whole journal. A last line without its newline is a torn write and
/// ends the scan; any other damage is an error naming the line and its offset.
///
/// # Errors
/// [`JournalDamage`] for a line that is not JSON of the format, names the wrong predecessor
/// hash, or comes from format 1.
pub fn parse_journal(
    bytes: &[u8],
    genesis: JournalChain,
    checkpoint: Option<u64>,
) -> Result<JournalScan, JournalDamage> {
    let mut chain = genesis;
    let mut found = (checkpoint == Some(chain.bytes)).then_some(chain);
    let mut entries = Vec::new();
    let mut rest = bytes;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let line = &rest[..=nl];
        let damage = |reason: String| JournalDamage {
            line: chain.entries + 1,
            offset: chain.bytes,
            reason,
        };
        let parsed: Line = match serde_json::from_slice(line) {
            Ok(l) => l,
            Err(e) => {
                let v1 = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .is_some_and(|v| v.get("op").is_some());
                return Err(damage(if v1 {
                    "a format-1 journal line (no hash chain), written by an older cryptonn; \
                     this build reads format 2: move the old state directory aside"
                        .into()
                } else {
                    format!("not a journal line: {e}")
                }));
            }
        };
        if parsed.prev != hex(&chain.hash) {
            return Err(damage(
                "the line does not carry its predecessor's hash (hash chain broken)".into(),
            ));
        }
        entries.push((chain.bytes, parsed.entry));
        chain = JournalChain {
            entries: chain.entries + 1,
            bytes: chain.bytes + line.len() as u64,
            hash: Sha256::digest(line).into(),
        };
        if checkpoint == Some(chain.bytes) {
            found = Some(chain);
        }
        rest = &rest[nl + 1..];
    }
    Ok(JournalScan {
        entries,
        end: chain,
        checkpoint: found,
        torn: rest.len() as u64,
    })
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(b[2 * i])? << 4 | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// [`parse_journal`] without the seed's fingerprint (for tools that do not hold the seed): the
/// first line's predecessor hash is taken as the chain's start, and every later link is
/// verified.
///
/// # Errors
/// As [`parse_journal`].
pub fn parse_journal_unanchored(bytes: &[u8]) -> Result<JournalScan, JournalDamage> {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let start = serde_json::from_slice::<serde_json::Value>(first)
        .ok()
        .and_then(|v| v.get("prev").and_then(|p| p.as_str()).and_then(unhex));
    let genesis = JournalChain {
        entries: 0,
        bytes: 0,
        hash: start.unwrap_or([0u8; 32]),
    };
    parse_journal(bytes, genesis, None)
}
