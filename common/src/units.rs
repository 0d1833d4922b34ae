//! Sizes every component speaks in, written once.

/// One mebibyte, in bytes.
pub const MIB: u64 = 1 << 20;

/// One gibibyte, in bytes.
pub const GIB: u64 = 1 << 30;

/// The memory of one contest node, MiB (the contest's resource manager hands out nodes of
/// 3 GiB: `deploy/functions.toml`, `workloads/contest.md`).
pub const CONTEST_NODE_MIB: u64 = 3072;

/// The memory of one contest node, bytes.
pub const CONTEST_NODE_BYTES: u64 = CONTEST_NODE_MIB * MIB;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contest_node_is_three_gibibytes() {
        assert_eq!(CONTEST_NODE_BYTES, 3 * GIB);
        assert_eq!(GIB, 1024 * MIB);
    }
}
