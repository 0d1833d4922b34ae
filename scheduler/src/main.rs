//! `scheduler`: the platform's scheduler as its own binary.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "scheduler",
    about = "The FaaS scheduler (contest schedulerproto.Scheduler)"
)]
struct Cli {
    #[command(flatten)]
    config: faas_scheduler::Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    faas_common::logging::init_with("scheduler", &cli.config.log, "info");
    let result = tokio::runtime::Runtime::new()?.block_on(faas_scheduler::main_with(cli.config));
    // Spans still buffered reach the collector (a no-op when export is off).
    faas_common::trace::flush();
    result
}
