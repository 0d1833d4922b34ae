//! Trace readers on small fixture files written here, on malformed files, and on the real
//! sample files under `shared/traces` (skipped with a message when that directory is absent).

use std::path::{Path, PathBuf};

use faas_e2e::trace::azure2019::{self, Azure2019Files, Azure2019Trace, MemoryKey};
use faas_e2e::trace::{
    ATTRIBUTION_2019, ATTRIBUTION_2021, Azure2021Trace, Body, Iat, Selection, Trace, TraceError,
    TraceOptions,
};
use faas_e2e::workload::{HandlerKind, MIB};

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faas-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn real_traces() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: real-trace assertions: {} is absent",
            dir.display()
        );
        None
    }
}

const SAMPLED_INV: &str = "\
HashFunction,HashApp,HashOwner,minute_1,minute_2,minute_3,minute_4
fa,app1,own1,3,0,5,1
fb,app1,own1,0,2,0,0
fc,app2,own2,10,10,10,10
";
const SAMPLED_RUN: &str = "\
HashFunction,HashApp,HashOwner,Count,Average,Minimum,Maximum,percentile_Average_0,percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,percentile_Average_100
fa,app1,own1,9,100,10.0,500.0,10,20,50,100,200,400,500
fb,app1,own1,2,1000,900,1100,900,900,950,1000,1050,1100,1100
fc,app2,own2,40,5,1,9,1,1,2,5,7,9,9
";
const SAMPLED_MEM_BY_APP: &str = "\
HashApp,HashOwner,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100
app1,own1,100,200,100,120,150,200,250,300,350,400
app2,own2,100,50,40,41,42,50,55,60,61,62
";

fn sampled_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    write(&dir, "t_inv.csv", SAMPLED_INV);
    write(&dir, "t_run.csv", SAMPLED_RUN);
    write(&dir, "t_mem.csv", SAMPLED_MEM_BY_APP);
    dir
}

#[test]
fn sampled_layout_reads_and_joins() {
    let dir = sampled_dir("sampled");
    let files = Azure2019Files::find(&dir).unwrap();
    assert!(files.invocations.ends_with("t_inv.csv"));
    let t = Azure2019Trace::from_files(&files).unwrap();
    assert_eq!(t.minutes, 4);
    assert_eq!(t.functions.len(), 3);
    assert_eq!(t.without_durations, 0);
    assert_eq!(t.functions[0].key.function, "fa");
    assert_eq!(t.functions[0].per_minute, [3, 0, 5, 1]);
    assert_eq!(t.functions[0].average_ms, 100.0);
    // Memory is per app here: fa and fb share app1's.
    assert_eq!(t.functions[0].memory_mb, t.functions[1].memory_mb);
    assert_eq!(t.functions[0].memory_mb.as_ref().unwrap().max(), 400.0);
    assert_eq!(t.functions[2].memory_mb.as_ref().unwrap().max(), 62.0);

    let opts = TraceOptions {
        memory_scale: 0.5,
        duration_scale: 0.5,
        ..TraceOptions::default()
    };
    let w = t.to_workload(&opts).unwrap();
    assert_eq!(w.functions.len(), 3);
    assert_eq!(w.calls_per_function(), [9, 2, 40]);
    assert_eq!(w.duration_ms, 4 * 60_000);
    assert_eq!(w.attribution.as_deref(), Some(ATTRIBUTION_2019));
    assert!(w.invocations.windows(2).all(|p| p[0].at_ms <= p[1].at_ms));
    // fa: 400 MB * 0.5 / 0.8 = 250 -> 256 MiB limit, touches at most 200 MB (400 * 0.5).
    let fa = &w.functions[0];
    assert_eq!(fa.memory_bytes, 256 * MIB);
    assert_eq!(fa.handler, HandlerKind::Spin);
    for inv in w.invocations.iter().filter(|i| i.function == 0) {
        assert!((5..=250).contains(&inv.expected_duration_ms), "{inv:?}");
        assert!((50..=200).contains(&inv.expected_memory_mb), "{inv:?}");
        let ev: serde_json::Value = serde_json::from_slice(&inv.event).unwrap();
        assert_eq!(ev["ms"], inv.expected_duration_ms);
        assert_eq!(ev["mb"], inv.expected_memory_mb);
    }
    // Minute 2 (index 1) of fa has no calls; minute 3 has 5, all within it.
    let in_minute = |m: u64| {
        w.invocations
            .iter()
            .filter(|i| i.function == 0 && i.at_ms / 60_000 == m)
            .count()
    };
    assert_eq!(
        [in_minute(0), in_minute(1), in_minute(2), in_minute(3)],
        [3, 0, 5, 1]
    );
}

