//! The catalog's rules over a bare registry (no calls): rollback, what cannot be deleted,
//! refused policies, and the grace of versions an alias left.

use super::*;

#[test]
fn rollback_restores_the_previous_targets_in_one_step() {
    let registry = Registry::new();
    registry.deploy(spec("f", "echo"), 0).unwrap();
    for _ in 0..3 {
        registry.publish("f", None, None, 1).unwrap();
    }
    let err = registry.rollback("f", "live", 2).unwrap_err();
    assert!(matches!(err, RegistryError::TargetNotFound { .. }), "{err}");
    let set = registry
        .set_alias("f", "live", parse_weights("1").unwrap(), 2)
        .unwrap();
    assert!(set.created && set.left.is_empty());
    let err = registry.rollback("f", "live", 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        "f:live: it has never changed: there is nothing to roll back to"
    );
    let moved = registry
        .set_alias("f", "live", parse_weights("1=90,3=10").unwrap(), 4)
        .unwrap();
    assert!(moved.left.is_empty());
    let moved = registry
        .set_alias("f", "live", parse_weights("3").unwrap(), 5)
        .unwrap();
    assert_eq!(moved.left, [1]);
    let back = registry.rollback("f", "live", 6).unwrap();
    assert_eq!(back.alias.targets, parse_weights("1=90,3=10").unwrap());
    assert_eq!(back.alias.previous, parse_weights("3").unwrap());
    // Rolling back again undoes the rollback.
    let again = registry.rollback("f", "live", 7).unwrap();
    assert_eq!(again.alias.targets, parse_weights("3").unwrap());
    assert_eq!(again.left, [1]);
    // Setting the same targets moves nothing and keeps the rollback point.
    let same = registry
        .set_alias("f", "live", parse_weights("3").unwrap(), 8)
        .unwrap();
    assert_eq!(same.alias.previous, parse_weights("1=90,3=10").unwrap());
}

#[test]
fn what_something_names_cannot_be_deleted_and_versions_are_immutable() {
    let registry = Registry::new();
    registry.deploy(spec("f", "echo"), 0).unwrap();
    registry.deploy(spec("g", "echo"), 0).unwrap();
    registry.publish("f", None, None, 1).unwrap();
    registry.publish("f", None, None, 1).unwrap();
    registry
        .set_alias("f", "live", parse_weights("1=50,2=50").unwrap(), 2)
        .unwrap();
    let err = registry.delete_version("f", 2).unwrap_err();
    assert!(matches!(err, RegistryError::Conflict { .. }));
    assert_eq!(
        err.to_string(),
        "f:2: it is named by alias f:live (1=50,2=50): change those first"
    );
    registry
        .set_policy(
            "g",
            Some(RoutePolicy {
                default: Some(TargetRef::parse("f:live")),
                ..RoutePolicy::default()
            }),
        )
        .unwrap();
    let err = registry.delete_alias("f", "live").unwrap_err();
    assert!(
        err.to_string()
            .contains("named by the routes of g (default = f:live)"),
        "{err}"
    );
    let err = registry.delete("f").unwrap_err();
    assert!(matches!(err, RegistryError::Conflict { .. }), "{err}");
    // Versions are immutable: a declared version with another definition is refused, the
    // same one is a no-op, and numbers are not skipped.
    let (v, created) = registry.publish("f", None, Some(2), 3).unwrap();
    assert!(!created && v.revision == 2);
    let err = registry
        .publish("f", Some(spec("f", "sleep")), Some(2), 3)
        .unwrap_err();
    assert!(err.to_string().contains("versions are immutable"), "{err}");
    let err = registry.publish("f", None, Some(5), 3).unwrap_err();
    assert!(
        err.to_string().contains("the next version of f is 3"),
        "{err}"
    );
    let err = registry
        .publish("f", Some(spec("g", "echo")), None, 3)
        .unwrap_err();
    assert!(err.to_string().contains("spec.name"), "{err}");
    // Once nothing names them, they go; the function takes its versions with it.
    registry.set_policy("g", None).unwrap();
    registry.delete_alias("f", "live").unwrap();
    registry.delete_version("f", 2).unwrap();
    assert!(matches!(
        registry.delete_version("f", 2).unwrap_err(),
        RegistryError::TargetNotFound { .. }
    ));
    registry.delete("f").unwrap();
    assert!(registry.get("f:1").is_err());
    registry.deploy(spec("f", "echo"), 9).unwrap();
    assert!(registry.versions("f").unwrap().is_empty());
    assert_eq!(TargetRef::parse("f:1").qualifier, Qualifier::Version(1));
}

#[test]
fn a_policy_naming_a_missing_target_or_a_cycle_is_refused() {
    let registry = Registry::new();
    registry.deploy(spec("f", "echo"), 0).unwrap();
    registry.deploy(spec("g", "echo"), 0).unwrap();
    registry.publish("f", None, None, 1).unwrap();
    registry.publish("g", None, None, 1).unwrap();
    let missing = RoutePolicy {
        default: Some(TargetRef::parse("f:canary")),
        ..RoutePolicy::default()
    };
    let err = registry.set_policy("f", Some(missing)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "function \"f\": default: alias canary of f does not exist"
    );
    let to = |target: &str| RoutePolicy {
        fallback: fallback_to(target, ALL),
        ..RoutePolicy::default()
    };
    registry.set_policy("f", Some(to("g:1"))).unwrap();
    let err = registry.set_policy("g", Some(to("f:1"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "function \"g\": fallback.target: g → f → g is a cycle of fallbacks"
    );
    assert!(registry.policy("g").is_none());
}

#[test]
fn versions_an_alias_left_are_held_for_what_is_left_of_the_grace() {
    let registry = Registry::new();
    registry.deploy(spec("f", "echo"), 0).unwrap();
    for _ in 0..3 {
        registry.publish("f", None, None, 1).unwrap();
    }
    registry
        .set_alias("f", "live", parse_weights("1").unwrap(), 1_000)
        .unwrap();
    assert!(registry.warm_holds(1_000, 600_000).is_empty());
    registry
        .set_alias("f", "live", parse_weights("2=90,3=10").unwrap(), 10_000)
        .unwrap();
    assert_eq!(
        registry.warm_holds(70_000, 600_000),
        [("f:1".to_string(), 540_000)]
    );
    // Past the grace: nothing; a version still named elsewhere: not held.
    assert!(registry.warm_holds(610_000, 600_000).is_empty());
    registry
        .set_alias("f", "canary", parse_weights("1").unwrap(), 20_000)
        .unwrap();
    assert!(registry.warm_holds(70_000, 600_000).is_empty());
}
