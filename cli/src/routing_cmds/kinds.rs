//! How the commands show what a function runs, and `faas functions`.
//!
//! A built-in shows as its handler (`hello`); a command function as its command and protocol
//! (`python3 main.py (http)`); an image function as `image faas/hello:1 (http)`. Their bundle
//! shows as the first 12 digits of its hash (`2b8cbc6472a5…`): enough to tell two apart, and
//! to see that a published version kept its code while the function moved on.

use faas_apiserver::model::{BundleKind, Protocol};

use super::*;

/// Hex digits of a bundle hash shown in tables.
const SHORT_HASH: usize = 12;
/// The widest "handler" column of a table.
const MAX_RUNS_WIDTH: usize = 40;

/// What `spec` runs, in a few words.
pub fn runs(spec: &admin::FunctionSpec) -> String {
    if !spec.handler.is_empty() || (spec.command.is_empty() && spec.image.is_empty()) {
        return spec.handler.clone();
    }
    match Protocol::parse(&spec.protocol) {
        Some(protocol) => BundleKind {
            command: spec.command.clone(),
            protocol,
            image: (!spec.image.is_empty()).then(|| spec.image.clone()),
            start_timeout_ms: None,
            env: Default::default(),
        }
        .summary(),
        // Not one this command knows: shown as sent.
        None => format!("{} ({})", spec.command.join(" "), spec.protocol),
    }
}

/// `2b8cbc6472a5…`, or `-` for none.
pub fn short_hash(hash: &str) -> String {
    if hash.is_empty() {
        "-".into()
    } else if hash.len() > SHORT_HASH {
        format!("{}…", &hash[..SHORT_HASH])
    } else {
        hash.to_string()
    }
}

/// The width of a "handler" column holding `cells`: at least 8, at most
/// [`MAX_RUNS_WIDTH`] (longer cells are cut).
pub fn runs_width<'a>(cells: impl IntoIterator<Item = &'a String>) -> usize {
    cells
        .into_iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, MAX_RUNS_WIDTH)
}

/// `cell` cut to `width` characters (with `…` when cut), padded to it.
pub fn cell(cell: &str, width: usize) -> String {
    let n = cell.chars().count();
    if n <= width {
        return format!("{cell:<width$}");
    }
    let cut: String = cell.chars().take(width - 1).collect();
    format!("{cut}…")
}

/// The "handler" and "bundle" columns of a table of `specs`: each row's cells, and the
/// headers. The bundle column is there only when a row has a bundle, so a table of
/// built-ins looks as it always did.
pub struct KindColumns {
    pub handler_head: String,
    pub bundle_head: String,
    /// Per row: the handler cell, then the bundle cell (with its leading space, or empty).
    pub rows: Vec<(String, String)>,
}

impl KindColumns {
    pub fn of(specs: &[admin::FunctionSpec]) -> KindColumns {
        let runs_cells: Vec<String> = specs.iter().map(runs).collect();
        let width = runs_width(&runs_cells);
        let with_bundles = specs.iter().any(|s| !s.bundle.is_empty());
        let bundle = |text: &str| {
            if with_bundles {
                format!(" {text:<13}")
            } else {
                String::new()
            }
        };
        KindColumns {
            handler_head: cell("handler", width),
            bundle_head: bundle("bundle"),
            rows: specs
                .iter()
                .zip(&runs_cells)
                .map(|(s, r)| (cell(r, width), bundle(&short_hash(&s.bundle))))
                .collect(),
        }
    }
}

/// The table of `faas functions`: name, what runs, memory, timeout, revision, description,
/// and the bundle column when a function has one.
pub fn functions_table(list: &[admin::FunctionRecord]) -> String {
    let specs: Vec<admin::FunctionSpec> = list
        .iter()
        .map(|r| r.spec.clone().unwrap_or_default())
        .collect();
    let columns = KindColumns::of(&specs);
    let mut out = format!(
        "{:<16} {} {:>10} {:>11} {:>8}{}  description\n",
        "name", columns.handler_head, "memory MiB", "timeout ms", "revision", columns.bundle_head
    );
    for ((record, spec), (runs, bundle)) in list.iter().zip(&specs).zip(&columns.rows) {
        // A long description would drown the table.
        out.push_str(&format!(
            "{:<16} {runs} {:>10} {:>11} {:>8}{bundle}  {}\n",
            spec.name,
            mib(spec.memory_in_bytes),
            spec.timeout_in_ms,
            record.revision,
            faas_common::text::clip(&spec.description)
        ));
    }
    out
}

