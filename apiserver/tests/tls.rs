//! TLS on the API server's port, with a certificate the test makes: a client that trusts it
//! completes the handshake and calls; a plaintext client fails clearly.

use std::time::Duration;

use faas_apiserver::Config;
use faas_common::shutdown;
use faas_proto::apiserverproto::ListFunctionsRequest;
use faas_proto::apiserverproto::api_server_client::ApiServerClient;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

mod support {
    pub mod cert;
}

#[tokio::test]
async fn tls_serves_a_client_that_trusts_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let made = support::cert::localhost_cert(dir.path());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Config {
        scheduler: "127.0.0.1:1".into(),
        tls_cert: Some(made.cert),
        tls_key: Some(made.key),
        ..Config::default()
    };
    let (trigger, stop) = shutdown::channel();
    let server = tokio::spawn(faas_apiserver::run(listener, config, stop));

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(made.pem))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let functions = ApiServerClient::new(channel)
        .list_functions(ListFunctionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .functions;
    assert!(functions.iter().any(|f| f.function_name == "hello"));

    // Plaintext to the TLS port: no gRPC conversation happens.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let status = ApiServerClient::new(plain)
        .list_functions(ListFunctionsRequest {})
        .await
        .unwrap_err();
    assert_ne!(status.code(), tonic::Code::Ok);
    eprintln!("a plaintext client sees: {status:?}");

    trigger.trigger();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_certificate_fails_the_start() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        tls_cert: Some("/nonexistent/cert.pem".into()),
        tls_key: Some("/nonexistent/key.pem".into()),
        ..Config::default()
    };
    let err = faas_apiserver::run(listener, config, shutdown::Shutdown::never())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "the API server cannot start: cannot read --tls-cert /nonexistent/cert.pem"
        ),
        "{err}"
    );
}
