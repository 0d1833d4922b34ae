//! Generates the gRPC code for every `.proto` file in `proto/` with the vendored protoc,
//! so a fresh machine needs no protoc install. `$PROTOC` still overrides it.
//!
//! Servers and clients are generated with the platform's own codecs (`src/codec.rs`) instead
//! of `tonic_prost::ProstCodec`, which answers an undecodable message with INTERNAL. A server
//! decodes requests, so an undecodable one is the caller's fault (INVALID_ARGUMENT); a client
//! decodes replies, so an undecodable one is the server's (INTERNAL). tonic-prost-build takes
//! one codec path per generator, so two generators run over each service: one writes the
//! server with `ServerCodec`, the other the client with `ClientCodec`.
//!
//! protoc also writes the encoded descriptors of all the files it compiled
//! (`OUT_DIR/faas_descriptor_set.bin`): `faas_proto::reflection` serves them over gRPC server
//! reflection, so `grpcurl list` / `describe` work against every component.
use std::path::PathBuf;

use prost_build::{Service, ServiceGenerator};

/// The encoded `FileDescriptorSet` of every compiled file, written into `OUT_DIR` under this
/// name and included by `src/reflection.rs`.
const DESCRIPTOR_SET: &str = "faas_descriptor_set.bin";

/// Runs the server generator, then the client generator, over each service.
struct ServerAndClient {
    server: Box<dyn ServiceGenerator>,
    client: Box<dyn ServiceGenerator>,
}

impl ServiceGenerator for ServerAndClient {
    fn generate(&mut self, service: Service, buf: &mut String) {
        self.server.generate(service.clone(), buf);
        self.client.generate(service, buf);
    }

    fn finalize(&mut self, buf: &mut String) {
        self.server.finalize(buf);
        self.client.finalize(buf);
    }

    fn finalize_package(&mut self, package: &str, buf: &mut String) {
        self.server.finalize_package(package, buf);
        self.client.finalize_package(package, buf);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from("proto");
    let files: Vec<PathBuf> = [
        "scheduler.proto",
        "resourcemanager.proto",
        "nodeservice.proto",
        "apiserver.proto",
        "container.proto",
        "admin.proto",
        "scheduler_admin.proto",
        "node_admin.proto",
        "invoke.proto",
        "decisions.proto",
        "events.proto",
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
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // What tonic_prost_build::Builder::compile_with_config sets up, plus the messages'
    // protobuf names (`prost::Name`), which the codecs quote in their errors, plus the
    // encoded `FileDescriptorSet` of every file above (imports and comments included), which
    // `src/reflection.rs` serves over gRPC server reflection.
    config
        .out_dir(&out_dir)
        .file_descriptor_set_path(out_dir.join(DESCRIPTOR_SET))
        .type_attribute(".", "#[allow(clippy::all)]")
        .enable_type_names()
        .service_generator(Box::new(ServerAndClient {
            server: tonic_prost_build::configure()
                .build_server(true)
                .build_client(false)
                .codec_path("crate::codec::ServerCodec")
                .service_generator(),
            client: tonic_prost_build::configure()
                .build_server(false)
                .build_client(true)
                .codec_path("crate::codec::ClientCodec")
                .service_generator(),
        }));
    let includes = vec![dir.clone(), protoc_bin_vendored::include_path()?];
    config.compile_protos(&files, &includes)?;
    Ok(())
}
