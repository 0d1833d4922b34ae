//! Finding the memory cgroups (v1, v2, mounts of subtrees), naming and sweeping node groups,
//! reading OOM kills, and setting limits, against text and temporary directories.

use super::*;

/// This machine's kind: v1 controllers, a nested memory cgroup, an empty unified one.
const PROC_V1: &str = "9:name=systemd:/\n4:memory:/process_api/c9bd\n1:cpu:/\n0::/\n";
const MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

#[test]
fn proc_self_cgroup_names_the_v1_memory_and_the_unified_groups() {
    assert_eq!(
        parse_proc_cgroup(PROC_V1),
        OwnCgroups {
            v1_memory: Some("/process_api/c9bd".into()),
            unified: Some("/".into()),
        }
    );
    let comounted = parse_proc_cgroup("5:cpu,memory:/a:b\n");
    assert_eq!(comounted.v1_memory.as_deref(), Some("/a:b"));
    assert_eq!(parse_proc_cgroup("0::/user.slice/x\n").v1_memory, None);
}

#[test]
fn the_v1_pids_group_is_found_under_its_mount() {
    let mounts =
        format!("{MOUNTS}36 31 0:33 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n");
    let proc = "8:pids:/a\n4:memory:/b\n";
    assert_eq!(
        locate_v1_pids(proc, &mounts).unwrap(),
        Path::new("/sys/fs/cgroup/pids/a")
    );
    let e = locate_v1_pids(proc, MOUNTS).unwrap_err();
    assert!(e.contains("pids controller (/a) is not mounted"), "{e}");
    let e = locate_v1_pids(PROC_V1, &mounts).unwrap_err();
    assert!(e.contains("no cgroup v1 pids group"), "{e}");
}

#[test]
fn v1_memory_wins_and_is_found_under_its_mount() {
    let h = Hierarchy::locate(PROC_V1, MOUNTS).unwrap();
    assert_eq!(h.version, Version::V1);
    assert_eq!(
        h.own_dir,
        Path::new("/sys/fs/cgroup/memory/process_api/c9bd")
    );
}

#[test]
fn a_mount_of_a_subtree_strips_its_root() {
    let mounts = "35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let h = Hierarchy::locate("4:memory:/docker/abc/inner\n", mounts).unwrap();
    assert_eq!(h.own_dir, Path::new("/sys/fs/cgroup/memory/inner"));
    let h = Hierarchy::locate("4:memory:/docker/abc\n", mounts).unwrap();
    assert_eq!(h.own_dir, Path::new("/sys/fs/cgroup/memory"));
    // A sibling whose name merely starts like the root is not below it.
    let e = Hierarchy::locate("4:memory:/docker/abcd\n", mounts).unwrap_err();
    assert!(e.contains("not mounted"), "{e}");
}

#[test]
fn pure_v2_is_found_on_its_mount_with_escapes_undone() {
    let mounts = "29 23 0:26 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
    let h = Hierarchy::locate("0::/system.slice/node.service\n", mounts).unwrap();
    assert_eq!(h.version, Version::V2);
    assert_eq!(
        h.own_dir,
        Path::new("/sys/fs/my cgroup/system.slice/node.service")
    );
}

#[test]
fn no_memory_cgroup_is_said_plainly() {
    let e = Hierarchy::locate("1:cpu:/\n", MOUNTS).unwrap_err();
    assert!(e.contains("no memory cgroup"), "{e}");
    let e = Hierarchy::locate("4:memory:/x\n", "").unwrap_err();
    assert!(
        e.contains("v1 memory controller (/x) is not mounted"),
        "{e}"
    );
}

