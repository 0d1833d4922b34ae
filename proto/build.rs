//! Generates the gRPC code for every `.proto` file in `proto/` with the vendored protoc,
//! so a fresh machine needs no protoc install. `$PROTOC` still overrides it.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto");
    let files: Vec<PathBuf> = [
        "scheduler.proto",
        "resourcemanager.proto",
        "nodeservice.proto",
        "apiserver.proto",
        "container.proto",
        "admin.proto",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let mut config = tonic_prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    let includes = vec![dir.clone(), protoc_bin_vendored::include_path()?];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(config, &files, &includes)?;
    Ok(())
}
