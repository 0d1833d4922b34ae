//! Unit tests of the engine's free functions (the policies' behaviour is tested through
//! `czy` and `adaptive` with the [`crate::policies::testkit`]).

use super::*;

#[test]
fn irregular_short_histograms_keep_the_fallback_until_trusted() {
    let knobs = crate::policies::adaptive::KNOBS.keep_alive;
    let regular = Window {
        prewarm_ms: 50_000,
        keep_alive_ms: 60_000,
    };
    assert_eq!(keep_for(regular, 3, &knobs), 77_000, "1.25 × p99 + 2 s");
    let irregular = Window {
        prewarm_ms: 2_000,
        keep_alive_ms: 60_000,
    };
    assert_eq!(keep_for(irregular, 10, &knobs), 600_000);
    assert_eq!(keep_for(irregular, 100, &knobs), 77_000);
    let long = Window {
        prewarm_ms: 20 * 3_600_000,
        keep_alive_ms: 24 * 3_600_000,
    };
    assert_eq!(
        keep_for(long, 100, &knobs),
        crate::policies::adaptive::FALLBACK_KEEP_ALIVE_MS,
        "capped at the fallback"
    );
}
