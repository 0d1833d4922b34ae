//! The scheduling policies, selectable by name (`--policy`).
//!
//! Each policy owns a [`crate::core::State`] and decides where and when; the shared
//! bookkeeping stays in the state. The simple policies (`baseline`, `keepalive-10m`,
//! `no-reuse`) are written with [`hooks`], the API for learning: a few hooks with defaults
//! and one adapter that routes every event. `czy` and `adaptive` implement
//! [`crate::core::Policy`] directly, for full control.

pub mod adaptive;
pub mod baseline;
pub mod czy;
pub mod engine;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod hold_tests;
pub mod hooks;
pub mod keepalive;
pub mod no_reuse;
#[cfg(test)]
mod recovery_tests;
pub mod size_aware;
#[cfg(test)]
pub(crate) mod testkit;
mod timers;

use crate::core::{Policy, PolicyOptions, UnknownPolicy};

/// The policy a scheduler runs when none is named: ours.
pub const DEFAULT_POLICY: &str = adaptive::NAME;

/// How a registered policy is built.
pub type Build = fn(&PolicyOptions) -> Box<dyn Policy>;

/// Every policy, by name: one line each. A new policy is a file in this folder, its `mod`
/// line above and one line here; [`POLICY_NAMES`], `--policy` and `faas policies` follow.
pub const REGISTRY: &[(&str, Build)] = &[
    (baseline::NAME, |o| {
        Box::new(baseline::Baseline::policy(o.clone()))
    }),
    (keepalive::NAME, |o| {
        Box::new(keepalive::KeepAlive::policy(o.clone()))
    }),
    (no_reuse::NAME, |o| {
        Box::new(no_reuse::NoReuse::policy(o.clone()))
    }),
    (czy::NAME, |o| Box::new(czy::Czy::new(o.clone()))),
    (adaptive::NAME, |o| {
        Box::new(adaptive::Adaptive::new(o.clone()))
    }),
    (adaptive::PACKED_NAME, |o| {
        Box::new(adaptive::Adaptive::packed(o.clone()))
    }),
    (size_aware::NAME, |o| {
        Box::new(size_aware::SizeAware::policy(o.clone()))
    }),
];

/// The names [`policy_by_name`] knows, in [`REGISTRY`] order.
pub const POLICY_NAMES: &[&str] = &names::<{ REGISTRY.len() }>(REGISTRY);

const fn names<const N: usize>(registry: &[(&'static str, Build)]) -> [&'static str; N] {
    let mut names = [""; N];
    let mut i = 0;
    while i < N {
        names[i] = registry[i].0;
        i += 1;
    }
    names
}

/// Builds the policy registered as `name`.
pub fn policy_by_name(name: &str, opts: &PolicyOptions) -> Result<Box<dyn Policy>, UnknownPolicy> {
    let name = name.trim();
    match REGISTRY.iter().find(|(n, _)| *n == name) {
        Some((_, build)) => Ok(build(opts)),
        None => Err(UnknownPolicy {
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
