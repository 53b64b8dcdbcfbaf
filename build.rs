//! Compiles `proto/cryptonn.proto` for the gRPC key service (feature `net`) with a pure-Rust
//! protobuf compiler (protox): no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cryptonn.proto");
    #[cfg(feature = "net")]
    {
        let fds = protox::compile(["proto/cryptonn.proto"], ["proto"])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
