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
    tokio::runtime::Runtime::new()?.block_on(faas_apiserver::main_with(cli.config))
}
