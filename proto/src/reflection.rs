//! gRPC server reflection: what lets `grpcurl -plaintext HOST:PORT list` and
//! `grpcurl ... describe SERVICE` work against every component without the `.proto` files.
//!
//! # How it works
//!
//! A gRPC client that has no `.proto` files asks the server itself what it serves, through
//! the standard `grpc.reflection` service: "which services do you list?", then "send me the
//! file that defines the symbol `schedulerproto.Scheduler`". The answer is a
//! `FileDescriptorProto`: protoc's own compiled form of a `.proto` file (messages, fields,
//! services, methods, comments), which `grpcurl` turns back into text or uses to encode a
//! JSON request.
//!
//! `build.rs` asks protoc for those descriptors of every file it compiles, all in one encoded
//! `FileDescriptorSet`: [`FILE_DESCRIPTOR_SET`]. [`routes`] builds the reflection services
//! from it, plus the descriptors of `grpc.health.v1` (tonic-health's) and of reflection
//! itself, so those are describable too.
//!
//! # What a component lists
//!
//! One descriptor set holds every platform service, but each component lists only the ones it
//! serves (the builder's `with_service_name`), so `grpcurl list` tells the truth about that
//! port: its own services, then `grpc.health.v1.Health` (every component serves health), then
//! both reflection services. Two versions are served, `grpc.reflection.v1` and the older
//! `grpc.reflection.v1alpha`, because grpcurl releases differ in which one they ask; they
//! list the same names.
//!
//! A component adds reflection with one line in its server builder, before its first
//! `add_service`, naming its services by their generated `SERVICE_NAME` constants:
//!
//! ```text
//! tonic::transport::Server::builder()
//!     .add_routes(faas_proto::reflection::routes(&[scheduler_server::SERVICE_NAME]))
//!     .add_service(health_service)
//!     .add_service(gate.guard(SchedulerServer::new(api)))
//! ```
//!
//! Like health, reflection is never behind the cluster token's gate (it tells only what the
//! public `.proto` files say).
//!
//! With the `reflection-client` feature, `client::Probe` asks a server what `grpcurl list`
//! and `describe` would, and checks its health: the components' tests use it.

use prost::Message;
use tonic_reflection::server::{Builder, v1, v1alpha};

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file of the platform
/// (the contest's packages and the platform's own), as protoc compiled them in `build.rs`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/faas_descriptor_set.bin"));

/// `grpc.health.v1.Health`, listed by every component.
pub const HEALTH: &str = tonic_health::pb::health_server::SERVICE_NAME;

/// `grpc.reflection.v1.ServerReflection`.
pub const REFLECTION_V1: &str = tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME;

/// `grpc.reflection.v1alpha.ServerReflection`.
pub const REFLECTION_V1ALPHA: &str =
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME;

/// Both reflection services of a component that serves `served` (fully qualified names,
/// e.g. `faas_proto::schedulerproto::scheduler_server::SERVICE_NAME`), as one set of routes
/// for `tonic::transport::Server::add_routes`. They list [`listed`]`(served)`.
///
/// # Panics
///
/// When a name in `served` is no service of [`FILE_DESCRIPTOR_SET`]: a mistake in the
/// component's code (which its reflection test catches), never a matter of input.
pub fn routes(served: &[&str]) -> tonic::service::Routes {
    tonic::service::Routes::new(v1(served)).add_service(v1alpha(served))
}

/// The `grpc.reflection.v1` service alone, listing [`listed`]`(served)`. Panics as
/// [`routes`] does.
pub fn v1(served: &[&str]) -> v1::ServerReflectionServer<impl v1::ServerReflection> {
    builder(served)
        .build_v1()
        .expect("the compiled-in descriptor sets are valid")
}

/// The `grpc.reflection.v1alpha` service alone, listing [`listed`]`(served)`. Panics as
/// [`routes`] does.
pub fn v1alpha(served: &[&str]) -> v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection> {
    builder(served)
        .build_v1alpha()
        .expect("the compiled-in descriptor sets are valid")
}

/// What a component serving `served` lists, in order: `served`, then [`HEALTH`],
/// [`REFLECTION_V1`] and [`REFLECTION_V1ALPHA`].
pub fn listed(served: &[&str]) -> Vec<String> {
    served
        .iter()
        .copied()
        .chain([HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA])
        .map(str::to_string)
        .collect()
}

/// The descriptor sets every reflection service registers: the platform's, health's, and
/// both reflection versions' (registered here rather than by `include_reflection_service`,
/// which would make each version describe only itself).
const DESCRIPTOR_SETS: [&[u8]; 4] = [
    FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

fn builder(served: &[&str]) -> Builder<'static> {
    let known = services();
    for name in served {
        assert!(
            known.iter().any(|k| k == name),
            "faas_proto::reflection: `{name}` is no service of the platform's .proto files \
             (they define {known:?})"
        );
    }
    let builder = DESCRIPTOR_SETS
        .into_iter()
        .fold(
            Builder::configure(),
            Builder::register_encoded_file_descriptor_set,
        )
        .include_reflection_service(false);
    listed(served)
        .into_iter()
        .fold(builder, Builder::with_service_name)
}

