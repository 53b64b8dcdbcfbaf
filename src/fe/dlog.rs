//! Bounded discrete logarithm: given `h = g^z` with `|z| <= B`, find `z`.
//!
//! Every FEIP/FEBO decryption ends with `g^{<x, y>}`; the exponent is small (it is bounded by
//! `n·X·Y`), so it is recovered with baby-step giant-step:
//!
//! - [`BabyStepTable`] holds the *baby steps* `g^j` for `j ∈ [0, m]` (`m` = the half-width);
//!   an element `u` is looked up as `u` and as `u^{-1}`, so the table covers `[-m, m]` at half
//!   the build time and memory,
//!   indexed by a 64-bit fingerprint of each element. It is built once (in parallel) and shared
//!   across threads behind an [`Arc`].
//! - [`DlogSolver`] adds *giant steps*: with `G = g^{2m+1}` it tests `h · G^{-k}` against the
//!   table for `k = 0, 1, -1, 2, -2, …, ±K` where `K = ⌈(B − m)/(2m+1)⌉`, so
//!   `z = j + k(2m+1)`. The search is bounded: at most `2K + 1` lookups, never a linear scan, and
//!   an element whose logarithm is not in `[-B, B]` gives [`DlogError::OutOfRange`].
//!
//! **No silent wrong answers.** Fingerprints may collide, so every fingerprint hit is *verified*:
//! `g^j` is recomputed from a small radix-256 table of generator powers and compared with the
//! candidate element by group equality. A wrong or tampered table can therefore only make the
//! solver miss, never return a wrong `z`.
//!
//! **Batching.** [`DlogSolver::vartime_solve_batch`] processes many elements per round, so the
//! group can normalise them together ([`PrimeOrderGroup::vartime_fingerprints`]; for Ristretto
//! one batched inversion via `double_and_compress_batch`).
//!
//! **Disk cache.** [`BabyStepTable::load_or_build`] keeps the table in a versioned file:
//!
//! ```text
//! "CNNDLOG\0" | version u16 | group id u8 | 0u8 | half-width u64 | slot count u64
//!            | fingerprint(g) u64 | slots (u64 LE each) | SHA-256 of everything before
//! ```
//!
//! A file with another version, group, size, or a bad checksum is rejected
//! ([`DlogError::CorruptCache`]) and `load_or_build` rebuilds and rewrites it (atomically, via a
//! temporary file and a rename). Even a forged file with a valid checksum cannot cause a wrong
//! answer, because hits are verified.
//!
//! All of this is variable time: the inputs are decryption results, which the decryptor is
//! entitled to learn.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::fe::error::DlogError;
use crate::fe::group::PrimeOrderGroup;

/// Largest supported half-width `m` of a baby-step table (the table stores `m + 1` entries and
/// covers `[-m, m]`).
pub const MAX_HALF_WIDTH: u64 = 1 << 30;

/// Largest number of giant steps a solver may take per element, in each direction.
pub const MAX_GIANT_STEPS: u64 = 1 << 24;

/// Magic bytes of a cached table file.
const CACHE_MAGIC: &[u8; 8] = b"CNNDLOG\0";
/// Version of the cached table format (bump when the slot layout or fingerprints change).
const CACHE_VERSION: u16 = 2;
/// Header length: magic, version, group id, reserved, half-width, slot count, fingerprint(g).
const CACHE_HEADER_LEN: usize = 8 + 2 + 1 + 1 + 8 + 8 + 8;

/// Elements per parallel chunk when the table is built.
const BUILD_CHUNK: usize = 1 << 12;

/// The baby steps `g^j`, `j ∈ [0, m]`, in an open-addressing hash table keyed by fingerprint.
///
/// Slot layout (one `u64`): high 32 bits = low 32 bits of the fingerprint (a tag), low 32 bits =
/// `j + 1` (0 marks an empty slot). The slot index is `⌊fp · capacity / 2^64⌋` followed by
/// linear probing; capacity is about `4/3` of the entry count.
pub struct BabyStepTable<G: PrimeOrderGroup> {
    group: G,
    half: u64,
    slots: Vec<u64>,
    /// `g^{2m+1}`, the giant step.
    giant: G::Element,
    /// `g^{-(2m+1)}`.
    giant_inv: G::Element,
    /// `verify[i][d] = g^{d · 256^i}` for `d ∈ [0, 256)`, to recompute `g^j` on a hit.
    verify: Vec<Vec<G::Element>>,
}

