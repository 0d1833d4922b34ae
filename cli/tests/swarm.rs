//! The platform as a Docker Swarm stack (`deploy/stack.yml`), its nodes as Swarm services
//! made by the resource manager's `swarm` provider (issue 19), on a one-machine swarm.
//!
//! When the daemon is in no swarm, the test makes one on 127.0.0.1 and leaves it afterwards
//! as it found it (`docker swarm leave --force`, and the `docker_gwbridge` network removed if
//! it was not there before). A daemon already in a swarm is used only with
//! `FAAS_SWARM_USE_EXISTING=1` (else the test skips, saying why, even under
//! `FAAS_REQUIRE_DOCKER=1`: it will not deploy onto someone's cluster uninvited). Without a
//! daemon it skips loudly, or fails under `FAAS_REQUIRE_DOCKER=1`.
//!
//! It deploys the stack from this tree's images (tag `swarm-test`), invokes each default
//! function, sees each node's machine in `faas nodes`, reserves nodes until Swarm refuses one
//! (RESOURCE_EXHAUSTED naming the memory no machine has free), kills a node's task container
//! (the platform recovers, and a sweep job removes the killed node's function containers from
//! its machine), kills the
//! resource manager (Swarm restarts it and it takes its node services back), runs a short
//! contest replay against the stack, removes the stack and checks that no service,
//! container, network or secret of the platform is left (the volumes stay, as the README
//! says; the test then removes them).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use faas_cli::bench::{ReplayArgs, replay};
use faas_cli::client::Api;
use faas_common::token::{ClusterAuth, ClusterToken};
use faas_proto::admin::ListNodesRequest;
use faas_proto::resourcemanagerproto::resource_manager_client::ResourceManagerClient;
use faas_proto::resourcemanagerproto::{ReleaseNodeRequest, ReserveNodeRequest};
use support::docker::{build_images, docker_available, docker_cli, docker_required};
use tonic::Code;

const STACK: &str = "faas-swarm-test";
const TAG: &str = "swarm-test";
const NETWORK: &str = "minifaas-swarm";
const ACCOUNT: &str = "swarm-test";
const USE_EXISTING: &str = "FAAS_SWARM_USE_EXISTING";

/// What the test changed on the daemon, undone on drop (also when it fails half-way).
struct Scope {
    /// The test made the swarm: leave it.
    made_swarm: bool,
    /// `docker_gwbridge` was there before.
    had_gwbridge: bool,
    /// The swarm node the test labelled `minifaas.data=true`.
    labelled: Option<String>,
    secrets: PathBuf,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if !leftovers().is_empty() {
            let _ = remove_stack();
        }
        let left = containers(&format!("label=minifaas.instance={STACK}"));
        if !left.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(left.iter().map(String::as_str));
            let _ = docker_cli(&args);
        }
        for volume in ["apiserver-data", "resource-manager-state"] {
            let _ = docker_cli(&["volume", "rm", &format!("{STACK}_{volume}")]);
        }
        if let Some(node) = &self.labelled {
            let _ = docker_cli(&["node", "update", "--label-rm", "minifaas.data", node]);
        }
        if self.made_swarm {
            let _ = docker_cli(&["swarm", "leave", "--force"]);
            if !self.had_gwbridge {
                // Refused for a moment after leaving, while the daemon lets go of it.
                let removed = wait_until(Duration::from_secs(20), || {
                    docker_cli(&["network", "rm", "docker_gwbridge"]).is_ok()
                        || docker_cli(&["network", "inspect", "docker_gwbridge"]).is_err()
                });
                if !removed {
                    // Seen once here: Docker 20.10 kept a stale endpoint count on it.
                    eprintln!(
                        "\n!!!!! docker_gwbridge was not there before and cannot be removed: \
                         {:?} !!!!!\n",
                        docker_cli(&["network", "rm", "docker_gwbridge"])
                    );
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.secrets);
    }
}

