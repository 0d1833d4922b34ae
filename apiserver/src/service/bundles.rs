//! From a valid spec to what a function runs: a command or image function's bundle is
//! named by its hash and written to the bundle store (`store::bundles`) *before* the
//! registry writes the database, so a stored function always names a bundle on disk.
//!
//! A spec may bring its bundle three ways:
//!
//! 1. with its `code` (and its definition): the hash is computed here (`model::bundle`), the
//!    bundle written unless it exists; a `bundle` the client sent too must be that hash;
//! 2. with its definition and only the `bundle` hash (what a function record holds, sent
//!    back: a republish): the stored bundle's `function.json` must be the definition's;
//! 3. with only the `bundle` hash: the definition is read from the stored bundle.
//!
//! A command without code (`["sh", "-c", "cat"]`) is a bundle of its `function.json` alone.
//! A server without a data directory keeps no files and refuses every bundle function.

use crate::model::bundle::{bundle_hash, manifest, parse_manifest};
use crate::model::kind::{BundleKind, BundleRef, HandlerRef};
use crate::model::{Function, FunctionSpec};
use crate::service::kind::{Kind, validate_kind};
use crate::service::registry::{Registry, RegistryError};
use crate::store::BundleStore;

impl Registry {
    /// What `spec` (whose kind is `kind`, from `validate_spec`) runs, its bundle stored.
    /// `action` says what was refused when the store fails ("deployed", "published").
    /// Blocks on the disk.
    pub(crate) fn materialize(
        &self,
        spec: &FunctionSpec,
        kind: Kind,
        action: &'static str,
    ) -> Result<HandlerRef, RegistryError> {
        let bundle = match kind {
            Kind::Builtin(h) => return Ok(HandlerRef::Builtin(h)),
            Kind::Bundle(bundle) => bundle,
            Kind::Stored(hash) => return self.stored(spec, &hash),
        };
        let store = self.bundle_store(spec)?;
        let manifest = manifest(&bundle);
        let not_saved = |problem| RegistryError::NotSaved {
            name: spec.name.clone(),
            action,
            problem,
        };
        if !spec.bundle.is_empty() && spec.code.is_empty() {
            // The definition and the hash of a bundle the server should have.
            match store.manifest(&spec.bundle).map_err(not_saved)? {
                None => return Err(self.unknown(spec, &spec.bundle)),
                Some(stored) if stored != manifest => {
                    return Err(RegistryError::BadKind {
                        name: spec.name.clone(),
                        field: "bundle".into(),
                        problem: format!(
                            "bundle {} holds another definition than this command, protocol, env and image: send the code, or only the bundle",
                            spec.bundle
                        ),
                    });
                }
                Some(_) => return Ok(bundle_ref(&spec.bundle, bundle)),
            }
        }
        let hash = bundle_hash(&manifest, &spec.code);
        if !spec.bundle.is_empty() && spec.bundle != hash {
            return Err(RegistryError::BadKind {
                name: spec.name.clone(),
                field: "bundle".into(),
                problem: format!(
                    "the code and definition sent hash to {hash}, not {}: leave bundle empty when sending code",
                    spec.bundle
                ),
            });
        }
        let written = store.put(&hash, &manifest, &spec.code).map_err(not_saved)?;
        tracing::info!(
            function = %spec.name,
            bundle = %hash,
            files = spec.code.len(),
            bytes = spec.code.iter().map(|f| f.content.len()).sum::<usize>(),
            new = written,
            "bundle stored"
        );
        Ok(bundle_ref(&hash, bundle))
    }

    fn bundle_store(&self, spec: &FunctionSpec) -> Result<&dyn BundleStore, RegistryError> {
        self.bundles
            .as_deref()
            .ok_or_else(|| RegistryError::NeedsDataDir {
                name: spec.name.clone(),
            })
    }

    fn unknown(&self, spec: &FunctionSpec, hash: &str) -> RegistryError {
        RegistryError::UnknownBundle {
            name: spec.name.clone(),
            hash: hash.to_string(),
        }
    }

    /// Only a hash: the definition is the stored bundle's, checked as a deploy would be.
    fn stored(&self, spec: &FunctionSpec, hash: &str) -> Result<HandlerRef, RegistryError> {
        let store = self.bundle_store(spec)?;
        let bytes = store
            .manifest(hash)
            .map_err(|problem| RegistryError::NotSaved {
                name: spec.name.clone(),
                action: "deployed",
                problem,
            })?
            .ok_or_else(|| self.unknown(spec, hash))?;
        let bad = |problem: String| RegistryError::BadKind {
            name: spec.name.clone(),
            field: "bundle".into(),
            problem,
        };
        let kind = parse_manifest(&bytes).map_err(|e| {
            bad(format!(
                "the stored function.json of {hash} cannot be read: {e}"
            ))
        })?;
        let full = FunctionSpec {
            bundle: hash.to_string(),
            ..with_kind(spec, &kind)
        };
        match validate_kind(&full)? {
            Kind::Bundle(checked) if manifest(&checked) == bytes => Ok(bundle_ref(hash, checked)),
            _ => Err(bad(format!(
                "the stored function.json of {hash} is not one this server writes"
            ))),
        }
    }

    /// Warns of stored bundle functions whose bundle is missing (deleted by hand, another
    /// data directory): their calls will fail on the nodes until they are deployed again.
    pub(crate) fn check_bundles(&self, functions: &[&Function]) {
        let Some(store) = self.bundles.as_deref() else {
            return;
        };
        for f in functions {
            let Some(b) = f.handler.bundle() else {
                continue;
            };
            if !matches!(store.manifest(b.hash()), Ok(Some(_))) {
                tracing::warn!(function = %f.name, bundle = %b.hash(), store = %store.describe(), "the function's bundle is missing: its calls will fail until it is deployed again");
            }
        }
    }
}

fn bundle_ref(hash: &str, kind: BundleKind) -> HandlerRef {
    HandlerRef::Bundle(Box::new(BundleRef::new(hash, kind)))
}

/// `spec` with the kind fields of `kind` (and no code).
fn with_kind(spec: &FunctionSpec, kind: &BundleKind) -> FunctionSpec {
    FunctionSpec {
        name: spec.name.clone(),
        memory_bytes: spec.memory_bytes,
        timeout_ms: spec.timeout_ms,
        description: spec.description.clone(),
        command: kind.command.clone(),
        protocol: kind.protocol.as_str().to_string(),
        image: kind.image.clone().unwrap_or_default(),
        start_timeout_ms: kind.start_timeout_ms.unwrap_or(0),
        env: kind.env.clone(),
        ..FunctionSpec::default()
    }
}

#[cfg(test)]
#[path = "bundles_tests.rs"]
mod tests;
