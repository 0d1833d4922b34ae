//! Versions, aliases and route policies: kept in memory beside the function table, written
//! through to the database like deployments (`service::registry`'s rules: validate, take the
//! write lock, write the database, then memory).
//!
//! Per function, one immutable [`Routing`] snapshot behind an `Arc`: a call reads it with one
//! hash lookup under a read lock, and a write builds a new snapshot and swaps it in, so a call
//! never sees half a change (an alias moved but its old weights, say).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use crate::model::routing::{
    Alias, Qualifier, RoutePolicy, TargetRef, Weighted, show_weights, version_name,
};
use crate::model::{Function, FunctionSpec};
use crate::service::registry::{Registry, RegistryError, validate_spec};
use crate::service::routing::validate::{
    CompiledPolicy, compile_policy, validate_alias_name, validate_alias_targets,
};
use crate::store::FunctionTable;

/// Everything callable under one function's name besides its current definition.
#[derive(Clone, Debug, Default)]
pub struct Routing {
    /// Published versions by number; each a function named `NAME:N`.
    pub versions: BTreeMap<i64, Arc<Function>>,
    pub aliases: BTreeMap<String, Alias>,
    pub policy: Option<Arc<CompiledPolicy>>,
}

/// [`Routing`] snapshots by function name.
#[derive(Debug, Default)]
pub struct RoutingTable {
    rows: RwLock<HashMap<String, Arc<Routing>>>,
}

impl RoutingTable {
    /// The snapshot of `function`, if it has versions, aliases or a policy.
    pub fn get(&self, function: &str) -> Option<Arc<Routing>> {
        self.rows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(function)
            .cloned()
    }

    fn all(&self) -> Vec<(String, Arc<Routing>)> {
        self.rows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn put(&self, function: &str, routing: Routing) {
        self.rows
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(function.to_string(), Arc::new(routing));
    }

    /// Forgets everything of `function` (deleted).
    pub fn remove_function(&self, function: &str) {
        self.rows
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(function);
    }

    /// The published version `NAME:N` named `name`.
    pub fn concrete_version(&self, name: &str) -> Option<Arc<Function>> {
        let target = TargetRef::parse(name);
        let Qualifier::Version(n) = target.qualifier else {
            return None;
        };
        self.get(&target.function)?.versions.get(&n).cloned()
    }

    /// Fills the table with what the database held; a row that breaks the rules refuses it.
    pub fn load(
        &self,
        functions: &FunctionTable,
        versions: Vec<(String, Function)>,
        aliases: Vec<Alias>,
        policies: Vec<(String, RoutePolicy)>,
    ) -> Result<(), RegistryError> {
        let mut rows: HashMap<String, Routing> = HashMap::new();
        for (function, version) in versions {
            validate_spec(&FunctionSpec {
                name: function.clone(),
                ..version.spec()
            })?;
            rows.entry(function)
                .or_default()
                .versions
                .insert(version.revision, Arc::new(version));
        }
        for alias in aliases {
            rows.entry(alias.function.clone())
                .or_default()
                .aliases
                .insert(alias.name.clone(), alias);
        }
        // Policies are checked once everything they may name is in.
        let pending = policies;
        for (function, routing) in rows.drain() {
            self.put(&function, routing);
        }
        for (function, policy) in pending {
            let compiled = compile_policy(
                &function,
                policy,
                |t| self.target_exists(functions, t),
                |_| None,
            )?;
            let mut routing = self
                .get(&function)
                .map(Arc::unwrap_or_clone)
                .unwrap_or_default();
            routing.policy = Some(Arc::new(compiled));
            self.put(&function, routing);
        }
        Ok(())
    }

    /// Whether `target` names something that exists; why not, if it does not.
    pub fn target_exists(
        &self,
        functions: &FunctionTable,
        target: &TargetRef,
    ) -> Result<(), String> {
        let f = &target.function;
        if functions.get(f).is_none() {
            return Err(format!(
                "function {} is not deployed",
                faas_common::text::clip(f)
            ));
        }
        let routing = self.get(f);
        match &target.qualifier {
            Qualifier::Latest => Ok(()),
            Qualifier::Version(n) => routing
                .filter(|r| r.versions.contains_key(n))
                .map(|_| ())
                .ok_or_else(|| format!("version {n} of {f} does not exist (faas versions {f})")),
            Qualifier::Alias(a) => routing
                .filter(|r| r.aliases.contains_key(a))
                .map(|_| ())
                .ok_or_else(|| {
                    format!("alias {} of {f} does not exist", faas_common::text::clip(a))
                }),
        }
    }

    /// Who names `what` (a target predicate) in their route policies: `F (field)` each.
    fn named_by(&self, what: impl Fn(&TargetRef) -> bool) -> Vec<String> {
        let mut users = Vec::new();
        for (function, routing) in self.all() {
            if let Some(p) = &routing.policy {
                for (field, t) in p.policy.targets() {
                    if what(t) {
                        users.push(format!("the routes of {function} ({field} = {t})"));
                    }
                }
            }
        }
        users.sort();
        users
    }

    /// Refuses to delete `function` while another function's routes name it.
    pub fn check_function_unused(&self, function: &str) -> Result<(), RegistryError> {
        let users: Vec<String> = self
            .named_by(|t| t.function == function)
            .into_iter()
            .filter(|u| !u.starts_with(&format!("the routes of {function} (")))
            .collect();
        in_use(function.to_string(), users)
    }

    /// The fallback function of `function`'s policy, if any (for the cycle check).
    fn fallback_function(&self, function: &str) -> Option<String> {
        let routing = self.get(function)?;
        let policy = routing.policy.as_ref()?;
        Some(policy.policy.fallback.as_ref()?.target.function.clone())
    }
}

fn in_use(subject: String, users: Vec<String>) -> Result<(), RegistryError> {
    if users.is_empty() {
        return Ok(());
    }
    Err(RegistryError::Conflict {
        subject,
        reason: format!("it is named by {}: change those first", users.join(", ")),
    })
}

/// An alias that was set or rolled back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AliasChange {
    pub alias: Alias,
    pub created: bool,
    /// Versions that had traffic from the alias before and have none now.
    pub left: Vec<i64>,
}

