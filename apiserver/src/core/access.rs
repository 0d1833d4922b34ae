//! Who may make a call: the key a call presents, checked against the server's keys and the
//! scope the call needs.
//!
//! A call presents a key as `authorization: Bearer KEY` (the API edge reads the metadata and
//! hands the value here). The rules, in order:
//!
//! 1. No key presented: the call runs if keyless calls may make it ([`Access::anonymous`]:
//!    nothing, invoke calls only — the contest mode, `--allow-anonymous-invoke` — or every
//!    call: `--allow-anonymous`, or a server without keys on a loopback address); otherwise
//!    [`AccessError::Missing`].
//! 2. A server without any key has nothing to check a key against: a presented key is
//!    ignored (a client that always sends the key `faas up` wrote keeps working against a
//!    test platform without one).
//! 3. A value that is not `Bearer KEY`: [`AccessError::Malformed`]; a key that is not one of
//!    the server's: [`AccessError::Unknown`]; a key whose scope does not cover the call:
//!    [`AccessError::Scope`], naming the key (never the key itself) and the scope needed.

use crate::model::keys::{KeyTable, Scope};

/// The keys a server accepts and what keyless calls may do.
#[derive(Clone, Debug, Default)]
pub struct Access {
    keys: KeyTable,
    /// What a call without a key may do: `None` nothing.
    anonymous: Option<Scope>,
}

/// What the operator allowed keyless calls to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeylessFlags {
    /// `--allow-anonymous`: everything.
    pub allow_anonymous: bool,
    /// `--allow-anonymous-invoke`: invoke and list.
    pub allow_anonymous_invoke: bool,
}

/// Who made an accepted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The name of the key it presented; `None` for a keyless call.
    pub key_name: Option<String>,
}

/// Why a call is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "this API server requires a key: pass --api-key or set FAAS_API_KEY; `faas up` wrote one to DATA_DIR/keys"
    )]
    Missing,
    #[error(
        "admin calls need an admin key (keyless calls may only invoke and list functions here, --allow-anonymous-invoke): pass --api-key or set FAAS_API_KEY; `faas up` wrote one to DATA_DIR/keys"
    )]
    MissingAdmin,
    #[error("the authorization metadata must be `Bearer KEY`")]
    Malformed,
    #[error(
        "the key presented is not one of this API server's keys: check --api-key / FAAS_API_KEY (`faas up` wrote its key to DATA_DIR/keys)"
    )]
    Unknown,
    #[error("key {key_name:?} has scope {has}; this call needs a key of scope {needed}")]
    Scope {
        key_name: String,
        has: Scope,
        needed: Scope,
    },
}

/// The key in an `authorization` value `Bearer KEY` (the scheme in any case).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

impl Access {
    /// Checks `keys`, letting keyless calls do what `anonymous` allows.
    pub fn new(keys: KeyTable, anonymous: Option<Scope>) -> Access {
        Access { keys, anonymous }
    }

    /// Every call allowed, no key needed or checked.
    pub fn open() -> Access {
        Access::new(KeyTable::default(), Some(Scope::Admin))
    }

    /// The access of a server with `keys` listening on a loopback address or not, as the
    /// operator asked (`--allow-anonymous`, `--allow-anonymous-invoke`):
    ///
    /// - with keys, keyless calls may do what the flags say (by default nothing);
    /// - without keys, a server on a loopback address, or told `--allow-anonymous`, is open
    ///   (what a test platform and every earlier version did); one told only
    ///   `--allow-anonymous-invoke` serves keyless invocations and no admin call; any other is
    ///   refused: it would serve strangers everything without being told to.
    pub fn decide(keys: KeyTable, flags: KeylessFlags, loopback: bool) -> Result<Access, String> {
        let anonymous = if flags.allow_anonymous || (keys.is_empty() && loopback) {
            Some(Scope::Admin)
        } else if flags.allow_anonymous_invoke {
            Some(Scope::Invoke)
        } else if keys.is_empty() {
            return Err(
                "this API server has no keys and listens on a public address: \
                 give --keys-file FILE, --api-key KEY (FAAS_API_KEY) or --data-dir DIR (which \
                 makes DIR/keys), or say --allow-anonymous-invoke (the contest mode) or \
                 --allow-anonymous (everything open)"
                    .to_string(),
            );
        } else {
            None
        };
        Ok(Access::new(keys, anonymous))
    }

    /// What keyless calls may do.
    pub fn anonymous(&self) -> Option<Scope> {
        self.anonymous
    }

    /// The keys.
    pub fn keys(&self) -> &KeyTable {
        &self.keys
    }

    /// Whether any call needs checking at all (not an open server).
    pub fn checks(&self) -> bool {
        !(self.keys.is_empty() && self.anonymous == Some(Scope::Admin))
    }

