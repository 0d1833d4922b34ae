//! Why the policy decided what it decided: a short sentence per decision, for people.
//!
//! Every [`State`](super::State) carries a [`Reasons`] sink. While nobody listens (the
//! default) it costs one branch per decision: the sentences are closures that are never
//! called. When the driver turns listening on ([`Reasons::listen`]), each decision the state
//! pushes is noted with its index in the `out` vector of [`Policy::handle`](super::Policy),
//! and the driver takes the notes after the call ([`Reasons::take`]).
//!
//! The state knows *what* it does (create on a node, grant a container, remove one), the
//! policy knows *why* (idle past its keep-alive, evicted for room). A policy says why just
//! before it asks the state for the decision, with [`Reasons::because`]; the state's own
//! default sentence is used when the policy said nothing. A `because` only applies to the
//! next decision of its [`ReasonKind`], and is dropped at the end of the call.

/// Which decision a policy's [`Reasons::because`] explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasonKind {
    /// A container removal.
    Remove,
    /// A container create.
    Create,
    /// A node reserve.
    Reserve,
    /// A node release.
    Release,
}

/// A sentence about one decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The decision's index in the `out` vector of the call that made it.
    pub at: usize,
    /// The sentence ("created on node-3: no idle container of f, 1.2 GiB free").
    pub text: String,
}

/// The sink of decision reasons (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct Reasons {
    listening: bool,
    pending: Option<(ReasonKind, String)>,
    notes: Vec<Note>,
}

impl Reasons {
    /// Starts (`true`) or stops noting reasons.
    pub fn listen(&mut self, on: bool) {
        self.listening = on;
        if !on {
            self.pending = None;
            self.notes.clear();
        }
    }

    /// Whether reasons are noted.
    #[inline]
    pub fn listening(&self) -> bool {
        self.listening
    }

    /// The policy's reason for its next decision of `kind` (built only while listening).
    #[inline]
    pub fn because(&mut self, kind: ReasonKind, text: impl FnOnce() -> String) {
        if self.listening {
            self.pending = Some((kind, text()));
        }
    }

    /// Notes the reason of the decision at `at`: the policy's `because` of this kind if it
    /// gave one, else `default` (built only while listening).
    #[inline]
    pub fn explain(
        &mut self,
        kind: Option<ReasonKind>,
        at: usize,
        default: impl FnOnce() -> String,
    ) {
        if !self.listening {
            return;
        }
        let text = match self.pending.take() {
            Some((k, text)) if Some(k) == kind => text,
            other => {
                self.pending = other;
                default()
            }
        };
        self.notes.push(Note { at, text });
    }

    /// The notes of the latest call, in decision order; forgets an unused `because`.
    pub fn take(&mut self) -> Vec<Note> {
        self.pending = None;
        std::mem::take(&mut self.notes)
    }
}

/// Bytes as people read them: "512 MiB", "1.2 GiB".
pub fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        format!("{} MiB", n / MIB)
    }
}

/// Milliseconds as people read them: "850 ms", "612 s".
pub fn duration(ms: u64) -> String {
    if ms >= 10_000 {
        format!("{} s", ms / 1000)
    } else if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_while_nobody_listens() {
        let mut r = Reasons::default();
        r.because(ReasonKind::Remove, || {
            unreachable!("built while nobody listens")
        });
        r.explain(Some(ReasonKind::Remove), 0, || unreachable!("built"));
        assert!(r.take().is_empty());
    }

    #[test]
    fn a_because_explains_the_next_decision_of_its_kind_only() {
        let mut r = Reasons::default();
        r.listen(true);
        r.because(ReasonKind::Remove, || {
            "idle 612 s > keep-alive 600 s".into()
        });
        r.explain(None, 0, || "granted".into());
        r.explain(Some(ReasonKind::Remove), 1, || "removed".into());
        r.explain(Some(ReasonKind::Remove), 2, || "removed".into());
        let texts: Vec<_> = r.take().into_iter().map(|n| (n.at, n.text)).collect();
        assert_eq!(
            texts,
            vec![
                (0, "granted".to_string()),
                (1, "idle 612 s > keep-alive 600 s".to_string()),
                (2, "removed".to_string())
            ]
        );
        r.because(ReasonKind::Create, || "unused".into());
        assert!(r.take().is_empty());
        r.explain(Some(ReasonKind::Create), 0, || "default".into());
        assert_eq!(r.take()[0].text, "default");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(1288 << 20), "1.3 GiB");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(1500), "1.5 s");
        assert_eq!(duration(612_000), "612 s");
    }
}
