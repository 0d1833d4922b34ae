//! How listing commands print: `-o table` (the default, for people) or `-o json` (for
//! scripts; `--json` is the same). Every listing prints one JSON document — an array (`faas
//! functions`, `versions`, `alias list`, `nodes`, `ps`) or an object (`faas describe`,
//! `faas result`) — except `faas logs`, which prints one JSON object per line (so
//! `--follow` can go on printing). JSON is made with serde from structs of this crate, never
//! by hand, so a script reads back exactly what was printed.
//!
//! Also the human forms of sizes and durations the tables share: [`mib`], [`ago`].

use serde::Serialize;

/// `-o FORMAT`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// A table (or text) for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

/// The output flags of a listing command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OutputArgs {
    /// How to print: a table for people or JSON for scripts.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
    /// The same as -o json.
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    /// Whether JSON was asked for (`-o json` or `--json`).
    pub fn is_json(&self) -> bool {
        self.json || self.output == Format::Json
    }
}

/// Prints `value` as one pretty JSON document (and a newline).
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    write_stdout(&text)
}

/// Writes `bytes` to stdout; a reader that went away (`faas ... | head`) is no error.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

/// Bytes as whole MiB (rounded down).
pub fn mib(bytes: i64) -> i64 {
    bytes / faas_common::units::MIB as i64
}

/// A duration in ms as a person reads it: `0s`, `3s`, `2m10s`, `1h5m`, `2d3h` (two units at
/// most, the smaller left out when 0).
pub fn ago(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (big, small, units) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, s % 60, ("m", "s")),
        3600..86_400 => (s / 3600, s % 3600 / 60, ("h", "m")),
        _ => (s / 86_400, s % 86_400 / 3600, ("d", "h")),
    };
    if small == 0 {
        format!("{big}{}", units.0)
    } else {
        format!("{big}{}{small}{}", units.0, units.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(ago(-5), "0s");
        assert_eq!(ago(999), "0s");
        assert_eq!(ago(3_400), "3s");
        assert_eq!(ago(130_000), "2m10s");
        assert_eq!(ago(120_000), "2m");
        assert_eq!(ago(3_900_000), "1h5m");
        assert_eq!(ago(3 * 86_400_000 + 7_200_000), "3d2h");
    }

    #[test]
    fn json_is_asked_for_either_way() {
        let table = OutputArgs::default();
        assert!(!table.is_json());
        let o = OutputArgs {
            output: Format::Json,
            json: false,
        };
        let flag = OutputArgs {
            output: Format::Table,
            json: true,
        };
        assert!(o.is_json() && flag.is_json());
        assert_eq!(mib(300 << 20), 300);
    }
}
