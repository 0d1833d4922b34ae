//! The Docker runtime's arithmetic: the CPU quota a container's memory buys and CPU percent of
//! one core.

use super::*;

#[test]
fn the_cpu_quota_follows_the_memory() {
    let gib = faas_common::units::GIB;
    assert_eq!(cpu_quota_micros(gib, 0.67), 67_000);
    assert_eq!(cpu_quota_micros(3 * gib, 0.67), 201_000);
    assert_eq!(cpu_quota_micros(128 << 20, 0.67), 8_375);
    assert_eq!(cpu_quota_micros(1, 0.67), MIN_CPU_QUOTA_MICROS);
}

#[test]
fn cpu_percent_is_of_one_core() {
    // 2 of 4 cores busy for the whole interval: 200 %.
    assert_eq!(cpu_percent((0, 0), (2_000, 4_000), 4), 200.0);
    assert_eq!(cpu_percent((5, 5), (5, 5), 4), 0.0);
}

#[test]
fn names_keep_only_what_docker_allows() {
    assert_eq!(name_part("node-1"), "node-1");
    assert_eq!(name_part("a b/c:d"), "a-b-c-d");
}
