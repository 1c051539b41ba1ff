//! How the report writes numbers and times: SI prefixes (`12.5 k`), UTC dates and times, durations,
//! and the clock-friendly tick positions of time axes.

use crate::time::civil_from_days;

const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_DAY: u64 = 86_400 * NS_PER_SEC;

/// `v` with an SI prefix and at most three significant digits: `0`, `950`, `12.5`, `2 k`,
/// `1.52 M`, `3.1 G`. Not finite: `–`.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    const PREFIXES: [(f64, &str); 5] = [
        (1e15, " P"),
        (1e12, " T"),
        (1e9, " G"),
        (1e6, " M"),
        (1e3, " k"),
    ];
    let a = v.abs();
    for (scale, prefix) in PREFIXES {
        // 999.96 k rounds to 1000 k: the next prefix up says it better
        if a >= scale * 0.99995 {
            return format!("{}{prefix}", significant(v / scale));
        }
    }
    significant(v)
}

/// `v` and its unit with an SI prefix: `si_unit(1.5e6, "bit/s")` is `1.5 Mbit/s`; the prefix
/// joins only a unit of bits or bytes (`5.4 k pkt/s`).
pub fn si_unit(v: f64, unit: &str) -> String {
    let s = si(v);
    let joins = unit.starts_with("bit") || unit.starts_with('B');
    if joins && s.ends_with(|c: char| c.is_ascii_alphabetic()) {
        format!("{s}{unit}")
    } else {
        format!("{s} {unit}")
    }
}

/// Three significant digits, trailing zeros dropped (`2`, `2.5`, `12.5`, `125`, `0.05`).
fn significant(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    let decimals = if a >= 99.95 {
        0
    } else if a >= 9.995 {
        1
    } else if a >= 0.9995 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// A whole number with thousands separated by commas: `1,516,684`.
pub fn count(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The UTC date of `ns` (since the Unix epoch): `2025-11-25`.
pub fn utc_date(ns: u64) -> String {
    let (y, m, d) = civil_from_days((ns / NS_PER_DAY) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The UTC time of day of `ns` with `decimals` (0–9) digits of the second: `14:43:10.250`.
pub fn utc_time(ns: u64, decimals: usize) -> String {
    let in_day = ns % NS_PER_DAY;
    let secs = in_day / NS_PER_SEC;
    let hms = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    );
    if decimals == 0 {
        return hms;
    }
    let decimals = decimals.min(9);
    let frac = (in_day % NS_PER_SEC) / 10u64.pow(9 - decimals as u32);
    format!("{hms}.{frac:0decimals$}")
}

/// Date and time: `2025-11-25 14:43:10` (with `decimals` digits of the second).
pub fn utc_datetime(ns: u64, decimals: usize) -> String {
    format!("{} {}", utc_date(ns), utc_time(ns, decimals))
}

/// Both ends of a period on the same UTC day.
pub fn same_day(a_ns: u64, b_ns: u64) -> bool {
    a_ns / NS_PER_DAY == b_ns / NS_PER_DAY
}

/// A duration to read: `0.25 s`, `5.9 s`, `3 min 12 s`, `1 h 02 min`, `2 d 3 h`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "–".to_string();
    }
    if secs < 60.0 {
        return format!("{} s", significant(secs));
    }
    let whole = secs.round() as u64;
    let (d, h, m, s) = (
        whole / 86_400,
        (whole % 86_400) / 3600,
        (whole % 3600) / 60,
        whole % 60,
    );
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m:02} min")
    } else {
        format!("{m} min {s:02} s")
    }
}

/// Tick steps a time axis may use, ns: round numbers of a clock.
const TICK_STEPS_NS: [u64; 25] = [
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    NS_PER_SEC,
    2 * NS_PER_SEC,
    5 * NS_PER_SEC,
    10 * NS_PER_SEC,
    15 * NS_PER_SEC,
    30 * NS_PER_SEC,
    60 * NS_PER_SEC,
    120 * NS_PER_SEC,
    300 * NS_PER_SEC,
    600 * NS_PER_SEC,
    900 * NS_PER_SEC,
    1800 * NS_PER_SEC,
    3600 * NS_PER_SEC,
    3 * 3600 * NS_PER_SEC,
    6 * 3600 * NS_PER_SEC,
    12 * 3600 * NS_PER_SEC,
];

/// Ticks of a time axis over `[from_ns, to_ns]`: the smallest clock-friendly step giving at most
/// `max_ticks` ticks (whole days beyond the table), and the ticks, multiples of the step.
pub fn time_ticks(from_ns: u64, to_ns: u64, max_ticks: usize) -> (u64, Vec<u64>) {
    let span = to_ns.saturating_sub(from_ns).max(1);
    let max_ticks = max_ticks.max(2) as u64;
    let step = TICK_STEPS_NS
        .iter()
        .copied()
        .find(|s| span / s < max_ticks)
        .unwrap_or_else(|| NS_PER_DAY * (span / NS_PER_DAY / max_ticks + 1));
    // checked: a recording can hold any time, up to u64::MAX
    let ticks = from_ns
        .div_ceil(step)
        .checked_mul(step)
        .map(|first| {
            (0..=max_ticks)
                .map_while(|i| i.checked_mul(step).and_then(|d| first.checked_add(d)))
                .take_while(|t| *t <= to_ns)
                .collect()
        })
        .unwrap_or_default();
    (step, ticks)
}

