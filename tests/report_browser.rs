//! The report of the bundled SYN-flood capture opened in a real browser (headless Chromium):
//! it renders (the screenshot is not blank and has content down the page), every chart is in
//! the DOM, nothing is logged to the console, nothing is fetched from the network, and the dark
//! theme is dark. The report of a synthetic HTTP flood, with its clients and request details,
//! renders too.
//!
//! Skips with a note when no Chromium is installed, unless FLOODWATCH_REQUIRE_BROWSER=1 (CI
//! installs Debian's `chromium-headless-shell` and sets it). FLOODWATCH_CHROMIUM names another
//! binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SYN_FLOOD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/captures/syn-flood.pcap");
/// Window of the screenshots: the width the page is made for, tall enough for the whole page.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 3000;
/// A browser run takes about a second here.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The headless Chromium to use, if any.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLOODWATCH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    on_path("chromium-headless-shell")
        .or_else(|| {
            let p = PathBuf::from("/usr/lib/chromium/chromium-headless-shell");
            p.is_file().then_some(p)
        })
        .or_else(|| on_path("chromium"))
}

/// The browser, or None after saying why the test is skipped (a failure when required).
fn browser_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("FLOODWATCH_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "FLOODWATCH_REQUIRE_BROWSER=1 but no chromium-headless-shell (apt-get install \
             chromium-headless-shell, or set FLOODWATCH_CHROMIUM)"
        );
        eprintln!(
            "note: report browser check skipped: no chromium-headless-shell \
             (apt-get install chromium-headless-shell)"
        );
    }
    found
}

/// Runs the browser headless on `page` with `args`, in its own profile directory; killed (and
/// the test failed) after [`BROWSER_TIMEOUT`], and the test failed when the browser fails.
fn open(browser: &Path, dir: &Path, name: &str, page: &Path, args: &[&str]) -> Output {
    let url = format!("file://{}", page.display());
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            // a fetch from the network would fail here rather than leave the machine
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join(format!("{name}.profile")).display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("cannot run the browser");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the browser") {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser took over {BROWSER_TIMEOUT:?} ({name})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: std::fs::read(&stdout).unwrap_or_default(),
        stderr: std::fs::read(&stderr).unwrap_or_default(),
    };
    assert_ok(&out, format_args!("the browser ({name})"));
    out
}

/// Lines of the browser's log about the page: console messages and uncaught errors.
fn console_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .map(str::to_string)
        .collect()
}

/// An RGB screenshot.
struct Shot {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Shot {
    fn load(path: &Path) -> Shot {
        let file = std::fs::File::open(path).expect("no screenshot written");
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("screenshot is not a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("screenshot frame");
        let channels = info.color_type.samples();
        assert!(channels >= 3, "a grey screenshot: {:?}", info.color_type);
        let rgb = buf[..info.buffer_size()]
            .chunks(channels)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Shot {
            width: info.width as usize,
            height: info.height as usize,
            rgb,
        }
    }

    /// The most common colour: the page's background.
    fn background(&self) -> [u8; 3] {
        let mut counts = std::collections::HashMap::new();
        for p in &self.rgb {
            *counts.entry(*p).or_insert(0usize) += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(c, _)| c)
            .unwrap_or_default()
    }

    /// Share of the pixels of rows `rows` that are not the background.
    fn ink(&self, rows: std::ops::Range<usize>, bg: [u8; 3]) -> f64 {
        let px = &self.rgb[rows.start * self.width..rows.end * self.width];
        px.iter().filter(|p| **p != bg).count() as f64 / px.len().max(1) as f64
    }

    fn distinct_colours(&self) -> usize {
        self.rgb
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    }
}

fn luma(c: [u8; 3]) -> f64 {
    0.2126 * f64::from(c[0]) + 0.7152 * f64::from(c[1]) + 0.0722 * f64::from(c[2])
}

#[test]
fn the_syn_flood_report_renders_in_a_browser() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("syn-flood.html");
    run_ok(&["report", "--quiet", SYN_FLOOD, "-o", arg(&page)]);
    let html = std::fs::read_to_string(&page).unwrap();
    // one alert: two traffic charts and its three
    let expected = charts_declared(&html);
    assert_eq!(expected, 5);