fn not_saved(name: &str, action: &'static str) -> impl FnOnce(crate::StoreError) -> RegistryError {
    let name = name.to_string();
    move |problem| RegistryError::NotSaved {
        name,
        action,
        problem,
    }
}

/// Whether two definitions are the same, whatever their names and times.
fn same_definition(a: &Function, b: &Function) -> bool {
    a.handler == b.handler
        && a.memory_bytes == b.memory_bytes
        && a.timeout_ms == b.timeout_ms
        && a.description == b.description
}

impl Registry {
    fn current(&self, name: &str) -> Result<Arc<Function>, RegistryError> {
        self.table.get(name).ok_or_else(|| RegistryError::NotFound {
            name: name.to_string(),
        })
    }

    fn routing_of(&self, function: &str) -> Routing {
        self.routing
            .get(function)
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default()
    }

    /// Freezes `name`'s current definition (or `spec`, whose name must be `name`) as its
    /// next version. With `expect`, the version must get that number: if it exists with the
    /// same definition nothing changes (`false`); otherwise it is refused. Blocks on the
    /// database.
    pub fn publish(
        &self,
        name: &str,
        spec: Option<FunctionSpec>,
        expect: Option<i64>,
        now_ms: i64,
    ) -> Result<(Arc<Function>, bool), RegistryError> {
        if name.is_empty() {
            return Err(RegistryError::EmptyName);
        }
        self.current(name)?;
        // A given definition is checked, and its bundle written, before the lock (as a
        // deploy does).
        let given = match spec {
            None => None,
            Some(spec) => {
                if spec.name != name {
                    return Err(RegistryError::BadRouting {
                        function: name.to_string(),
                        field: "spec.name".into(),
                        problem: format!(
                            "the spec names {:?}: give {name:?} or no spec",
                            spec.name
                        ),
                    });
                }
                let kind = validate_spec(&spec)?;
                let handler = self.materialize(&spec, kind, "published")?;
                Some((spec, handler))
            }
        };
        let _one_writer = self.write_lock();
        let current = self.current(name)?;
        let definition = match given {
            None => Function::clone(&current),
            Some((spec, handler)) => Function {
                handler,
                memory_bytes: spec.memory_bytes,
                timeout_ms: spec.timeout_ms,
                description: spec.description,
                ..Function::clone(&current)
            },
        };
        let mut routing = self.routing_of(name);
        let next = routing.versions.keys().next_back().map_or(1, |n| n + 1);
        if let Some(n) = expect {
            if let Some(existing) = routing.versions.get(&n) {
                if same_definition(existing, &definition) {
                    return Ok((existing.clone(), false));
                }
                return Err(RegistryError::Conflict {
                    subject: version_name(name, n),
                    reason: "it exists with another definition, and versions are immutable: publish a new version".into(),
                });
            }
            if n != next {
                return Err(RegistryError::Conflict {
                    subject: version_name(name, n),
                    reason: format!("the next version of {name} is {next}"),
                });
            }
        }
        let version = Function {
            name: version_name(name, next),
            revision: next,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            ..definition
        };
        if let Some(dao) = &self.dao {
            dao.put_version(name, &version)
                .map_err(not_saved(name, "published"))?;
        }
        let version = Arc::new(version);
        routing.versions.insert(next, version.clone());
        self.routing.put(name, routing);
        Ok((version, true))
    }