#[test]
fn original_layout_with_numeric_minutes_and_memory_by_function() {
    let dir = scratch("original");
    write(
        &dir,
        "invocations_per_function_md.anon.d01.csv",
        "HashOwner,HashApp,HashFunction,Trigger,1,2,3\n\
         o1,a1,f1,http,1,2,3\n\
         o1,a1,f2,timer,0,0,4\n\
         o1,a1,f3,queue,7,0,0\n",
    );
    // Columns in another order; no Count/Minimum/Maximum; f3 has no duration row.
    write(
        &dir,
        "function_durations_percentiles.anon.d01.csv",
        "percentile_Average_100,HashFunction,Average,percentile_Average_0,percentile_Average_1,\
percentile_Average_25,percentile_Average_50,percentile_Average_75,percentile_Average_99,HashApp,HashOwner\n\
         30,f1,20,10,10,15,20,25,30,a1,o1\n\
         3000,f2,2000,1000,1000,1500,2000,2500,3000,a1,o1\n",
    );
    // Keyed by HashFunction: f1 and f2, same app, different memory.
    write(
        &dir,
        "app_memory_percentiles.anon.d01.csv",
        "HashFunction,AverageAllocatedMb,AverageAllocatedMb_pct1,AverageAllocatedMb_pct5,\
AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,AverageAllocatedMb_pct95,\
AverageAllocatedMb_pct99,AverageAllocatedMb_pct100\n\
         f1,10,10,10,10,10,10,10,10,10\n\
         f2,900,800,800,850,900,950,1000,1000,1000\n",
    );
    // Another day's files must not confuse day 1.
    write(&dir, "invocations_per_function_md.anon.d02.csv", "junk");
    let mem = azure2019::read_memory(&dir.join("app_memory_percentiles.anon.d01.csv")).unwrap();
    assert_eq!(mem[0].key, MemoryKey::Function("f1".into()));
    let t = Azure2019Trace::load(&dir).unwrap();
    assert_eq!(t.functions.len(), 2);
    assert_eq!(t.without_durations, 1);
    assert_eq!(t.functions[0].trigger.as_deref(), Some("http"));
    assert_eq!(t.functions[1].per_minute, [0, 0, 4]);
    assert_ne!(t.functions[0].memory_mb, t.functions[1].memory_mb);
    let w = t
        .to_workload(&TraceOptions {
            body: Body::Sleep,
            ..TraceOptions::default()
        })
        .unwrap();
    assert_eq!(w.functions[0].memory_bytes, 128 * MIB);
    assert_eq!(w.functions[1].memory_bytes, 1280 * MIB);
    assert_eq!(w.functions[1].handler, HandlerKind::Memory);
    assert_eq!(w.invocations.len(), 10);
}

#[test]
fn windows_selection_and_equidistant_arrivals() {
    let t = Azure2019Trace::load(&sampled_dir("window")).unwrap();
    let opts = TraceOptions {
        start_minute: 1,
        minutes: Some(2),
        iat: Iat::Equidistant,
        selection: Selection::Top(2),
        ..TraceOptions::default()
    };
    let w = t.to_workload(&opts).unwrap();
    // In minutes 2-3: fc 20 calls, fa 5, fb 2: the top two are fa and fc, in trace order.
    let names: Vec<&str> = w.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["t-fa", "t-fc"]);
    assert_eq!(w.calls_per_function(), [5, 20]);
    assert_eq!(w.duration_ms, 120_000);
    let fa: Vec<u64> = w
        .invocations
        .iter()
        .filter(|i| i.function == 0)
        .map(|i| i.at_ms)
        .collect();
    // fa's minute 3 (the window's second minute): 5 calls at (k + 1/2) * 12 s.
    assert_eq!(fa, [66_000, 78_000, 90_000, 102_000, 114_000]);

    let by_hash = TraceOptions {
        selection: Selection::Functions(vec!["fb".into(), "t-fa".into()]),
        ..TraceOptions::default()
    };
    let w = t.to_workload(&by_hash).unwrap();
    assert_eq!(w.functions.len(), 2);
    let unknown = TraceOptions {
        selection: Selection::Functions(vec!["nope".into()]),
        ..TraceOptions::default()
    };
    assert!(matches!(t.to_workload(&unknown), Err(TraceError::UnknownFunction(f)) if f == "nope"));
    let beyond = TraceOptions {
        start_minute: 4,
        ..TraceOptions::default()
    };
    assert!(matches!(
        t.to_workload(&beyond),
        Err(TraceError::InvalidOption {
            name: "start_minute",
            ..
        })
    ));
    let quiet = TraceOptions {
        start_minute: 1,
        minutes: Some(1),
        selection: Selection::Functions(vec!["fa".into()]),
        ..TraceOptions::default()
    };
    assert!(matches!(
        t.to_workload(&quiet),
        Err(TraceError::NothingSelected { .. })
    ));
}

