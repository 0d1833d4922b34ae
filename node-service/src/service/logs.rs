//! A function's output lines on this node (`NodeAdmin.FunctionLogs`): the node keeps none
//! itself, each container's service keeps its own ring, so the node asks every container of
//! the function for it, through the [`LogReader`] port, and answers one [`ContainerLogs`]
//! per container.
//!
//! - **Which containers**: those of the function by its exact name, and those of its
//!   published versions, `NAME:N` (the name, a `:`, anything). The node does not parse
//!   versions any further: `NAME:N` is just a function name with a prefix.
//! - **All at once, each briefly**: the containers are asked concurrently, each within
//!   [`READ_TIMEOUT`] (short of the API server's 2 s per node, so one silent container costs
//!   its own lines, not the whole node's answer). A container that does not answer, or
//!   refuses, is still in the answer, with an `error` saying why instead of lines.
//! - **Dead containers**: a container the node already knows dead is listed (it still waits
//!   for `RemoveContainer`) with the reason it died, but no lines: its ring lived in its own
//!   process. The node's copy of a container's stderr ([`crate::api::stderr`]) keeps only
//!   the reason it exited, and function output never reaches it anyway.
//! - **None at all** is an empty list, not NOT_FOUND: the API server asks every node, and
//!   most hold no container of the function.

use std::time::Duration;

use faas_proto::limits;

use super::{LogReader, Node, NodeError};
use crate::model::{Container, ContainerState};

/// How long each container is given to answer with its lines.
pub const READ_TIMEOUT: Duration = Duration::from_millis(1500);

/// Which lines to read from each container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only lines read at or after this wall-clock time, ms since the Unix epoch (0: any age).
    pub since_ms: i64,
    /// At most this many lines per container, the newest (0: all kept).
    pub limit: u32,
}

/// One output line, as the container service numbered and timed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogLine {
    pub seq: u64,
    pub at_ms: i64,
    /// "stdout" or "stderr".
    pub stream: String,
    /// The call that wrote it, "" when unknown.
    pub request_id: String,
    pub text: String,
}

/// What one container answered: its lines, oldest first, and how many its ring dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub dropped: u64,
}

/// One container's part of the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerLogs {
    pub container_id: String,
    /// The function it serves (`NAME` or `NAME:N`).
    pub function_name: String,
    pub dead: bool,
    pub page: LogPage,
    /// Why its lines could not be read (`None` when they were).
    pub error: Option<String>,
}

/// Whether a container of `serves` belongs to `function`: the function itself or one of its
/// versions (`function:…`).
pub fn belongs_to(serves: &str, function: &str) -> bool {
    serves
        .strip_prefix(function)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

impl Node {
    /// The output lines of every container of `function` on this node (see the module
    /// docs), in the order the containers were created, read through `reader`.
    pub async fn function_logs(
        &self,
        reader: &dyn LogReader,
        function: &str,
        query: LogQuery,
    ) -> Result<Vec<ContainerLogs>, NodeError> {
        if function.trim().is_empty() {
            return Err(NodeError::InvalidArgument(
                "function_name must not be empty: name the function whose lines to read".into(),
            ));
        }
        limits::check_name("function_name", function)?;
        if query.since_ms < 0 {
            return Err(NodeError::InvalidArgument(format!(
                "since_ms is {}: it must be a time in ms since the Unix epoch, or 0 for lines \
                 of any age",
                query.since_ms
            )));
        }
        let mut containers: Vec<_> = self
            .containers
            .all()
            .into_iter()
            .filter(|c| belongs_to(&c.spec.function_name, function))
            .collect();
        containers.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        let reads = containers.iter().map(|c| read_one(reader, c, query));
        Ok(futures::future::join_all(reads).await)
    }
}

/// One container's lines, or why there are none.
async fn read_one(reader: &dyn LogReader, container: &Container, query: LogQuery) -> ContainerLogs {
    let (dead, result) = match &container.state {
        ContainerState::Dead { reason } => (
            true,
            Err(format!(
                "the container has exited ({reason}); its lines went with it"
            )),
        ),
        ContainerState::Running => (
            false,
            reader
                .read(container, query, READ_TIMEOUT)
                .await
                .map_err(|e| format!("cannot read its lines: {e}")),
        ),
    };
    let (page, error) = match result {
        Ok(page) => (page, None),
        Err(error) => (LogPage::default(), Some(error)),
    };
    ContainerLogs {
        container_id: container.id.clone(),
        function_name: container.spec.function_name.clone(),
        dead,
        page,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::belongs_to;

    #[test]
    fn a_function_has_its_own_containers_and_its_versions() {
        assert!(belongs_to("shop", "shop"));
        assert!(belongs_to("shop:2", "shop"));
        assert!(belongs_to("shop:12", "shop"));
        assert!(!belongs_to("shopping", "shop"));
        assert!(!belongs_to("sho", "shop"));
        assert!(!belongs_to("shop", "shop:2"));
        assert!(belongs_to("shop:2", "shop:2"));
    }
}
