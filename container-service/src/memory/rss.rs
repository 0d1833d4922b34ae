//! The process's resident set size, read from `/proc/self/status` (`VmRSS`).

/// Resident bytes of this process, or 0 where `/proc` is not available.
pub fn current_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
        .unwrap_or(0)
}

/// Parses the `VmRSS:   1234 kB` line of a `/proc/PID/status` text into bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss_and_reads_our_own() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t    2048 kB\nVmData: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(current_rss_bytes() > 0);
    }
}