#[test]
fn same_seed_same_workload_and_functions_do_not_disturb_each_other() {
    let t = Azure2019Trace::load(&sampled_dir("seed")).unwrap();
    let o = TraceOptions::default();
    let a = t.to_workload(&o).unwrap();
    assert_eq!(a, t.to_workload(&o).unwrap());
    let other = t
        .to_workload(&TraceOptions {
            seed: 99,
            ..o.clone()
        })
        .unwrap();
    assert_ne!(a.invocations, other.invocations);
    // fc alone gives fc exactly the calls it had among the others.
    let alone = t
        .to_workload(&TraceOptions {
            selection: Selection::Functions(vec!["fc".into()]),
            ..o.clone()
        })
        .unwrap();
    let fc_all: Vec<_> = a
        .invocations
        .iter()
        .filter(|i| i.function == 2)
        .map(|i| (i.at_ms, i.event.clone()))
        .collect();
    let fc_alone: Vec<_> = alone
        .invocations
        .iter()
        .map(|i| (i.at_ms, i.event.clone()))
        .collect();
    assert_eq!(fc_all, fc_alone);
    // Sampling is deterministic too.
    let s = TraceOptions {
        selection: Selection::Sample(2),
        ..o
    };
    let s1 = t.to_workload(&s).unwrap();
    assert_eq!(s1.functions.len(), 2);
    assert_eq!(s1, t.to_workload(&s).unwrap());
}

/// Asserts that `err` names `file` and `line` and contains every one of `words`.
fn names_file_and_line(err: &TraceError, file: &str, line: usize, words: &[&str]) {
    let text = err.to_string();
    assert!(text.contains(&format!("{file}:{line}:")), "{text}");
    for w in words {
        assert!(text.contains(w), "{text} lacks {w}");
    }
}

#[test]
fn malformed_files_are_refused_with_file_and_line() {
    let dir = scratch("malformed");
    let p = write(
        &dir,
        "bad_count_inv.csv",
        "HashFunction,minute_1,minute_2\nf1,1,2\nf2,3,lots\n",
    );
    let e = azure2019::read_invocations(&p).unwrap_err();
    names_file_and_line(&e, "bad_count_inv.csv", 3, &["minute_2", "lots"]);

    let p = write(&dir, "frac_inv.csv", "HashFunction,1\nf1,2.5\n");
    let e = azure2019::read_invocations(&p).unwrap_err();
    names_file_and_line(&e, "frac_inv.csv", 2, &["whole"]);

    let p = write(&dir, "fields_inv.csv", "HashFunction,1,2\nf1,1,2\nf2,1\n");
    let e = azure2019::read_invocations(&p).unwrap_err();
    names_file_and_line(&e, "fields_inv.csv", 3, &["2 fields", "3"]);
    assert!(matches!(
        e,
        TraceError::FieldCount {
            expected: 3,
            found: 2,
            ..
        }
    ));

    let p = write(&dir, "nohash_inv.csv", "HashApp,1,2\na,1,2\n");
    let e = azure2019::read_invocations(&p).unwrap_err();
    names_file_and_line(&e, "nohash_inv.csv", 1, &["HashFunction"]);

    let p = write(&dir, "nominutes_inv.csv", "HashFunction,HashApp\nf,a\n");
    let e = azure2019::read_invocations(&p).unwrap_err();
    names_file_and_line(&e, "nominutes_inv.csv", 1, &["minute"]);

    let p = write(&dir, "dup_inv.csv", "HashFunction,1,1\nf,1,1\n");
    let e = azure2019::read_invocations(&p).unwrap_err();
    names_file_and_line(&e, "dup_inv.csv", 1, &["`1`", "twice"]);

    let p = write(&dir, "empty_inv.csv", "\n\n");
    let e = azure2019::read_invocations(&p).unwrap_err();
    assert!(matches!(e, TraceError::Empty { .. }) && e.to_string().contains("empty_inv.csv"));

    let missing_pct = SAMPLED_RUN.replace("percentile_Average_75,", "p75,");
    let p = write(&dir, "pct_run.csv", &missing_pct);
    let e = azure2019::read_durations(&p).unwrap_err();
    names_file_and_line(&e, "pct_run.csv", 1, &["percentile_Average_75"]);

    let neg = SAMPLED_RUN.replace("fb,app1,own1,2,1000", "fb,app1,own1,2,-5");
    let p = write(&dir, "neg_run.csv", &neg);
    let e = azure2019::read_durations(&p).unwrap_err();
    names_file_and_line(&e, "neg_run.csv", 3, &["Average", "-5"]);

    let nokey = SAMPLED_MEM_BY_APP.replace("HashApp,", "App,");
    let p = write(&dir, "nokey_mem.csv", &nokey);
    let e = azure2019::read_memory(&p).unwrap_err();
    names_file_and_line(&e, "nokey_mem.csv", 1, &["HashApp"]);

    let e = azure2019::read_invocations(&dir.join("absent.csv")).unwrap_err();
    assert!(matches!(e, TraceError::Io { .. }) && e.to_string().contains("absent.csv"));

    let p = write(
        &dir,
        "bad2021.csv",
        "app,func,end_timestamp,duration\na,f,1.0,0.5\na,f,x,0.1\n",
    );
    let e = Azure2021Trace::load(&p).unwrap_err();
    names_file_and_line(&e, "bad2021.csv", 3, &["end_timestamp", "\"x\""]);
    let p = write(&dir, "short2021.csv", "app,func,duration\na,f,1\n");
    let e = Azure2021Trace::load(&p).unwrap_err();
    names_file_and_line(&e, "short2021.csv", 1, &["end_timestamp"]);
}

