//! What the `process` runtime takes away from a container before its container service runs
//! (and so from the user's processes under it): the node's privileges, its environment, its
//! working directory.
//!
//! - **An unprivileged user** (`--container-user`, default `nobody`, uid/gid 65534 where
//!   `/etc/passwd` has none): when the node runs as root, the child drops its supplementary
//!   groups, then its gid, then its uid, in a `pre_exec` hook installed *after* the memory
//!   cgroup's [`super::cgroup::Joiner`] (joining a group writes a file of the node's, which
//!   the unprivileged child could not). `root` or `off` keeps the node's user; a node that is
//!   not root cannot switch and says so at start.
//! - **`no_new_privs`**: no set-user-id program can give the privileges back.
//! - **Resource limits**: [`OPEN_FILES`] open files, no core dumps, and [`PROCESSES`]
//!   processes per uid (a backstop for all containers of the user together: the per-container
//!   limit is the pids cgroup, see [`super::cgroup`]).
//! - **A clean environment**: only [`PASSED`] variables of the node's (and `LC_*`), so a
//!   secret in the node's environment never reaches a function; `HOME` and `TMPDIR` are the
//!   container's private directory.
//! - **A private directory**, the container service's working directory (the function's is
//!   its bundle): `<tmp>/faas-containers-<node's uid>/<node group>/<id>`, mode 0700, owned by
//!   the container's user, removed with the container. The node's directory is named as its
//!   cgroups are (`faas-<node id>.<pid>.<n>`), so the one a node killed with SIGKILL left is
//!   removed by the next node's start.
//!
//! The hook makes only async-signal-safe calls (`setrlimit`, `prctl`, `setgroups`, `setgid`,
//! `setuid`); everything it needs is computed before the fork. What it cannot isolate (the
//! filesystem view, the network, other processes) only the Docker runtime does.

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::cgroup;

/// The default `--container-user`.
pub const DEFAULT_USER: &str = "nobody";
/// The uid and gid of `nobody` where `/etc/passwd` has no such user.
pub const NOBODY: u32 = 65534;
/// A container's open files (RLIMIT_NOFILE, soft and hard).
pub const OPEN_FILES: u64 = 1024;
/// Processes and threads of the containers' user together (RLIMIT_NPROC; it counts per uid
/// across every container of that user, so it is only a backstop).
pub const PROCESSES: u64 = 4096;
/// The node's variables a container gets (with every `LC_*`); all else is left out.
pub const PASSED: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "NO_COLOR",
    // The container service's own setting that the node does not pass as a flag.
    "FAAS_EMULATE_MEMORY_LIMIT",
];
/// `PATH` when the node has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The directory (under the temporary one, `-<uid>` added: one per user of nodes) of every
/// node's container directories.
const DIRS: &str = "faas-containers";

/// A user and group to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// `--container-user`: `root`/`off` (none: the node's user), `UID[:GID]`, or a user name of
/// the system's user database (`nobody` is 65534 where it has none).
pub fn resolve_user(spec: &str) -> Result<Option<Account>, String> {
    let spec = spec.trim();
    if spec == "off" || spec == "root" {
        return Ok(None);
    }
    if let Some((uid, gid)) = numeric(spec) {
        return Ok((uid != 0).then_some(Account { uid, gid }));
    }
    match lookup(spec)? {
        Some(account) => Ok((account.uid != 0).then_some(account)),
        None if spec == DEFAULT_USER => Ok(Some(Account {
            uid: NOBODY,
            gid: NOBODY,
        })),
        None => Err(format!(
            "--container-user {:?} is not a user of this system: give a user name, UID[:GID], \
             or root/off to run containers as the node's user",
            faas_common::text::clip(spec)
        )),
    }
}

/// `UID` or `UID:GID` (a lone uid is its own gid).
fn numeric(spec: &str) -> Option<(u32, u32)> {
    let (uid, gid) = spec.split_once(':').unwrap_or((spec, spec));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// The user `name` of the system's user database (`getpwnam_r`).
#[allow(unsafe_code)]
fn lookup(name: &str) -> Result<Option<Account>, String> {
    let c_name = CString::new(name).map_err(|_| "--container-user has a NUL byte".to_string())?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: `passwd` is plain data getpwnam_r fills in, pointing into `buf`, which outlives
    // every use; `found` is set to it or to null.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as above; the buffer's length is passed with it.
    let r = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if r != 0 {
        return Err(format!(
            "cannot look up --container-user {name:?}: {}",
            io::Error::from_raw_os_error(r)
        ));
    }
    Ok((!found.is_null()).then_some(Account {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }))
}

/// This process's effective uid.
#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no failure and touches no memory.
    unsafe { libc::geteuid() }
}

