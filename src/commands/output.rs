//! What the commands write: the alert destination (stdout, a file, a daemon's reopenable file),
//! files written whole (a temporary name, then a rename), and text on stdout.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Format, OutputArgs};
use floodwatch::alert_output::{EventWriter, OutputFormat};
use floodwatch::reload::ReopenFile;

/// Where alerts are written.
pub(crate) type AlertWriter = EventWriter<Box<dyn Write + Send>>;

/// Opens the alert destination before any input is read, so a bad path fails at once.
pub(crate) fn open_output(o: &OutputArgs) -> Result<AlertWriter> {
    let out: Box<dyn Write + Send> = match alert_file(o) {
        Some(path) => Box::new(BufWriter::new(File::create(path).with_context(|| {
            format!(
                "cannot write alerts to {}: check the directory exists and is writable",
                path.display()
            )
        })?)),
        None => Box::new(BufWriter::new(io::stdout())),
    };
    Ok(EventWriter::new(out, output_format(o)))
}

/// The file `--output` names; None for stdout (no option, or `-` as for the capture files).
pub(crate) fn alert_file(o: &OutputArgs) -> Option<&std::path::Path> {
    o.output
        .as_deref()
        .filter(|p| *p != std::path::Path::new("-"))
}

/// A daemon's alert destination: `--output FILE` is appended to (a restart keeps the alerts
/// already there) and reopened on SIGHUP (the returned handle); stdout otherwise.
pub(crate) fn open_daemon_output(o: &OutputArgs) -> Result<(AlertWriter, Option<ReopenFile>)> {
    let Some(path) = alert_file(o) else {
        return Ok((open_output(o)?, None));
    };
    let file = ReopenFile::append(path).with_context(|| {
        format!(
            "cannot write alerts to {}: check the directory exists and is writable",
            path.display()
        )
    })?;
    Ok((
        EventWriter::new(Box::new(file.clone()), output_format(o)),
        Some(file),
    ))
}

pub(crate) fn output_format(o: &OutputArgs) -> OutputFormat {
    match o.format {
        Format::Json => OutputFormat::Json,
        Format::Text => OutputFormat::Text,
    }
}

/// Fails at once, before any input is read, when `path` cannot be created (its directory is missing
/// or not writable): a long replay must not end in that error.
pub(crate) fn check_can_create(path: &std::path::Path, what: &str) -> Result<()> {
    if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') {
        anyhow::bail!(
            "cannot write {what} {}: it is a directory (give a file name)",
            path.display()
        );
    }
    let probe = temp_beside(path);
    File::create(&probe)
        .map(drop)
        .with_context(|| format!("cannot write {what} {}", path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The temporary name `path` is written under before the rename: hidden, in the same directory.
pub(crate) fn temp_beside(path: &std::path::Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "floodwatch".to_string());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place: a reader never
/// sees half a file.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_beside(path);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}
