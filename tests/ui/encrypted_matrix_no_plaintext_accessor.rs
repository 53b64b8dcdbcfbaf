// There is no accessor that returns the plaintext of an EncryptedMatrix.
use cryptonn::coordinator::EncryptedMatrix;
use cryptonn::fe::group::ristretto::Ristretto255;

fn peek(enc: &EncryptedMatrix<Ristretto255>) -> Vec<i64> {
    enc.plaintext()
}

fn main() {}
