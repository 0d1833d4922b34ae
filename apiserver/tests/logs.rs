//! `faas.admin.v1.Admin/FunctionLogs` through the real API server: the fake scheduler lists
//! fake nodes (`NodeAdmin` servers in this file), every node is asked at once, the lines come
//! back merged oldest first and cut to the newest `limit`; a node that is down or does not
//! answer, and a container whose lines could not be read, are named in `unreadable` while
//! the others' lines are answered; bad requests and an unreachable scheduler get a status
//! that says what to do.

#![allow(dead_code)]

include!("support/fakes.rs");

use faas_proto::node_admin::node_admin_server::{NodeAdmin, NodeAdminServer};
use faas_proto::node_admin::{self as node_admin, ContainerLogs, LogLine};

/// A node's `NodeAdmin`: answers its containers' lines (or never answers), recording what
/// it was asked.
struct FakeNodeAdmin {
    node_id: String,
    containers: Vec<ContainerLogs>,
    hang: bool,
    asked: Arc<Mutex<Vec<node_admin::FunctionLogsRequest>>>,
}

#[tonic::async_trait]
impl NodeAdmin for FakeNodeAdmin {
    async fn describe_node(
        &self,
        _: Request<node_admin::DescribeNodeRequest>,
    ) -> Result<Response<node_admin::DescribeNodeReply>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn function_logs(
        &self,
        request: Request<node_admin::FunctionLogsRequest>,
    ) -> Result<Response<node_admin::FunctionLogsReply>, Status> {
        self.asked.lock().unwrap().push(request.into_inner());
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(node_admin::FunctionLogsReply {
            node_id: self.node_id.clone(),
            containers: self.containers.clone(),
        }))
    }
}

type Asked = Arc<Mutex<Vec<node_admin::FunctionLogsRequest>>>;

/// Serves a fake node on 127.0.0.1:0 until the test ends; how the scheduler lists it.
async fn node(node_id: &str, containers: Vec<ContainerLogs>, hang: bool) -> (NodeEntry, Asked) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let asked = Asked::default();
    let server = NodeAdminServer::new(FakeNodeAdmin {
        node_id: node_id.into(),
        containers,
        hang,
        asked: asked.clone(),
    });
    faas_testkit::serve_on(
        listener,
        tonic::transport::Server::builder().add_service(server),
        std::future::pending(),
    );
    let entry = NodeEntry {
        node_id: node_id.into(),
        address,
    };
    (entry, asked)
}

/// A listed node nothing listens on.
async fn down(node_id: &str) -> NodeEntry {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    NodeEntry {
        node_id: node_id.into(),
        address,
    }
}

/// A container of `function` with lines `(seq, at_ms)`, its text `CONTAINER#SEQ`.
fn container(id: &str, function: &str, lines: &[(u64, i64)]) -> ContainerLogs {
    ContainerLogs {
        container_id: id.into(),
        function_name: function.into(),
        state: "running".into(),
        lines: lines
            .iter()
            .map(|&(seq, at_ms)| LogLine {
                seq,
                at_ms,
                stream: "stderr".into(),
                request_id: format!("req-{seq}"),
                text: format!("{id}#{seq}"),
            })
            .collect(),
        dropped: 2,
        error: String::new(),
    }
}

fn logs(name: &str, since_ms: i64, limit: u32) -> admin::FunctionLogsRequest {
    admin::FunctionLogsRequest {
        name: name.into(),
        since_ms,
        limit,
    }
}

async fn start_listing(nodes: Vec<NodeEntry>) -> Platform {
    start(Setup {
        listed_nodes: nodes,
        ..Setup::default()
    })
    .await
}

/// The answer to `request`, which must succeed.
async fn read(p: &mut Platform, request: admin::FunctionLogsRequest) -> admin::FunctionLogsReply {
    p.admin.function_logs(request).await.unwrap().into_inner()
}

fn texts(reply: &admin::FunctionLogsReply) -> Vec<&str> {
    reply.lines.iter().map(|l| l.text.as_str()).collect()
}

