// There is no constructor of EncryptedMatrix that takes plaintext (only Client encrypts).
use cryptonn::coordinator::EncryptedMatrix;
use cryptonn::fe::group::ristretto::Ristretto255;
use ndarray::array;

fn main() {
    let _a = EncryptedMatrix::<Ristretto255>::from_plaintext(array![[1i64], [2]]);
}