    /// Whether a call needing `needed`, with the `authorization` value `authorization`, may
    /// run (the rules in the module documentation).
    pub fn check(&self, authorization: Option<&str>, needed: Scope) -> Result<Caller, AccessError> {
        let anonymous_ok = self.anonymous.is_some_and(|s| s.allows(needed));
        let Some(value) = authorization.filter(|_| !self.keys.is_empty()) else {
            return match (anonymous_ok, self.anonymous) {
                (true, _) => Ok(Caller { key_name: None }),
                (false, Some(_)) => Err(AccessError::MissingAdmin),
                (false, None) => Err(AccessError::Missing),
            };
        };
        let key = bearer(value).ok_or(AccessError::Malformed)?;
        let entry = self.keys.find(key).ok_or(AccessError::Unknown)?;
        if !entry.scope.allows(needed) {
            return Err(AccessError::Scope {
                key_name: entry.name.clone(),
                has: entry.scope,
                needed,
            });
        }
        Ok(Caller {
            key_name: Some(entry.name.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::keys::KeyLine;

    const ADMIN: &str = "admin-key-0123456789abcdef";
    const INVOKE: &str = "invoke-key-0123456789abcdef";

    fn keys() -> KeyTable {
        let line = |scope, name: &str, key: &str| KeyLine {
            scope,
            name: name.into(),
            key: key.into(),
        };
        KeyTable::from_lines(
            &[
                line(Scope::Admin, "ops", ADMIN),
                line(Scope::Invoke, "shop", INVOKE),
            ],
            "test",
        )
        .unwrap()
    }

    fn named(name: &str) -> Result<Caller, AccessError> {
        Ok(Caller {
            key_name: Some(name.into()),
        })
    }

    #[test]
    fn keys_are_checked_and_scoped() {
        let access = Access::new(keys(), None);
        let admin = format!("Bearer {ADMIN}");
        let invoke = format!("bearer {INVOKE}");
        assert_eq!(access.check(Some(&admin), Scope::Admin), named("ops"));
        assert_eq!(access.check(Some(&admin), Scope::Invoke), named("ops"));
        assert_eq!(access.check(Some(&invoke), Scope::Invoke), named("shop"));
        let err = access.check(Some(&invoke), Scope::Admin).unwrap_err();
        assert_eq!(
            err.to_string(),
            "key \"shop\" has scope invoke; this call needs a key of scope admin"
        );
        assert_eq!(access.check(None, Scope::Invoke), Err(AccessError::Missing));
        assert_eq!(
            access.check(Some("Bearer not-a-key-of-this-server"), Scope::Invoke),
            Err(AccessError::Unknown)
        );
        for bad in [ADMIN, "Basic abc", "Bearer", "Bearer  "] {
            assert_eq!(
                access.check(Some(bad), Scope::Invoke),
                Err(AccessError::Malformed),
                "{bad}"
            );
        }
        assert!(access.checks());
    }

    #[test]
    fn the_contest_mode_lets_keyless_calls_invoke_only() {
        let access = Access::new(keys(), Some(Scope::Invoke));
        assert_eq!(
            access.check(None, Scope::Invoke),
            Ok(Caller { key_name: None })
        );
        assert_eq!(
            access.check(None, Scope::Admin),
            Err(AccessError::MissingAdmin)
        );
        // A key presented is still checked: a wrong one is worth saying so.
        assert_eq!(
            access.check(Some("Bearer wrong-key-0123456789"), Scope::Invoke),
            Err(AccessError::Unknown)
        );
    }

    #[test]
    fn the_default_is_keys_or_loopback() {
        let flags = |allow_anonymous, allow_anonymous_invoke| KeylessFlags {
            allow_anonymous,
            allow_anonymous_invoke,
        };
        let none = KeyTable::default;
        let anon = |keys, f, loopback| Access::decide(keys, f, loopback).unwrap().anonymous();
        // Keys: keyless calls get only what the flags say.
        assert_eq!(anon(keys(), flags(false, false), true), None);
        assert_eq!(anon(keys(), flags(false, true), false), Some(Scope::Invoke));
        assert_eq!(anon(keys(), flags(true, false), false), Some(Scope::Admin));
        // No keys: open on loopback, else only when told.
        assert_eq!(anon(none(), flags(false, false), true), Some(Scope::Admin));
        assert_eq!(anon(none(), flags(false, true), true), Some(Scope::Admin));
        assert_eq!(anon(none(), flags(true, false), false), Some(Scope::Admin));
        assert_eq!(anon(none(), flags(false, true), false), Some(Scope::Invoke));
        let err = Access::decide(none(), flags(false, false), false).unwrap_err();
        assert!(err.starts_with("this API server has no keys and listens on a public address"));
    }

    #[test]
    fn an_open_server_ignores_keys() {
        let access = Access::open();
        assert!(!access.checks());
        for auth in [None, Some("Bearer whatever-key-0123456"), Some("junk")] {
            assert_eq!(
                access.check(auth, Scope::Admin),
                Ok(Caller { key_name: None })
            );
        }
        // Keys and --allow-anonymous: keyless calls do anything, keys are still checked.
        let access = Access::new(keys(), Some(Scope::Admin));
        assert!(access.checks());
        assert_eq!(
            access.check(None, Scope::Admin),
            Ok(Caller { key_name: None })
        );
        assert_eq!(
            access.check(Some("Bearer x-0123456789abcdef"), Scope::Admin),
            Err(AccessError::Unknown)
        );
    }
}
