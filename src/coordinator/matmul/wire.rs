//! The versioned byte format of an [`EncryptedMatrix`] (e.g. to send it to a server, to store it,
//! or to pickle it in the Python binding).
//!
//! ```text
//! "CNEM" | version u16 LE | group id u8 | domain u64 LE | X u64 LE | Y u64 LE
//!        | codec u8 (0 none, 1 fixed point) [| scale f64 LE | bound u64 LE]
//!        | m u32 LE | m × (length u32 LE | FEIP ciphertext in the `fe` wire format)
//!        | CRC-32 (u32 LE) of all before
//! ```
//!
//! `n` is each ciphertext's length. Decoding checks, in order: length, magic, version, checksum,
//! group id, the parameters, then each ciphertext with the full validation of
//! [`WireFormat::from_bytes`] (its own checksum, group membership, length `n`), and rejects
//! trailing bytes. It never panics and allocates no more than the input justifies. The CRC-32
//! catches accidental damage; authenticity belongs to the transport.

use crate::coordinator::matmul::EncryptedMatrix;
use crate::coordinator::messages::DomainId;
use crate::fe::encoding::FixedPoint;
use crate::fe::error::SerializationError;
use crate::fe::feip::{Ciphertext, FeipParams};
use crate::fe::group::PrimeOrderGroup;
use crate::fe::serialize::WireFormat;

/// Magic bytes opening an encoded [`EncryptedMatrix`].
pub const MATRIX_MAGIC: &[u8; 4] = b"CNEM";
/// The encrypted-matrix format version this build writes and reads.
pub const MATRIX_FORMAT_VERSION: u16 = 1;
/// Magic, version, group id.
const PREFIX_LEN: usize = 4 + 2 + 1;
const CRC_LEN: usize = 4;
/// The smallest encoded ciphertext: its length prefix, the `fe` header and checksum.
const MIN_COLUMN_LEN: usize = 4 + 8 + 4;

