//! The scheduling policies, selectable by name (`--policy`).
//!
//! Each policy owns a [`crate::core::State`] and decides where and when; the shared
//! bookkeeping stays in the state. The simple policies (`baseline`, `keepalive-<N>m`,
//! `no-reuse`) are written with [`hooks`], the API for learning: a few hooks with defaults
//! and one adapter that routes every event. `czy` and `adaptive` implement
//! [`crate::core::Policy`] directly, for full control: each is an [`engine::Engine`] with its
//! own knobs, and `policy_on_engine!` (below) hands every call to it.

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

/// `impl Policy for $policy`, a policy that is an [`engine::Engine`] in its field `engine`:
/// every call goes to the engine, and the policy's name is its knobs' name.
macro_rules! policy_on_engine {
    ($policy:ty) => {
        impl $crate::core::Policy for $policy {
            fn name(&self) -> &str {
                self.engine.knobs().name
            }

            fn handle(
                &mut self,
                now: $crate::model::Millis,
                event: $crate::core::Event,
                out: &mut Vec<$crate::core::Decision>,
            ) -> Result<(), $crate::core::CoreError> {
                self.engine.handle(now, event, out)
            }

            fn next_wakeup(&self) -> Option<$crate::model::Millis> {
                self.engine.next_wakeup()
            }

            fn snapshot(&self) -> $crate::core::Snapshot {
                self.engine.snapshot()
            }

            fn state(&self) -> &$crate::core::State {
                &self.engine.state
            }

            fn reasons(&mut self) -> Option<&mut $crate::core::reasons::Reasons> {
                Some(&mut self.engine.state.reasons)
            }
        }
    };
}
pub(crate) use policy_on_engine;

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

/// How a parametrised family builds the policy a full name asks for (`None`: the part after
/// the prefix is not valid).
pub type BuildFamily = fn(&str, &PolicyOptions) -> Option<Box<dyn Policy>>;

/// Parametrised families: `(prefix, pattern as listed, build)`. A name that is not in
/// [`REGISTRY`] but starts with a prefix is built by its family from the whole name, and the
/// policy keeps that name (`keepalive-5m`, `keepalive-90s`).
pub const FAMILIES: &[(&str, &str, BuildFamily)] =
    &[(keepalive::PREFIX, keepalive::PATTERN, |name, o| {
        keepalive::KeepAlive::named(o.clone(), name).map(|p| Box::new(p) as Box<dyn Policy>)
    })];

/// Every name a user may give, as listed: [`POLICY_NAMES`], then each family's pattern.
pub fn known_policies() -> Vec<&'static str> {
    let mut known = POLICY_NAMES.to_vec();
    known.extend(FAMILIES.iter().map(|f| f.1));
    known
}

/// Whether [`policy_by_name`] builds a policy for `name`.
pub fn is_policy_name(name: &str) -> bool {
    policy_by_name(name, &PolicyOptions::default()).is_ok()
}

/// The fixed names [`policy_by_name`] knows, in [`REGISTRY`] order (the families' members,
/// beyond `keepalive-10m`, are in [`FAMILIES`]).
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

/// Builds the policy registered as `name`, or the member of a family ([`FAMILIES`]) it names.
pub fn policy_by_name(name: &str, opts: &PolicyOptions) -> Result<Box<dyn Policy>, UnknownPolicy> {
    let name = name.trim();
    if let Some((_, build)) = REGISTRY.iter().find(|(n, _)| *n == name) {
        return Ok(build(opts));
    }
    FAMILIES
        .iter()
        .filter(|(prefix, _, _)| name.starts_with(prefix))
        .find_map(|(_, _, build)| build(name, opts))
        .ok_or_else(|| UnknownPolicy {
            name: name.to_string(),
            known: known_policies(),
        })
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
        assert!(err.to_string().contains("keepalive-<N>m"), "{err}");
    }

    #[test]
    fn keepalive_windows_are_a_family() {
        for name in [
            "keepalive-1m",
            "keepalive-5m",
            "keepalive-60m",
            "keepalive-90s",
        ] {
            let p = policy_by_name(name, &PolicyOptions::default()).unwrap();
            assert_eq!(p.name(), name);
            assert!(is_policy_name(name));
        }
        for bad in ["keepalive-0x", "keepalive-m", "keepalive-0m", "keepalive-"] {
            let err = policy_by_name(bad, &PolicyOptions::default())
                .err()
                .unwrap();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
            assert!(err.to_string().contains("keepalive-<N>m"), "{err}");
            assert!(!is_policy_name(bad));
        }
        assert!(known_policies().contains(&"keepalive-<N>m"));
        assert!(!POLICY_NAMES.contains(&"keepalive-<N>m"));
    }
}