    // the DOM as the browser built it, with what it logged and fetched meanwhile
    let netlog = dir.path().join("net.json");
    let out = open(
        &browser,
        dir.path(),
        "dom",
        &page,
        &[&format!("--log-net-log={}", netlog.display()), "--dump-dom"],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(dom.matches("<svg").count(), expected, "charts in the DOM");
    assert!(dom.contains("Traffic over time") && dom.contains("All alerts"));
    let console = console_lines(&out);
    assert!(
        console.is_empty(),
        "the page logged to the console: {console:#?}"
    );
    let net = std::fs::read_to_string(&netlog).unwrap_or_default();
    assert!(
        !net.contains("\"url\":\"http"),
        "the page fetched from the network"
    );

    // light: the screenshot has a light background, colour, and content down the page
    let (shot, bg) = light_screenshot(&browser, dir.path(), &page);
    // header, traffic charts, the alert's charts, its tables: ink in every band of 500 px down to
    // 2,500 px (the page is about 2,700 px tall)
    for band in 0..5 {
        let rows = band * 500..(band + 1) * 500;
        let ink = shot.ink(rows.clone(), bg);
        assert!(ink > 0.01, "rows {rows:?} are empty ({ink:.4})");
    }

    // dark: the same page, dark background, light text
    let dark = dir.path().join("dark.png");
    open(
        &browser,
        dir.path(),
        "dark",
        &page,
        &[
            &format!("--screenshot={}", dark.display()),
            &format!("--window-size={WIDTH},1000"),
            "--blink-settings=preferredColorScheme=0",
        ],
    );
    let shot = Shot::load(&dark);
    let bg = shot.background();
    assert!(luma(bg) < 60.0, "dark background {bg:?}");
    assert!(shot.ink(0..1000, bg) > 0.02, "a blank dark screenshot");
}

#[test]
fn an_http_flood_report_renders_in_a_browser() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let (dir, cap) = temp_synth("http-flood", &["--seed", "1"]);
    let page = dir.path().join("http-flood.html");
    run_ok(&["report", "--quiet", arg(&cap), "-o", arg(&page)]);
    let html = std::fs::read_to_string(&page).unwrap();
    let expected = charts_declared(&html);
    let out = open(&browser, dir.path(), "dom", &page, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert_eq!(dom.matches("<svg").count(), expected, "charts in the DOM");
    // the request part is there as the browser built it
    for want in ["Clients", "User agents", "limit_req zone=floodwatch_req"] {
        assert!(dom.contains(want), "{want:?} not in the DOM");
    }
    let console = console_lines(&out);
    assert!(
        console.is_empty(),
        "the page logged to the console: {console:#?}"
    );
    light_screenshot(&browser, dir.path(), &page);
}

/// A light-theme screenshot of `page` at the test's window size, taken without an error or a
/// console line; checked to have a light background and to be no blank page. Returns it and its
/// background colour.
fn light_screenshot(browser: &Path, dir: &Path, page: &Path) -> (Shot, [u8; 3]) {
    let path = dir.join("light.png");
    let out = open(
        browser,
        dir,
        "light",
        page,
        &[
            &format!("--screenshot={}", path.display()),
            &format!("--window-size={WIDTH},{HEIGHT}"),
        ],
    );
    assert!(console_lines(&out).is_empty());
    let shot = Shot::load(&path);
    assert_eq!((shot.width, shot.height), (WIDTH as usize, HEIGHT as usize));
    let bg = shot.background();
    assert!(luma(bg) > 200.0, "light background {bg:?}");
    assert!(shot.distinct_colours() > 50, "a blank screenshot");
    (shot, bg)
}
