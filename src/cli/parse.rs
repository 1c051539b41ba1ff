//! The parsers of option values that are more than a number or a path (`value_parser`s): each
//! error says what was expected.

use std::net::SocketAddr;
use std::time::Duration;

use floodwatch::config::parse_duration;

/// Parses `--start`: Unix seconds (fractions allowed), `now` or `now+DURATION`.
pub fn parse_start(s: &str) -> Result<floodwatch::time::Timestamp, String> {
    use std::time::{SystemTime, UNIX_EPOCH};
    if let Some(rest) = s.strip_prefix("now") {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("the system clock is before 1970: {e}"))?;
        let plus = match rest.strip_prefix('+') {
            Some(d) => parse_duration(d)?,
            None if rest.is_empty() => Duration::ZERO,
            None => return Err(format!("{s}: expected now or now+DURATION (e.g. now+2s)")),
        };
        let t = now + plus;
        return Ok(floodwatch::time::Timestamp::from_secs_nanos(
            t.as_secs(),
            u64::from(t.subsec_nanos()),
        ));
    }
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s}: expected Unix seconds, now or now+DURATION"))?;
    if !(0.0..4e9).contains(&secs) {
        return Err(format!("{s}: Unix seconds out of range"));
    }
    Ok(floodwatch::time::Timestamp::from_secs_nanos(
        secs.trunc() as u64,
        (secs.fract() * 1e9) as u64,
    ))
}

/// Parses `--speed`: a finite factor above zero, at most a million.
pub fn parse_speed(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e6 => Ok(x),
        _ => Err(format!(
            "`{s}` is not a speed-up factor (a number above 0, e.g. 0.5, 10, 600)"
        )),
    }
}

/// Parses a duration that must be above zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("`{s}` must be longer than zero"));
    }
    Ok(d)
}

/// Parses `--metrics-listen`: PORT (loopback), IP:PORT or [IPv6]:PORT.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    floodwatch::metrics::parse_listen_addr(s).map_err(|e| e.to_string())
}

/// Parses a byte size: `65536`, `64K`, `1M`, `1G` (binary multiples).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1usize << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a size (try 65536, 256K, 1M)"))
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .map_err(|_| format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    Ok(mac)
}
