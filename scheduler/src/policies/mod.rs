//! The scheduling policies, selectable by name (`--policy`).
//!
//! Each policy owns a [`crate::core::State`] and decides where and when; the shared
//! bookkeeping stays in the state.

pub mod adaptive;
pub mod baseline;
pub mod czy;
pub mod engine;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod hold_tests;
pub mod keepalive;
pub mod no_reuse;
#[cfg(test)]
mod recovery_tests;
mod timers;

use crate::core::{Policy, PolicyOptions, UnknownPolicy};

/// The policy a scheduler runs when none is named: ours.
pub const DEFAULT_POLICY: &str = adaptive::NAME;

/// The names [`policy_by_name`] knows.
pub const POLICY_NAMES: &[&str] = &[
    baseline::NAME,
    keepalive::NAME,
    no_reuse::NAME,
    czy::NAME,
    adaptive::NAME,
    adaptive::PACKED_NAME,
];

/// Builds the policy registered as `name`.
pub fn policy_by_name(name: &str, opts: &PolicyOptions) -> Result<Box<dyn Policy>, UnknownPolicy> {
    match name.trim() {
        baseline::NAME => Ok(Box::new(baseline::Baseline::new(opts.clone()))),
        keepalive::NAME => Ok(Box::new(keepalive::KeepAlive::new(opts.clone()))),
        no_reuse::NAME => Ok(Box::new(no_reuse::NoReuse::new(opts.clone()))),
        czy::NAME => Ok(Box::new(czy::Czy::new(opts.clone()))),
        adaptive::NAME => Ok(Box::new(adaptive::Adaptive::new(opts.clone()))),
        adaptive::PACKED_NAME => Ok(Box::new(adaptive::Adaptive::packed(opts.clone()))),
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
        for name in POLICY_NAMES {
            assert_eq!(
                policy_by_name(name, &PolicyOptions::default())
                    .unwrap()
                    .name(),
                *name
            );
        }
        let err = policy_by_name("magic", &PolicyOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("\"magic\""), "{err}");
        assert!(err.to_string().contains("baseline"), "{err}");
    }
}
