//! The HTML report as a reader meets it: a small simulated run of three policies (one with a
//! long name, to stretch the tables) written as `faas simulate --html` writes it, then
//!
//! 1. parsed by a real HTML5 parser (html5ever, through `scraper`): no parse error, standards
//!    mode, unique ids, every `<svg>` scales by its `viewBox`, nothing fetched from outside;
//! 2. rendered 1400 px wide in headless Chromium (Debian's `chromium`), where a script added
//!    to a copy of the page writes the page's width and every chart's right edge into the
//!    DOM: nothing may be wider than the window (wide tables scroll inside their own box). A
//!    screenshot is left in `target/tmp/report-page/` for a person to look at.
//!
//! Without `chromium` the browser half is skipped with a message, unless
//! `FAAS_REQUIRE_BROWSER=1` (CI) makes that a failure.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use faas_e2e::report::{Report, ReportOptions};
use faas_e2e::scenario::{self, ScenarioOptions};
use faas_e2e::sim::{SimOptions, simulate_named};
use scraper::{Html, Selector};

/// The width the page must fit.
const WIDTH: u32 = 1400;
/// A long policy name (a reader's own policy may have one).
const LONG: &str = "keepalive-10m-with-a-rather-long-policy-name";

/// The report of a 2-minute contest run under three policies, the baseline summarised as
/// `faas simulate` does by default, the others with their records.
fn page() -> String {
    let w = scenario::build(
        "contest",
        &ScenarioOptions {
            duration_ms: 120_000,
            seed: 5,
            ..ScenarioOptions::default()
        },
    )
    .unwrap();
    let kept = SimOptions {
        keep_records: true,
        ..SimOptions::default()
    };
    let base = simulate_named(&w, "baseline", &SimOptions::default()).unwrap();
    let mut long = simulate_named(&w, "keepalive-10m", &kept).unwrap().result;
    long.policy = LONG.into();
    let none = simulate_named(&w, "no-reuse", &kept).unwrap().result;
    let report = Report::new(
        vec![base.result, long, none],
        ReportOptions {
            description: Some(w.description.clone()),
            functions: w.functions.clone(),
            ..ReportOptions::default()
        },
    )
    .unwrap();
    report.to_html().unwrap()
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

#[test]
fn the_report_is_valid_html_and_fits_1400_px() {
    let page = page();
    let doc = Html::parse_document(&page);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    assert_eq!(format!("{:?}", doc.quirks_mode), "NoQuirks");
    let mut ids = HashSet::new();
    for e in select(&doc, "[id]") {
        let id = e.value().attr("id").unwrap();
        assert!(ids.insert(id.to_string()), "id {id:?} is used twice");
    }
    for a in select(&doc, "a[href^='#']") {
        let target = &a.value().attr("href").unwrap()[1..];
        assert!(
            ids.contains(target),
            "link to #{target}, which is not on the page"
        );
    }
    let svgs = select(&doc, "svg");
    assert!(svgs.len() >= 10, "{} charts", svgs.len());
    for svg in &svgs {
        let v = svg.value();
        assert!(v.attr("viewBox").is_some(), "an <svg> without a viewBox");
        assert!(v.attr("width").is_none(), "an <svg> with a fixed width");
    }
    assert!(select(&doc, "script, link, img, iframe, object").is_empty());
    // What each function is, and the score by term.
    assert!(page.contains(">handler</th>") && page.contains(">response-time term</th>"));
    // The wide functions table scrolls inside its own box.
    let boxed = select(&doc, "div.scroll > table");
    assert_eq!(
        boxed.len(),
        select(&doc, "table").len(),
        "a table outside a scroll box"
    );

    let Some(chromium) =
        faas_testkit::browser::find_or_skip("the_report_is_valid_html_and_fits_1400_px")
    else {
        return;
    };
    let dir = scratch_dir();
    let measured = dir.join("measured.html");
    std::fs::write(
        &measured,
        page.replace("</body>", &format!("{MEASURE}</body>")),
    )
    .unwrap();
    let dom = run_chromium(&chromium, &dir, &["--dump-dom"], &measured);
    let value = |name: &str| -> f64 {
        let key = format!("data-{name}=\"");
        let at = dom
            .find(&key)
            .unwrap_or_else(|| panic!("the page did not measure {name}: {dom:.2000}"));
        let rest = &dom[at + key.len()..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    let (page_width, window, widest, charts) = (
        value("scroll-width"),
        value("client-width"),
        value("widest-chart-right"),
        value("charts"),
    );
    assert!(charts >= 10.0, "{charts} charts laid out");
    assert!(
        window <= WIDTH as f64 && window > WIDTH as f64 - 40.0,
        "the window is {window} px wide"
    );
    assert!(
        page_width <= window,
        "the page is {page_width} px wide in a {window} px window: something is clipped"
    );
    assert!(
        widest <= WIDTH as f64,
        "a chart reaches {widest} px, past the {WIDTH} px window"
    );
    // The functions table is wider than its box: it scrolls there, not the page.
    assert!(
        value("functions-table-width") > value("functions-box-width"),
        "the test's page should stretch the functions table"
    );
    // A screenshot for a person (the first screenful), kept beside the page.
    let shot = dir.join("report-1400.png");
    let flag = format!("--screenshot={}", shot.display());
    run_chromium(&chromium, &dir, &[&flag], &measured);
    let _ = std::fs::remove_dir_all(dir.join("profile"));
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "the screenshot is {size} bytes");
    println!("screenshot: {}", shot.display());
}

/// Writes what the test measures into `<body data-…>` once the page is laid out.
const MEASURE: &str = "<script>(function(){\
var b=document.body,r=0,n=0;\
document.querySelectorAll('svg').forEach(function(s){n++;r=Math.max(r,s.getBoundingClientRect().right);});\
var t=document.querySelector('#functions ~ .scroll');\
b.setAttribute('data-scroll-width',document.documentElement.scrollWidth);\
b.setAttribute('data-client-width',document.documentElement.clientWidth);\
b.setAttribute('data-widest-chart-right',Math.ceil(r));\
b.setAttribute('data-charts',n);\
b.setAttribute('data-functions-box-width',t?t.clientWidth:0);\
b.setAttribute('data-functions-table-width',t?t.scrollWidth:0);\
})();</script>";

/// A fresh directory for the pages, the screenshot and Chromium's profile, under cargo's
/// directory for test output (`target/tmp`), so the screenshot stays for a person to see.
fn scratch_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-page");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `page` with a 1400 px window and its own profile in `dir`,
/// returning its standard output; fails after 90 s.
fn run_chromium(chromium: &Path, dir: &Path, extra: &[&str], page: &Path) -> String {
    let mut child = faas_testkit::browser::headless(chromium, &dir.join("profile"), WIDTH, 900)
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if waited > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
    };
    let out = reader.join().unwrap().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "chromium failed ({status}): {err}");
    out
}
