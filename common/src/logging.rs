//! One `tracing` set-up for every binary: lines on stderr that name their component,
//! `RUST_LOG` filters (default `info`), `--log-format text|json` (env `FAAS_LOG_FORMAT`).
//!
//! - **text** (the default): `2026-12-03T12:00:00.000000Z  INFO scheduler: invoke{request_id=r-1}: granted container=c-3`.
//!   ANSI colours only when stderr is a terminal (and `NO_COLOR` is unset): never in a file,
//!   a pipe or `docker logs`.
//! - **json**: one object a line, `{"timestamp","level","component","target","message",
//!   <the event's fields>, <the fields of the spans it is in>, "spans":[names]}`; an event's
//!   own field wins over a span's of the same name. `jq 'select(.request_id=="r-1")'` finds
//!   every line of one call in every component.
//!
//! The component is the platform crate the event comes from (`faas_scheduler::…` is
//! `scheduler`), so components run in one process (tests, embedding) still tell their lines
//! apart; lines of shared crates carry the process's own component (given to [`init_with`]).
//!
//! The format chosen is handed to every child started with [`crate::launch::Launcher`] (the
//! variable [`FORMAT_ENV`] is set on its command), so `faas up --log-format json` makes the
//! whole tree, nodes and containers included, write JSON.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable of `--log-format` (also what children inherit).
pub const FORMAT_ENV: &str = "FAAS_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, coloured only on a terminal.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

