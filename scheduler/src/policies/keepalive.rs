//! `keepalive-<N>m`: a fixed keep-alive window, the common industry default (10 minutes:
//! `keepalive-10m`), the reference a smarter policy should beat. The window is in the name:
//! `keepalive-1m`, `keepalive-60m`, `keepalive-90s`, `keepalive-2h` ([`parse_window`]);
//! sweeping it traces the fixed policy's cold-start / idle-memory curve that "Serverless in
//! the Wild" (Shahrad et al., ATC 2020, fig. 15) compares the hybrid policy against.
//!
//! - One request per container.
//! - An acquire takes an idle container of its function if there is one (warm), else a
//!   container is created first-fit and granted once created (cold); when no node has room the
//!   request waits for a reserve (exactly the baseline's placement: the default
//!   [`Hooks::on_miss`]).
//! - A container idle for the keep-alive window is removed ([`Hooks::on_idle`]);
//!   one of a held function (see [`crate::core::state::hold`]) only once the hold has ended
//!   too.
//! - A node left with no container (its last one removed, or it arrived when nobody waited for
//!   it any more) is released at once ([`Hooks::on_node_empty`]).

use super::hooks::{Ctx, Hooked, Hooks};
use crate::core::PolicyOptions;
use crate::model::Millis;
use crate::store::{ContainerKey, NodeKey};

/// The name the 10-minute policy is registered under.
pub const NAME: &str = "keepalive-10m";

/// The family's name prefix: `keepalive-` and a window ([`parse_window`]).
pub const PREFIX: &str = "keepalive-";

/// How the family is listed (`--policy` errors, help).
pub const PATTERN: &str = "keepalive-<N>m";

/// The keep-alive window of [`NAME`]: 10 minutes.
pub const KEEP_ALIVE_MS: Millis = 10 * 60 * 1000;

/// The keep-alive policy: remove a container idle for a fixed window, release empty nodes.
#[derive(Debug)]
pub struct KeepAlive {
    /// The window, ms. 0 removes a container as soon as it is idle.
    pub keep_alive_ms: Millis,
    /// The name it was built with (`keepalive-10m`, `keepalive-90s`, ...).
    pub name: String,
}

