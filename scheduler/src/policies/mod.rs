//! The scheduling policies, selectable by name (`--policy`).
//!
//! Each policy owns a [`crate::core::State`] and decides where and when; the shared
//! bookkeeping stays in the state.

pub mod baseline;

use crate::core::{Policy, PolicyOptions, UnknownPolicy};

/// The names [`policy_by_name`] knows.
pub const POLICY_NAMES: &[&str] = &[baseline::NAME];

/// Builds the policy registered as `name`.
pub fn policy_by_name(name: &str, opts: &PolicyOptions) -> Result<Box<dyn Policy>, UnknownPolicy> {
    match name.trim() {
        baseline::NAME => Ok(Box::new(baseline::Baseline::new(opts.clone()))),
        _ => Err(UnknownPolicy {
            name: name.to_string(),
            known: POLICY_NAMES.to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_builds_known_policies_and_lists_them_otherwise() {
        let p = policy_by_name("baseline", &PolicyOptions::default()).unwrap();
        assert_eq!(p.name(), "baseline");
        let err = policy_by_name("magic", &PolicyOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"magic\""), "{err}");
        assert!(err.to_string().contains("baseline"), "{err}");
    }
}