impl<G: PrimeOrderGroup> std::fmt::Debug for BabyStepTable<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BabyStepTable")
            .field("group", &self.group.id())
            .field("half_width", &self.half)
            .field("slots", &self.slots.len())
            .finish()
    }
}

fn capacity_for(entries: u64) -> usize {
    (entries + entries / 3 + 1) as usize
}

#[inline]
fn slot_index(fp: u64, cap: usize) -> usize {
    ((u128::from(fp) * cap as u128) >> 64) as usize
}

impl<G: PrimeOrderGroup> BabyStepTable<G> {
    /// Builds the table of `g^j` for `j ∈ [0, half_width]` (in parallel with rayon); with
    /// inverse lookups it covers `[-half_width, half_width]`.
    ///
    /// # Errors
    /// [`DlogError::InvalidParameters`] if `half_width` is 0 or above [`MAX_HALF_WIDTH`].
    pub fn new(group: G, half_width: u64) -> Result<Self, DlogError> {
        if half_width == 0 || half_width > MAX_HALF_WIDTH {
            return Err(DlogError::InvalidParameters(
                "baby-step half-width must be in 1..=2^30",
            ));
        }
        let entries = half_width + 1;
        let start = 0i64;
        let chunks = (entries as usize).div_ceil(BUILD_CHUNK);
        let fingerprints: Vec<Vec<u64>> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let first = c * BUILD_CHUNK;
                let len = BUILD_CHUNK.min(entries as usize - first);
                let g = group.generator();
                let mut e = group.vartime_exp_generator_i64(start + first as i64);
                let mut elems = Vec::with_capacity(len);
                for i in 0..len {
                    if i > 0 {
                        e = group.op(&e, &g);
                    }
                    elems.push(e.clone());
                }
                group.vartime_fingerprints(&elems)
            })
            .collect();
        let cap = capacity_for(entries);
        let mut slots = vec![0u64; cap];
        // The stored value is j + 1 (0 marks an empty slot).
        for (biased, fp) in (1u64..).zip(fingerprints.iter().flatten()) {
            let mut pos = slot_index(*fp, cap);
            while slots[pos] != 0 {
                pos += 1;
                if pos == cap {
                    pos = 0;
                }
            }
            slots[pos] = (u64::from(*fp as u32) << 32) | biased;
        }
        Ok(Self::from_parts(group, half_width, slots))
    }

    /// The file name this table uses in a cache directory, e.g. `dlog-g1-m4194304.bin`.
    #[must_use]
    pub fn cache_file_name(group: &G, half_width: u64) -> PathBuf {
        PathBuf::from(format!(
            "dlog-g{}-m{}.bin",
            group.id().to_byte(),
            half_width
        ))
    }

    fn header(group: &G, half: u64, slots: u64) -> Vec<u8> {
        let mut h = Vec::with_capacity(CACHE_HEADER_LEN);
        h.extend_from_slice(CACHE_MAGIC);
        h.extend_from_slice(&CACHE_VERSION.to_le_bytes());
        h.push(group.id().to_byte());
        h.push(0);
        h.extend_from_slice(&half.to_le_bytes());
        h.extend_from_slice(&slots.to_le_bytes());
        let fp_g = group
            .vartime_fingerprints(std::slice::from_ref(&group.generator()))
            .first()
            .copied()
            .unwrap_or(0);
        h.extend_from_slice(&fp_g.to_le_bytes());
        h
    }

    /// Writes the table to `path` (via a temporary file and an atomic rename).
    ///
    /// # Errors
    /// [`DlogError::Io`] if the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), DlogError> {
        let mut bytes = Self::header(&self.group, self.half, self.slots.len() as u64);
        bytes.reserve(self.slots.len() * 8 + 32);
        for s in &self.slots {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        let digest = Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Loads a table for `group` and `half_width` from `path`.
    ///
    /// # Errors
    /// [`DlogError::Io`] if the file cannot be read; [`DlogError::CorruptCache`] if it is
    /// truncated, has another version, group or size, a bad checksum, or inconsistent slots;
    /// [`DlogError::InvalidParameters`] for an unsupported `half_width`.
    pub fn load(group: G, half_width: u64, path: &Path) -> Result<Self, DlogError> {
        if half_width == 0 || half_width > MAX_HALF_WIDTH {
            return Err(DlogError::InvalidParameters(
                "baby-step half-width must be in 1..=2^30",
            ));
        }
        let bytes = std::fs::read(path)?;
        let entries = half_width + 1;
        let cap = capacity_for(entries);
        let expected_header = Self::header(&group, half_width, cap as u64);
        if bytes.len() < CACHE_HEADER_LEN + 32 {
            return Err(DlogError::CorruptCache("file truncated"));
        }
        if &bytes[..8] != CACHE_MAGIC {
            return Err(DlogError::CorruptCache("bad magic"));
        }
        if bytes[8..10] != expected_header[8..10] {
            return Err(DlogError::CorruptCache("unsupported version"));
        }
        if bytes[..CACHE_HEADER_LEN] != expected_header[..] {
            return Err(DlogError::CorruptCache("file is for another group or size"));
        }
        if bytes.len() != CACHE_HEADER_LEN + cap * 8 + 32 {
            return Err(DlogError::CorruptCache("wrong file length"));
        }
        let (body, digest) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != digest {
            return Err(DlogError::CorruptCache("checksum mismatch"));
        }
        let slots: Vec<u64> = body[CACHE_HEADER_LEN..]
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                u64::from_le_bytes(w)
            })
            .collect();
        let mut used = 0u64;
        for &s in &slots {
            if s != 0 {
                used += 1;
                let v = s & 0xFFFF_FFFF;
                if v == 0 || v > entries {
                    return Err(DlogError::CorruptCache("slot value out of range"));
                }
            }
        }
        if used != entries {
            return Err(DlogError::CorruptCache("wrong number of entries"));
        }
        Ok(Self::from_parts(group, half_width, slots))
    }

    /// Loads the table from `dir/`[`cache_file_name`](Self::cache_file_name) if a valid file is
    /// there; otherwise builds it and writes the file. A corrupt or stale file is replaced.
    ///
    /// # Errors
    /// [`DlogError::InvalidParameters`] for an unsupported `half_width`; [`DlogError::Io`] if
    /// the rebuilt table cannot be written.
    pub fn load_or_build(group: G, half_width: u64, dir: &Path) -> Result<Self, DlogError> {
        let path = dir.join(Self::cache_file_name(&group, half_width));
        match Self::load(group.clone(), half_width, &path) {
            Ok(t) => Ok(t),
            Err(DlogError::InvalidParameters(m)) => Err(DlogError::InvalidParameters(m)),
            Err(_) => {
                let t = Self::new(group, half_width)?;
                t.save(&path)?;
                Ok(t)
            }
        }
    }

    /// Assembles a table from its slots, computing the small derived tables.
    fn from_parts(group: G, half: u64, slots: Vec<u64>) -> Self {
        let giant = group.vartime_exp_generator_i64((2 * half + 1) as i64);
        let giant_inv = group.invert(&giant);
        let rows = (64 - half.leading_zeros() as usize).div_ceil(8).max(1);
        let mut verify = Vec::with_capacity(rows);
        let mut base = group.generator();
        for _ in 0..rows {
            let mut row = Vec::with_capacity(256);
            let mut acc = group.identity();
            for _ in 0..256 {
                row.push(acc.clone());
                acc = group.op(&acc, &base);
            }
            // acc = base^256
            base = acc;
            verify.push(row);
        }
        Self {
            group,
            half,
            slots,
            giant,
            giant_inv,
            verify,
        }
    }

    /// The group the table belongs to.
    #[must_use]
    pub fn group(&self) -> &G {
        &self.group
    }

    /// The half-width `m`: the table (with inverse lookups) covers `|j| <= m`.
    #[must_use]
    pub fn half_width(&self) -> u64 {
        self.half
    }

    /// `g^j` for `|j| <= m` from the radix-256 verification rows.
    fn vartime_small_power(&self, j: i64) -> G::Element {
        let mut a = j.unsigned_abs();
        let mut acc = self.group.identity();
        for row in &self.verify {
            let d = (a & 0xFF) as usize;
            if d != 0 {
                acc = self.group.op(&acc, &row[d]);
            }
            a >>= 8;
        }
        if j < 0 {
            self.group.invert(&acc)
        } else {
            acc
        }
    }

    /// Looks up an element with known fingerprint: `Some(j)` with `0 <= j <= m` and `g^j = element`
    /// (verified by group equality), or `None`.
    #[must_use]
    pub fn vartime_lookup(&self, fingerprint: u64, element: &G::Element) -> Option<i64> {
        let cap = self.slots.len();
        let tag = fingerprint as u32;
        let mut pos = slot_index(fingerprint, cap);
        // At most `cap` probes even if the slots were tampered with (no endless search).
        for _ in 0..cap {
            let s = self.slots[pos];
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == tag {
                let j = (s & 0xFFFF_FFFF) as i64 - 1;
                if j as u64 <= self.half && self.vartime_small_power(j) == *element {
                    return Some(j);
                }
            }
            pos += 1;
            if pos == cap {
                pos = 0;
            }
        }
        None
    }
}

