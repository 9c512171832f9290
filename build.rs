//! Build script of `boxoffice-contracts`: compiles every `.proto` under
//! `proto/` in pure Rust (protox, so no `protoc` install step) and writes the
//! descriptor set that gRPC reflection serves.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    // This script is shared through `build = "../../build.rs"`: the contracts
    // crate sits two levels below the workspace root, where `proto/` lives.
    let proto_root = manifest_dir.join("../../proto").canonicalize()?;
    let mut protos = Vec::new();
    collect_protos(&proto_root, &mut protos)?;
    protos.sort();
    println!("cargo:rerun-if-changed={}", proto_root.display());
    // This script too: it lives outside the crate, and what it generates
    // (the codec, for one) changes with it.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../../build.rs").display()
    );
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }

    let file_descriptors = protox::compile(&protos, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("boxoffice_descriptor.bin"),
        prost::Message::encode_to_vec(&file_descriptors),
    )?;

    tonic_prost_build::configure()
        // prost's codec, with decode failures marked so a server can answer
        // them INVALID_ARGUMENT (see the contracts crate's `codec` module).
        .codec_path("crate::codec::ProstCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(file_descriptors)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