impl LogFormat {
    /// The flag's value for this format.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format `FAAS_LOG_FORMAT` names (text when unset or not understood).
    pub fn from_env() -> LogFormat {
        match std::env::var(FORMAT_ENV).as_deref().map(str::trim) {
            Ok(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// The logging flags every component flattens into its `Config`.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct LogArgs {
    /// How log lines on stderr are written: `text` (colours only on a terminal) or `json`
    /// (one object a line). Handed down to the components this one starts.
    #[arg(long, env = FORMAT_ENV, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Export spans over OTLP/HTTP to this collector (e.g. `http://127.0.0.1:4318`): one
    /// trace per call across every component. Off when unset. Handed down like the format.
    #[arg(long, env = crate::trace::ENDPOINT_ENV, value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
}

fn parse_otlp_endpoint(value: &str) -> Result<String, String> {
    crate::trace::traces_url(value)?;
    Ok(value.trim().to_owned())
}

impl LogArgs {
    /// The settings the environment gives (for commands without the flag).
    pub fn from_env() -> LogArgs {
        LogArgs {
            log_format: LogFormat::from_env(),
            otlp_endpoint: std::env::var(crate::trace::ENDPOINT_ENV)
                .ok()
                .filter(|v| crate::trace::traces_url(v).is_ok()),
        }
    }
}

static CHOSEN: OnceLock<LogFormat> = OnceLock::new();

/// The format this process logs in, once [`init_with`] ran.
pub fn chosen() -> Option<LogFormat> {
    CHOSEN.get().copied()
}

/// The logging settings a child of this process is given, as environment variables: the
/// chosen format ([`FORMAT_ENV`]) and, when spans are exported, the collector
/// ([`crate::trace::ENDPOINT_ENV`]).
pub fn child_env() -> Vec<(&'static str, String)> {
    let mut env = Vec::with_capacity(2);
    if let Some(format) = chosen() {
        env.push((FORMAT_ENV, format.as_str().to_owned()));
    }
    if let Some(endpoint) = crate::trace::endpoint() {
        env.push((crate::trace::ENDPOINT_ENV, endpoint.to_owned()));
    }
    env
}

/// [`child_env`] as command-line flags, for a child that gets a clean environment (a
/// container service behind the node's isolation, a Docker container's command).
pub fn child_args() -> Vec<String> {
    let mut args = Vec::with_capacity(4);
    if let Some(format) = chosen() {
        args.extend(["--log-format".to_owned(), format.as_str().to_owned()]);
    }
    if let Some(endpoint) = crate::trace::endpoint() {
        args.extend(["--otlp-endpoint".to_owned(), endpoint.to_owned()]);
    }
    args
}

/// [`init_with`] for a process that is no component of its own (the `faas` command's
/// client commands, examples, tests): component `faas`, format from `FAAS_LOG_FORMAT`.
pub fn init(default_filter: &str) {
    init_with("faas", &LogArgs::from_env(), default_filter);
}

/// Installs the subscriber writing `component`'s lines to stderr in `args`' format. Safe to
/// call more than once (the first call wins).
pub fn init_with(component: &'static str, args: &LogArgs, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let format = args.log_format;
    let ansi = format == LogFormat::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let tracer = match args.otlp_endpoint.as_deref() {
        Some(endpoint) if crate::trace::endpoint().is_none() => {
            match crate::trace::start(component, endpoint) {
                Ok(tracer) => Some(tracer),
                Err(e) => {
                    eprintln!("{component}: OpenTelemetry export off: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let subscriber = subscriber(component, format, ansi, filter, std::io::stderr, tracer);
    if subscriber.try_init().is_ok() {
        let _ = CHOSEN.set(format);
    }
}

/// The subscriber [`init_with`] installs, writing to `writer` (tests pass a buffer), and
/// with `tracer` also exporting its spans ([`crate::trace`]).
pub fn subscriber<W>(
    component: &'static str,
    format: LogFormat,
    ansi: bool,
    filter: EnvFilter,
    writer: W,
    tracer: Option<crate::trace::Tracer>,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let line = Line {
        component,
        ansi,
        json: format == LogFormat::Json,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => Box::new(
            builder
                .event_format(line)
                .finish()
                .with(tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t))),
        ),
        LogFormat::Json => Box::new(
            builder
                .fmt_fields(JsonFields)
                .event_format(line)
                .finish()
                .with(tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t))),
        ),
    }
}

/// The component a target belongs to: the platform crate's name (`faas_node_service::api`
/// is `node-service`), or `fallback` for any other crate.
pub fn component_of(target: &str, fallback: &'static str) -> &'static str {
    let krate = target.split("::").next().unwrap_or(target);
    match krate {
        "faas_apiserver" => "apiserver",
        "faas_scheduler" => "scheduler",
        "faas_resource_manager" => "resource-manager",
        "faas_node_service" => "node-service",
        "faas_container_service" => "container-service",
        _ => fallback,
    }
}

/// The event formatter of both formats.
struct Line {
    component: &'static str,
    ansi: bool,
    json: bool,
}

fn level_colour(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "\x1b[31m",
        tracing::Level::WARN => "\x1b[33m",
        tracing::Level::INFO => "\x1b[32m",
        tracing::Level::DEBUG => "\x1b[34m",
        tracing::Level::TRACE => "\x1b[35m",
    }
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let component = component_of(meta.target(), self.component);
        if self.json {
            return self.json_line(ctx, writer, event, component);
        }
        let (dim, bold, reset) = if self.ansi {
            ("\x1b[2m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        write!(writer, "{dim}")?;
        SystemTime.format_time(&mut writer)?;
        write!(writer, "{reset} ")?;
        match self.ansi {
            true => write!(
                writer,
                "{}{:>5}{reset} ",
                level_colour(meta.level()),
                meta.level()
            )?,
            false => write!(writer, "{:>5} ", meta.level())?,
        }
        write!(writer, "{bold}{component}{reset}: ")?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{bold}{}{reset}", span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                write!(writer, ": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

impl Line {
    fn json_line<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
        component: &str,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let meta = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let mut line = serde_json::Map::new();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("component".into(), component.into());
        line.insert("target".into(), meta.target().into());
        let mut fields = JsonVisitor::default();
        event.record(&mut fields);
        line.extend(fields.0);
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            // Innermost first: a field of an inner span wins over an outer one's.
            for span in scope {
                spans.push(serde_json::Value::from(span.name()));
                let ext = span.extensions();
                let Some(text) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) {
                    for (k, v) in map {
                        line.entry(k).or_insert(v);
                    }
                }
            }
        }
        if !spans.is_empty() {
            spans.reverse();
            line.insert("spans".into(), spans.into());
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's or a span's fields as JSON values.
#[derive(Default)]
struct JsonVisitor(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Formats a span's fields as one JSON object (what [`Line`] merges into a JSON line).
struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor::default();
        fields.record(&mut visitor);
        let text = serde_json::to_string(&visitor.0).map_err(|_| fmt::Error)?;
        writer.write_str(&text)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor::default();
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&current.fields) {
            visitor.0 = map;
        }
        fields.record(&mut visitor);
        current.fields = serde_json::to_string(&visitor.0).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "logging_tests.rs"]
mod tests;
