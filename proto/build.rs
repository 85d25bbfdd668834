//! Compiles `eddy.proto` with protox (a protobuf compiler in Rust), so building
//! Eddy needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=eddy.proto");
    let descriptors = protox::compile(["eddy.proto"], ["."])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