/// A bounded discrete-log solver: a shared [`BabyStepTable`] plus giant steps up to a bound `B`.
#[derive(Debug)]
pub struct DlogSolver<G: PrimeOrderGroup> {
    table: Arc<BabyStepTable<G>>,
    bound: u64,
    giant_steps: u64,
}

impl<G: PrimeOrderGroup> Clone for DlogSolver<G> {
    fn clone(&self) -> Self {
        Self {
            table: Arc::clone(&self.table),
            bound: self.bound,
            giant_steps: self.giant_steps,
        }
    }
}

impl<G: PrimeOrderGroup> DlogSolver<G> {
    /// A solver for `|z| <= bound` over a shared table.
    ///
    /// # Errors
    /// [`DlogError::InvalidParameters`] if `bound` would need more than [`MAX_GIANT_STEPS`]
    /// giant steps in each direction, or does not fit in an `i64`.
    pub fn new(table: Arc<BabyStepTable<G>>, bound: u64) -> Result<Self, DlogError> {
        if bound > i64::MAX as u64 / 2 {
            return Err(DlogError::InvalidParameters("bound must be below 2^62"));
        }
        let width = 2 * table.half + 1;
        let giant_steps = bound.saturating_sub(table.half).div_ceil(width);
        if giant_steps > MAX_GIANT_STEPS {
            return Err(DlogError::InvalidParameters(
                "bound needs too many giant steps for this table",
            ));
        }
        Ok(Self {
            table,
            bound,
            giant_steps,
        })
    }

