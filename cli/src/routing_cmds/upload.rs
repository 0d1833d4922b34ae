//! What `faas deploy` sends for a command function: its code, read from the directory the
//! file names (`store::code_dir`), or only its bundle's hash when the server has it already.
//!
//! The command computes the bundle's hash itself, exactly as the server will
//! (`model::bundle`), so it can tell "unchanged" (the deployed record has this hash and the
//! same definition: nothing is sent) from "changed" without uploading anything, and can
//! reuse a bundle the server holds (a version whose code is the function's) by its hash.

use std::collections::HashSet;

use faas_apiserver::api::server::MAX_ADMIN_REQUEST_BYTES;
use faas_apiserver::model::FunctionSpec;
use faas_apiserver::model::bundle::{bundle_hash, manifest};
use faas_apiserver::service::kind::Kind;
use faas_apiserver::service::validate_spec;

use super::*;

/// A spec from a deploy file, ready to compare and send.
#[derive(Debug)]
pub struct Prepared {
    /// What the server's record of it will hold: the definition and the bundle's hash,
    /// never the code.
    pub record: admin::FunctionSpec,
    /// Its bundle's hash, for a command or image function.
    pub hash: Option<String>,
    spec: FunctionSpec,
}

impl Prepared {
    /// Computes the bundle's hash of `spec` (a parsed, valid file entry with its code read).
    pub fn new(spec: &FunctionSpec) -> anyhow::Result<Prepared> {
        let hash = match validate_spec(spec)? {
            Kind::Builtin(_) => None,
            Kind::Bundle(kind) => Some(bundle_hash(&manifest(&kind), &spec.code)),
            Kind::Stored(hash) => Some(hash),
        };
        let record = spec_to_admin(FunctionSpec {
            code: Vec::new(),
            bundle: hash.clone().unwrap_or_default(),
            ..spec.clone()
        });
        Ok(Prepared {
            record,
            hash,
            spec: spec.clone(),
        })
    }

    /// The spec to send: with its code, unless the server is `known` to hold its bundle
    /// (then its definition and hash only).
    pub fn to_send(&self, known: &HashSet<String>) -> admin::FunctionSpec {
        match &self.hash {
            Some(hash) if known.contains(hash) => self.record.clone(),
            _ => spec_to_admin(self.spec.clone()),
        }
    }

    /// `, bundle 2b8cbc6472a5… (3 files, 2.1 KiB)`, or nothing for a built-in.
    pub fn note(&self, sent: &admin::FunctionSpec) -> String {
        let Some(hash) = &self.hash else {
            return String::new();
        };
        let what = if sent.code.is_empty() && !self.spec.code.is_empty() {
            "already on the server".to_string()
        } else {
            let bytes: usize = self.spec.code.iter().map(|f| f.content.len()).sum();
            format!(
                "{} file{}, {} uploaded",
                self.spec.code.len(),
                if self.spec.code.len() == 1 { "" } else { "s" },
                show_size(bytes)
            )
        };
        format!(", bundle {} ({what})", kinds::short_hash(hash))
    }
}

fn show_size(bytes: usize) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Refuses, before sending it, a request the API server would not decode (over
/// [`MAX_ADMIN_REQUEST_BYTES`]), saying what to do.
pub fn check_size(what: &str, request: &impl prost::Message) -> anyhow::Result<()> {
    let len = request.encoded_len();
    if len > MAX_ADMIN_REQUEST_BYTES {
        anyhow::bail!(
            "{what}: the request is {len} bytes, over the API server's limit of {MAX_ADMIN_REQUEST_BYTES}: make the code directory smaller"
        );
    }
    Ok(())
}

/// The bundles the server holds, as far as `records` say.
pub fn known_bundles<'a>(
    records: impl IntoIterator<Item = &'a admin::FunctionSpec>,
) -> HashSet<String> {
    records
        .into_iter()
        .filter(|s| !s.bundle.is_empty())
        .map(|s| s.bundle.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faas_apiserver::model::CodeFile;

    fn command() -> FunctionSpec {
        FunctionSpec {
            name: "py".into(),
            memory_bytes: 128 << 20,
            timeout_ms: 1000,
            command: vec!["python3".into(), "main.py".into()],
            protocol: "http".into(),
            code: vec![CodeFile {
                path: "main.py".into(),
                content: b"print(1)".to_vec(),
                executable: false,
            }],
            ..FunctionSpec::default()
        }
    }

    #[test]
    fn the_record_holds_the_hash_and_never_the_code() {
        let p = Prepared::new(&command()).unwrap();
        let hash = p.hash.clone().unwrap();
        assert_eq!(p.record.bundle, hash);
        assert!(p.record.code.is_empty());
        let sent = p.to_send(&HashSet::new());
        assert_eq!(sent.code.len(), 1);
        assert!(sent.bundle.is_empty(), "the server computes it");
        assert!(
            p.note(&sent).ends_with("(1 file, 8 B uploaded)"),
            "{}",
            p.note(&sent)
        );
        let known = HashSet::from([hash]);
        let sent = p.to_send(&known);
        assert_eq!(sent, p.record);
        assert!(p.note(&sent).ends_with("(already on the server)"));

        let mut hello = command();
        hello.command.clear();
        hello.protocol.clear();
        hello.code.clear();
        hello.handler = "hello".into();
        let p = Prepared::new(&hello).unwrap();
        assert_eq!((p.hash.as_deref(), p.note(&p.record).as_str()), (None, ""));
    }

    #[test]
    fn an_oversized_request_is_refused_before_it_is_sent() {
        let big = admin::DeployFunctionRequest {
            function: Some(admin::FunctionSpec {
                code: vec![admin::CodeFile {
                    path: "big".into(),
                    content: vec![0; MAX_ADMIN_REQUEST_BYTES],
                    executable: false,
                }],
                ..Default::default()
            }),
        };
        let err = check_size("deploy py", &big).unwrap_err().to_string();
        assert!(err.starts_with("deploy py: the request is "), "{err}");
        assert!(check_size("x", &admin::DeployFunctionRequest::default()).is_ok());
    }
}