#[test]
fn v2_groups_go_below_the_nodes_cgroup_where_they_can_else_beside_it() {
    let root = std::env::temp_dir().join(format!("faas-v2-{}", uuid::Uuid::new_v4()));
    let own = root.join("node.scope");
    fs::create_dir_all(&own).unwrap();
    fs::write(root.join("cgroup.subtree_control"), "cpu memory").unwrap();
    let h = Hierarchy {
        version: Version::V2,
        own_dir: own.clone(),
    };
    fs::write(own.join("cgroup.controllers"), "cpu io").unwrap();
    let e = h.groups_dir().unwrap_err();
    assert!(e.contains("memory controller is not enabled"), "{e}");
    fs::write(own.join("cgroup.controllers"), "cpu memory").unwrap();
    fs::write(own.join("cgroup.subtree_control"), "memory").unwrap();
    assert_eq!(h.groups_dir().unwrap(), own, "a group that can hold them");
    // Enabling fails (here: not a file; on a host: EBUSY, the node is in it).
    fs::remove_file(own.join("cgroup.subtree_control")).unwrap();
    fs::create_dir(own.join("cgroup.subtree_control")).unwrap();
    assert_eq!(h.groups_dir().unwrap(), root, "beside the node's group");
    fs::write(root.join("cgroup.subtree_control"), "cpu").unwrap();
    let e = h.groups_dir().unwrap_err();
    assert!(e.contains("holds processes"), "{e}");
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn node_groups_carry_a_clean_id_and_the_pid_that_owns_them() {
    assert_eq!(node_group_name("node-1", 42, 0), "faas-node-1.42.0");
    assert_eq!(node_group_name("a/b.c d", 7, 3), "faas-a_b_c_d.7.3");
    assert_eq!(node_group_name("", 7, 0), "faas-node.7.0");
    assert_eq!(node_group_name(&"x".repeat(300), 1, 0).len(), 5 + 64 + 4);
    assert_eq!(owner_pid("faas-node-1.42.0"), Some(42));
    assert_eq!(owner_pid(&node_group_name("a.b", 9, 1)), Some(9));
    for other in [
        "faas-.1.2",
        "faas-x.y.2",
        "other.1.2",
        "faas-x.1",
        "faas-x.1.z",
    ] {
        assert_eq!(owner_pid(other), None, "{other}");
    }
}

#[test]
fn only_groups_of_gone_processes_other_than_this_one_are_leftovers() {
    let alive = |pid: u32| pid == 100;
    assert!(leftover("faas-n.200.0", 1, alive));
    assert!(!leftover("faas-n.100.0", 1, alive));
    assert!(!leftover("faas-n.1.0", 1, alive), "this process's own");
    assert!(!leftover("memory.limit_in_bytes", 1, alive));
}

#[test]
fn the_sweep_removes_the_groups_of_gone_nodes_with_their_containers() {
    let dir = std::env::temp_dir().join(format!("faas-sweep-{}", uuid::Uuid::new_v4()));
    for group in [
        "faas-n.200.0/c1",
        "faas-n.200.0/c2",
        "faas-n.100.0/c3",
        "keep",
    ] {
        fs::create_dir_all(dir.join(group)).unwrap();
    }
    let swept = sweep(&dir, 1, |pid| pid == 100);
    assert_eq!(swept.removed, ["faas-n.200.0"]);
    assert!(swept.failed.is_empty());
    assert!(!dir.join("faas-n.200.0").exists());
    assert!(dir.join("faas-n.100.0/c3").exists() && dir.join("keep").exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oom_kills_come_from_the_kernels_counters() {
    let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
    assert_eq!(oom_kills_v1(v1, 9), 2);
    assert_eq!(oom_kills_v1("oom_kill_disable 0\nunder_oom 0\n", 3), 1);
    assert_eq!(oom_kills_v1("oom_kill_disable 0\n", 0), 0);
    let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
    assert_eq!(oom_kills_v2(v2), 1);
    assert_eq!(oom_kills_v2("low 0\n"), 0);
}

#[test]
fn v1_limits_set_memory_and_swap_alike() {
    let dir = std::env::temp_dir().join(format!("faas-limit-{}", uuid::Uuid::new_v4()));
    fs::create_dir_all(&dir).unwrap();
    write_limit(Version::V1, &dir, 64 << 20).unwrap();
    assert_eq!(
        read_u64(&dir.join("memory.limit_in_bytes")).unwrap(),
        64 << 20
    );
    assert!(
        !dir.join("memory.memsw.limit_in_bytes").exists(),
        "no swap file, none made"
    );
    fs::write(dir.join("memory.memsw.limit_in_bytes"), "1").unwrap();
    write_limit(Version::V1, &dir, 128 << 20).unwrap();
    for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
        assert_eq!(read_u64(&dir.join(file)).unwrap(), 128 << 20, "{file}");
    }
    fs::remove_dir_all(&dir).unwrap();
}
