//! The `resource-manager` binary: reserves and releases nodes under the contest's rules.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "resource-manager",
    version,
    about = "Reserves and releases nodes under the contest's rules"
)]
struct Cli {
    #[command(flatten)]
    config: faas_resource_manager::Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    faas_common::logging::init_with("resource-manager", &cli.config.log, "info");
    let result =
        tokio::runtime::Runtime::new()?.block_on(faas_resource_manager::main_with(cli.config));
    // Spans still buffered reach the collector (a no-op when export is off).
    faas_common::trace::flush();
    result
}
