//! A function's lines on the node, against the fake runtime of the parent module and a fake
//! [`LogReader`]: which containers are asked, all at once and each within its time, and what
//! a dead, silent or refusing container turns into.

use std::collections::HashMap;

use super::*;
use crate::service::logs::{ContainerLogs, LogLine, LogPage, LogQuery, READ_TIMEOUT};

/// Answers each container with one line naming it, except those told otherwise; records
/// what it was asked.
#[derive(Default)]
struct FakeReader {
    asked: Mutex<Vec<(String, LogQuery, Duration)>>,
    refusing: HashMap<String, InvokeError>,
    /// Never answer (the node's timeout must end the read).
    silent: Vec<String>,
}

#[async_trait]
impl LogReader for FakeReader {
    async fn read(
        &self,
        c: &Container,
        query: LogQuery,
        timeout: Duration,
    ) -> Result<LogPage, InvokeError> {
        self.asked
            .lock()
            .unwrap()
            .push((c.id.clone(), query, timeout));
        if let Some(e) = self.refusing.get(&c.id) {
            return Err(e.clone());
        }
        if self.silent.contains(&c.id) {
            // What the gRPC reader does with a container that never answers.
            tokio::time::sleep(timeout).await;
            return Err(InvokeError::NoAnswer(timeout));
        }
        Ok(LogPage {
            lines: vec![LogLine {
                seq: 1,
                text: format!("from {}", c.id),
                ..LogLine::default()
            }],
            dropped: 3,
        })
    }
}

/// A container of `function` (hello), created on `node`; its id.
async fn of(node: &Node, function: &str) -> String {
    let spec = validate_spec(meta(function, "hello", 128, 0)).unwrap();
    node.create_container(spec).await.unwrap().container.id
}

fn ids(logs: &[ContainerLogs]) -> Vec<&str> {
    logs.iter().map(|c| c.container_id.as_str()).collect()
}

#[tokio::test]
async fn a_function_reads_its_own_and_its_versions_containers_in_creation_order() {
    let (node, _, _) = node(FakeInvoker::default());
    let own = of(&node, "shop").await;
    let _other = of(&node, "shopping").await;
    let version = of(&node, "shop:2").await;
    let reader = FakeReader::default();
    let query = LogQuery {
        since_ms: 5,
        limit: 7,
    };
    let logs = node.function_logs(&reader, "shop", query).await.unwrap();
    assert_eq!(ids(&logs), [own.as_str(), version.as_str()]);
    assert_eq!(logs[1].function_name, "shop:2");
    assert_eq!(logs[0].page.lines[0].text, format!("from {own}"));
    assert_eq!(
        (logs[0].page.dropped, logs[0].dead, &logs[0].error),
        (3, false, &None)
    );
    let asked = reader.asked.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .all(|(_, q, t)| *q == query && *t == READ_TIMEOUT),
        "{asked:?}"
    );

    let version_only = node.function_logs(&reader, "shop:2", query).await.unwrap();
    assert_eq!(ids(&version_only), [version.as_str()]);
    let none = node.function_logs(&reader, "cart", query).await.unwrap();
    assert!(none.is_empty(), "no container here is not an error");
}

#[tokio::test(start_paused = true)]
async fn a_silent_container_costs_its_own_lines_only_and_all_are_asked_at_once() {
    let (node, _, _) = node(FakeInvoker::default());
    let silent = of(&node, "f").await;
    let refusing = of(&node, "f").await;
    let fine = of(&node, "f").await;
    let reader = FakeReader {
        silent: vec![silent.clone()],
        refusing: HashMap::from([(
            refusing.clone(),
            InvokeError::Failed("Unimplemented: no Logs here".into()),
        )]),
        ..FakeReader::default()
    };
    let started = faas_common::clock::tokio_instant();
    let logs = node
        .function_logs(&reader, "f", LogQuery::default())
        .await
        .unwrap();
    assert_eq!(
        started.elapsed(),
        READ_TIMEOUT,
        "the reads ran together: one timeout, not one after another"
    );
    assert_eq!(
        ids(&logs),
        [silent.as_str(), refusing.as_str(), fine.as_str()]
    );
    assert_eq!(
        logs[0].error.as_deref(),
        Some("cannot read its lines: no answer within 1500 ms")
    );
    assert_eq!(
        logs[1].error.as_deref(),
        Some("cannot read its lines: Unimplemented: no Logs here")
    );
    assert!(
        logs[..2]
            .iter()
            .all(|c| c.page == LogPage::default() && !c.dead)
    );
    assert_eq!(logs[2].error, None);
}

#[tokio::test]
async fn a_dead_container_is_listed_with_why_it_has_no_lines_and_is_not_asked() {
    let (node, _, _) = node(FakeInvoker::default());
    let dead = of(&node, "f").await;
    node.containers()
        .mark_dead(&dead, "container c1 process exited");
    let reader = FakeReader::default();
    let logs = node
        .function_logs(&reader, "f", LogQuery::default())
        .await
        .unwrap();
    assert_eq!(ids(&logs), [dead.as_str()]);
    assert!(logs[0].dead);
    assert_eq!(
        logs[0].error.as_deref(),
        Some("the container has exited (container c1 process exited); its lines went with it")
    );
    assert!(reader.asked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_name_or_a_negative_since_is_an_invalid_argument() {
    let (node, _, _) = node(FakeInvoker::default());
    let reader = FakeReader::default();
    let negative = LogQuery {
        since_ms: -1,
        limit: 0,
    };
    for (function, query, says) in [
        ("", LogQuery::default(), "function_name must not be empty"),
        (" ", LogQuery::default(), "function_name must not be empty"),
        (
            &*"f".repeat(257),
            LogQuery::default(),
            "function_name is 257 bytes",
        ),
        ("f", negative, "since_ms is -1"),
    ] {
        let err = node
            .function_logs(&reader, function, query)
            .await
            .unwrap_err();
        assert!(
            matches!(err, NodeError::InvalidArgument(_) | NodeError::Limit(_)),
            "{err}"
        );
        assert!(err.to_string().contains(says), "{err} should say {says}");
    }
}