/// Every service (`package.Service`) defined in [`DESCRIPTOR_SETS`].
fn services() -> Vec<String> {
    DESCRIPTOR_SETS
        .into_iter()
        .flat_map(|set| {
            prost_types::FileDescriptorSet::decode(set)
                .expect("the compiled-in descriptor sets are valid")
                .file
        })
        .flat_map(|file| {
            let package = file.package().to_string();
            file.service
                .into_iter()
                .map(move |s| format!("{package}.{}", s.name()))
        })
        .collect()
}

/// Asks a server what `grpcurl list` / `describe` would, over `grpc.reflection.v1` (or
/// `v1alpha`), and checks its `grpc.health.v1`: for tests (feature `reflection-client`).
#[cfg(feature = "reflection-client")]
pub mod client {
    use prost::Message;
    use prost_types::{FileDescriptorProto, ServiceDescriptorProto};
    use tonic::transport::Channel;
    use tonic::{Code, Status};
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::{v1, v1alpha};

    /// What [`Probe::health`] answers (`grpc.health.v1.HealthCheckResponse.ServingStatus`).
    pub use tonic_health::pb::health_check_response::ServingStatus;

    /// A reflection and health client of one server (no cluster token: neither needs one).
    #[derive(Clone, Debug)]
    pub struct Probe {
        channel: Channel,
    }

    impl Probe {
        pub fn new(channel: Channel) -> Probe {
            Probe { channel }
        }

        /// The services the server lists over `grpc.reflection.v1`, sorted (what `grpcurl
        /// list` prints).
        pub async fn list(&self) -> Result<Vec<String>, Status> {
            use v1::server_reflection_request::MessageRequest;
            use v1::server_reflection_response::MessageResponse;
            let request = MessageRequest::ListServices(String::new());
            match self.ask_v1(request).await? {
                MessageResponse::ListServicesResponse(list) => {
                    Ok(sorted(list.service.into_iter().map(|s| s.name)))
                }
                MessageResponse::ErrorResponse(e) => Err(error(e.error_code, e.error_message)),
                other => Err(unexpected(&other)),
            }
        }

        /// [`Probe::list`] over the older `grpc.reflection.v1alpha`.
        pub async fn list_v1alpha(&self) -> Result<Vec<String>, Status> {
            use v1alpha::server_reflection_request::MessageRequest;
            use v1alpha::server_reflection_response::MessageResponse;
            let request = v1alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut client = v1alpha::server_reflection_client::ServerReflectionClient::new(
                self.channel.clone(),
            );
            let mut replies = client
                .server_reflection_info(tokio_stream::once(request))
                .await?
                .into_inner();
            let reply = replies.message().await?.and_then(|r| r.message_response);
            match reply {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    Ok(sorted(list.service.into_iter().map(|s| s.name)))
                }
                Some(MessageResponse::ErrorResponse(e)) => {
                    Err(error(e.error_code, e.error_message))
                }
                other => Err(unexpected(&other)),
            }
        }