    /// A solver whose bound is the table's half-width (no giant steps).
    #[must_use]
    pub fn table_only(table: Arc<BabyStepTable<G>>) -> Self {
        let bound = table.half;
        Self {
            table,
            bound,
            giant_steps: 0,
        }
    }

    /// The bound `B`: the solver finds `z` with `|z| <= B`.
    #[must_use]
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// The shared baby-step table.
    #[must_use]
    pub fn table(&self) -> &Arc<BabyStepTable<G>> {
        &self.table
    }

    /// The group.
    #[must_use]
    pub fn group(&self) -> &G {
        &self.table.group
    }

    /// Solves `h = g^z` for `|z| <= B`.
    ///
    /// # Errors
    /// [`DlogError::OutOfRange`] if no such `z` exists.
    pub fn vartime_solve(&self, h: &G::Element) -> Result<i64, DlogError> {
        self.vartime_solve_batch(std::slice::from_ref(h))
            .pop()
            .unwrap_or(Err(DlogError::OutOfRange { bound: self.bound }))
    }

    /// Solves many elements at once; each round normalises all pending elements together.
    /// The `i`-th result belongs to `hs[i]`; each is `Err(DlogError::OutOfRange)` when that
    /// element has no logarithm in `[-B, B]`.
    #[must_use]
    pub fn vartime_solve_batch(&self, hs: &[G::Element]) -> Vec<Result<i64, DlogError>> {
        let group = &self.table.group;
        let width = (2 * self.table.half + 1) as i64;
        let mut out: Vec<Option<i64>> = vec![None; hs.len()];
        let mut pending: Vec<usize> = (0..hs.len()).collect();
        // Walkers, aligned with `pending`: up = h·G^{-k} (tests z = ±j + k·width) and its
        // inverse up_inv = h^{-1}·G^{k}; down = h·G^{k} (tests z = ±j − k·width) and
        // down_inv = h^{-1}·G^{-k}. Inverses are walked too, so each element is inverted once.
        let mut up: Vec<G::Element> = hs.to_vec();
        let mut up_inv: Vec<G::Element> = hs.iter().map(|e| group.invert(e)).collect();
        let mut down: Vec<G::Element> = Vec::new();
        let mut down_inv: Vec<G::Element> = Vec::new();
        let mut k: i64 = 0;
        loop {
            // Each candidate u is tested as u (z_local = j) and as u^{-1} (z_local = -j); all
            // candidates of the round are fingerprinted in one batch.
            let mut batch: Vec<G::Element> = Vec::with_capacity(4 * pending.len());
            batch.extend(up.iter().cloned());
            batch.extend(up_inv.iter().cloned());
            batch.extend(down.iter().cloned());
            batch.extend(down_inv.iter().cloned());
            let fps = group.vartime_fingerprints(&batch);
            let p = pending.len();
            let sides = if down.is_empty() { 1 } else { 2 };
            let mut keep = Vec::with_capacity(p);
            for (slot, &i) in pending.iter().enumerate() {
                let mut found = None;
                for side in 0..sides {
                    let shift = if side == 0 { k * width } else { -k * width };
                    let base = 2 * p * side;
                    if let Some(j) = self
                        .table
                        .vartime_lookup(fps[base + slot], &batch[base + slot])
                    {
                        found = Some(j + shift);
                    } else if let Some(j) = self
                        .table
                        .vartime_lookup(fps[base + p + slot], &batch[base + p + slot])
                    {
                        found = Some(-j + shift);
                    }
                    if found.is_some() {
                        break;
                    }
                }
                match found {
                    Some(z) => out[i] = Some(z),
                    None => keep.push(slot),
                }
            }
            if keep.is_empty() || (k as u64) >= self.giant_steps {
                break;
            }
            k += 1;
            pending = keep.iter().map(|&s| pending[s]).collect();
            let prev_up = std::mem::take(&mut up);
            let prev_up_inv = std::mem::take(&mut up_inv);
            let prev_down = std::mem::take(&mut down);
            let prev_down_inv = std::mem::take(&mut down_inv);
            let (giant, giant_inv) = (&self.table.giant, &self.table.giant_inv);
            for &s in &keep {
                up.push(group.op(&prev_up[s], giant_inv));
                up_inv.push(group.op(&prev_up_inv[s], giant));
                // At k = 1 the down walkers start from h itself.
                let (d, d_inv) = if k == 1 {
                    (&prev_up[s], &prev_up_inv[s])
                } else {
                    (&prev_down[s], &prev_down_inv[s])
                };
                down.push(group.op(d, giant));
                down_inv.push(group.op(d_inv, giant_inv));
            }
        }
        out.into_iter()
            .map(|z| match z {
                Some(z) if z.unsigned_abs() <= self.bound => Ok(z),
                _ => Err(DlogError::OutOfRange { bound: self.bound }),
            })
            .collect()
    }
}
