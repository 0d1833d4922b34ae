//! The service layer from the command line: `faas deploy` applies a whole setup (function,
//! versions, alias, routes) and applying it again changes nothing; `faas publish`, `faas alias
//! set`, `faas rollback`, `faas describe`; `faas invoke -v` prints the version and target that
//! served a call, and the fallback's reason; mistakes fail with the field named.

mod support;

use support::{faas, ok};

/// The setup: version 3 times out on a slow event, and its calls fall back to version 1.
const SHOP: &str = r#"
[[function]]
name = "shop"
handler = "echo"
memory_mb = 128
timeout_ms = 1000

[[function.version]]
version = 1
handler = "echo"
[[function.version]]
version = 2
handler = "hello"
[[function.version]]
version = 3
handler = "sleep"
timeout_ms = 20

[[function.alias]]
name = "live"
targets = "1=90,2=10"

[function.routes]
default = "shop:live"
[[function.routes.rules]]
route_id = "vip"
target = "shop:2"
[[function.routes.rules]]
fields = { speed = "slow" }
target = "shop:3"
[function.routes.fallback]
target = "shop:1"
on = ["timeout"]
"#;

/// Writes `text` to `dir/name`; its path.
fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// stderr (the `-v` lines) of an invocation that succeeded, and its body.
async fn invoke(addr: &str, args: &[&str]) -> (String, String) {
    let mut all = vec!["invoke", "-v"];
    all.extend_from_slice(args);
    let out = faas(addr, &all).await;
    assert!(out.status.success(), "faas {all:?}: {out:?}");
    (
        String::from_utf8(out.stderr).unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The one error line of a command that failed with exit code `code` (faas_cli::exit).
async fn fails(addr: &str, code: i32, args: &[&str]) -> String {
    let out = faas(addr, args).await;
    assert_eq!(out.status.code(), Some(code), "faas {args:?}: {out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr.trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_from_one_file_to_a_rollback() {
    let (platform, _api) = support::start(support::small_options()).await;
    let addr = platform.apiserver.to_string();
    let addr = addr.as_str();
    let dir = std::env::temp_dir().join(format!("faas-routing-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = write(&dir, "shop.toml", SHOP);
    let file = file.as_str();

    let applied = ok(addr, &["deploy", file]).await;
    assert_eq!(
        applied,
        "shop: created (revision 1)\n\
         shop: version 1 published\n\
         shop: version 2 published\n\
         shop: version 3 published\n\
         shop: alias live → 1=90,2=10 (created)\n\
         shop: routes set (default shop:live, 2 rules, fallback shop:1)\n"
    );
    let again = ok(addr, &["deploy", file]).await;
    assert_eq!(
        again,
        "shop: unchanged (revision 1)\n\
         shop: version 1 unchanged\n\
         shop: version 2 unchanged\n\
         shop: version 3 unchanged\n\
         shop: alias live unchanged (1=90,2=10)\n\
         shop: routes unchanged\n"
    );
    // The example of the repository deploys as well (another function name).
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/canary.toml");
    let example = std::fs::read_to_string(example)
        .unwrap()
        .replace("\"shop", "\"store");
    let example_file = write(&dir, "canary.toml", &example);
    let applied = ok(addr, &["deploy", &example_file]).await;
    assert!(
        applied.ends_with(
            "store: routes set (default store:live, 3 rules, fallback store:1, breaker)\n"
        ),
        "{applied}"
    );

    // A rule by routing id, a version by name, and a rule by routing parameter whose target
    // times out, served by the fallback.
    let (verbose, body) = invoke(
        addr,
        &["shop", "--route-id", "vip", "--event", r#"{"name":"vip"}"#],
    )
    .await;
    assert!(verbose.contains("version 2 | target shop:2\n"), "{verbose}");
    assert_eq!(body, "{\"message\":\"Hello, vip!\"}\n");
    let (verbose, body) = invoke(addr, &["shop:1", "--event", "{}"]).await;
    assert!(verbose.contains("version 1 | target shop:1\n"), "{verbose}");
    assert_eq!(body, "{}\n");
    let (verbose, body) = invoke(
        addr,
        &["shop", "--route", "speed=slow", "--event", r#"{"ms":500}"#],
    )
    .await;
    assert!(verbose.contains("version 1 | target shop:1\n"), "{verbose}");
    assert!(
        verbose.contains("fallback: served instead of shop:3 (timeout)\n"),
        "{verbose}"
    );
    assert_eq!(body, "{\"ms\":500}\n");

    // A new version, the alias moved to it, and back in one step.
    ok(addr, &["deploy", file]).await;
    assert_eq!(
        ok(addr, &["publish", "shop"]).await,
        "published shop version 4\n"
    );
    assert_eq!(
        ok(addr, &["alias", "set", "shop", "live", "4"]).await,
        "shop:live → 4=100 (was 1=90,2=10)\n"
    );
    let (verbose, _) = invoke(addr, &["shop:live"]).await;
    assert!(verbose.contains("version 4 | target shop:4\n"), "{verbose}");
    let (verbose, _) = invoke(addr, &["shop"]).await;
    assert!(verbose.contains("version 4 | target shop:4\n"), "{verbose}");
    let versions = ok(addr, &["versions", "shop"]).await;
    assert_eq!(versions.lines().count(), 5, "{versions}");
    assert!(
        versions
            .lines()
            .nth(4)
            .unwrap()
            .starts_with("4        echo"),
        "{versions}"
    );

    let rolled = ok(addr, &["rollback", "shop", "live"]).await;
    assert!(
        rolled.starts_with("shop:live → 1=90,2=10 (was 4=100) in "),
        "{rolled}"
    );
    assert!(rolled.ends_with(" ms\n"), "{rolled}");
    let aliases = ok(addr, &["alias", "list", "shop"]).await;
    assert!(
        aliases.contains("live             1=90,2=10    4=100"),
        "{aliases}"
    );

    // What happened, described.
    let described = ok(addr, &["describe", "shop"]).await;
    for want in [
        "function shop (revision 1, ",
        "handler echo | memory 128 MiB | timeout 1000 ms",
        "  3        sleep           128          20  ",
        "  default    shop:live\n",
        "  rule 1     route_id = \"vip\" → shop:2\n",
        "  rule 2     speed = \"slow\" → shop:3\n",
        "  fallback   shop:1 on timeout; share 0%\n",
        "  breaker    none\n",
    ] {
        assert!(described.contains(want), "{want:?} missing in\n{described}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(addr, &["describe", "shop", "--json"]).await).unwrap();
    assert_eq!(json["aliases"][0]["previous"][0]["version"], 4);
    let targets = json["targets"].as_array().unwrap();
    let slow = targets.iter().find(|t| t["target"] == "shop:3").unwrap();
    assert_eq!(slow["fallbacks"], 1, "{json}");

    // Mistakes name what to fix, and change nothing.
    let e = fails(addr, 4, &["alias", "set", "shop", "live", "1=90,2=20"]).await;
    assert_eq!(
        e,
        "error: alias shop:live: InvalidArgument: function \"shop\": targets.weight: weights must sum to 100, they sum to 110"
    );
    let e = fails(addr, 3, &["rollback", "shop", "nosuch"]).await;
    assert!(e.contains("NotFound: shop:nosuch not found"), "{e}");
    let e = fails(addr, 1, &["versions", "shop", "--delete", "1"]).await;
    assert!(
        e.contains("FailedPrecondition: shop:1: it is named by alias shop:live"),
        "{e}"
    );
    let e = fails(addr, 4, &["invoke", "shop", "--route-id", "vïp"]).await;
    assert!(e.contains("--route-id \"vïp\": contains 'ï'"), "{e}");
    let changed = write(&dir, "changed.toml", &SHOP.replace("\"hello\"", "\"cpu\""));
    let e = fails(addr, 1, &["deploy", &changed]).await;
    assert!(
        e.contains("publish shop:2: FailedPrecondition: shop:2: it exists with another definition"),
        "{e}"
    );
    let bad = write(
        &dir,
        "bad.toml",
        &SHOP.replace("[\"timeout\"]", "[\"timeouts\"]"),
    );
    let e = fails(addr, 4, &["deploy", &bad]).await;
    assert_eq!(
        e,
        format!(
            "error: {}: entry 1: function \"shop\": routes.fallback.on[0]: \"timeouts\" is not a failure: give not_found, error or timeout",
            bad
        )
    );
    let aliases = ok(addr, &["alias", "list", "shop"]).await;
    assert!(
        aliases.contains("live             1=90,2=10    4=100"),
        "{aliases}"
    );

    // Without routes, a call of the name goes to the current definition.
    assert_eq!(
        ok(addr, &["routes", "clear", "shop"]).await,
        "shop: routes cleared (calls of shop go to its current definition)\n"
    );
    let (verbose, _) = invoke(addr, &["shop"]).await;
    assert!(
        verbose.contains("version latest | target shop\n"),
        "{verbose}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
    platform.stop().await.unwrap();
}
