//! Which API server a command talks to and with which key: the flags every client command
//! shares (`--apiserver`, `--api-key`, `--tls-ca`, `--data-dir`, each also an environment
//! variable), and the connection they make ([`Target::api`]).

use std::path::PathBuf;

use clap::Args;
use faas_cli::client::Api;

#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The API server to talk to (`host:port`, or `https://host:port` for TLS).
    #[arg(long, env = "FAAS_APISERVER", default_value = "127.0.0.1:10500")]
    pub apiserver: String,
    /// The key every call carries (`authorization: Bearer KEY`). Unset: for an API server on
    /// this machine, the admin key `faas up` wrote to DATA_DIR/keys.
    #[arg(long, env = "FAAS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Connect with TLS and trust the certificates this CA (PEM) signed.
    #[arg(long, env = "FAAS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Where `faas up` keeps its data (its key: DATA_DIR/keys). [default:
    /// $XDG_DATA_HOME/mini-faas or ~/.local/share/mini-faas]
    #[arg(long, env = "FAAS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl Target {
    /// A client of the API server with the key this command uses; an API server that cannot
    /// be reached fails with one line (`faas_cli::exit::Unreachable`, exit code 5).
    pub async fn api(&self) -> anyhow::Result<Api> {
        let data_dir = self
            .data_dir
            .clone()
            .or_else(faas_cli::platform::data_dir_here);
        let key = faas_cli::client::find_key(
            &self.apiserver,
            self.api_key.as_deref(),
            data_dir.as_deref(),
        )?;
        faas_cli::client::connect_to(&faas_cli::client::Connect {
            addr: self.apiserver.clone(),
            key,
            tls_ca: self.tls_ca.clone(),
        })
        .await
    }
}
