// The ciphertext fields are private (public data is reachable only through accessors).
use cryptonn::coordinator::EncryptedMatrix;
use cryptonn::fe::group::ristretto::Ristretto255;

fn steal(enc: EncryptedMatrix<Ristretto255>) -> usize {
    enc.columns.len()
}

fn main() {}
