//! A self-signed certificate for `localhost`, made for a TLS test (shared by the API
//! server's and the `faas` command's tests: `#[path = ...] mod cert;`).

use std::path::{Path, PathBuf};

/// A certificate for `localhost` and its key, written as PEM files in `dir`.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's PEM text (what a client trusts).
    pub pem: String,
}

/// Makes a self-signed certificate for `localhost` and writes it, and its key, into `dir`.
pub fn localhost_cert(dir: &Path) -> TestCert {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let pem = certified.cert.pem();
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    TestCert { cert, key, pem }
}
