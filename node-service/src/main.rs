//! The `node-service` binary: one per node (see the library docs).

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "node-service",
    version,
    about = "Creates containers on this node and invokes functions in them"
)]
struct Cli {
    #[command(flatten)]
    config: faas_node_service::Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    faas_common::logging::init_with("node-service", &cli.config.log, "info");
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(faas_node_service::main_with(cli.config));
    // Spans still buffered reach the collector (a no-op when export is off).
    faas_common::trace::flush();
    result
}
