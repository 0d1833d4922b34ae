//! InVitro's trace layout (vHive's load generator): a directory holding `invocations.csv`,
//! `durations.csv` and `memory.csv`.
//!
//! These are the Azure Functions 2019 columns under newer names, so users bring InVitro's
//! traces unchanged and they are read by [`super::azure2019`]:
//!
//! | file | header | as in 2019 |
//! |---|---|---|
//! | `invocations.csv` | `HashOwner,HashApp,HashFunction,Trigger,1,…,1440` | `N_inv.csv` |
//! | `durations.csv` | `HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_{0,1,25,50,75,99,100}` | `N_run.csv` |
//! | `memory.csv` | `HashOwner,HashApp,HashFunction,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct{1,5,25,50,75,95,99,100}` | `N_mem.csv` |
//!
//! Memory is keyed by `HashFunction` here (the 2019 reader uses that column where a file has
//! it). `memory.csv` is optional, as in the 2019 layout.

use std::path::Path;

use super::TraceError;
use super::azure2019::Azure2019Files;

/// The invocation-count file's name.
pub const INVOCATIONS: &str = "invocations.csv";
/// The duration file's name.
pub const DURATIONS: &str = "durations.csv";
/// The memory file's name.
pub const MEMORY: &str = "memory.csv";

/// The files of an InVitro trace in `dir`, if it has `invocations.csv`. An
/// `invocations.csv` without `durations.csv` is an error naming what is missing; a
/// directory without `invocations.csv` is not this layout (`Ok(None)`).
pub fn find(dir: &Path) -> Result<Option<Azure2019Files>, TraceError> {
    let invocations = dir.join(INVOCATIONS);
    if !invocations.is_file() {
        return Ok(None);
    }
    let durations = dir.join(DURATIONS);
    if !durations.is_file() {
        return Err(TraceError::NotFound {
            dir: dir.to_path_buf(),
            kind: "duration",
            looked_for: DURATIONS.to_string(),
        });
    }
    let memory = Some(dir.join(MEMORY)).filter(|m| m.is_file());
    Ok(Some(Azure2019Files {
        invocations,
        durations,
        memory,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Trace, TraceOptions};

    const HASHES: &str = "o1,a1,f1";

    /// A scratch directory, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("faas-e2e-invitro-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write_trace(dir: &Path, memory: bool) {
        let minutes: Vec<String> = (1..=3).map(|m| m.to_string()).collect();
        std::fs::write(
            dir.join(INVOCATIONS),
            format!(
                "HashOwner,HashApp,HashFunction,Trigger,{}\n{HASHES},http,2,0,3\n",
                minutes.join(",")
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join(DURATIONS),
            format!(
                "HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,\
                 percentile_Average_1,percentile_Average_25,percentile_Average_50,\
                 percentile_Average_75,percentile_Average_99,percentile_Average_100\n\
                 {HASHES},100,5,10,400,10,12,50,100,150,390,400\n"
            ),
        )
        .unwrap();
        if memory {
            std::fs::write(
                dir.join(MEMORY),
                format!(
                    "HashOwner,HashApp,HashFunction,SampleCount,AverageAllocatedMb,\
                     AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,\
                     AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,\
                     AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n\
                     {HASHES},10.0,120.0,100.0,102.0,114.0,123.0,127.0,136.0,143.0,152.0\n"
                ),
            )
            .unwrap();
        }
    }

    #[test]
    fn an_invitro_directory_opens_as_a_2019_trace() {
        let dir = Scratch::new("full");
        write_trace(dir.path(), true);
        let files = find(dir.path()).unwrap().unwrap();
        assert_eq!(files.invocations, dir.path().join(INVOCATIONS));
        assert_eq!(files.memory, Some(dir.path().join(MEMORY)));
        let Trace::Azure2019(t) = Trace::open(dir.path()).unwrap() else {
            panic!("not read as the 2019 format");
        };
        assert_eq!(t.minutes, 3);
        assert_eq!(t.functions.len(), 1);
        let f = &t.functions[0];
        assert_eq!(f.per_minute, vec![2, 0, 3]);
        assert_eq!(f.trigger.as_deref(), Some("http"));
        assert_eq!(f.average_ms, 100.0);
        assert!(f.memory_mb.is_some(), "memory joined by HashFunction");
        let w = Trace::open(dir.path())
            .unwrap()
            .to_workload(&TraceOptions::default())
            .unwrap();
        assert_eq!(w.invocations.len(), 5);
    }

    #[test]
    fn memory_is_optional_and_durations_are_not() {
        let dir = Scratch::new("nomem");
        write_trace(dir.path(), false);
        assert_eq!(find(dir.path()).unwrap().unwrap().memory, None);
        std::fs::remove_file(dir.path().join(DURATIONS)).unwrap();
        let err = find(dir.path()).unwrap_err();
        assert!(err.to_string().contains(DURATIONS), "{err}");
        let empty = Scratch::new("empty");
        assert_eq!(find(empty.path()).unwrap(), None);
    }
}
