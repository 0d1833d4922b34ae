//! `faas-probe HOST:PORT [SERVICE]`: asks a gRPC server's `grpc.health.v1.Health/Check` and
//! exits 0 when it answers SERVING, 1 otherwise. Scratch images have no shell, so Docker and
//! docker-compose healthchecks run this instead (`["CMD", "/faas-probe", "127.0.0.1:10500"]`).

use std::process::ExitCode;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const TIMEOUT: Duration = Duration::from_secs(3);

async fn check(addr: &str, service: String) -> Result<(), String> {
    let channel = faas_common::serve::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service })
        .await
        .map_err(|s| {
            format!(
                "{addr} health check failed: {:?}: {}",
                s.code(),
                s.message()
            )
        })?;
    match reply.into_inner().status() {
        ServingStatus::Serving => Ok(()),
        other => Err(format!("{addr} is {}", other.as_str_name())),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(addr) = args.next().filter(|a| !a.starts_with('-')) else {
        eprintln!("usage: faas-probe HOST:PORT [SERVICE]");
        return ExitCode::from(2);
    };
    let service = args.next().unwrap_or_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faas-probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, check(&addr, service))
            .await
            .unwrap_or_else(|_| Err(format!("{addr} did not answer within {TIMEOUT:?}")))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("faas-probe: {message}");
            ExitCode::FAILURE
        }
    }
}
