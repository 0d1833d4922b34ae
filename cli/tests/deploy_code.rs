//! `faas deploy FILE` with the user's own code: the `code` directory is uploaded (and only
//! when it changed), kept by the API server under its hash in its data directory, and shown
//! by `faas functions`, `faas versions` and `faas describe`; a published version keeps its
//! bundle when the files change. Against a real API server in this process (no scheduler:
//! these commands only talk to the admin API); and, end to end, the example functions
//! invoked on a whole local platform (nodes run them from the bundles the API server wrote).

mod support;

use support::{faas, ok};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use faas_common::shutdown::{self, Trigger};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("faas-deploy-code-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    addr: String,
    trigger: Trigger,
    task: JoinHandle<Result<(), faas_apiserver::Error>>,
}

impl Server {
    async fn start(data_dir: Option<&Path>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = faas_apiserver::Config {
            port: 0,
            scheduler: "127.0.0.1:1".into(),
            data_dir: data_dir.map(Path::to_path_buf),
            ..faas_apiserver::Config::default()
        };
        // `faas` commands get the key the server made in its data directory.
        support::remember_key(&addr, config.client_key().unwrap().as_deref());
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(faas_apiserver::run(listener, config, shutdown));
        Server {
            addr,
            trigger,
            task,
        }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// The one error line of a command that failed.
async fn fails(addr: &str, args: &[&str]) -> String {
    let out = faas(addr, args).await;
    assert!(!out.status.success(), "faas {args:?} succeeded: {out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_string()
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const FILE: &str = r#"
[[function]]
name = "sh-fn"
command = ["sh", "main.sh"]
code = "src"
protocol = "exec"
env = { GREETING = "Hi" }
memory_mb = 64
timeout_ms = 2000
"#;

/// A project directory: the deploy file and its code.
fn project() -> (TempDir, PathBuf) {
    let dir = TempDir::new();
    write(&dir.path().join("src/main.sh"), "cat\n", 0o755);
    write(&dir.path().join("src/lib/words.txt"), "hello\n", 0o644);
    let file = dir.path().join("functions.toml");
    std::fs::write(&file, FILE).unwrap();
    (dir, file)
}

/// The bundle hashes in `data/bundles`.
fn bundles(data: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(data.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_uploads_the_code_directory_once_and_versions_keep_theirs() {
    let data = TempDir::new();
    let server = Server::start(Some(data.path())).await;
    let addr = server.addr.clone();
    let (dir, file) = project();
    let file = file.to_str().unwrap();

    let out = ok(&addr, &["deploy", file]).await;
    let [first] = bundles(data.path()).try_into().unwrap();
    assert_eq!(
        out,
        format!(
            "sh-fn: created (revision 1, bundle {}… (2 files, 10 B uploaded))\n",
            &first[..12]
        )
    );
    let code = data.path().join("bundles").join(&first).join("code");
    assert_eq!(
        std::fs::read_to_string(code.join("main.sh")).unwrap(),
        "cat\n"
    );
    let mode = std::fs::metadata(code.join("main.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(code.join("lib/words.txt").is_file());

    // Nothing changed: nothing is sent.
    assert_eq!(
        ok(&addr, &["deploy", file]).await,
        "sh-fn: unchanged (revision 1)\n"
    );
    assert_eq!(
        ok(&addr, &["publish", "sh-fn"]).await,
        "published sh-fn version 1\n"
    );

    // The user edits a file: a new bundle for the function; version 1 keeps its own.
    write(&dir.path().join("src/main.sh"), "cat; echo\n", 0o755);
    let out = ok(&addr, &["deploy", file]).await;
    assert!(
        out.starts_with("sh-fn: updated (revision 2, bundle "),
        "{out}"
    );
    let after = bundles(data.path());
    assert_eq!(after.len(), 2);
    let second = after.iter().find(|h| **h != first).unwrap().clone();
    assert_eq!(
        std::fs::read_to_string(code.join("main.sh")).unwrap(),
        "cat\n",
        "version 1's files are untouched"
    );

    let versions = ok(&addr, &["versions", "sh-fn"]).await;
    assert!(
        versions.contains(&format!(
            "sh main.sh (exec)         64        2000 {}…",
            &first[..12]
        )),
        "{versions}"
    );
    let functions = ok(&addr, &["functions"]).await;
    let line = functions.lines().find(|l| l.starts_with("sh-fn")).unwrap();
    assert!(line.contains("sh main.sh (exec)"), "{functions}");
    assert!(line.contains(&format!("{}…", &second[..12])), "{functions}");
    assert!(
        functions
            .lines()
            .any(|l| l.starts_with("hello ") && l.contains(" - ")),
        "built-ins have no bundle: {functions}"
    );
    let described = ok(&addr, &["describe", "sh-fn"]).await;
    assert!(
        described.contains(&format!(
            "  command sh main.sh (exec) | bundle {}… | memory 64 MiB | timeout 2000 ms\n  GREETING=Hi\n",
            &second[..12]
        )),
        "{described}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&addr, &["describe", "sh-fn", "--json"]).await).unwrap();
    assert_eq!(json["handler"], format!("bundle:{second}"));
    assert_eq!(json["versions"][0]["code"]["bundle"], first.as_str());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_fail_with_one_line_naming_what_to_fix() {
    let data = TempDir::new();
    let server = Server::start(Some(data.path())).await;
    let (dir, file) = project();

    std::fs::write(&file, FILE.replace("\"src\"", "\"nosuch\"")).unwrap();
    let line = fails(&server.addr, &["deploy", file.to_str().unwrap()]).await;
    let want = format!(
        "error: {}: entry 1: function \"sh-fn\": code: the code directory {} cannot be read",
        file.display(),
        dir.path().join("nosuch").display()
    );
    assert!(line.starts_with(&want), "{line}");

    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("src/passwd")).unwrap();
    std::fs::write(&file, FILE).unwrap();
    let line = fails(&server.addr, &["deploy", file.to_str().unwrap()]).await;
    assert!(line.contains("outside the code directory"), "{line}");
    std::fs::remove_file(dir.path().join("src/passwd")).unwrap();

    std::fs::write(
        &file,
        FILE.replace("protocol = \"exec\"", "protocol = \"grpc\""),
    )
    .unwrap();
    let line = fails(&server.addr, &["deploy", file.to_str().unwrap()]).await;
    assert!(
        line.ends_with("function \"sh-fn\": protocol: \"grpc\" is not one of http, exec"),
        "{line}"
    );
    server.stop().await;

    // A server without a data directory keeps no code.
    let memory = Server::start(None).await;
    std::fs::write(&file, FILE).unwrap();
    let line = fails(&memory.addr, &["deploy", file.to_str().unwrap()]).await;
    assert!(
        line.ends_with(
            "deploy sh-fn: FailedPrecondition: function \"sh-fn\": command functions need --data-dir: their code is kept there"
        ),
        "{line}"
    );
    memory.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_file_deploys_the_example_functions() {
    let data = TempDir::new();
    let server = Server::start(Some(data.path())).await;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/user-functions.toml");
    let out = ok(&server.addr, &["deploy", file.to_str().unwrap()]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("py-hello: created (revision 1, bundle "),
        "{out}"
    );
    assert!(
        lines[1].starts_with("sh-hello: created (revision 1, bundle "),
        "{out}"
    );
    let functions = ok(&server.addr, &["functions"]).await;
    assert!(functions.contains("python3 main.py (http)"), "{functions}");
    assert!(functions.contains("sh main.sh (exec)"), "{functions}");
    assert_eq!(bundles(data.path()).len(), 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_examples_run_end_to_end_from_their_bundles() {
    let data = TempDir::new();
    let options = faas_cli::platform::PlatformOptions {
        data_dir: Some(data.path().join("data")),
        ..support::small_options()
    };
    let (platform, api) = support::start(options).await;
    let addr = platform.apiserver.to_string();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/user-functions.toml");
    ok(&addr, &["deploy", file.to_str().unwrap()]).await;

    // Several calls of the Python server at once, then the shell function.
    let calls = (0..6).map(|i| {
        let api = api.clone();
        async move {
            let event = format!(r#"{{"name": "caller-{i}"}}"#).into_bytes();
            api.invoke("acct", "py-hello", event).await
        }
    });
    for (i, out) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        let out = out.unwrap_or_else(|s| panic!("py-hello call {i}: {s:?}"));
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["message"], format!("Hello, caller-{i}!"));
        assert_eq!(body["runtime"], "python");
    }
    let out = api
        .invoke("acct", "sh-hello", br#"{"name": "Ada"}"#.to_vec())
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(body["message"], "Hello, Ada!");
    assert_eq!(body["runtime"], "sh");
    platform.stop().await.unwrap();
}
