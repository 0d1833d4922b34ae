//! `faas describe`'s part about the durable queue: a function's asynchronous calls queued
//! or running, the age of the oldest, its dead letters and its retry settings.

use faas_proto::admin;
use serde::Serialize;

/// A function's asynchronous calls: the durable queue's figures and retry settings.
#[derive(Debug, Serialize)]
pub struct QueueJson {
    depth: u64,
    oldest_age_ms: u64,
    dead_letters: u64,
    max_attempts: u32,
    first_delay_ms: u64,
    max_delay_ms: u64,
}

impl QueueJson {
    pub fn of(q: admin::AsyncStatus) -> QueueJson {
        let r = q.retry.unwrap_or_default();
        QueueJson {
            depth: q.depth,
            oldest_age_ms: q.oldest_age_ms,
            dead_letters: q.dead_letters,
            max_attempts: r.max_attempts,
            first_delay_ms: r.first_delay_ms,
            max_delay_ms: r.max_delay_ms,
        }
    }

    pub fn render(&self) -> String {
        format!(
            "
asynchronous calls:
  queued or running {} | oldest {} ms | dead letters {}
  retries: {} attempts, backoff up to {} ms doubling to {} ms
",
            self.depth,
            self.oldest_age_ms,
            self.dead_letters,
            self.max_attempts,
            self.first_delay_ms,
            self.max_delay_ms
        )
    }
}
