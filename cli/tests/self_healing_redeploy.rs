//! Redeploying and deleting functions under load on the real local platform: only the
//! documented statuses, never an old definition's body after the new one answered.
//!
//! The harness (platform, load, shared checks) is `support/healing.rs`; the other kinds of
//! fault are in the other `self_healing_*.rs` files (`docs/CONVENTIONS.md`, "Self-healing").

mod support;

use support::healing::*;

/// The handler whose body `body` is, for event `{"name":"x"}`.
fn handler_of(body: &[u8]) -> Option<&'static str> {
    if body == br#"{"name":"x"}"# {
        return Some("echo");
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    (value["message"] == "Hello, x!").then_some("hello")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeploying_and_deleting_under_load_gives_only_documented_statuses() {
    on_platform("adaptive", |env| async move {
        env.deploy("flip", "echo", 10_000).await;
        let origin = faas_common::clock::instant();
        env.invoke("flip", br#"{"name":"x"}"#)
            .await
            .expect("warm-up call");
        let load = start_load(
            &env,
            &[("flip", r#"{"name":"x"}"#)],
            Duration::from_millis(20),
        )
        .await;
        let enough_after = |t: Instant, n: usize| {
            move |calls: &[Call]| {
                calls
                    .iter()
                    .filter(|c| c.started >= t && c.ended.is_some())
                    .count()
                    >= n
            }
        };

        // (began, returned, handler; None = deleted)
        let mut versions: Vec<(Instant, Instant, Option<&str>)> =
            vec![(origin, origin, Some("echo"))];
        for handler in ["hello", "echo"] {
            let began = faas_common::clock::instant();
            env.deploy("flip", handler, 10_000).await;
            let returned = faas_common::clock::instant();
            versions.push((began, returned, Some(handler)));
            load.wait_until(returned + RECOVERY, enough_after(returned, 25))
                .await;
        }
        let began = faas_common::clock::instant();
        let mut delete = Request::new(DeleteFunctionRequest {
            name: "flip".into(),
        });
        delete.set_timeout(Duration::from_secs(5));
        env.api
            .admin()
            .delete_function(delete)
            .await
            .expect("delete flip");
        let returned = faas_common::clock::instant();
        versions.push((began, returned, None));
        load.wait_until(returned + RECOVERY, enough_after(returned, 10))
            .await;
        let calls = load.finish(RECOVERY).await;

        let mut wrong = Vec::new();
        for call in &calls {
            let ended = call.ended.unwrap_or_else(faas_common::clock::instant);
            // The version in force when the call started, and any deployed while it ran.
            let mut allowed: Vec<Option<&str>> = versions
                .iter()
                .rev()
                .find(|v| v.1 <= call.started)
                .map(|v| v.2)
                .into_iter()
                .collect();
            allowed.extend(
                versions
                    .iter()
                    .filter(|v| v.0 < ended && v.1 > call.started)
                    .map(|v| v.2),
            );
            let fine = match &call.outcome {
                Outcome::Ok(out) => {
                    handler_of(&out.body).is_some_and(|h| allowed.contains(&Some(h)))
                }
                Outcome::Failed(s) => s.code() == Code::NotFound && allowed.contains(&None),
                Outcome::Unanswered => false,
            };
            if !fine {
                let body = call
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.body).into_owned());
                wrong.push(format!(
                    "{} (allowed {allowed:?}, body {body:?})",
                    call.describe(origin)
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "calls that got an old body after a deploy returned, or a status other than NOT_FOUND \
             for a deleted function (seconds from the start; deploys at {:?}): {wrong:#?}",
            versions
                .iter()
                .map(|v| (v.1 - origin).as_secs_f64())
                .collect::<Vec<_>>()
        );
    })
    .await;
}