/// Whether this process is root (and so can switch users).
pub fn is_root() -> bool {
    effective_uid() == 0
}

/// The environment a container starts with: the [`PASSED`] variables and `LC_*` of `node`
/// (`PATH` defaulted), and `HOME`/`TMPDIR` set to its private directory `home`.
pub fn environment(
    node: impl IntoIterator<Item = (OsString, OsString)>,
    home: &Path,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = node
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_string_lossy();
            PASSED.contains(&k.as_ref()) || k.starts_with("LC_")
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env.push(("HOME".into(), home.into()));
    env.push(("TMPDIR".into(), home.into()));
    env
}

/// Why `account` cannot reach `path` (search every directory above it, and `need` of the
/// `rwx` bits on the path itself), or `Ok`. Supplementary groups are dropped, so only the
/// account's own uid and gid count.
pub fn reachable(path: &Path, account: Account, need: u32) -> Result<(), String> {
    let path = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let allowed = |p: &Path, need: u32| -> Result<(), String> {
        let meta = fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mode = meta.mode();
        let bits = if meta.uid() == account.uid {
            mode >> 6
        } else if meta.gid() == account.gid {
            mode >> 3
        } else {
            mode
        } & 0o7;
        if bits & need == need {
            return Ok(());
        }
        Err(format!(
            "{} is mode {:o}, owned by uid {} gid {}",
            p.display(),
            mode & 0o7777,
            meta.uid(),
            meta.gid()
        ))
    };
    for dir in path.ancestors().skip(1) {
        allowed(dir, 0o1)?;
    }
    allowed(&path, need)
}

/// Counts the private directories' node directories this process opened.
static OPENED: AtomicU32 = AtomicU32::new(0);

/// What the runtime does to each container (see the module docs).
#[derive(Debug)]
pub struct Isolation {
    /// Whom containers run as (`None`: the node's user).
    account: Option<Account>,
    /// `--container-user` as given (for the start log).
    user: String,
    /// The node's directory of its containers' private directories.
    dir: PathBuf,
}

/// The `rlimit` of `value`, soft and hard.
fn rlimit(value: u64) -> libc::rlimit {
    libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    }
}

