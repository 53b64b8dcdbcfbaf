// The server's product takes an EncryptedMatrix; a plaintext matrix does not type-check.
use cryptonn::coordinator::{InProcessKeyService, Server};
use cryptonn::fe::group::ristretto::Ristretto255;
use ndarray::Array2;

fn compute(server: &Server<Ristretto255, InProcessKeyService<Ristretto255>>) {
    let w = Array2::<i64>::zeros((2, 2));
    let x = Array2::<i64>::zeros((2, 2));
    let _ = server.secure_matmul(&w, &x);
}

fn main() {}