/// The window a family name's suffix gives, ms: `N` and a unit, `s`, `m` or `h`
/// (`10m`, `90s`, `2h`), N a whole number above 0. `None` for anything else (`0m`, `m`,
/// `10`, `10x`, `1.5m`).
pub fn parse_window(suffix: &str) -> Option<Millis> {
    let unit_ms: Millis = match suffix.as_bytes().last()? {
        b's' => 1000,
        b'm' => 60_000,
        b'h' => 3_600_000,
        _ => return None,
    };
    let digits = &suffix[..suffix.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: Millis = digits.parse().ok()?;
    n.checked_mul(unit_ms).filter(|&ms| ms > 0)
}

impl Hooks for KeepAlive {
    fn name(&self) -> &str {
        &self.name
    }

    fn on_idle(&mut self, ctx: &mut Ctx<'_>, container: ContainerKey) {
        ctx.remove_when_idle(container, self.keep_alive_ms);
    }

    fn on_node_empty(&mut self, ctx: &mut Ctx<'_>, node: NodeKey) {
        ctx.release_node(node);
    }
}

impl KeepAlive {
    /// The policy with the 10-minute window ([`KEEP_ALIVE_MS`]).
    pub fn policy(opts: PolicyOptions) -> Hooked<KeepAlive> {
        KeepAlive::with_keep_alive(opts, KEEP_ALIVE_MS)
    }

    /// The policy with another window (tests, experiments), named after it in whole
    /// minutes or seconds.
    pub fn with_keep_alive(opts: PolicyOptions, keep_alive_ms: Millis) -> Hooked<KeepAlive> {
        let name = if keep_alive_ms.is_multiple_of(60_000) {
            format!("{PREFIX}{}m", keep_alive_ms / 60_000)
        } else {
            format!("{PREFIX}{}s", keep_alive_ms.div_ceil(1000))
        };
        Hooked::new(
            opts,
            KeepAlive {
                keep_alive_ms,
                name,
            },
        )
    }

    /// The policy a family name asks for (`keepalive-5m`, `keepalive-90s`), named exactly
    /// so; `None` if `name` is not `keepalive-` and a valid window.
    pub fn named(opts: PolicyOptions, name: &str) -> Option<Hooked<KeepAlive>> {
        let keep_alive_ms = parse_window(name.strip_prefix(PREFIX)?)?;
        Some(Hooked::new(
            opts,
            KeepAlive {
                keep_alive_ms,
                name: name.to_string(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Acquire, Return};
    use crate::core::{Decision, Event, Policy};
    use crate::model::{FunctionSpec, MIB, NodeInfo};
    use crate::policies::testkit::{self, grant_of};

    const NODE: u64 = crate::model::CONTEST_NODE_BYTES;
    const KA: Millis = 60_000;

    fn spec(name: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            memory_bytes: 512 * MIB,
            timeout_ms: 60_000,
            handler: "sleep".into(),
        }
    }

    fn acquire(id: &str, function: &str, deadline: Millis) -> Event {
        Event::Acquire(Acquire {
            request_id: id.into(),
            account_id: "acct".into(),
            function: spec(function),
            deadline,
        })
    }

    fn ret(id: &str, container: &str) -> Event {
        Event::Return(Return {
            request_id: id.into(),
            container_id: container.into(),
            duration_ns: 1_000_000,
            max_memory_bytes: MIB,
            error: None,
        })
    }

    /// A keep-alive policy (window [`KA`]) driven in virtual time, step by step through the policies' testkit.
    type Sim = testkit::Sim<Hooked<KeepAlive>>;

    fn new_sim() -> Sim {
        Sim::new(KeepAlive::with_keep_alive(PolicyOptions::default(), KA))
    }

    #[test]
    fn registered_name_uses_ten_minutes() {
        let p = KeepAlive::policy(PolicyOptions::default());
        assert_eq!(p.hooks().keep_alive_ms, 600_000);
        assert_eq!(p.name(), "keepalive-10m");
    }

    #[test]
    fn windows_parse_in_seconds_minutes_and_hours() {
        assert_eq!(parse_window("1m"), Some(60_000));
        assert_eq!(parse_window("60m"), Some(3_600_000));
        assert_eq!(parse_window("90s"), Some(90_000));
        assert_eq!(parse_window("2h"), Some(7_200_000));
        for bad in [
            "",
            "m",
            "0m",
            "0x",
            "10",
            "10x",
            "1.5m",
            "-1m",
            "m10",
            "99999999999999999999m",
        ] {
            assert_eq!(parse_window(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_family_name_builds_its_window_and_keeps_its_name() {
        let p = KeepAlive::named(PolicyOptions::default(), "keepalive-5m").unwrap();
        assert_eq!(p.hooks().keep_alive_ms, 300_000);
        assert_eq!(p.name(), "keepalive-5m");
        let p = KeepAlive::named(PolicyOptions::default(), "keepalive-90s").unwrap();
        assert_eq!(
            (p.hooks().keep_alive_ms, p.name()),
            (90_000, "keepalive-90s")
        );
        assert!(KeepAlive::named(PolicyOptions::default(), "keepalive-m").is_none());
        assert!(KeepAlive::named(PolicyOptions::default(), "keepalive-0x").is_none());
        assert!(KeepAlive::named(PolicyOptions::default(), "keep-5m").is_none());
        let p = KeepAlive::with_keep_alive(PolicyOptions::default(), 30_000);
        assert_eq!(p.name(), "keepalive-30s");
    }

    #[test]
    fn an_idle_container_is_reused_within_the_window() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        let g1 = grant_of(&s.answer(out), "r1");
        assert!(g1.cold);
        s.now = 100;
        assert!(s.step(ret("r1", &g1.container_id)).is_empty());
        assert_eq!(s.p.next_wakeup(), Some(100 + KA));
        s.now = 100 + KA - 1;
        let out = s.step(acquire("r2", "f", s.now + 30_000));
        let g2 = grant_of(&out, "r2");
        assert!(!g2.cold);
        assert_eq!(g2.container_id, g1.container_id);
        // The old window's end comes: the container is busy, nothing is removed.
        assert!(s.tick_at(100 + KA).is_empty());
    }

    #[test]
    fn a_container_idle_for_the_window_is_removed_and_its_node_released() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        let g = grant_of(&s.answer(out), "r1");
        s.now = 500;
        s.step(ret("r1", &g.container_id));
        assert!(s.tick_at(500 + KA - 1).is_empty(), "window not over yet");
        let out = s.tick_at(500 + KA);
        let [Decision::RemoveContainer { node, container_id }] = out.as_slice() else {
            panic!("expected one removal, got {out:?}");
        };
        assert_eq!((&*node.id, container_id), ("n1", &g.container_id));
        assert_eq!(s.p.next_wakeup(), None);
        // A removing container is never granted: the next acquire creates a new one.
        let out = s.step(acquire("r2", "f", s.now + 30_000));
        let g2 = grant_of(&s.answer(out), "r2");
        assert!(g2.cold);
        assert_ne!(g2.container_id, g.container_id);
        // The node still holds r2's container: the removal does not release it.
        let out = s.step(Event::ContainerRemoved {
            container_id: g.container_id.clone(),
        });
        assert!(out.is_empty(), "{out:?}");
        // r2's container idles out too: now the node is empty and is released.
        s.step(ret("r2", &g2.container_id));
        let t = s.now + KA;
        let out = s.tick_at(t);
        assert!(matches!(out.as_slice(), [Decision::RemoveContainer { .. }]));
        let out = s.step(Event::ContainerRemoved {
            container_id: g2.container_id.clone(),
        });
        assert_eq!(
            out,
            vec![Decision::ReleaseNode {
                node_id: "n1".into()
            }]
        );
        s.step(Event::NodeReleased {
            node_id: "n1".into(),
        });
        assert_eq!(s.p.state().store.node_count(), 0);
        // The next acquire reserves a fresh node.
        let out = s.step(acquire("r3", "f", t + 30_000));
        assert!(matches!(out.as_slice(), [Decision::ReserveNode { .. }]));
    }

    #[test]
    fn only_the_idle_containers_expire() {
        let mut s = new_sim();
        let mut out = s.step(acquire("r1", "f", 30_000));
        out.extend(s.step(acquire("r2", "f", 30_000)));
        let out = s.answer(out);
        let (a, b) = (grant_of(&out, "r1"), grant_of(&out, "r2"));
        s.now = 10;
        s.step(ret("r1", &a.container_id));
        let out = s.tick_at(10 + KA);
        let [Decision::RemoveContainer { container_id, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(container_id, &a.container_id);
        assert!(
            s.p.state().store.container_by_id(&b.container_id).is_some(),
            "the busy container stays"
        );
    }

    #[test]
    fn a_node_nobody_waits_for_any_more_is_released_on_arrival() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 1_000));
        let [Decision::ReserveNode { op }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let op = *op;
        let out = s.tick_at(1_000);
        assert!(matches!(out.as_slice(), [Decision::Reject { .. }]));
        let out = s.step(Event::NodeReserved {
            op,
            node: NodeInfo {
                id: "late".into(),
                address: "127.0.0.1".into(),
                port: 1,
                capacity_bytes: NODE,
            },
        });
        assert_eq!(
            out,
            vec![Decision::ReleaseNode {
                node_id: "late".into()
            }]
        );
    }

    #[test]
    fn a_container_created_for_an_expired_request_idles_out() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 1_000));
        let [Decision::ReserveNode { op }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let out = s.step(Event::NodeReserved {
            op: *op,
            node: NodeInfo {
                id: "n1".into(),
                address: "a".into(),
                port: 1,
                capacity_bytes: NODE,
            },
        });
        let [Decision::CreateContainer { op, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        let op = *op;
        s.tick_at(1_000);
        s.now = 1_200;
        let out = s.step(Event::ContainerCreated {
            op,
            container_id: "c9".into(),
        });
        assert!(out.is_empty());
        assert_eq!(s.p.next_wakeup(), Some(1_200 + KA));
        let out = s.tick_at(1_200 + KA);
        assert!(matches!(out.as_slice(), [Decision::RemoveContainer { .. }]));
    }

    #[test]
    fn wakeup_is_the_earlier_of_deadline_and_window() {
        let mut s = new_sim();
        let out = s.step(acquire("r1", "f", 30_000));
        let g = grant_of(&s.answer(out), "r1");
        s.step(ret("r1", &g.container_id));
        assert_eq!(s.p.next_wakeup(), Some(KA));
        // A waiting request with an earlier deadline (its function needs a new container).
        s.step(acquire("w", "other", 5_000));
        assert_eq!(s.p.next_wakeup(), Some(5_000));
    }
}