/// The label of a tick at `ns` on an axis with ticks every `step_ns`: the time of day to the
/// step's precision, with the date (`11-25 14:00`) when the axis spans several days.
pub fn tick_label(ns: u64, step_ns: u64, several_days: bool) -> String {
    let decimals = match step_ns {
        s if s >= NS_PER_SEC => 0,
        s if s >= 100_000_000 => 1,
        s if s >= 10_000_000 => 2,
        _ => 3,
    };
    let time = if step_ns >= 60 * NS_PER_SEC {
        utc_time(ns, 0)[..5].to_string()
    } else {
        utc_time(ns, decimals)
    };
    if several_days {
        let date = utc_date(ns);
        if step_ns >= NS_PER_DAY {
            date
        } else {
            format!("{} {time}", &date[5..])
        }
    } else {
        time
    }
}

/// The description of a time axis over `[from_ns, to_ns]`: `time (UTC, 2025-11-25)`, or with
/// both dates when it crosses midnight.
pub fn time_axis_desc(from_ns: u64, to_ns: u64) -> String {
    if same_day(from_ns, to_ns) {
        format!("time (UTC, {})", utc_date(from_ns))
    } else {
        format!("time (UTC, {} – {})", utc_date(from_ns), utc_date(to_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-25 14:43:10.250 UTC.
    const T: u64 = 1_764_081_790_250_000_000;

    #[test]
    fn si_prefixes_keep_three_significant_digits() {
        for (v, want) in [
            (0.0, "0"),
            (0.05, "0.05"),
            (2.0, "2"),
            (12.5, "12.5"),
            (950.0, "950"),
            (999.4, "999"),
            (2000.0, "2 k"),
            (2500.0, "2.5 k"),
            (48_211.0, "48.2 k"),
            (999_990.0, "1 M"),
            (1_516_684.0, "1.52 M"),
            (23_141_280.0, "23.1 M"),
            (3.1e9, "3.1 G"),
            (-2500.0, "-2.5 k"),
            (f64::NAN, "–"),
        ] {
            assert_eq!(si(v), want, "si({v})");
        }
        assert_eq!(si_unit(1.5e6, "bit/s"), "1.5 Mbit/s");
        assert_eq!(si_unit(300.0, "pkt/s"), "300 pkt/s");
        assert_eq!(si_unit(5390.0, "pkt/s"), "5.39 k pkt/s");
        assert_eq!(si_unit(1_516_684.0, "B"), "1.52 MB");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_516_684), "1,516,684");
    }

    #[test]
    fn times_are_utc_with_the_date() {
        assert_eq!(utc_date(T), "2025-11-25");
        assert_eq!(utc_time(T, 0), "14:43:10");
        assert_eq!(utc_time(T, 3), "14:43:10.250");
        assert_eq!(utc_datetime(T, 0), "2025-11-25 14:43:10");
        assert_eq!(utc_datetime(0, 1), "1970-01-01 00:00:00.0");
        assert!(same_day(T, T + 3600 * NS_PER_SEC));
        assert!(!same_day(T, T + 10 * 3600 * NS_PER_SEC));
        assert_eq!(time_axis_desc(T, T + 5), "time (UTC, 2025-11-25)");
        assert_eq!(
            time_axis_desc(T, T + NS_PER_DAY),
            "time (UTC, 2025-11-25 – 2025-11-26)"
        );
    }

    #[test]
    fn durations_read_naturally() {
        for (secs, want) in [
            (0.25, "0.25 s"),
            (5.878, "5.88 s"),
            (192.0, "3 min 12 s"),
            (3720.0, "1 h 02 min"),
            (2.0 * 86_400.0 + 3.0 * 3600.0, "2 d 3 h"),
            (-1.0, "–"),
        ] {
            assert_eq!(duration(secs), want, "duration({secs})");
        }
    }

    #[test]
    fn time_ticks_fall_on_round_clock_times_and_are_few() {
        // 8 s from 14:43:10.25: every second
        let (step, ticks) = time_ticks(T, T + 8 * NS_PER_SEC, 10);
        assert_eq!(step, NS_PER_SEC);
        assert_eq!(ticks.len(), 8);
        assert_eq!(utc_time(ticks[0], 3), "14:43:11.000");
        // an hour, at most 8 ticks: every 10 minutes
        let (step, ticks) = time_ticks(T, T + 3600 * NS_PER_SEC, 8);
        assert_eq!(step, 600 * NS_PER_SEC);
        assert!(ticks.len() <= 8);
        assert_eq!(tick_label(ticks[0], step, false), "14:50");
        // a month: whole days
        let (step, ticks) = time_ticks(T, T + 30 * NS_PER_DAY, 8);
        assert_eq!(step % NS_PER_DAY, 0);
        assert!(ticks.len() <= 8 && ticks.len() >= 4, "{}", ticks.len());
        assert_eq!(tick_label(ticks[0], step, true).len(), 10);
        // sub-second spans keep their decimals
        let (step, ticks) = time_ticks(T, T + 600_000_000, 8);
        assert_eq!(step, 100_000_000);
        assert_eq!(tick_label(ticks[0], step, false), "14:43:10.3");
        // across midnight, the date is in the label
        assert_eq!(
            tick_label(T, 3600 * NS_PER_SEC, true),
            "11-25 14:43".to_string()
        );
        // an empty span still gives a step; the end of time gives no overflow
        let (step, _) = time_ticks(T, T, 8);
        assert!(step > 0);
        let (_, ticks) = time_ticks(u64::MAX - 5 * NS_PER_SEC, u64::MAX, 8);
        assert!(ticks.len() <= 9);
        let (_, ticks) = time_ticks(0, u64::MAX, 8);
        assert!(!ticks.is_empty() && ticks.len() <= 9);
    }
}
