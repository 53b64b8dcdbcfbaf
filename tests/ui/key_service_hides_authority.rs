// A key service gives no access to the authority behind it (nor to its master secret keys).
use cryptonn::coordinator::InProcessKeyService;
use cryptonn::fe::group::ristretto::Ristretto255;

fn master_key(service: &InProcessKeyService<Ristretto255>) {
    let _ = service.authority.lock();
}

fn main() {}
