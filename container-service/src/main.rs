//! The `container-service` binary: runs one function, a built-in handler or the user's own
//! command from a bundle (see the library docs).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "container-service",
    version,
    about = "Runs one function inside a container: a built-in handler, or the user's command (--bundle)"
)]
struct Cli {
    #[command(flatten)]
    config: faas_container_service::Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    faas_common::logging::init_with("container-service", &cli.config.log, "info");
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(faas_container_service::main_with(cli.config));
    // Spans still buffered reach the collector (a no-op when export is off).
    faas_common::trace::flush();
    result
}