/// The group id byte of an encoded [`EncryptedMatrix`] (to pick the group to decode it with),
/// after checking its length, magic and version.
///
/// # Errors
/// [`SerializationError::Truncated`], [`BadMagic`](SerializationError::BadMagic),
/// [`UnsupportedVersion`](SerializationError::UnsupportedVersion).
pub fn peek_group_byte(bytes: &[u8]) -> Result<u8, SerializationError> {
    if bytes.len() < PREFIX_LEN + CRC_LEN {
        return Err(SerializationError::Truncated);
    }
    if &bytes[..4] != MATRIX_MAGIC {
        return Err(SerializationError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != MATRIX_FORMAT_VERSION {
        return Err(SerializationError::UnsupportedVersion {
            found: version,
            supported: MATRIX_FORMAT_VERSION,
        });
    }
    Ok(bytes[6])
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SerializationError> {
        if self.0.len() < n {
            return Err(SerializationError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, SerializationError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, SerializationError> {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(w))
    }
    fn u64(&mut self) -> Result<u64, SerializationError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(w))
    }
}

impl<G: PrimeOrderGroup> EncryptedMatrix<G> {
    /// The versioned encoding (see the [module docs](self)).
    #[must_use]
    pub fn to_bytes(&self, group: &G) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MATRIX_MAGIC);
        out.extend_from_slice(&MATRIX_FORMAT_VERSION.to_le_bytes());
        out.push(group.id().to_byte());
        out.extend_from_slice(&self.domain.0.to_le_bytes());
        out.extend_from_slice(&self.params.x_bound().to_le_bytes());
        out.extend_from_slice(&self.params.y_bound().to_le_bytes());
        match &self.encoding {
            None => out.push(0),
            Some(codec) => {
                out.push(1);
                out.extend_from_slice(&codec.scale().to_le_bytes());
                out.extend_from_slice(&codec.bound().to_le_bytes());
            }
        }
        out.extend_from_slice(&(self.columns.len() as u32).to_le_bytes());
        for ct in &self.columns {
            let bytes = ct.to_bytes(group);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates an encoding made by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// Those of [`peek_group_byte`]; [`SerializationError::ChecksumMismatch`],
    /// [`GroupMismatch`](SerializationError::GroupMismatch),
    /// [`InvalidField`](SerializationError::InvalidField) for unusable parameters or codec,
    /// [`InvalidLength`](SerializationError::InvalidLength) for a matrix without columns or
    /// ciphertexts of different lengths, any error of a ciphertext's own decoding,
    /// [`TrailingBytes`](SerializationError::TrailingBytes).
    pub fn from_bytes(group: &G, bytes: &[u8]) -> Result<Self, SerializationError> {
        let found = peek_group_byte(bytes)?;
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(SerializationError::ChecksumMismatch);
        }
        let expected = group.id().to_byte();
        if found != expected {
            return Err(SerializationError::GroupMismatch { expected, found });
        }
        let mut r = Cursor(&body[PREFIX_LEN..]);
        let domain = DomainId(r.u64()?);
        let x_bound = r.u64()?;
        let y_bound = r.u64()?;
        let encoding = match r.u8()? {
            0 => None,
            1 => {
                let scale = f64::from_le_bytes(r.u64()?.to_le_bytes());
                let bound = r.u64()?;
                Some(
                    FixedPoint::with_bound(scale, bound)
                        .map_err(|_| SerializationError::InvalidField("fixed-point codec"))?,
                )
            }
            _ => return Err(SerializationError::InvalidField("codec tag")),
        };
        let m = r.u32()? as usize;
        if m == 0 {
            return Err(SerializationError::InvalidLength(0));
        }
        if m > r.0.len() / MIN_COLUMN_LEN {
            return Err(SerializationError::Truncated);
        }
        let mut columns: Vec<Ciphertext<G>> = Vec::with_capacity(m);
        for _ in 0..m {
            let len = r.u32()? as usize;
            let ct = Ciphertext::from_bytes(group, r.take(len)?)?;
            if let Some(first) = columns.first() {
                if ct.len() != first.len() {
                    return Err(SerializationError::InvalidLength(ct.len() as u64));
                }
            }
            columns.push(ct);
        }
        if !r.0.is_empty() {
            return Err(SerializationError::TrailingBytes(r.0.len()));
        }
        let n = columns.first().map_or(0, Ciphertext::len);
        let params = FeipParams::new(n, x_bound, y_bound)
            .map_err(|_| SerializationError::InvalidField("FEIP parameters"))?;
        Ok(Self {
            domain,
            params,
            encoding,
            columns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::{Authority, Client, DomainConfig};
    use crate::fe::group::ristretto::Ristretto255;
    use ndarray::array;

    fn sample() -> (EncryptedMatrix<Ristretto255>, Vec<u8>) {
        let mut authority = Authority::from_seed(Ristretto255, [7; 32]);
        let params = FeipParams::new(3, 10, 10).expect("params");
        let domain = authority
            .create_domain(DomainConfig::new(params))
            .expect("domain");
        let pk = authority.public_key(domain).expect("pk");
        let x = array![[1, -2], [3, 4], [-5, 6]];
        let enc = Client::new(Ristretto255, pk)
            .expect("client")
            .encrypt_matrix(&x)
            .expect("encrypt");
        let bytes = enc.to_bytes(&Ristretto255);
        (enc, bytes)
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let (enc, bytes) = sample();
        let back = EncryptedMatrix::from_bytes(&Ristretto255, &bytes).expect("decode");
        assert_eq!(back.domain(), enc.domain());
        assert_eq!(back.params(), enc.params());
        assert_eq!(back.shape(), (3, 2));
        assert_eq!(back.ciphertexts(), enc.ciphertexts());
        assert_eq!(back.to_bytes(&Ristretto255), bytes);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let (_, bytes) = sample();
        for len in 0..bytes.len() {
            assert!(
                EncryptedMatrix::<Ristretto255>::from_bytes(&Ristretto255, &bytes[..len]).is_err()
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                EncryptedMatrix::<Ristretto255>::from_bytes(&Ristretto255, &bad).is_err(),
                "flip at {i} accepted"
            );
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(EncryptedMatrix::<Ristretto255>::from_bytes(&Ristretto255, &longer).is_err());
    }
}