/// A function as `faas functions -o json` prints it.
#[derive(Debug, serde::Serialize)]
pub struct FunctionJson {
    name: String,
    /// The wire handler: a built-in's name, or `bundle:<sha256>`.
    handler: String,
    /// What runs, in a few words (`python3 main.py (http)`).
    runs: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<describe::CodeJson>,
    memory_mb: i64,
    timeout_ms: i64,
    revision: i64,
    description: String,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl FunctionJson {
    fn of(record: &admin::FunctionRecord) -> FunctionJson {
        let spec = record.spec.clone().unwrap_or_default();
        FunctionJson {
            handler: describe::wire_handler(&spec),
            runs: runs(&spec),
            code: describe::CodeJson::of(&spec),
            name: spec.name,
            memory_mb: mib(spec.memory_in_bytes),
            timeout_ms: spec.timeout_in_ms,
            revision: record.revision,
            description: spec.description,
            created_at_ms: record.created_at_ms,
            updated_at_ms: record.updated_at_ms,
        }
    }
}

/// `faas functions` (`json`: one array of [`FunctionJson`]).
pub async fn functions(api: &Api, json: bool) -> anyhow::Result<()> {
    let list = api
        .admin()
        .list_functions(ListFunctionsRequest {})
        .await
        .map_err(failed("list the functions"))?
        .into_inner()
        .functions;
    if json {
        let list: Vec<FunctionJson> = list.iter().map(FunctionJson::of).collect();
        return print_json(&list);
    }
    print!("{}", functions_table(&list));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(spec: admin::FunctionSpec) -> admin::FunctionRecord {
        admin::FunctionRecord {
            spec: Some(spec),
            revision: 1,
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_shows_what_runs() {
        let hello = admin::FunctionSpec {
            name: "hello".into(),
            handler: "hello".into(),
            memory_in_bytes: 128 << 20,
            timeout_in_ms: 1000,
            ..Default::default()
        };
        let py = admin::FunctionSpec {
            name: "py".into(),
            command: vec!["python3".into(), "main.py".into()],
            protocol: "http".into(),
            bundle: "2b8cbc6472a5618c6a12a020e53de1c3ed7528fcb4e7d98668e1591e4e1e6b57".into(),
            memory_in_bytes: 256 << 20,
            timeout_in_ms: 5000,
            ..Default::default()
        };
        let img = admin::FunctionSpec {
            name: "img".into(),
            image: "faas/hello:1".into(),
            protocol: "exec".into(),
            bundle: "ab".repeat(32),
            handler: String::new(),
            ..hello.clone()
        };
        assert_eq!(runs(&hello), "hello");
        assert_eq!(runs(&py), "python3 main.py (http)");
        assert_eq!(runs(&img), "image faas/hello:1 (exec)");
        assert_eq!(short_hash(&py.bundle), "2b8cbc6472a5…");
        assert_eq!(short_hash(""), "-");

        let only_builtins = functions_table(&[record(hello.clone())]);
        assert_eq!(
            only_builtins,
            "name             handler  memory MiB  timeout ms revision  description\n\
             hello            hello           128        1000        1  \n"
        );
        let table = functions_table(&[record(hello), record(py), record(img)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "name             handler                   memory MiB  timeout ms revision bundle         description"
        );
        assert_eq!(
            lines[2],
            "py               python3 main.py (http)           256        5000        1 2b8cbc6472a5…  "
        );
        assert!(
            lines[3].starts_with("img              image faas/hello:1 (exec)"),
            "{table}"
        );
        assert!(lines[1].contains(" -              "), "{table}");
    }

    #[test]
    fn long_cells_are_cut() {
        assert_eq!(cell("abc", 5), "abc  ");
        assert_eq!(cell("abcdefgh", 5), "abcd…");
        let long = "x".repeat(100);
        assert_eq!(runs_width([&long]), MAX_RUNS_WIDTH);
    }
}
