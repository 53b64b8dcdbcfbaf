//! Compiles `proto/cryptonn.proto` (the gRPC key service) and `proto/prediction.proto` (secure
//! prediction) for feature `net` with a pure-Rust protobuf compiler (protox): no system `protoc`
//! is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/cryptonn.proto");
    println!("cargo:rerun-if-changed=proto/prediction.proto");
    #[cfg(feature = "net")]
    {
        let fds = protox::compile(
            ["proto/cryptonn.proto", "proto/prediction.proto"],
            ["proto"],
        )?;
        tonic_prost_build::configure()
            // prost's codec with malformed input reported as INVALID_ARGUMENT.
            .codec_path("crate::coordinator::net::codec::ProtoCodec")
            .build_client(true)
            .build_server(true)
            .compile_fds(fds)?;
    }
    Ok(())
}
