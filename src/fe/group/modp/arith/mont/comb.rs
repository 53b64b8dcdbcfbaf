//! Lim–Lee combs: constant-time fixed-base exponentiation of one public base with a small
//! table (see [`BaseComb`]).

use super::{bit_be, Elem, Field};

/// Teeth of a [`BaseComb`]: each sub-table holds the `2^COMB_TEETH` products of a subset of
/// `COMB_TEETH` spaced powers of the base.
///
/// `(4, 4)` was chosen by measurement at 2048 bits (CPU time of one exponentiation, best of
/// 5 × 100, this crate's kernels): `(4, 4)` 1.31 ms with 64 entries, `(5, 2)` 1.45, `(6, 1)`
/// 1.44, `(3, 8)` 1.58, `(4, 2)` 1.56 with 32; `(5, 4)` 1.21 and `(6, 2)` 1.24 ms need 128
/// entries (32 KB per base), `(8, 1)` 1.41 ms 256. A full-width exponentiation without a
/// table takes about 4 ms.
pub const COMB_TEETH: usize = 4;
/// Sub-tables of a [`BaseComb`]: the squarings of an exponentiation drop by this factor.
pub const COMB_TABLES: usize = 4;

/// A constant-time Lim–Lee comb of one public base `b`, for secret exponents of `bits` bits.
///
/// With `h` teeth and `v` sub-tables, the exponent's bit positions are
/// `i = j·a + u·c + t` (`j < h`, `u < v`, `t < c`, with the spacing `a = ⌈bits/h⌉` and the
/// column count `c = ⌈a/v⌉`), and sub-table `u` holds, at index `d < 2^h`,
/// `∏_{j : bit j of d} b^{2^{j·a + u·c}}`. Then
/// `b^e = ∏_{t<c} ( ∏_{u<v} T_u[d_{u,t}] )^{2^t}` with `d_{u,t} = Σ_j e_{j·a+u·c+t}·2^j`:
/// `c − 1` squarings and `c·v` products, each factor read by a full scan of its sub-table.
/// The table costs `bits` squarings to build (about one exponentiation) and `v·2^h`
/// elements (16 KB at 2048 bits), so it pays from the second exponentiation of the same base.
pub struct BaseComb {
    /// `v` sub-tables of `2^h` entries each, concatenated.
    tables: Vec<Elem>,
    teeth: usize,
    spacing: usize,
    cols: usize,
}

impl Field {
    /// The Lim–Lee comb of the public `base` for secret exponents of `exp_len` bytes, with
    /// [`COMB_TEETH`] teeth and [`COMB_TABLES`] sub-tables (public work).
    pub fn base_comb(&self, base: &Elem, exp_len: usize) -> BaseComb {
        self.base_comb_with(base, exp_len, COMB_TEETH, COMB_TABLES)
    }

    /// [`base_comb`](Self::base_comb) with `teeth` teeth (`1..=8`) and `tables` sub-tables.
    pub fn base_comb_with(
        &self,
        base: &Elem,
        exp_len: usize,
        teeth: usize,
        tables: usize,
    ) -> BaseComb {
        let teeth = teeth.clamp(1, 8);
        let tables = tables.max(1);
        let bits = (8 * exp_len).max(1);
        let spacing = bits.div_ceil(teeth);
        let cols = spacing.div_ceil(tables);
        // powers[u][j] = base^{2^{j·a + u·c}}, along one squaring chain in increasing order
        // of the exponent j·a + u·c.
        let mut powers = vec![vec![self.one(); teeth]; tables];
        let mut order: Vec<(usize, usize, usize)> = (0..teeth)
            .flat_map(|j| (0..tables).map(move |u| (j * spacing + u * cols, u, j)))
            .collect();
        order.sort_unstable();
        let mut x = base.clone();
        let mut at = 0;
        for (target, u, j) in order {
            while at < target {
                x = self.sqr(&x);
                at += 1;
            }
            powers[u][j] = x.clone();
        }
        let mut out = Vec::with_capacity(tables << teeth);
        for row in &powers {
            let start = out.len();
            out.push(self.one());
            for d in 1usize..1 << teeth {
                // d = (d without its top bit) · the top bit's power.
                let top = usize::BITS as usize - 1 - d.leading_zeros() as usize;
                let rest = out[start + (d ^ (1 << top))].clone();
                out.push(self.mul(&rest, &row[top]));
            }
        }
        BaseComb {
            tables: out,
            teeth,
            spacing,
            cols,
        }
    }

    /// `b^e` for a secret exponent `e` (big-endian, at most the comb's length) from the comb of
    /// `b`: `c − 1` squarings and `c·v` products, zero digits included, every factor read by a
    /// full scan of its sub-table. The time depends only on the comb's shape.
    pub fn pow_comb(&self, comb: &BaseComb, e: &[u8]) -> Elem {
        let size = 1 << comb.teeth;
        let mut acc = self.one();
        for t in (0..comb.cols).rev() {
            if t + 1 != comb.cols {
                acc = self.sqr(&acc);
            }
            for (u, table) in comb.tables.chunks_exact(size).enumerate() {
                // Offset w = u·c + t inside each tooth; offsets past the spacing (the comb's
                // rounding) and bits past the exponent's length read as 0. Both tests depend
                // on positions only.
                let w = u * comb.cols + t;
                let d = if w < comb.spacing {
                    (0..comb.teeth).fold(0u32, |d, j| d | (bit_be(e, j * comb.spacing + w) << j))
                } else {
                    0
                };
                acc = self.mul(&acc, &self.select(table, d));
            }
        }
        acc
    }
}