    /// `name`'s published versions, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<Arc<Function>>, RegistryError> {
        self.current(name)?;
        Ok(self
            .routing
            .get(name)
            .map(|r| r.versions.values().cloned().collect())
            .unwrap_or_default())
    }

    /// Deletes version `n` of `name`; refused while an alias or route names it.
    pub fn delete_version(&self, name: &str, n: i64) -> Result<Arc<Function>, RegistryError> {
        let _one_writer = self.write_lock();
        self.current(name)?;
        let mut routing = self.routing_of(name);
        let subject = version_name(name, n);
        if !routing.versions.contains_key(&n) {
            return Err(RegistryError::TargetNotFound {
                target: subject,
                hint: format!("faas versions {name} lists the versions"),
            });
        }
        let mut users: Vec<String> = routing
            .aliases
            .values()
            .filter(|a| a.targets.iter().any(|t| t.version == n))
            .map(|a| format!("alias {}:{} ({})", name, a.name, show_weights(&a.targets)))
            .collect();
        users.extend(
            self.routing
                .named_by(|t| t.function == name && t.qualifier == Qualifier::Version(n)),
        );
        in_use(subject, users)?;
        if let Some(dao) = &self.dao {
            dao.delete_version(name, n)
                .map_err(not_saved(name, "changed"))?;
        }
        let gone = routing.versions.remove(&n).expect("checked above");
        self.routing.put(name, routing);
        Ok(gone)
    }

    /// `name`'s aliases, by name.
    pub fn aliases(&self, name: &str) -> Result<Vec<Alias>, RegistryError> {
        self.current(name)?;
        Ok(self
            .routing
            .get(name)
            .map(|r| r.aliases.values().cloned().collect())
            .unwrap_or_default())
    }

    /// Points alias `alias` of `name` at `targets`, remembering what it pointed at.
    pub fn set_alias(
        &self,
        name: &str,
        alias: &str,
        targets: Vec<Weighted>,
        now_ms: i64,
    ) -> Result<AliasChange, RegistryError> {
        validate_alias_name(name, alias)?;
        let _one_writer = self.write_lock();
        self.current(name)?;
        let routing = self.routing_of(name);
        validate_alias_targets(name, &targets, |v| routing.versions.contains_key(&v))?;
        let before = routing.aliases.get(alias).cloned();
        let previous = before
            .as_ref()
            .map(|a| a.targets.clone())
            .unwrap_or_default();
        if before.as_ref().is_some_and(|a| a.targets == targets) {
            // Nothing moves: the rollback point stays where it was.
            return Ok(AliasChange {
                alias: before.expect("checked"),
                created: false,
                left: Vec::new(),
            });
        }
        self.write_alias(
            routing,
            name,
            alias,
            targets,
            previous,
            now_ms,
            before.is_none(),
        )
    }

    /// Points the alias back at what it pointed at before its last change.
    pub fn rollback(
        &self,
        name: &str,
        alias: &str,
        now_ms: i64,
    ) -> Result<AliasChange, RegistryError> {
        let _one_writer = self.write_lock();
        self.current(name)?;
        let routing = self.routing_of(name);
        let subject = format!("{name}:{alias}");
        let Some(before) = routing.aliases.get(alias).cloned() else {
            return Err(RegistryError::TargetNotFound {
                target: subject,
                hint: format!("faas describe {name} lists the aliases"),
            });
        };
        if before.previous.is_empty() {
            return Err(RegistryError::Conflict {
                subject,
                reason: "it has never changed: there is nothing to roll back to".into(),
            });
        }
        if let Some(gone) = before
            .previous
            .iter()
            .find(|t| !routing.versions.contains_key(&t.version))
        {
            return Err(RegistryError::Conflict {
                subject,
                reason: format!(
                    "it pointed at version {} before, which was deleted",
                    gone.version
                ),
            });
        }
        let targets = before.previous.clone();
        self.write_alias(routing, name, alias, targets, before.targets, now_ms, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_alias(
        &self,
        mut routing: Routing,
        name: &str,
        alias: &str,
        targets: Vec<Weighted>,
        previous: Vec<Weighted>,
        now_ms: i64,
        created: bool,
    ) -> Result<AliasChange, RegistryError> {
        let left = previous
            .iter()
            .filter(|p| {
                p.weight > 0
                    && !targets
                        .iter()
                        .any(|t| t.version == p.version && t.weight > 0)
            })
            .map(|p| p.version)
            .collect();
        let record = Alias {
            function: name.to_string(),
            name: alias.to_string(),
            targets,
            previous,
            updated_at_ms: now_ms,
        };
        if let Some(dao) = &self.dao {
            dao.put_alias(&record).map_err(not_saved(name, "changed"))?;
        }
        routing.aliases.insert(alias.to_string(), record.clone());
        self.routing.put(name, routing);
        Ok(AliasChange {
            alias: record,
            created,
            left,
        })
    }

    /// Deletes alias `alias` of `name`; refused while a route names it.
    pub fn delete_alias(&self, name: &str, alias: &str) -> Result<Alias, RegistryError> {
        let _one_writer = self.write_lock();
        self.current(name)?;
        let mut routing = self.routing_of(name);
        let subject = format!("{name}:{alias}");
        if !routing.aliases.contains_key(alias) {
            return Err(RegistryError::TargetNotFound {
                target: subject,
                hint: format!("faas describe {name} lists the aliases"),
            });
        }
        let users = self
            .routing
            .named_by(|t| t.function == name && t.qualifier == Qualifier::Alias(alias.to_string()));
        in_use(subject, users)?;
        if let Some(dao) = &self.dao {
            dao.delete_alias(name, alias)
                .map_err(not_saved(name, "changed"))?;
        }
        let gone = routing.aliases.remove(alias).expect("checked above");
        self.routing.put(name, routing);
        Ok(gone)
    }

    /// Replaces `name`'s route policy; `None` (or an empty one) removes it.
    pub fn set_policy(&self, name: &str, policy: Option<RoutePolicy>) -> Result<(), RegistryError> {
        let _one_writer = self.write_lock();
        self.current(name)?;
        let compiled = match policy.filter(|p| !p.is_empty()) {
            None => None,
            Some(policy) => Some(compile_policy(
                name,
                policy,
                |t| self.routing.target_exists(&self.table, t),
                |f| self.routing.fallback_function(f),
            )?),
        };
        if let Some(dao) = &self.dao {
            dao.put_policy(name, compiled.as_ref().map(|c| &c.policy))
                .map_err(not_saved(name, "changed"))?;
        }
        let mut routing = self.routing_of(name);
        routing.policy = compiled.map(Arc::new);
        self.routing.put(name, routing);
        Ok(())
    }

    /// `name`'s route policy, if it has one.
    pub fn policy(&self, name: &str) -> Option<RoutePolicy> {
        let routing = self.routing.get(name)?;
        Some(routing.policy.as_ref()?.policy.clone())
    }

    /// The versions that should be held warm at `now_ms`, with how long still: those an alias
    /// moved away from less than `grace_ms` ago that nothing else sends traffic to. Derived
    /// from what the database keeps (an alias's previous targets and when it changed), so
    /// the API server can tell a restarted scheduler again, and holds survive its own restart.
    pub fn warm_holds(&self, now_ms: i64, grace_ms: i64) -> Vec<(String, i64)> {
        let mut holds: BTreeMap<String, i64> = BTreeMap::new();
        for (function, routing) in self.routing.all() {
            for alias in routing.aliases.values() {
                let left = alias
                    .updated_at_ms
                    .saturating_add(grace_ms)
                    .saturating_sub(now_ms);
                if left <= 0 {
                    continue;
                }
                let moved_from: Vec<i64> = alias
                    .previous
                    .iter()
                    .filter(|p| p.weight > 0)
                    .map(|p| p.version)
                    .collect();
                for v in self.unreferenced_versions(&function, &moved_from) {
                    let hold = holds.entry(version_name(&function, v)).or_default();
                    *hold = (*hold).max(left);
                }
            }
        }
        holds.into_iter().collect()
    }

    /// The versions of `name` no alias or route sends traffic to.
    pub fn unreferenced_versions(&self, name: &str, among: &[i64]) -> Vec<i64> {
        let routing = self.routing.get(name).unwrap_or_default();
        among
            .iter()
            .copied()
            .filter(|n| {
                let by_alias = routing
                    .aliases
                    .values()
                    .any(|a| a.targets.iter().any(|t| t.version == *n && t.weight > 0));
                let by_route = !self
                    .routing
                    .named_by(|t| t.function == name && t.qualifier == Qualifier::Version(*n))
                    .is_empty();
                !by_alias && !by_route
            })
            .collect()
    }
}