#[test]
fn finding_files() {
    let dir = scratch("find");
    let e = Azure2019Files::find(&dir).unwrap_err();
    assert!(matches!(e, TraceError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("_inv.csv"));
    write(&dir, "a_inv.csv", SAMPLED_INV);
    write(&dir, "b_inv.csv", SAMPLED_INV);
    write(&dir, "a_run.csv", SAMPLED_RUN);
    let e = Azure2019Files::find(&dir).unwrap_err();
    assert!(e.to_string().contains("a_inv.csv, b_inv.csv"), "{e}");
    std::fs::remove_file(dir.join("b_inv.csv")).unwrap();
    // The memory file is optional.
    let f = Azure2019Files::find(&dir).unwrap();
    assert_eq!(f.memory, None);
    let t = Azure2019Trace::from_files(&f).unwrap();
    assert_eq!(t.without_memory, 3);
    let w = t.to_workload(&TraceOptions::default()).unwrap();
    assert!(w.functions.iter().all(|f| f.memory_bytes == 128 * MIB));
    assert!(w.invocations.iter().all(|i| i.expected_memory_mb == 0));
}

const INV_2021: &str = "\
app,func,end_timestamp,duration
a1,f1,10.5,0.5
a2,f1,3.0,1.0
a1,f1,2.25,0.25
a1,f2,125.0,5.0
a2,f1,61.0,0.5
";

#[test]
fn azure2021_is_sorted_by_start_and_keyed_by_app_and_func() {
    let dir = scratch("t2021");
    let p = write(&dir, "inv.csv", INV_2021);
    let t = Azure2021Trace::load(&p).unwrap();
    // Starts: 10.0, 2.0, 2.0, 120.0, 60.5 -> sorted 2.0 (a2), 2.0 (a1), 10.0, 60.5, 120.0.
    let starts: Vec<f64> = t.invocations.iter().map(|i| i.start_s).collect();
    assert_eq!(starts, [2.0, 2.0, 10.0, 60.5, 120.0]);
    // (a1, f1) and (a2, f1) are two functions.
    assert_eq!(t.functions.len(), 3);
    assert_eq!(t.minutes(), 3);
    let w = t.to_workload(&TraceOptions::default()).unwrap();
    assert_eq!(w.invocations.len(), 5);
    assert_eq!(w.attribution.as_deref(), Some(ATTRIBUTION_2021));
    let at: Vec<u64> = w.invocations.iter().map(|i| i.at_ms).collect();
    assert_eq!(at, [2_000, 2_000, 10_000, 60_500, 120_000]);
    let durations: Vec<u64> = w
        .invocations
        .iter()
        .map(|i| i.expected_duration_ms)
        .collect();
    assert_eq!(durations, [1000, 250, 500, 500, 5000]);
    // A window and a faster clock: minute 1 only, played in 6 s.
    let w = t
        .to_workload(&TraceOptions {
            start_minute: 1,
            minutes: Some(1),
            minute_ms: 6_000,
            selection: Selection::Functions(vec!["a2/f1".into()]),
            ..TraceOptions::default()
        })
        .unwrap();
    assert_eq!(w.invocations.len(), 1);
    assert_eq!(w.invocations[0].at_ms, 50);
    assert_eq!(w.duration_ms, 6_000);
    // Trace::open recognises a 2021 file and a directory holding one.
    assert!(matches!(Trace::open(&p).unwrap(), Trace::Azure2021(_)));
    assert!(matches!(Trace::open(&dir).unwrap(), Trace::Azure2021(_)));
    let sampled = sampled_dir("open2019");
    assert!(matches!(
        Trace::open(&sampled).unwrap(),
        Trace::Azure2019(_)
    ));
    let e = Trace::open(&sampled.join("t_inv.csv")).unwrap_err();
    assert!(matches!(e, TraceError::UnknownFormat { .. }), "{e}");
}

#[test]
fn real_azure2019_samples() {
    let Some(root) = real_traces() else { return };
    for (dir, n) in [
        ("azure2019-sampled-50fn", 50),
        ("azure2019-sampled-200fn", 200),
    ] {
        let t = Azure2019Trace::load(&root.join(dir)).unwrap();
        assert_eq!(t.minutes, 1440, "{dir}");
        assert_eq!(t.functions.len(), n, "{dir}");
        assert_eq!(t.without_durations, 0, "{dir}");
        assert_eq!(t.without_memory, 0, "{dir}");
        let opts = TraceOptions {
            selection: Selection::Top(5),
            start_minute: 60,
            minutes: Some(10),
            duration_scale: 0.1,
            memory_scale: 0.25,
            max_duration_ms: 10_000.0,
            invocation_scale: 0.5,
            ..TraceOptions::default()
        };
        let w = t.to_workload(&opts).unwrap();
        assert_eq!(w.functions.len(), 5);
        assert!(!w.invocations.is_empty());
        assert!(w.invocations.iter().all(|i| i.at_ms < 600_000));
        assert!(
            w.invocations
                .iter()
                .all(|i| (1..=10_000).contains(&i.expected_duration_ms))
        );
        for inv in &w.invocations {
            let f = &w.functions[inv.function];
            assert!(inv.expected_memory_mb * MIB <= f.memory_bytes);
            assert!((128 * MIB..=3072 * MIB).contains(&f.memory_bytes));
        }
        // Half the calls of the five busiest functions in the window, give or take.
        let mut window: Vec<u64> = t
            .functions
            .iter()
            .map(|f| f.per_minute[60..70].iter().sum())
            .collect();
        window.sort_unstable_by(|a, b| b.cmp(a));
        let top5: u64 = window[..5].iter().sum();
        let got = w.invocations.len() as f64;
        assert!(top5 > 100, "{dir}: {top5}");
        assert!(
            (0.4 * top5 as f64..=0.6 * top5 as f64).contains(&got),
            "{dir}: {got} of {top5}"
        );
        assert_eq!(w, t.to_workload(&opts).unwrap());
        assert!(matches!(
            Trace::open(&root.join(dir)).unwrap(),
            Trace::Azure2019(_)
        ));
    }
}

#[test]
fn real_azure2021_sample() {
    let Some(root) = real_traces() else { return };
    let dir = root.join("azure2021-invocations-200");
    let t = match Trace::open(&dir).unwrap() {
        Trace::Azure2021(t) => t,
        other => panic!("not 2021: {other:?}"),
    };
    assert_eq!(t.invocations.len(), 199);
    assert_eq!(t.functions.len(), 31);
    assert!(
        t.invocations
            .windows(2)
            .all(|w| w[0].start_s <= w[1].start_s)
    );
    let w = t
        .to_workload(&TraceOptions {
            selection: Selection::Top(3),
            ..TraceOptions::default()
        })
        .unwrap();
    assert_eq!(w.functions.len(), 3);
    assert!(w.invocations.windows(2).all(|p| p[0].at_ms <= p[1].at_ms));
}
