//! Per-account limits on `InvokeFunction`: how many calls an account may have in flight, and
//! how fast it may start new ones.
//!
//! Each account (the contest's `account_id`) has a **concurrency limit** (calls in flight at
//! once) and a **rate limit**, a token bucket: it holds at most `burst` tokens, refills at
//! `rate` tokens a second, and each call takes one. `0` means unlimited. Every account gets
//! the default [`Rule`] unless it has one of its own (`--account-limits FILE`).
//!
//! A call over a limit is refused at once ([`LimitError`]) — never queued — so one account's
//! burst costs the others nothing: each account has its own state (an in-flight counter and
//! a bucket), found in one of [`SHARDS`] independently locked maps, so two accounts almost
//! never wait for the same lock, and the lock is held only for the lookup. An admitted call
//! holds a [`Permit`] until it finishes; dropping it frees the slot.
//!
//! Time is an argument (nanoseconds of a monotonic clock), so the rules are tested without
//! waiting. Idle accounts are forgotten when a shard grows large: an account with no call in
//! flight and a full bucket is exactly what a new one would be.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many independently locked maps the accounts are spread over.
pub const SHARDS: usize = 32;
/// A shard with this many accounts forgets its idle ones.
const SWEEP_AT: usize = 4096;

/// One account's limits; `0` is unlimited (the default: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Calls in flight at once.
    #[serde(default)]
    pub concurrency: u32,
    /// New calls a second (the bucket's refill rate).
    #[serde(default)]
    pub rate: u32,
    /// The bucket's size: calls that may start at once after a quiet spell (`0`: one
    /// second's worth, `rate`).
    #[serde(default)]
    pub burst: u32,
}

impl Rule {
    fn unlimited(&self) -> bool {
        self.concurrency == 0 && self.rate == 0
    }

    fn burst(&self) -> f64 {
        f64::from(if self.burst == 0 {
            self.rate
        } else {
            self.burst
        })
    }
}

/// Why a call is refused. `own` says the account has a rule of its own (raise it in the
/// limits file rather than with the default's flag).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "account {account} is at its concurrency limit of {limit} calls; retry later or raise {}",
        raise(*own, "--account-concurrency")
    )]
    Concurrency {
        account: String,
        limit: u32,
        own: bool,
    },
    #[error(
        "account {account} is over its rate limit of {rate} calls/s (burst {burst}); retry in {retry_ms} ms or raise {}",
        raise(*own, "--account-rate")
    )]
    Rate {
        account: String,
        rate: u32,
        burst: u32,
        retry_ms: u64,
        own: bool,
    },
}