/// `Ok` when a libc call returned 0, else errno (no allocation: fit for a `pre_exec` hook).
fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Isolation {
    /// Resolves `user` (`--container-user`) and makes the node's directory of private
    /// directories (under `tmp`), removing those of gone nodes; the error is one line.
    pub fn open(user: &str, node_id: &str, tmp: &Path) -> Result<Isolation, String> {
        let account = resolve_user(user)?.filter(|_| is_root());
        let me = effective_uid();
        let root = tmp.join(format!("{DIRS}-{me}"));
        make_dir(&root, 0o711)?;
        let meta = fs::symlink_metadata(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        // A directory someone else made (in a world-writable tmp) is not used.
        if !meta.is_dir() || meta.uid() != me {
            return Err(format!(
                "{} is not a directory of this user (uid {me}): remove it",
                root.display()
            ));
        }
        for entry in fs::read_dir(&root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if cgroup::leftover(&name, std::process::id(), cgroup::pid_alive) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let name = cgroup::node_group_name(
            node_id,
            std::process::id(),
            OPENED.fetch_add(1, Ordering::Relaxed),
        );
        let dir = root.join(name);
        make_dir(&dir, 0o711)?;
        Ok(Isolation {
            account,
            user: user.to_string(),
            dir,
        })
    }

    /// Whom containers run as (`None`: the node's user).
    pub fn account(&self) -> Option<Account> {
        self.account
    }

    /// The private directory of container `id`.
    pub fn home(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Makes container `id`'s private directory and sets `cmd` up to start in it, with a
    /// clean environment, limits and `no_new_privs`, as the container's user. Install it
    /// after the cgroups' joiner.
    #[allow(unsafe_code)]
    pub fn install(&self, id: &str, cmd: &mut tokio::process::Command) -> io::Result<()> {
        let home = self.home(id);
        fs::DirBuilder::new().mode(0o700).create(&home)?;
        if let Some(a) = self.account {
            std::os::unix::fs::chown(&home, Some(a.uid), Some(a.gid))?;
        }
        cmd.env_clear()
            .envs(environment(std::env::vars_os(), &home))
            .current_dir(&home);
        let account = self.account;
        // SAFETY: the hook runs in the forked child: only async-signal-safe calls on values
        // copied in before the fork (see `check`).
        unsafe {
            cmd.pre_exec(move || {
                for (resource, value) in [
                    (libc::RLIMIT_NOFILE, OPEN_FILES),
                    (libc::RLIMIT_CORE, 0),
                    (libc::RLIMIT_NPROC, PROCESSES),
                ] {
                    check(libc::setrlimit(resource, &rlimit(value)))?;
                }
                if let Some(a) = account {
                    check(libc::setgroups(0, std::ptr::null()))?;
                    check(libc::setgid(a.gid))?;
                    check(libc::setuid(a.uid))?;
                }
                check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
            });
        }
        Ok(())
    }

    /// Removes container `id`'s private directory (its processes are gone).
    pub fn remove(&self, id: &str) {
        if let Err(e) = fs::remove_dir_all(self.home(id))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(container = %id, error = %e, "cannot remove a container's directory");
        }
    }

    /// Removes the node's directory of private directories (a clean shutdown).
    pub fn close(&self) {
        let _ = fs::remove_dir_all(&self.dir);
    }

    /// Logs, at info, what containers run as.
    pub fn log(&self) {
        let dir = self.dir.display();
        match self.account {
            Some(a) => tracing::info!(
                user = %self.user,
                uid = a.uid,
                gid = a.gid,
                %dir,
                "containers run unprivileged (--container-user), with no_new_privs, \
                 RLIMIT_NOFILE {OPEN_FILES}, RLIMIT_NPROC {PROCESSES}, no core dumps, a clean \
                 environment and a private directory in dir"
            ),
            None => tracing::info!(
                user = %self.user,
                root = is_root(),
                %dir,
                "containers run as the node's user (--container-user root/off, or the node is \
                 not root), with no_new_privs, limits, a clean environment and a private \
                 directory in dir"
            ),
        }
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        self.close();
    }
}

/// Makes `dir` (gone is made, there is fine) with `mode`.
fn make_dir(dir: &Path, mode: u32) -> Result<(), String> {
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_name_number_or_not_at_all() {
        assert_eq!(resolve_user("off"), Ok(None));
        assert_eq!(resolve_user("root"), Ok(None));
        assert_eq!(resolve_user("0"), Ok(None));
        let nobody = Some(Account {
            uid: NOBODY,
            gid: NOBODY,
        });
        assert_eq!(resolve_user("nobody"), Ok(nobody));
        assert_eq!(resolve_user("65534"), Ok(nobody));
        assert_eq!(
            resolve_user("1000:100"),
            Ok(Some(Account {
                uid: 1000,
                gid: 100
            }))
        );
        let e = resolve_user("no-such-user-xyz").unwrap_err();
        assert!(e.contains("is not a user of this system"), "{e}");
    }

    #[test]
    fn the_environment_keeps_only_what_a_container_needs() {
        let node = [
            ("PATH", "/bin"),
            ("SECRET_TOKEN", "s3cret"),
            ("LC_ALL", "C"),
            ("RUST_LOG", "warn"),
            ("FAAS_CLUSTER_TOKEN", "t"),
            ("HOME", "/root"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = environment(node, Path::new("/tmp/c"));
        let names: Vec<_> = env.iter().map(|(k, _)| k.to_string_lossy()).collect();
        assert_eq!(names, ["PATH", "LC_ALL", "RUST_LOG", "HOME", "TMPDIR"]);
        assert_eq!(env[3].1, "/tmp/c");
        let bare = environment(Vec::new(), Path::new("/h"));
        assert_eq!(bare[0], ("PATH".into(), DEFAULT_PATH.into()));
    }

    #[test]
    fn a_path_is_reachable_only_through_searchable_directories() {
        let base = std::env::temp_dir().join(format!("faas-reach-{}", uuid::Uuid::new_v4()));
        let inner = base.join("inner");
        fs::create_dir_all(&inner).unwrap();
        let file = inner.join("f");
        fs::write(&file, "x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        let stranger = Account {
            uid: 4242,
            gid: 4242,
        };
        assert_eq!(reachable(&file, stranger, 0o5), Ok(()));
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        let e = reachable(&file, stranger, 0o1).unwrap_err();
        assert!(e.contains("is mode 700"), "{e}");
        fs::remove_dir_all(&base).unwrap();
    }
}