        /// The files the server sends for `symbol` (`grpcurl describe SYMBOL` reads them):
        /// the one defining it first, then those it imports.
        pub async fn files_containing(
            &self,
            symbol: &str,
        ) -> Result<Vec<FileDescriptorProto>, Status> {
            use v1::server_reflection_request::MessageRequest;
            use v1::server_reflection_response::MessageResponse;
            let request = MessageRequest::FileContainingSymbol(symbol.to_string());
            match self.ask_v1(request).await? {
                MessageResponse::FileDescriptorResponse(files) => files
                    .file_descriptor_proto
                    .iter()
                    .map(|bytes| {
                        FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
                            Status::internal(format!("an undecodable file descriptor: {e}"))
                        })
                    })
                    .collect(),
                MessageResponse::ErrorResponse(e) => Err(error(e.error_code, e.error_message)),
                other => Err(unexpected(&other)),
            }
        }

        /// The descriptor of `service` (`package.Service`), from the file the server sends
        /// for it: its methods, their request and reply types.
        pub async fn describe(&self, service: &str) -> Result<ServiceDescriptorProto, Status> {
            let files = self.files_containing(service).await?;
            files
                .into_iter()
                .flat_map(|file| {
                    let package = file.package().to_string();
                    file.service
                        .into_iter()
                        .map(move |s| (format!("{package}.{}", s.name()), s))
                })
                .find_map(|(name, s)| (name == service).then_some(s))
                .ok_or_else(|| {
                    Status::not_found(format!("the files sent for {service} do not define it"))
                })
        }

        /// The names of `service`'s methods, in the order its `.proto` file declares them.
        pub async fn methods(&self, service: &str) -> Result<Vec<String>, Status> {
            let described = self.describe(service).await?;
            Ok(described
                .method
                .iter()
                .map(|m| m.name().to_string())
                .collect())
        }

        /// What every component answers, serving `served`: both reflection versions list
        /// exactly [`listed`](super::listed)`(served)`, each of those services is
        /// describable with its methods, and health says SERVING for `""` and for each of
        /// `served`. The error says the first thing that differs.
        pub async fn verify(&self, served: &[&str]) -> Result<(), String> {
            let mut expected = super::listed(served);
            expected.sort();
            let lists = [
                ("v1", self.list().await),
                ("v1alpha", self.list_v1alpha().await),
            ];
            for (version, list) in lists {
                let list = list.map_err(|e| format!("listing over reflection {version}: {e}"))?;
                if list != expected {
                    return Err(format!(
                        "reflection {version} lists {list:?}, not {expected:?}"
                    ));
                }
            }
            for service in &expected {
                match self.methods(service).await {
                    Ok(methods) if !methods.is_empty() => {}
                    other => return Err(format!("describing {service}: {other:?}")),
                }
            }
            for service in [""].iter().chain(served) {
                match self.health(service).await {
                    Ok(ServingStatus::Serving) => {}
                    other => return Err(format!("health of {service:?}: {other:?}, not SERVING")),
                }
            }
            Ok(())
        }

        /// `grpc.health.v1.Health/Check` of `service` (`""`: the whole server).
        pub async fn health(&self, service: &str) -> Result<ServingStatus, Status> {
            let reply = HealthClient::new(self.channel.clone())
                .check(HealthCheckRequest {
                    service: service.to_string(),
                })
                .await?
                .into_inner();
            ServingStatus::try_from(reply.status)
                .map_err(|_| Status::internal(format!("unknown serving status {}", reply.status)))
        }

        /// Waits until `grpc.health.v1.Health/Watch` of `service` says SERVING (a component
        /// that warms up first, as the resource manager does, reports NOT_SERVING until
        /// then). Bound it with a timeout.
        pub async fn until_serving(&self, service: &str) -> Result<(), Status> {
            let mut statuses = HealthClient::new(self.channel.clone())
                .watch(HealthCheckRequest {
                    service: service.to_string(),
                })
                .await?
                .into_inner();
            while let Some(reply) = statuses.message().await? {
                if reply.status == ServingStatus::Serving as i32 {
                    return Ok(());
                }
            }
            Err(Status::unavailable(format!(
                "the health of {service:?} stopped before SERVING"
            )))
        }

        /// One request over `grpc.reflection.v1`, and its one reply.
        async fn ask_v1(
            &self,
            request: v1::server_reflection_request::MessageRequest,
        ) -> Result<v1::server_reflection_response::MessageResponse, Status> {
            let request = v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            };
            let mut client =
                v1::server_reflection_client::ServerReflectionClient::new(self.channel.clone());
            let mut replies = client
                .server_reflection_info(tokio_stream::once(request))
                .await?
                .into_inner();
            replies
                .message()
                .await?
                .and_then(|r| r.message_response)
                .ok_or_else(|| Status::internal("the reflection stream ended without a reply"))
        }
    }

    fn sorted(names: impl Iterator<Item = String>) -> Vec<String> {
        let mut names: Vec<String> = names.collect();
        names.sort();
        names
    }

    fn error(code: i32, message: String) -> Status {
        Status::new(Code::from(code), message)
    }

    fn unexpected(reply: &impl std::fmt::Debug) -> Status {
        Status::internal(format!("an unexpected reflection reply: {reply:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_service_is_in_the_descriptor_set() {
        let known = services();
        for name in [
            crate::schedulerproto::scheduler_server::SERVICE_NAME,
            crate::scheduler_admin::scheduler_admin_server::SERVICE_NAME,
            crate::resourcemanagerproto::resource_manager_server::SERVICE_NAME,
            crate::nodeservoceproto::node_service_server::SERVICE_NAME,
            crate::node_admin::node_admin_server::SERVICE_NAME,
            crate::container::container_service_server::SERVICE_NAME,
            crate::apiserverproto::api_server_server::SERVICE_NAME,
            crate::admin::admin_server::SERVICE_NAME,
            crate::invoke::invocations_server::SERVICE_NAME,
            HEALTH,
            REFLECTION_V1,
            REFLECTION_V1ALPHA,
        ] {
            assert!(known.iter().any(|k| k == name), "{name} in {known:?}");
        }
    }

    #[test]
    fn the_descriptor_sets_never_name_a_file_twice() {
        // The reflection builder keeps the first file of a name and drops later ones, so a
        // clash would silently hide a service's definition.
        let mut names: Vec<String> = DESCRIPTOR_SETS
            .into_iter()
            .flat_map(|set| prost_types::FileDescriptorSet::decode(set).unwrap().file)
            .map(|f| f.name().to_string())
            .collect();
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "{names:?}");
    }

    #[test]
    fn a_component_lists_its_services_then_health_and_reflection() {
        assert_eq!(
            listed(&["schedulerproto.Scheduler"]),
            [
                "schedulerproto.Scheduler",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
        );
        let _ = routes(&["schedulerproto.Scheduler"]);
    }

    #[test]
    #[should_panic(expected = "is no service of the platform's .proto files")]
    fn an_unknown_service_name_is_refused() {
        let _ = routes(&["schedulerproto.Schedule"]);
    }
}