#[tokio::test]
async fn every_nodes_lines_are_merged_oldest_first_and_the_newest_kept() {
    let (n1, asked1) = node(
        "n1",
        vec![
            container("c1", "hello", &[(1, 100), (2, 300)]),
            container("c9", "hello:1", &[(4, 200)]),
        ],
        false,
    )
    .await;
    // Another function whose name starts the same is left out.
    let n2_containers = vec![
        container("c2", "hello", &[(1, 100)]),
        container("c5", "helloworld", &[(1, 150)]),
    ];
    let (n2, asked2) = node("n2", n2_containers, false).await;
    let mut p = start_listing(vec![n1, n2]).await;

    let reply = read(&mut p, logs("hello", 0, 0)).await;
    assert_eq!(texts(&reply), ["c1#1", "c2#1", "c9#4", "c1#2"]);
    let first = &reply.lines[0];
    assert_eq!(
        (
            first.node_id.as_str(),
            first.function_name.as_str(),
            first.stream.as_str(),
            first.request_id.as_str(),
            first.seq,
            first.at_ms
        ),
        ("n1", "hello", "stderr", "req-1", 1, 100)
    );
    assert_eq!(reply.lines[2].function_name, "hello:1");
    assert!(reply.unreadable.is_empty(), "{:?}", reply.unreadable);
    assert_eq!(reply.dropped, 6);
    // Each node was asked once, for the function (its versions come with it) and the cap.
    for asked in [&asked1, &asked2] {
        let asked = asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 1);
        assert_eq!(
            (
                asked[0].function_name.as_str(),
                asked[0].since_ms,
                asked[0].limit
            ),
            ("hello", 0, 10_000)
        );
    }

    // The newest two; from a time on; one version only.
    let newest = p.admin.function_logs(logs("hello", 0, 2)).await.unwrap();
    assert_eq!(texts(newest.get_ref()), ["c9#4", "c1#2"]);
    let since = p.admin.function_logs(logs("hello", 200, 0)).await.unwrap();
    assert_eq!(texts(since.get_ref()), ["c9#4", "c1#2"]);
    assert_eq!(asked2.lock().unwrap().last().unwrap().since_ms, 200);
    p.admin
        .publish_version(admin::PublishVersionRequest {
            name: "hello".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let version = p.admin.function_logs(logs("hello:1", 0, 0)).await.unwrap();
    assert_eq!(texts(version.get_ref()), ["c9#4"]);
    assert_eq!(version.get_ref().dropped, 2);
    // A limit over the cap is clamped to it, not refused.
    p.admin
        .function_logs(logs("hello", 0, u32::MAX))
        .await
        .unwrap();
    assert_eq!(asked1.lock().unwrap().last().unwrap().limit, 10_000);
}

#[tokio::test]
async fn nodes_that_fail_are_unreadable_and_the_others_still_answer() {
    let mut broken = container("c3", "hello", &[(1, 50)]);
    broken.error = "connection refused".into();
    let (good, _) = node(
        "n1",
        vec![container("c1", "hello", &[(1, 100)]), broken],
        false,
    )
    .await;
    let (hung, _) = node("n2", Vec::new(), true).await;
    let gone = down("n3").await;
    let mut p = start_listing(vec![good.clone(), hung.clone(), gone.clone()]).await;

    let started = faas_common::clock::instant();
    let reply = read(&mut p, logs("hello", 0, 0)).await;
    assert_eq!(texts(&reply), ["c3#1", "c1#1"]);
    let mut unreadable = reply.unreadable.clone();
    unreadable.sort();
    assert_eq!(unreadable.len(), 3, "{unreadable:?}");
    assert_eq!(
        unreadable[0],
        format!(
            "node n1 ({}): container c3 (hello): connection refused",
            good.address
        )
    );
    assert_eq!(
        unreadable[1],
        format!(
            "node n2 ({}): deadline exceeded (no answer within 2000 ms)",
            hung.address
        )
    );
    assert!(
        unreadable[2].starts_with(&format!("node n3 ({}): cannot connect", gone.address)),
        "{}",
        unreadable[2]
    );
    // The nodes were asked at once: the hung one's timeout was waited for once.
    assert!(started.elapsed() < Duration::from_secs(4), "{started:?}");
}

#[tokio::test]
async fn bad_requests_are_refused_saying_what_to_give() {
    let mut p = start_listing(Vec::new()).await;
    let refused = [
        (logs("", 0, 0), Code::InvalidArgument, "name is empty"),
        (
            logs("nope", 0, 0),
            Code::NotFound,
            "function nope not found",
        ),
        (logs("hello:7", 0, 0), Code::NotFound, "hello:7 not found"),
        (
            logs("hello:live", 0, 0),
            Code::InvalidArgument,
            "not by an alias",
        ),
        (logs("hello", -1, 0), Code::InvalidArgument, "since_ms"),
        (
            logs(&"x".repeat(100_000), 0, 0),
            Code::NotFound,
            "not found",
        ),
    ];
    for (request, code, says) in refused {
        let name = faas_common::text::clip(&request.name).into_owned();
        let s = p.admin.function_logs(request).await.unwrap_err();
        assert_eq!(s.code(), code, "{name}: {s:?}");
        assert!(s.message().contains(says), "{name}: {}", s.message());
        assert!(s.message().len() < 300, "{}", s.message());
    }
    // No node held: no lines, nothing unreadable.
    let reply = p.admin.function_logs(logs("hello", 0, 0)).await.unwrap();
    assert_eq!(reply.into_inner(), admin::FunctionLogsReply::default());
}

#[tokio::test]
async fn an_unreachable_scheduler_is_unavailable_and_says_so() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = Config {
        port: 0,
        scheduler: down("scheduler").await.address,
        ..Config::default()
    };
    let (trigger, shutdown) = shutdown::channel();
    let server = tokio::spawn(faas_apiserver::run(listener, config, shutdown));
    let channel = faas_common::serve::connect(&addr).await.unwrap();
    let s = AdminClient::new(channel)
        .function_logs(logs("hello", 0, 0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(
        s.message()
            .starts_with("the scheduler cannot be reached to list its nodes (cannot connect"),
        "{}",
        s.message()
    );
    trigger.trigger();
    server.await.unwrap().unwrap();
}
