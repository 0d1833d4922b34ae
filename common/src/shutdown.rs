//! A shutdown signal that many tasks can wait on, and the OS signals that trigger it.

use tokio::sync::watch;

/// Sends the shutdown signal. Dropping every `Trigger` also counts as shutdown.
#[derive(Clone, Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the shutdown signal. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new linked trigger and signal.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Asks every holder of a linked [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    /// A new receiver linked to this trigger.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// A signal that never fires (for callers that stop by dropping the future instead).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Whether shutdown was already asked for.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is asked for (or every trigger is gone).
    pub async fn wait(mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn os_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_after_trigger_and_when_triggers_drop() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_triggered());
        let waiter = tokio::spawn(shutdown.clone().wait());
        trigger.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());

        let (trigger, shutdown) = channel();
        drop(trigger);
        shutdown.wait().await;
    }
}
