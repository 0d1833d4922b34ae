//! `apiserver`: the platform's front door (see the `faas_apiserver` library).

use clap::Parser;

#[derive(Parser)]
#[command(name = "apiserver", version, about = "The FaaS platform's API server")]
struct Cli {
    #[command(flatten)]
    config: faas_apiserver::Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    faas_common::logging::init_with("apiserver", &cli.config.log, "info");
    let result = tokio::runtime::Runtime::new()?.block_on(faas_apiserver::main_with(cli.config));
    // Spans still buffered reach the collector (a no-op when export is off).
    faas_common::trace::flush();
    result
}