fn containers(filter: &str) -> Vec<String> {
    docker_cli(&["ps", "-aq", "--filter", filter])
        .map(|o| o.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The names of the Swarm services labelled `label` (`key=value`).
fn services_labelled(label: &str) -> Vec<String> {
    docker_cli(&[
        "service",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("label={label}"),
    ])
    .map(|o| o.lines().map(str::to_string).collect())
    .unwrap_or_default()
}

/// What of the platform is still there: services, containers, the network, secrets.
fn leftovers() -> Vec<String> {
    let mut left = Vec::new();
    let services = services_labelled(&format!("com.docker.stack.namespace={STACK}"));
    left.extend(services.iter().map(|s| format!("service {s}")));
    let nodes = services_labelled(&format!("minifaas.instance={STACK}"));
    left.extend(nodes.iter().map(|s| format!("node service {s}")));
    left.extend(
        containers(&format!("label=minifaas.instance={STACK}"))
            .into_iter()
            .map(|c| format!("container {c}")),
    );
    left.extend(
        containers(&format!("label=com.docker.stack.namespace={STACK}"))
            .into_iter()
            .map(|c| format!("stack container {c}")),
    );
    if docker_cli(&["network", "inspect", NETWORK]).is_ok() {
        left.push(format!("network {NETWORK}"));
    }
    let secrets = docker_cli(&["secret", "ls", "--format", "{{.Name}}"]).unwrap_or_default();
    left.extend(
        secrets
            .lines()
            .filter(|s| s.starts_with(STACK))
            .map(|s| format!("secret {s}")),
    );
    left
}

/// `docker stack rm`, then waits up to 90 s until nothing of the platform is left; what the
/// first `stack rm` said and whether all is gone. Docker refuses to remove the network while
/// the last tasks stop: `docker stack rm` again removes it (the README says so).
fn remove_stack() -> (Result<String, String>, bool) {
    let said = docker_cli(&["stack", "rm", STACK]);
    let clean = wait_until(Duration::from_secs(90), || {
        let left = leftovers();
        if left.iter().any(|l| l.starts_with("network")) {
            let _ = docker_cli(&["stack", "rm", STACK]);
        }
        left.is_empty()
    });
    (said, clean)
}

/// Polls `ok` every 500 ms for at most `limit`; whether it became true.
fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let since = faas_common::clock::instant();
    while since.elapsed() < limit {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    ok()
}

/// Makes (or, when told, uses) a one-machine swarm; `None` to skip, saying why.
fn swarm_scope(secrets: PathBuf) -> Option<Scope> {
    let state = docker_cli(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
        .expect("docker info answers");
    let had_gwbridge = docker_cli(&["network", "inspect", "docker_gwbridge"]).is_ok();
    let made_swarm = match state.as_str() {
        "inactive" => {
            docker_cli(&["swarm", "init", "--advertise-addr", "127.0.0.1"])
                .expect("docker swarm init");
            true
        }
        "active" if std::env::var(USE_EXISTING).as_deref() == Ok("1") => false,
        other => {
            eprintln!(
                "\n!!!!! SKIPPED: the Docker daemon is already in a swarm ({other}); set \
                 {USE_EXISTING}=1 to deploy the test stack onto it !!!!!\n"
            );
            return None;
        }
    };
    let mut scope = Scope {
        made_swarm,
        had_gwbridge,
        labelled: None,
        secrets,
    };
    let node = docker_cli(&["info", "--format", "{{.Swarm.NodeID}}"]).expect("node id");
    docker_cli(&["node", "update", "--label-add", "minifaas.data=true", &node])
        .expect("label the data machine");
    scope.labelled = Some(node);
    Some(scope)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn write_secret(dir: &Path, name: &str, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(name))
        .expect("secret file");
    f.write_all(text.as_bytes()).expect("secret written");
}

fn hex_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stack_runs_on_a_swarm_and_leaves_nothing_behind() {
    if !docker_available() {
        return;
    }
    let secrets = std::env::temp_dir().join(format!("faas-swarm-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir(&secrets).unwrap();
    let Some(scope) = swarm_scope(secrets.clone()) else {
        assert!(
            !docker_required() || std::env::var(USE_EXISTING).is_err(),
            "told to use the swarm, yet skipped"
        );
        return;
    };
    let began = faas_common::clock::instant();
    let phase = |what: &str| eprintln!("swarm test: {what} after {:?}", began.elapsed());
    tokio::task::spawn_blocking(|| build_images(TAG))
        .await
        .unwrap();
    phase("images built");
    support::use_built_binary();

    let key = hex_token();
    let token = hex_token();
    write_secret(&secrets, "keys", &format!("admin swarm-test {key}\n"));
    write_secret(&secrets, "cluster-token", &format!("{token}\n"));
    // Nodes of two fifths of the machine's memory: two fit, Swarm refuses the third.
    let total: u64 = docker_cli(&["info", "--format", "{{.MemTotal}}"])
        .unwrap()
        .parse()
        .unwrap();
    let node_mib = total / (1 << 20) * 2 / 5;
    let (api_port, http_port, scheduler_port, rm_port) =
        (free_port(), free_port(), free_port(), free_port());
    let stack_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/stack.yml");
    let deploy = std::process::Command::new("docker")
        .args(["stack", "deploy", "-c", stack_file, STACK])
        .env("FAAS_IMAGE_TAG", TAG)
        .env("FAAS_STACK", STACK)
        .env("FAAS_SECRETS_DIR", &secrets)
        .env("FAAS_READY_NODES", "1")
        .env("FAAS_MAX_NODES", "4")
        .env("FAAS_NODE_MEMORY_MIB", node_mib.to_string())
        .env("FAAS_SWARM_PLACEMENT_TIMEOUT_MS", "3000")
        .env("FAAS_APISERVER_PORT", api_port.to_string())
        .env("FAAS_HTTP_PORT", http_port.to_string())
        .env("FAAS_SCHEDULER_PORT", scheduler_port.to_string())
        .env("FAAS_RESOURCE_MANAGER_PORT", rm_port.to_string())
        .output()
        .expect("docker stack deploy runs");
    assert!(
        deploy.status.success(),
        "docker stack deploy failed: {}",
        String::from_utf8_lossy(&deploy.stderr)
    );

    // The API server answers once the stack is up.
    let api_addr = format!("127.0.0.1:{api_port}");
    let api = {
        let since = faas_common::clock::instant();
        loop {
            if let Ok(channel) = faas_common::serve::connect(&api_addr).await {
                let api = Api::keyed(channel, Some(&key)).expect("the key is well formed");
                if api.list().await.is_ok() {
                    break api;
                }
            }
            assert!(
                since.elapsed() < Duration::from_secs(120),
                "the stack's API server did not answer on {api_addr}: {}",
                docker_cli(&["stack", "ps", "--no-trunc", STACK]).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };

    phase("the stack answers");
    // Each default function runs (on a node the resource manager made a Swarm service).
    let calls: [(&str, &[u8]); 6] = [
        ("hello", br#"{"name":"Ada"}"#),
        ("echo", br#"{"anything":[1,2,3]}"#),
        ("sleep", br#"{"ms":50}"#),
        ("cpu", br#"{"rounds":1000}"#),
        ("memory", br#"{"mb":8,"ms":10}"#),
        ("spin", br#"{"ms":30,"mb":1}"#),
    ];
    for (name, event) in calls {
        let out = invoke_retrying(&api, name, event).await;
        assert!(!out.body.is_empty(), "{name} answered nothing");
    }
    let node_services = services_labelled(&format!("minifaas.instance={STACK}"));
    assert!(!node_services.is_empty(), "no node service was made");
    // `faas nodes` names each node's machine: the swarm machine Swarm placed it on.
    let machine = docker_cli(&["info", "--format", "{{.Name}}"]).expect("docker info");
    let nodes = api
        .admin()
        .list_nodes(ListNodesRequest::default())
        .await
        .expect("list the nodes")
        .into_inner()
        .nodes;
    assert!(!nodes.is_empty(), "the scheduler holds no node");
    for n in &nodes {
        assert_eq!(
            n.machine, machine,
            "node {} is on the wrong machine",
            n.node_id
        );
    }
    eprintln!(
        "nodes and their machines: {:?}",
        nodes
            .iter()
            .map(|n| (&n.node_id, &n.machine))
            .collect::<Vec<_>>()
    );

    phase("each default function ran");
    // Reserve nodes until Swarm refuses one: the status names the memory no machine has.
    let rm_addr = format!("127.0.0.1:{rm_port}");
    let auth = ClusterAuth::new(Some(&token.parse::<ClusterToken>().expect("token")));
    let mut rm = ResourceManagerClient::new(
        auth.channel(faas_common::serve::connect(&rm_addr).await.expect("rm")),
    );
    let mut reserved = Vec::new();
    let refusal = {
        let since = faas_common::clock::instant();
        loop {
            let request = ReserveNodeRequest {
                request_id: format!("swarm-{}", reserved.len()),
                account_id: ACCOUNT.into(),
            };
            match rm.reserve_node(request).await {
                Ok(reply) => reserved.push(reply.into_inner().node.unwrap().id),
                Err(s)
                    if s.code() == Code::ResourceExhausted
                        && s.message().contains("no machine has") =>
                {
                    break s;
                }
                Err(s) => {
                    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "Swarm never refused a node ({} reserved)",
                reserved.len()
            );
        }
    };
    assert!(
        refusal
            .message()
            .contains(&format!("no machine has {node_mib} MiB free")),
        "{refusal:?}"
    );
    for id in &reserved {
        rm.release_node(ReleaseNodeRequest {
            request_id: format!("release-{id}"),
            id: id.clone(),
        })
        .await
        .expect("release");
    }

    phase("Swarm refused a node");
    // Kill a node's task container: Swarm does not restart it, the platform replaces it.
    let node_containers = docker_cli(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=minifaas.instance={STACK}"),
        "--filter",
        "label=minifaas.role=node",
    ])
    .unwrap_or_default();
    let node_containers: Vec<&str> = node_containers.lines().collect();
    let victim = node_containers.first().expect("a node container runs");
    let victim_node = docker_cli(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"minifaas.node\"}}",
        victim,
    ])
    .expect("docker inspect");
    let of_victim = [
        "ps",
        "-aq",
        "--filter",
        &format!("label=minifaas.instance={STACK}"),
        "--filter",
        "label=minifaas.role=function",
        "--filter",
        &format!("label=minifaas.node={victim_node}"),
    ];
    let victims_containers = docker_cli(&of_victim).unwrap_or_default();
    assert!(
        !victims_containers.is_empty(),
        "node {victim_node} has no function container to leave behind (its warm pool?)"
    );
    docker_cli(&["kill", victim]).expect("docker kill");
    // The resource manager sees the task gone (a lost node) and removes its service.
    let service = format!("minifaas-{STACK}-{victim_node}");
    assert!(
        wait_until(Duration::from_secs(30), || docker_cli(&[
            "service", "inspect", &service
        ])
        .is_err()),
        "the killed node's service {service} was not removed"
    );
    // Its function containers are removed on its machine by a sweep job, which then goes.
    assert!(
        wait_until(Duration::from_secs(60), || docker_cli(&of_victim)
            .is_ok_and(|left| left.is_empty())),
        "the killed node's function containers are still there: {:?}",
        docker_cli(&of_victim)
    );
    let sweeps = "minifaas.role=sweep";
    assert!(
        wait_until(Duration::from_secs(30), || services_labelled(sweeps)
            .is_empty()),
        "a sweep job was left: {:?}",
        services_labelled(sweeps)
    );
    let out = invoke_retrying(&api, "hello", br#"{"name":"again"}"#).await;
    assert!(String::from_utf8_lossy(&out.body).contains("again"));

    phase("the platform replaced the killed node");

    // Kill the resource manager (a crash): Swarm restarts it, and it takes its node
    // services back (its state volume, and the services it finds by label).
    let before = services_labelled(&format!("minifaas.instance={STACK}"));
    let rm_service = format!("label=com.docker.swarm.service.name={STACK}_resource-manager");
    let crashed = containers(&rm_service);
    docker_cli(&["kill", crashed.first().expect("the resource manager runs")])
        .expect("docker kill");
    assert!(
        wait_until(Duration::from_secs(90), || {
            docker_cli(&[
                "ps",
                "-q",
                "--filter",
                &rm_service,
                "--filter",
                "health=healthy",
            ])
            .is_ok_and(|id| !id.is_empty() && !crashed.iter().any(|c| c.starts_with(&id)))
        }),
        "the resource manager was not restarted"
    );
    let after = services_labelled(&format!("minifaas.instance={STACK}"));
    assert!(
        before.iter().all(|s| after.contains(s)),
        "node services were not taken back: before {before:?}, after {after:?}"
    );
    invoke_retrying(&api, "hello", br#"{"name":"after the crash"}"#).await;
    phase("the restarted resource manager took its nodes back");
    // A short contest replay against the stack.
    let json = secrets.join("replay.json");
    let argv = [
        "replay",
        "--apiserver",
        api_addr.as_str(),
        "--resource-manager",
        rm_addr.as_str(),
        "--api-key",
        key.as_str(),
        "--cluster-token",
        token.as_str(),
        "--duration",
        "10s",
        "--memory-scale",
        "0.02",
        "--settle-ms",
        "1000",
        "--no-progress",
        "--json",
        json.to_str().unwrap(),
    ];
    #[derive(Parser)]
    struct Replay {
        #[command(flatten)]
        args: ReplayArgs,
    }
    let args = Replay::try_parse_from(argv).expect("flags parse").args;
    tokio::time::timeout(Duration::from_secs(90), replay(args))
        .await
        .expect("the replay ends within 90 s")
        .expect("the replay runs");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).unwrap();
    eprintln!("replay against the swarm stack: {report:#}");

    phase("the replay ran");
    // Remove the stack: nothing of the platform is left but its volumes.
    let (rm_out, clean) = remove_stack();
    assert!(
        clean,
        "left after docker stack rm ({rm_out:?}): {:?}",
        leftovers()
    );
    phase("the stack is gone");
    drop(scope);
}

/// Invokes `name`, retrying for up to 90 s while the platform (re)makes nodes.
async fn invoke_retrying(api: &Api, name: &str, event: &[u8]) -> faas_cli::client::InvokeOutcome {
    let since = faas_common::clock::instant();
    loop {
        match api.invoke(ACCOUNT, name, event.to_vec()).await {
            Ok(out) => return out,
            Err(e) if since.elapsed() < Duration::from_secs(90) => {
                eprintln!("{name}: {e:?}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{name} never succeeded: {e:?}"),
        }
    }
}
