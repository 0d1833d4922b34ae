//! The two formats, read back: the component on every line, span fields (a call's
//! `request_id`) on the lines inside the span, no colour unless asked.

use std::sync::{Arc, Mutex};

use super::*;

/// A writer the test reads back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'w self) -> Buffer {
        self.clone()
    }
}

/// The lines written while `f` runs under a subscriber of `format`.
fn lines(format: LogFormat, ansi: bool, f: impl FnOnce()) -> Vec<String> {
    let buffer = Buffer::default();
    let sub = subscriber(
        "scheduler",
        format,
        ansi,
        EnvFilter::new("info"),
        buffer.clone(),
        None,
    );
    tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_string).collect()
}

fn one_call() {
    let span = tracing::info_span!("acquire", request_id = "r-42");
    let _entered = span.enter();
    tracing::info!(container = "c-1", cold = true, "granted");
}

#[test]
fn text_lines_name_the_component_and_the_calls_request_id_without_colour() {
    let lines = lines(LogFormat::Text, false, || {
        one_call();
        tracing::warn!(target: "faas_node_service::api", "from the node's crate");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(" INFO scheduler: acquire{request_id=\"r-42\"}: granted"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("container=\"c-1\" cold=true"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" WARN node-service: "), "{}", lines[1]);
    assert!(lines.iter().all(|l| !l.contains('\x1b')), "{lines:?}");
}

#[test]
fn colours_only_when_asked() {
    let lines = lines(LogFormat::Text, true, one_call);
    assert!(lines[0].contains("\x1b["), "{:?}", lines[0]);
}

#[test]
fn json_lines_are_objects_with_component_fields_and_span_fields() {
    let lines = lines(LogFormat::Json, false, || {
        one_call();
        let span = tracing::info_span!("outer", request_id = "r-1", node = "n-1");
        let _entered = span.enter();
        tracing::info!(target: "faas_apiserver::x", request_id = "mine", "inner wins");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["component"], "scheduler");
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["message"], "granted");
    assert_eq!(first["request_id"], "r-42");
    assert_eq!(first["container"], "c-1");
    assert_eq!(first["cold"], true);
    assert_eq!(first["spans"], serde_json::json!(["acquire"]));
    assert!(first["timestamp"].as_str().unwrap().contains('T'));
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["component"], "apiserver");
    assert_eq!(second["request_id"], "mine");
    assert_eq!(second["node"], "n-1");
}

#[test]
fn fields_recorded_later_on_a_span_show_up_in_json() {
    let lines = lines(LogFormat::Json, false, || {
        let span = tracing::info_span!("call", request_id = "r-7", node = tracing::field::Empty);
        span.record("node", "n-2");
        let _entered = span.enter();
        tracing::info!("placed");
    });
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["request_id"], "r-7");
    assert_eq!(line["node"], "n-2");
}

#[test]
fn components_are_the_platform_crates() {
    assert_eq!(component_of("faas_scheduler::core", "x"), "scheduler");
    assert_eq!(
        component_of("faas_resource_manager", "x"),
        "resource-manager"
    );
    assert_eq!(
        component_of("faas_container_service::exec", "x"),
        "container-service"
    );
    assert_eq!(
        component_of("faas_common::launch", "node-service"),
        "node-service"
    );
    assert_eq!(component_of("h2::codec", "apiserver"), "apiserver");
}

#[test]
fn the_flag_reads_text_and_json() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }
    let json = Cli::try_parse_from(["x", "--log-format", "json"]).unwrap();
    assert_eq!(json.log.log_format, LogFormat::Json);
    assert!(Cli::try_parse_from(["x", "--log-format", "xml"]).is_err());
}

#[tokio::test]
async fn children_started_by_the_launcher_log_in_the_parents_format() {
    init_with(
        "scheduler",
        &LogArgs {
            log_format: LogFormat::Json,
            otlp_endpoint: None,
        },
        "off",
    );
    assert_eq!(chosen(), Some(LogFormat::Json));
    let out = crate::launch::Launcher::new("/usr/bin/env", vec![])
        .command()
        .output()
        .await
        .unwrap();
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(
        env.lines().any(|l| l == "FAAS_LOG_FORMAT=json"),
        "the child's environment: {env}"
    );
}
