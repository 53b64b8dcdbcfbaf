// The fields of EncryptedMatrix are private, so a struct literal (even with well-typed
// contents) is refused outside the crate.
use cryptonn::coordinator::{DomainId, EncryptedMatrix};
use cryptonn::fe::feip::FeipParams;
use cryptonn::fe::group::ristretto::Ristretto255;

fn main() {
    let params = FeipParams::new(2, 10, 10).unwrap();
    let _b: EncryptedMatrix<Ristretto255> = EncryptedMatrix {
        domain: DomainId(0),
        params,
        encoding: None,
        columns: Vec::new(),
    };
}
