//! Workloads: handler names, percentile sampling, events per handler, arrival patterns, a
//! deterministic build and refused inputs.

use super::*;

#[test]
fn handler_names_round_trip() {
    for h in HandlerKind::ALL {
        assert_eq!(h.as_str().parse::<HandlerKind>().unwrap(), h);
    }
    let err: WorkloadError = "python".parse::<HandlerKind>().unwrap_err().into();
    assert_eq!(err, WorkloadError::UnknownHandler("python".into()));
}

#[test]
fn percentiles_sample_between_neighbours() {
    let p = Percentiles::new([(0.0, 10.0), (0.5, 20.0), (1.0, 100.0)]).unwrap();
    assert_eq!(p.value_at(0.25, 0.5), 15.0);
    assert_eq!(p.value_at(0.75, 0.0), 20.0);
    assert_eq!(p.value_at(0.75, 1.0), 100.0);
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..1000 {
        let v = p.sample(&mut rng);
        assert!((10.0..=100.0).contains(&v), "{v}");
    }
    // Below the first quantile: the first value.
    let q = Percentiles::new([(0.01, 5.0), (1.0, 6.0)]).unwrap();
    assert_eq!(q.value_at(0.001, 0.9), 5.0);
    assert!(Percentiles::new([]).is_err());
    assert!(Percentiles::new([(1.5, 1.0)]).is_err());
    assert!(Percentiles::new([(0.5, f64::NAN)]).is_err());
    // Non-monotone values are flattened by a running maximum.
    let m = Percentiles::new([(0.0, 5.0), (0.5, 3.0), (1.0, 9.0)]).unwrap();
    assert_eq!(m.points()[1].1, 5.0);
}

#[test]
fn events_match_the_handlers() {
    let mut f = FunctionProfile::new("f", HandlerKind::Spin, 128 * MIB, 1000, 12.0);
    assert_eq!(f.event.build(&f, 12, 3), br#"{"mb":3,"ms":12}"#.to_vec());
    f.handler = HandlerKind::Sleep;
    assert_eq!(f.event.build(&f, 7, 3), br#"{"ms":7}"#.to_vec());
    f.handler = HandlerKind::Hello;
    assert_eq!(f.event.build(&f, 7, 3), br#"{"name":"f"}"#.to_vec());
    f.event = EventBuilder::Fixed(b"x".to_vec());
    assert_eq!(f.event.build(&f, 7, 3), b"x".to_vec());
}

#[test]
fn arrival_patterns_have_the_right_counts() {
    let mut rng = StdRng::seed_from_u64(3);
    let bursts = Arrivals::Bursts {
        every_ms: 2500.0,
        size: 5.0,
        spread_ms: 100.0,
    };
    let t = bursts.times(0.0, 60_000.0, &mut rng);
    assert_eq!(t.len(), 24 * 5);
    assert!(t.windows(2).all(|w| w[0] <= w[1]));
    let periodic = Arrivals::Periodic { every_ms: 1000.0 };
    assert_eq!(periodic.times(0.0, 10_000.0, &mut rng).len(), 10);
    let poisson = Arrivals::Poisson { rate_per_s: 50.0 };
    let n = poisson.times(0.0, 100_000.0, &mut rng).len();
    assert!((4500..5500).contains(&n), "{n}");
    assert!(poisson.times(5.0, 5.0, &mut rng).is_empty());
}

#[test]
fn build_is_deterministic_and_sorted() {
    let mut b = WorkloadBuilder::new("t", 30_000);
    let mut f = FunctionProfile::new("a", HandlerKind::Spin, 256 * MIB, 60_000, 0.0);
    f.duration_ms = ValueModel::uniform(100.0, 200.0).unwrap();
    f.memory_mb = ValueModel::uniform(1.0, 9.0).unwrap();
    let a = b.function(f);
    let c = b.function(FunctionProfile::new("b", HandlerKind::Sleep, MIB, 1, 5.0));
    b.stream(a, Arrivals::Poisson { rate_per_s: 3.0 }, 0, 30_000);
    b.stream(c, Arrivals::Periodic { every_ms: 700.0 }, 1000, 20_000);
    let w1 = b.build(42).unwrap();
    let w2 = b.build(42).unwrap();
    let w3 = b.build(43).unwrap();
    assert_eq!(w1, w2);
    assert_ne!(w1.invocations, w3.invocations);
    assert!(w1.invocations.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(
        w1.invocations
            .iter()
            .filter(|i| i.function == a)
            .all(|i| (100..=200).contains(&i.expected_duration_ms))
    );
    let calls = w1.calls_per_function();
    assert!((27..=28).contains(&calls[1]), "{}", calls[1]);
}

#[test]
fn bad_inputs_are_refused() {
    let mut b = WorkloadBuilder::new("t", 1000);
    b.stream(5, Arrivals::Periodic { every_ms: 10.0 }, 0, 1000);
    assert!(matches!(
        b.build(1),
        Err(WorkloadError::NoSuchFunction { .. })
    ));
    let mut b = WorkloadBuilder::new("t", 1000);
    let f = b.function(FunctionProfile::new("a", HandlerKind::Hello, MIB, 1, 0.0));
    b.stream(f, Arrivals::Periodic { every_ms: 0.0 }, 0, 1000);
    assert!(matches!(
        b.build(1),
        Err(WorkloadError::InvalidOption { .. })
    ));
    let dup = vec![
        FunctionProfile::new("a", HandlerKind::Hello, MIB, 1, 0.0),
        FunctionProfile::new("a", HandlerKind::Hello, MIB, 1, 0.0),
    ];
    assert!(Workload::new("d", dup, vec![], 10).is_err());
}
