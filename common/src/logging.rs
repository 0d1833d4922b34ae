//! One `tracing` set-up for every binary: `RUST_LOG` filters, default `info`.

use tracing_subscriber::EnvFilter;

/// Installs a formatting subscriber writing to stderr. Safe to call more than once.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
