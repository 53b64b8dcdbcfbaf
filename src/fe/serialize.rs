//! A versioned binary format for public keys, ciphertexts and function keys (and serde).
//!
//! ```text
//! "CNFE" | version u16 LE | group id u8 | kind u8 | payload | CRC-32 (u32 LE) of all before
//!
//! kind 1  FEIP MasterPublicKey   u32 n | n × element
//! kind 2  FEIP Ciphertext        u32 n | ct0 | n × element
//! kind 3  FEIP FunctionKey       scalar
//! kind 4  FEBO FeboPublicKey     element
//! kind 5  FEBO FeboCiphertext    cmt | ct
//! kind 6  FEBO FeboFunctionKey   op u8 | y i64 LE | element
//! ```
//!
//! Elements and scalars use the group's canonical fixed-length encodings and are decoded with
//! full validation (on-curve / subgroup membership, canonical scalars `< q`). Decoding checks, in
//! order: length, magic, version, checksum, group id, kind, then the payload — and rejects
//! trailing bytes. Every failure is a [`SerializationError`]; decoding never panics and never
//! allocates more than the input justifies. The CRC-32 catches accidental damage (every
//! single-bit flip); it is not a MAC — authenticity belongs to the transport.
//!
//! Master secret keys have no wire format on purpose: messages never carry them.
//!
//! Over a [`StaticGroup`] (Ristretto255) the types also implement serde's `Serialize` and
//! `Deserialize`, as a byte string holding this format.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::fe::error::SerializationError;
use crate::fe::febo::{FeboCiphertext, FeboFunctionKey, FeboOp, FeboPublicKey};
use crate::fe::feip::{Ciphertext, FunctionKey, MasterPublicKey, MAX_DIMENSION};
use crate::fe::group::{PrimeOrderGroup, StaticGroup};

/// Magic bytes opening every encoded object.
pub const MAGIC: &[u8; 4] = b"CNFE";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 4 + 2 + 1 + 1;
const CRC_LEN: usize = 4;

/// Objects with a wire encoding over a group `G`.
pub trait WireFormat<G: PrimeOrderGroup>: Sized {
    /// The kind tag of this object type.
    const KIND: u8;
    /// Writes the payload (between header and checksum).
    fn write_payload(&self, group: &G, out: &mut Vec<u8>);
    /// Reads the payload.
    ///
    /// # Errors
    /// Any [`SerializationError`] for malformed input.
    fn read_payload(group: &G, r: &mut Reader<'_>) -> Result<Self, SerializationError>;

    /// The full encoding: header, payload, checksum.
    #[must_use]
    fn to_bytes(&self, group: &G) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(group.id().to_byte());
        out.push(Self::KIND);
        self.write_payload(group, &mut out);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates an encoding made by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// [`SerializationError::Truncated`], [`BadMagic`](SerializationError::BadMagic),
    /// [`UnsupportedVersion`](SerializationError::UnsupportedVersion),
    /// [`ChecksumMismatch`](SerializationError::ChecksumMismatch),
    /// [`GroupMismatch`](SerializationError::GroupMismatch),
    /// [`KindMismatch`](SerializationError::KindMismatch), invalid lengths or group encodings,
    /// [`TrailingBytes`](SerializationError::TrailingBytes).
    fn from_bytes(group: &G, bytes: &[u8]) -> Result<Self, SerializationError> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(SerializationError::Truncated);
        }
        if &bytes[..4] != MAGIC {
            return Err(SerializationError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(SerializationError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(SerializationError::ChecksumMismatch);
        }
        let expected = group.id().to_byte();
        if body[6] != expected {
            return Err(SerializationError::GroupMismatch {
                expected,
                found: body[6],
            });
        }
        if body[7] != Self::KIND {
            return Err(SerializationError::KindMismatch {
                expected: Self::KIND,
                found: body[7],
            });
        }
        let mut r = Reader {
            bytes: &body[HEADER_LEN..],
        };
        let v = Self::read_payload(group, &mut r)?;
        if !r.bytes.is_empty() {
            return Err(SerializationError::TrailingBytes(r.bytes.len()));
        }
        Ok(v)
    }
}

/// A cursor over payload bytes; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SerializationError> {
        if self.bytes.len() < n {
            return Err(SerializationError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, SerializationError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, SerializationError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, SerializationError> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(w))
    }
    fn element<G: PrimeOrderGroup>(&mut self, g: &G) -> Result<G::Element, SerializationError> {
        Ok(g.element_from_bytes(self.take(g.element_len())?)?)
    }
    fn scalar<G: PrimeOrderGroup>(&mut self, g: &G) -> Result<G::Scalar, SerializationError> {
        Ok(g.scalar_from_bytes(self.take(g.scalar_len())?)?)
    }
    /// A dimension `n` followed by `extra + n` elements: checks that exactly that many bytes
    /// remain before anything is allocated.
    fn dimension<G: PrimeOrderGroup>(
        &mut self,
        g: &G,
        extra: usize,
    ) -> Result<usize, SerializationError> {
        let n = self.u32()? as usize;
        if n == 0 || n > MAX_DIMENSION {
            return Err(SerializationError::InvalidLength(n as u64));
        }
        let need = (n + extra) * g.element_len();
        if self.bytes.len() < need {
            return Err(SerializationError::Truncated);
        }
        Ok(n)
    }
}

