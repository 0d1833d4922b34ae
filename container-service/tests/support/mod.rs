//! What the integration tests share: the real server started in-process through `run`, and
//! calls to it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use faas_common::shutdown::{self, Trigger};
use faas_container_service::{Config, run};
use faas_proto::container::container_service_client::ContainerServiceClient;
use faas_proto::container::{InvokeReply, InvokeRequest};
use tonic::transport::Channel;

/// A container service served in-process, and a client of it.
pub struct Server {
    pub client: ContainerServiceClient<Channel>,
    pub trigger: Trigger,
    pub task: tokio::task::JoinHandle<Result<(), faas_container_service::Error>>,
}

impl Server {
    /// Stops it and checks it stopped cleanly.
    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// A container of `function` run by the built-in `handler`, on a free loopback port, with a
/// 30 s timeout and the memory limit emulated.
pub fn config(function: &str, handler: &str, memory_bytes: u64) -> Config {
    Config {
        host: "127.0.0.1".into(),
        port: 0,
        unbound: false,
        function_name: Some(function.into()),
        handler: Some(handler.into()),
        bundle: None,
        memory_bytes,
        timeout_ms: 30_000,
        emulate_memory_limit: true,
        metrics_port: None,
        log: Default::default(),
    }
}

/// A container of function "f" made of the bundle in directory `bundle` (a command
/// function), otherwise as [`config`].
pub fn bundle_config(bundle: &Path, memory_bytes: u64) -> Config {
    Config {
        handler: None,
        bundle: Some(bundle.to_path_buf()),
        ..config("f", "", memory_bytes)
    }
}

/// The example function `name` of the repository (`examples/functions/NAME`).
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/functions")
        .join(name)
}

/// Serves `config` on a free port through `run`.
pub async fn start(config: Config) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(run(listener, config, shutdown));
    let channel = faas_common::serve::connect(&addr.to_string())
        .await
        .unwrap();
    Server {
        client: ContainerServiceClient::new(channel),
        trigger,
        task,
    }
}

/// An Invoke of `function` (request id `r-1`, the function's own timeout).
pub fn request(function: &str, event: &[u8]) -> InvokeRequest {
    InvokeRequest {
        request_id: "r-1".into(),
        function_name: function.into(),
        handler: String::new(),
        event: event.to_vec(),
        timeout_in_ms: 0,
    }
}

/// Invokes `function` with `event` and returns the reply.
pub async fn invoke(server: &Server, function: &str, event: &[u8]) -> InvokeReply {
    server
        .client
        .clone()
        .invoke(request(function, event))
        .await
        .unwrap()
        .into_inner()
}

/// Parses a JSON body (the panic shows it).
pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(body)))
}
