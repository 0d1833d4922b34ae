//! A small CSV reader for the trace files: columns are found by header name, every row must
//! have as many fields as the header, and every error names the file and the line.
//!
//! The trace files are plain comma-separated values; double-quoted fields (with `""` for a
//! quote) are understood too. A field never spans lines. Blank lines are skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::TraceError;

/// A CSV file read whole: its header and its data lines.
#[derive(Debug)]
pub(crate) struct CsvFile {
    pub path: PathBuf,
    pub header: Vec<String>,
    columns: HashMap<String, usize>,
    text: String,
}

/// One data row, borrowed from its file.
pub(crate) struct Row<'a> {
    pub path: &'a Path,
    pub line: usize,
    pub fields: Vec<String>,
}

impl CsvFile {
    /// Reads `path` and its header line.
    pub fn open(path: &Path) -> Result<CsvFile, TraceError> {
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let first = text.lines().enumerate().find(|(_, l)| !l.trim().is_empty());
        let Some((idx, line)) = first else {
            return Err(TraceError::Empty {
                file: path.to_path_buf(),
            });
        };
        let header = split(line).map_err(|reason| TraceError::Malformed {
            file: path.to_path_buf(),
            line: idx + 1,
            reason,
        })?;
        let mut columns = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            if columns.insert(name.clone(), i).is_some() {
                return Err(TraceError::DuplicateColumn {
                    file: path.to_path_buf(),
                    line: idx + 1,
                    column: name.clone(),
                });
            }
        }
        Ok(CsvFile {
            path: path.to_path_buf(),
            header,
            columns,
            text,
        })
    }

    /// The index of a column that must be there.
    pub fn require(&self, name: &str) -> Result<usize, TraceError> {
        self.columns
            .get(name)
            .copied()
            .ok_or_else(|| TraceError::MissingColumn {
                file: self.path.clone(),
                line: self.header_line(),
                column: name.to_string(),
            })
    }

    /// The index of a column that may be missing.
    pub fn optional(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }

    /// The line number of the header (1-based).
    pub fn header_line(&self) -> usize {
        self.text
            .lines()
            .position(|l| !l.trim().is_empty())
            .map_or(1, |i| i + 1)
    }

    /// Calls `f` on every data row, in order; stops at the first error.
    pub fn for_each_row(
        &self,
        mut f: impl FnMut(&Row<'_>) -> Result<(), TraceError>,
    ) -> Result<(), TraceError> {
        let skip = self.header_line();
        for (i, line) in self.text.lines().enumerate().skip(skip) {
            if line.trim().is_empty() {
                continue;
            }
            let line_no = i + 1;
            let fields = split(line).map_err(|reason| TraceError::Malformed {
                file: self.path.clone(),
                line: line_no,
                reason,
            })?;
            if fields.len() != self.header.len() {
                return Err(TraceError::FieldCount {
                    file: self.path.clone(),
                    line: line_no,
                    expected: self.header.len(),
                    found: fields.len(),
                });
            }
            f(&Row {
                path: &self.path,
                line: line_no,
                fields,
            })?;
        }
        Ok(())
    }
}

impl Row<'_> {
    /// The text of column `idx`.
    pub fn text(&self, idx: usize) -> &str {
        self.fields[idx].as_str()
    }

    /// A finite, non-negative number.
    pub fn number(&self, idx: usize, column: &str) -> Result<f64, TraceError> {
        let raw = self.text(idx).trim();
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(self.value_error(idx, column, "non-negative number")),
        }
    }

    /// A whole, non-negative count ("3" or "3.0").
    pub fn count(&self, idx: usize, column: &str) -> Result<u64, TraceError> {
        let raw = self.text(idx).trim();
        if let Ok(v) = raw.parse::<u64>() {
            return Ok(v);
        }
        match raw.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 => {
                Ok(v as u64)
            }
            _ => Err(self.value_error(idx, column, "whole non-negative number")),
        }
    }

    fn value_error(&self, idx: usize, column: &str, what: &'static str) -> TraceError {
        TraceError::BadValue {
            file: self.path.to_path_buf(),
            line: self.line,
            column: column.to_string(),
            value: self.text(idx).to_string(),
            what,
        }
    }
}

/// Splits one line into fields.
fn split(line: &str) -> Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => {
                        out.push(field);
                        break;
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(split("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(split("a,b\r").unwrap(), ["a", "b"]);
        assert_eq!(
            split(r#""x,y","say ""hi""",z"#).unwrap(),
            ["x,y", r#"say "hi""#, "z"]
        );
        assert_eq!(split("").unwrap(), [""]);
        assert!(split(r#""open"#).is_err());
        assert!(split(r#""a"b"#).is_err());
    }
}