fn raise(own: bool, flag: &'static str) -> &'static str {
    if own {
        "its entry in --account-limits"
    } else {
        flag
    }
}

/// One account's state.
#[derive(Debug)]
struct Account {
    rule: Rule,
    own: bool,
    in_flight: AtomicU32,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at_ns: u64,
}

impl Bucket {
    fn refill(&mut self, rule: &Rule, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.at_ns) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * f64::from(rule.rate)).min(rule.burst());
        self.at_ns = self.at_ns.max(now_ns);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Account {
    fn idle(&self, now_ns: u64) -> bool {
        if self.in_flight.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let mut bucket = lock(&self.bucket);
        bucket.refill(&self.rule, now_ns);
        self.rule.rate == 0 || bucket.tokens >= self.rule.burst()
    }
}

#[derive(Debug, Default)]
struct Shard {
    accounts: HashMap<String, Arc<Account>>,
    sweep_at: usize,
}

/// An admitted call's slot; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the call's slot is freed when the permit is dropped"]
pub struct Permit(Option<Arc<Account>>);

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(account) = self.0.take() {
            account.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Every account's limits and state.
#[derive(Debug)]
pub struct Limits {
    default: Rule,
    own: HashMap<String, Rule>,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl Limits {
    /// `default` for every account, `own` for the accounts named.
    pub fn new(default: Rule, own: HashMap<String, Rule>) -> Limits {
        Limits {
            default,
            own,
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// No limits at all.
    pub fn unlimited() -> Limits {
        Limits::new(Rule::default(), HashMap::new())
    }

    /// Admits a call of `account` at `now_ns`, or says which limit it is over.
    pub fn admit(&self, account: &str, now_ns: u64) -> Result<Permit, LimitError> {
        if self.own.is_empty() && self.default.unlimited() {
            return Ok(Permit(None));
        }
        let state = self.account(account, now_ns);
        let rule = state.rule;
        if rule.concurrency != 0 {
            let before = state.in_flight.fetch_add(1, Ordering::AcqRel);
            if before >= rule.concurrency {
                state.in_flight.fetch_sub(1, Ordering::AcqRel);
                return Err(LimitError::Concurrency {
                    account: faas_common::text::clip(account).to_string(),
                    limit: rule.concurrency,
                    own: state.own,
                });
            }
        } else {
            state.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        // From here the permit holds the slot: a refusal below frees it.
        let permit = Permit(Some(state.clone()));
        if rule.rate != 0 {
            let mut bucket = lock(&state.bucket);
            bucket.refill(&rule, now_ns);
            if bucket.tokens < 1.0 {
                let missing = 1.0 - bucket.tokens;
                let retry_ms = (missing / f64::from(rule.rate) * 1000.0).ceil() as u64;
                return Err(LimitError::Rate {
                    account: faas_common::text::clip(account).to_string(),
                    rate: rule.rate,
                    burst: rule.burst() as u32,
                    retry_ms: retry_ms.max(1),
                    own: state.own,
                });
            }
            bucket.tokens -= 1.0;
        }
        Ok(permit)
    }

    /// The account's state, made on first use.
    fn account(&self, account: &str, now_ns: u64) -> Arc<Account> {
        let shard = &self.shards[self.hasher.hash_one(account) as usize % self.shards.len()];
        let mut shard = lock(shard);
        if let Some(found) = shard.accounts.get(account) {
            return found.clone();
        }
        if shard.accounts.len() >= shard.sweep_at.max(SWEEP_AT) {
            shard.accounts.retain(|_, a| !a.idle(now_ns));
            shard.sweep_at = shard.accounts.len() * 2;
        }
        let (rule, own) = match self.own.get(account) {
            Some(rule) => (*rule, true),
            None => (self.default, false),
        };
        let state = Arc::new(Account {
            rule,
            own,
            in_flight: AtomicU32::new(0),
            bucket: Mutex::new(Bucket {
                tokens: rule.burst(),
                at_ns: now_ns,
            }),
        });
        shard.accounts.insert(account.to_string(), state.clone());
        state
    }

    /// How many accounts have state now.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| lock(s).accounts.len()).sum()
    }
}

/// The per-account rules of a limits file (TOML):
///
/// ```toml
/// [accounts.acct-1]
/// concurrency = 10   # calls in flight at once (0: unlimited)
/// rate = 50          # calls a second (0: unlimited)
/// burst = 100        # calls at once after a quiet spell (0: rate)
/// ```
///
/// A field left out is unlimited for that account.
pub fn parse_limits_toml(text: &str, origin: &str) -> Result<HashMap<String, Rule>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        accounts: HashMap<String, Rule>,
    }
    toml::from_str::<File>(text)
        .map(|f| f.accounts)
        .map_err(|e| format!("{origin}: {}", e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn rule(concurrency: u32, rate: u32, burst: u32) -> Rule {
        Rule {
            concurrency,
            rate,
            burst,
        }
    }

    #[test]
    fn the_concurrency_limit_frees_a_slot_when_a_call_ends() {
        let limits = Limits::new(rule(2, 0, 0), HashMap::new());
        let a = limits.admit("acct-1", 0).unwrap();
        let _b = limits.admit("acct-1", 0).unwrap();
        let err = limits.admit("acct-1", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "account acct-1 is at its concurrency limit of 2 calls; retry later or raise --account-concurrency"
        );
        // Another account is not affected.
        let _c = limits.admit("acct-2", 0).unwrap();
        drop(a);
        let _d = limits.admit("acct-1", 0).unwrap();
    }

    #[test]
    fn the_rate_limit_is_a_token_bucket() {
        let limits = Limits::new(rule(0, 10, 3), HashMap::new());
        for _ in 0..3 {
            drop(limits.admit("a", 0).unwrap());
        }
        let err = limits.admit("a", 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "account a is over its rate limit of 10 calls/s (burst 3); retry in 100 ms or raise --account-rate"
        );
        // A refused call holds no slot and takes no token: 100 ms later one token is back.
        drop(limits.admit("a", S / 10).unwrap());
        assert!(limits.admit("a", S / 10).is_err());
        // Never above the burst, however long the pause.
        for _ in 0..3 {
            drop(limits.admit("a", 100 * S).unwrap());
        }
        assert!(limits.admit("a", 100 * S).is_err());
        assert!(limits.admit("b", 100 * S).is_ok());
    }

    #[test]
    fn a_burst_of_one_account_leaves_the_others_alone() {
        let limits = Limits::new(rule(5, 100, 0), HashMap::new());
        let held: Vec<_> = (0..5).map(|_| limits.admit("noisy", 0).unwrap()).collect();
        let refused = (0..1000)
            .filter(|_| limits.admit("noisy", 0).is_err())
            .count();
        assert_eq!(refused, 1000);
        for i in 0..50 {
            drop(limits.admit(&format!("quiet-{i}"), 0).unwrap());
        }
        drop(held);
    }

    #[test]
    fn an_account_of_its_own_says_where_to_raise_it() {
        let own = HashMap::from([("vip".to_string(), rule(1, 0, 0))]);
        let limits = Limits::new(rule(0, 0, 0), own);
        let _p = limits.admit("vip", 0).unwrap();
        let err = limits.admit("vip", 0).unwrap_err().to_string();
        assert!(
            err.ends_with("raise its entry in --account-limits"),
            "{err}"
        );
        // Unlimited by default, and no state kept for anyone then.
        let _q: Vec<_> = (0..100)
            .map(|_| limits.admit("other", 0).unwrap())
            .collect();
        let unlimited = Limits::unlimited();
        drop(unlimited.admit("x", 0).unwrap());
        assert_eq!(unlimited.tracked(), 0);
    }

    #[test]
    fn idle_accounts_are_forgotten_when_a_shard_fills() {
        let limits = Limits::new(rule(10, 1000, 0), HashMap::new());
        let busy = limits.admit("busy", 0).unwrap();
        for i in 0..SHARDS * SWEEP_AT * 2 {
            drop(limits.admit(&format!("a{i}"), i as u64 * S).unwrap());
        }
        assert!(
            limits.tracked() < SHARDS * SWEEP_AT * 2,
            "{}",
            limits.tracked()
        );
        // The account with a call in flight kept its state.
        let shard = &limits.shards[limits.hasher.hash_one("busy") as usize % SHARDS];
        assert!(lock(shard).accounts.contains_key("busy"));
        drop(busy);
    }

    #[test]
    fn a_limits_file_parses() {
        let own = parse_limits_toml(
            "[accounts.acct-1]\nconcurrency = 10\nrate = 50\n[accounts.b]\nburst = 3\n",
            "limits.toml",
        )
        .unwrap();
        assert_eq!(own["acct-1"], rule(10, 50, 0));
        assert_eq!(own["b"], rule(0, 0, 3));
        let err = parse_limits_toml("[accounts.a]\nspeed = 1\n", "l.toml").unwrap_err();
        assert!(err.starts_with("l.toml: unknown field `speed`"), "{err}");
    }
}
