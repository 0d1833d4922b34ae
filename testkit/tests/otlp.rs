//! `faas_common::trace` against the test collector, in one process: with an endpoint
//! given, a caller's span and the span of the "server" that continues its trace from the
//! call's metadata reach the collector as one trace, parent and child, under the
//! component's service name; `flush` sends what is still buffered.

use std::time::Duration;

use faas_common::logging::{LogArgs, LogFormat};
use faas_testkit::otlp::Collector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_and_the_span_that_continues_it_are_one_trace() {
    let collector = Collector::start().await;
    let args = LogArgs {
        log_format: LogFormat::Text,
        otlp_endpoint: Some(collector.endpoint()),
    };
    faas_common::logging::init_with("scheduler", &args, "info");
    assert!(faas_common::trace::enabled());
    assert_eq!(
        faas_common::trace::endpoint(),
        Some(collector.endpoint().as_str())
    );
    // What a child is handed: the endpoint, as a variable and as a flag.
    assert!(
        faas_common::logging::child_env().contains(&("FAAS_OTLP_ENDPOINT", collector.endpoint()))
    );
    assert!(
        faas_common::logging::child_args()
            .windows(2)
            .any(|w| w[0] == "--otlp-endpoint" && w[1] == collector.endpoint())
    );

    let mut request = tonic::Request::new(());
    {
        let caller = tracing::info_span!("invoke", request_id = "r-otlp");
        let _entered = caller.enter();
        faas_common::serve::send_request_id(&mut request, "r-otlp");
    }
    assert!(request.metadata().get("traceparent").is_some());
    {
        let server = tracing::info_span!("acquire", request_id = "r-otlp");
        faas_common::trace::continue_trace(&server, request.metadata());
        let _entered = server.enter();
        tracing::info!("granted");
    }
    // The batch is sent by its own thread: flush blocks until it has gone.
    tokio::task::spawn_blocking(faas_common::trace::flush)
        .await
        .unwrap();
    assert!(!faas_common::trace::enabled());

    let spans = collector
        .wait_for(Duration::from_secs(10), |s| s.len() >= 2)
        .await;
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
    };
    let (caller, server) = (find("invoke"), find("acquire"));
    assert_eq!(caller.service, "faas-scheduler");
    assert_eq!(caller.request_id.as_deref(), Some("r-otlp"));
    assert_eq!(server.request_id.as_deref(), Some("r-otlp"));
    assert_eq!(caller.parent_span_id, "", "the caller's span is the root");
    assert_eq!(server.trace_id, caller.trace_id, "{spans:?}");
    assert_eq!(server.parent_span_id, caller.span_id, "{spans:?}");
    assert_eq!(caller.trace_id.len(), 32);
}
