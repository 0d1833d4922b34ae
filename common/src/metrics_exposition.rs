//! Reads the Prometheus / OpenMetrics text format back: the families (`# TYPE`, `# HELP`)
//! and their samples, checked line by line (a sample of no declared family, a label not
//! quoted, a value that is no number are errors). Tests use it to check what each
//! component exposes against the README's table; tools to read one figure.

use std::collections::BTreeMap;

/// One sample: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family: its declared name, type (`counter`, `gauge`, `histogram`, ...),
/// help and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The name queries use: a counter's samples end in `_total`, every other family's
    /// name is its own (a histogram's samples add `_bucket`, `_sum`, `_count`).
    pub fn query_name(&self) -> String {
        match self.kind.as_str() {
            "counter" => format!("{}_total", self.name),
            _ => self.name.clone(),
        }
    }

    fn owns(&self, sample: &str) -> bool {
        let suffixes: &[&str] = match self.kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            _ => &[""],
        };
        sample
            .strip_prefix(self.name.as_str())
            .is_some_and(|rest| suffixes.contains(&rest))
    }
}

/// The families of `text`, in order; an error names the line that is not the format.
pub fn parse(text: &str) -> Result<Vec<Family>, String> {
    let mut families: Vec<Family> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                return Err(bad("a comment names no metric"));
            };
            let value = parts.next().unwrap_or("").to_string();
            if !valid_name(name) {
                return Err(bad("not a metric name"));
            }
            if families.last().is_none_or(|f| f.name != name) {
                if families.iter().any(|f| f.name == name) {
                    return Err(bad("a family declared twice"));
                }
                families.push(Family {
                    name: name.to_string(),
                    kind: "unknown".into(),
                    help: String::new(),
                    samples: Vec::new(),
                });
            }
            let family = families.last_mut().expect("pushed above");
            match what {
                "TYPE" => family.kind = value,
                "HELP" => family.help = value,
                _ => {}
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let sample = sample(line).map_err(|why| bad(&why))?;
        let Some(family) = families.last_mut().filter(|f| f.owns(&sample.name)) else {
            return Err(bad("a sample outside its family"));
        };
        if family.kind == "histogram"
            && sample.name.ends_with("_bucket")
            && !sample.labels.contains_key("le")
        {
            return Err(bad("a histogram bucket without `le`"));
        }
        family.samples.push(sample);
    }
    Ok(families)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn sample(line: &str) -> Result<Sample, String> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(at) => line.split_at(at),
        None => return Err("no value".into()),
    };
    if !valid_name(name) {
        return Err("not a metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = rest;
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let mut end = None;
        loop {
            while chars.peek().is_some_and(|(_, c)| *c == ',') {
                chars.next();
            }
            match chars.peek() {
                Some((at, '}')) => {
                    end = Some(*at);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if !valid_name(&key) {
                return Err(format!("label name {key:?}"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} not quoted"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("label {key} not closed"));
            }
            labels.insert(key, value);
        }
        let Some(end) = end else {
            return Err("labels not closed".into());
        };
        rest = &body[end + 1..];
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|_| format!("value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP faas_x_calls Calls.\n# TYPE faas_x_calls counter\n\
        faas_x_calls_total{outcome=\"ok\",fn=\"a\\\"b\"} 3\n\
        # HELP faas_x_wait_seconds Wait.\n# TYPE faas_x_wait_seconds histogram\n\
        faas_x_wait_seconds_sum 0.5\nfaas_x_wait_seconds_count 2\n\
        faas_x_wait_seconds_bucket{le=\"0.1\"} 1\nfaas_x_wait_seconds_bucket{le=\"+Inf\"} 2\n\
        # HELP faas_x_idle Idle.\n# TYPE faas_x_idle gauge\n# EOF\n";

    #[test]
    fn families_samples_and_labels_are_read() {
        let families = parse(TEXT).unwrap();
        let names: Vec<_> = families.iter().map(Family::query_name).collect();
        assert_eq!(
            names,
            ["faas_x_calls_total", "faas_x_wait_seconds", "faas_x_idle"]
        );
        let calls = &families[0].samples[0];
        assert_eq!(calls.value, 3.0);
        assert_eq!(calls.labels["fn"], "a\"b");
        assert_eq!(families[1].samples.len(), 4);
        assert_eq!(families[1].samples[3].labels["le"], "+Inf");
        assert!(families[2].samples.is_empty());
        assert_eq!(families[2].help, "Idle.");
    }

    #[test]
    fn what_is_not_the_format_is_refused() {
        for bad in [
            "orphan_total 1\n",
            "# TYPE a counter\nb_total 1\n",
            "# TYPE a gauge\na{x=1} 1\n",
            "# TYPE a gauge\na{x=\"1} 1\n",
            "# TYPE a gauge\na one\n",
            "# TYPE a histogram\na_bucket 1\n",
            "# TYPE a gauge\n# TYPE b gauge\n# TYPE a gauge\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