fn write_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

impl<G: PrimeOrderGroup> WireFormat<G> for MasterPublicKey<G> {
    const KIND: u8 = 1;
    fn write_payload(&self, g: &G, out: &mut Vec<u8>) {
        write_len(out, self.len());
        for e in self.elements() {
            out.extend_from_slice(&g.element_to_bytes(e));
        }
    }
    fn read_payload(g: &G, r: &mut Reader<'_>) -> Result<Self, SerializationError> {
        let n = r.dimension(g, 0)?;
        let h = (0..n).map(|_| r.element(g)).collect::<Result<_, _>>()?;
        Ok(MasterPublicKey::from_elements(h))
    }
}

impl<G: PrimeOrderGroup> WireFormat<G> for Ciphertext<G> {
    const KIND: u8 = 2;
    fn write_payload(&self, g: &G, out: &mut Vec<u8>) {
        write_len(out, self.len());
        out.extend_from_slice(&g.element_to_bytes(self.ct0()));
        for e in self.components() {
            out.extend_from_slice(&g.element_to_bytes(e));
        }
    }
    fn read_payload(g: &G, r: &mut Reader<'_>) -> Result<Self, SerializationError> {
        let n = r.dimension(g, 1)?;
        let ct0 = r.element(g)?;
        let ct = (0..n).map(|_| r.element(g)).collect::<Result<_, _>>()?;
        Ok(Ciphertext::from_parts(ct0, ct))
    }
}

impl<G: PrimeOrderGroup> WireFormat<G> for FunctionKey<G> {
    const KIND: u8 = 3;
    fn write_payload(&self, g: &G, out: &mut Vec<u8>) {
        out.extend_from_slice(&g.scalar_to_bytes(self.scalar()));
    }
    fn read_payload(g: &G, r: &mut Reader<'_>) -> Result<Self, SerializationError> {
        Ok(FunctionKey::from_scalar(r.scalar(g)?))
    }
}

impl<G: PrimeOrderGroup> WireFormat<G> for FeboPublicKey<G> {
    const KIND: u8 = 4;
    fn write_payload(&self, g: &G, out: &mut Vec<u8>) {
        out.extend_from_slice(&g.element_to_bytes(self.element()));
    }
    fn read_payload(g: &G, r: &mut Reader<'_>) -> Result<Self, SerializationError> {
        Ok(FeboPublicKey::from_element(r.element(g)?))
    }
}

impl<G: PrimeOrderGroup> WireFormat<G> for FeboCiphertext<G> {
    const KIND: u8 = 5;
    fn write_payload(&self, g: &G, out: &mut Vec<u8>) {
        out.extend_from_slice(&g.element_to_bytes(self.commitment()));
        out.extend_from_slice(&g.element_to_bytes(self.body()));
    }
    fn read_payload(g: &G, r: &mut Reader<'_>) -> Result<Self, SerializationError> {
        let cmt = r.element(g)?;
        let ct = r.element(g)?;
        Ok(FeboCiphertext::from_parts(cmt, ct))
    }
}

impl<G: PrimeOrderGroup> WireFormat<G> for FeboFunctionKey<G> {
    const KIND: u8 = 6;
    fn write_payload(&self, g: &G, out: &mut Vec<u8>) {
        out.push(self.op().to_byte());
        out.extend_from_slice(&self.operand().to_le_bytes());
        out.extend_from_slice(&g.element_to_bytes(self.element()));
    }
    fn read_payload(g: &G, r: &mut Reader<'_>) -> Result<Self, SerializationError> {
        let op = FeboOp::from_byte(r.u8()?)
            .ok_or(SerializationError::InvalidField("unknown FEBO operation"))?;
        let y = r.i64()?;
        let sk = r.element(g)?;
        Ok(FeboFunctionKey::from_parts(op, y, sk))
    }
}

/// Accepts a byte string (binary formats) or a sequence of bytes (e.g. JSON arrays).
struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a cryptonn wire-format byte string")
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

macro_rules! serde_via_wire {
    ($($ty:ident),*) => {$(
        impl<G: StaticGroup> Serialize for $ty<G> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.to_bytes(&G::instance()))
            }
        }
        impl<'de, G: StaticGroup> Deserialize<'de> for $ty<G> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes = d.deserialize_bytes(BytesVisitor)?;
                Self::from_bytes(&G::instance(), &bytes).map_err(de::Error::custom)
            }
        }
    )*};
}

serde_via_wire!(
    MasterPublicKey,
    Ciphertext,
    FunctionKey,
    FeboPublicKey,
    FeboCiphertext,
    FeboFunctionKey
);
