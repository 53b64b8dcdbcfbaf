//! Integers modulo the group order `q`, through crypto-bigint's constant-time `BoxedUint`
//! (both builds). Scalars travel as their canonical big-endian bytes; every function here runs
//! in time that depends only on the width of `q`, never on the values (the `i64` inner product
//! branches on the signs of its public coefficients only).

use crypto_bigint::{BoxedUint, NonZero, Odd};
use zeroize::Zeroizing;

/// Arithmetic modulo `q`.
pub struct ScalarField {
    q: NonZero<BoxedUint>,
    q_odd: Odd<BoxedUint>,
    /// Limbs of the working precision.
    limbs: usize,
    /// Bytes of the canonical encoding.
    len: usize,
}

/// Little-endian 64-bit words of a big-endian byte string, `limbs` of them (bytes beyond are
/// dropped: callers pass at most `8 · limbs` bytes).
fn words_from_be(bytes: &[u8], limbs: usize) -> Zeroizing<Vec<u64>> {
    let mut out = Zeroizing::new(vec![0u64; limbs]);
    for (i, chunk) in bytes.rchunks(8).enumerate().take(limbs) {
        let mut w = Zeroizing::new([0u8; 8]);
        w[8 - chunk.len()..].copy_from_slice(chunk);
        out[i] = u64::from_be_bytes(*w);
    }
    out
}

impl ScalarField {
    /// The integers modulo the odd `q` (big-endian), encoded in `q_be.len()` bytes.
    pub fn new(q_be: &[u8]) -> Option<Self> {
        let limbs = q_be.len().div_ceil(8).max(1);
        let q = BoxedUint::from_words(words_from_be(q_be, limbs).iter().copied());
        Some(Self {
            q: Option::from(NonZero::new(q.clone()))?,
            q_odd: Option::from(Odd::new(q))?,
            limbs,
            len: q_be.len(),
        })
    }

    fn parse(&self, be: &[u8]) -> Zeroizing<BoxedUint> {
        Zeroizing::new(BoxedUint::from_words(
            words_from_be(be, self.limbs).iter().copied(),
        ))
    }

    fn emit(&self, v: &BoxedUint) -> Vec<u8> {
        let mut out = vec![0u8; self.len];
        for (i, b) in out.iter_mut().rev().enumerate() {
            let w = v.as_words().get(i / 8).copied().unwrap_or(0);
            *b = (w >> (8 * (i % 8))) as u8;
        }
        out
    }

    /// Whether `be` (of the canonical length) encodes an integer below `q` (constant time).
    pub fn is_canonical(&self, be: &[u8]) -> bool {
        be.len() == self.len && *self.parse(be) < *self.q.as_ref()
    }

    /// `a + b mod q`.
    pub fn add(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        self.emit(&Zeroizing::new(
            self.parse(a).add_mod(&self.parse(b), &self.q),
        ))
    }

    /// `a − b mod q`.
    pub fn sub(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        self.emit(&Zeroizing::new(
            self.parse(a).sub_mod(&self.parse(b), &self.q),
        ))
    }

    /// `−a mod q`.
    pub fn neg(&self, a: &[u8]) -> Vec<u8> {
        self.emit(&Zeroizing::new(self.parse(a).neg_mod(&self.q)))
    }

    /// `a · b mod q`.
    pub fn mul(&self, a: &[u8], b: &[u8]) -> Vec<u8> {
        self.emit(&Zeroizing::new(
            self.parse(a).mul_mod(&self.parse(b), &self.q),
        ))
    }

    /// `a^{-1} mod q`, or `None` for `a = 0` (constant time until the final answer).
    pub fn invert(&self, a: &[u8]) -> Option<Vec<u8>> {
        let inv: Option<BoxedUint> = self.parse(a).invert_odd_mod(&self.q_odd).into();
        inv.map(|v| self.emit(&Zeroizing::new(v)))
    }

    /// `v mod q` for any big-endian byte string `v` (constant time in `v`).
    pub fn reduce(&self, be: &[u8]) -> Vec<u8> {
        let limbs = be.len().div_ceil(8).max(self.limbs);
        let wide = Zeroizing::new(BoxedUint::from_words(
            words_from_be(be, limbs).iter().copied(),
        ));
        self.emit(&Zeroizing::new(wide.rem(&self.q)))
    }

    /// `v mod q` for a signed `v`.
    pub fn of_i64(&self, v: i64) -> Vec<u8> {
        let m = self.reduce(&v.unsigned_abs().to_be_bytes());
        if v < 0 {
            self.neg(&m)
        } else {
            m
        }
    }

    /// `Σ y_i · s_i mod q` for secret `s_i` and small public `y_i`: the products are summed
    /// exactly in two wide accumulators (positive and negative `y_i`) and reduced once.
    pub fn inner_product_i64<'a, I>(&self, terms: I) -> Vec<u8>
    where
        I: IntoIterator<Item = (&'a [u8], i64)>,
    {
        // Each product is below 2^(64·(limbs + 1)); two extra limbs hold 2^64 terms.
        let width = self.limbs + 2;
        let mut pos = Zeroizing::new(vec![0u64; width]);
        let mut neg = Zeroizing::new(vec![0u64; width]);
        for (s, y) in terms {
            let s = words_from_be(s, self.limbs);
            let acc = if y < 0 { &mut neg } else { &mut pos };
            let y = u128::from(y.unsigned_abs());
            let mut carry = 0u128;
            for (a, &w) in acc.iter_mut().zip(s.iter()) {
                let t = u128::from(*a) + u128::from(w) * y + carry;
                *a = t as u64;
                carry = t >> 64;
            }
            for a in acc.iter_mut().skip(self.limbs) {
                let t = u128::from(*a) + carry;
                *a = t as u64;
                carry = t >> 64;
            }
        }
        let reduce =
            |acc: &[u64]| Zeroizing::new(BoxedUint::from_words(acc.iter().copied()).rem(&self.q));
        let (p, n) = (reduce(&pos), reduce(&neg));
        self.emit(&Zeroizing::new(p.sub_mod(&n, &self.q)))
    }
}
