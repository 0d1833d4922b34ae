//! Errors as the `faas` command prints them: one line a person reads.

/// `err` and its causes as one line, `outer: inner: ...`, leaving out a cause whose text the
/// line already holds (many errors repeat their source's text in their own message) and
/// joining the lines of a multi-line message.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:80: {source}")]
    struct Bind {
        source: std::io::Error,
    }

    #[test]
    fn causes_are_joined_once_on_one_line() {
        let err = anyhow::Error::new(Bind {
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        })
        .context("apiserver cannot start");
        assert_eq!(
            one_line(&err),
            "apiserver cannot start: cannot listen on 127.0.0.1:80: address in use"
        );
        let err = anyhow::anyhow!("first line\n  second line").context("outer");
        assert_eq!(one_line(&err), "outer: first line second line");
    }
}
