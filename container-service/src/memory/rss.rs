//! Resident set sizes read from `/proc/PID/status`: this process's own (`VmRSS`), and the
//! parser the watchdog uses for its children's (`VmRSS`, and `VmHWM`, the peak).

/// Resident bytes of this process, or 0 where `/proc` is not available.
pub fn current_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_vm_rss(&s))
        .unwrap_or(0)
}

/// Parses the `VmRSS:   1234 kB` line of a `/proc/PID/status` text into bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    parse_status_bytes(status, "VmRSS")
}

/// Parses the `<field>:   1234 kB` line of a `/proc/PID/status` text into bytes (`VmRSS`,
/// `VmHWM`, ...). `None` when the line is missing, as it is for a zombie (no memory left).
pub fn parse_status_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kb: u64 = line[field.len() + 1..]
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

    #[test]
    fn parses_any_field_by_its_exact_name() {
        let status = "VmHWMX:\t9 kB\nVmHWM:\t    4096 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_status_bytes(status, "VmHWM"), Some(4096 * 1024));
        assert_eq!(parse_status_bytes(status, "VmRSS"), Some(1024));
        assert_eq!(parse_status_bytes(status, "VmSwap"), None);
    }
}
