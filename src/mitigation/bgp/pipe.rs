//! The pipe's end of the ExaBGP output: opened non-blocking when it can be, each line written
//! with one `write` (whole or not at all), and watched for its reader going away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::book::Out;
use super::{PIPE_BUF, RETRY};

pub(super) struct Pipe {
    pub path: PathBuf,
    pub file: Option<File>,
    /// A reader was there once and went away: a new one counts as a reconnect.
    pub lost: bool,
    pub last_attempt: Option<Instant>,
}

/// Why the pipe could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OpenError {
    Missing,
    NoReader,
    NotAPipe,
    Other(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Missing => f.write_str(
                "does not exist: create it with `mkfifo` and have an ExaBGP process read it (docs/mitigation.md)",
            ),
            OpenError::NoReader => f.write_str(
                "has no reader yet (is ExaBGP running with its `process` reading this pipe?)",
            ),
            OpenError::NotAPipe => f.write_str("is not a named pipe (make one with `mkfifo`)"),
            OpenError::Other(e) => f.write_str(e),
        }
    }
}

/// What became of the reader since the last look.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Reader {
    /// Open and still read, or closed and not due for another try.
    Unchanged,
    /// Opened again after it was lost (ExaBGP may have restarted).
    Back,
    /// Opened (the first time, or after failures without a loss).
    Opened,
    /// Could not be opened.
    Failed,
}

/// How a flush ended.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Flushed {
    /// Lines written, from the front.
    pub written: usize,
    /// Lines too long to write whole (dropped, counted).
    pub too_long: usize,
    /// The reader went away: the pipe is closed and will be opened again.
    pub lost: bool,
}

impl Pipe {
    pub fn new(path: PathBuf) -> Pipe {
        Pipe {
            path,
            file: None,
            lost: false,
            last_attempt: None,
        }
    }

    pub fn open(path: &Path) -> Result<File, OpenError> {
        match std::fs::metadata(path) {
            Ok(m) if !m.file_type().is_fifo() => return Err(OpenError::NotAPipe),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(OpenError::Missing),
            Err(e) => return Err(OpenError::Other(e.to_string())),
        }
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENXIO) => OpenError::NoReader,
                Some(libc::ENOENT) => OpenError::Missing,
                _ => OpenError::Other(e.to_string()),
            })
    }

    /// True when the pipe is open and its reader went away (the write end of a FIFO without
    /// readers polls `POLLERR`): the pipe is closed, to be opened again. Checked every
    /// [`RETRY`], idle or not, so a restart between two announcements is seen.
    pub fn reader_gone(&mut self) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLOUT)];
        let gone = match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
            Err(_) => false,
        };
        if gone {
            self.close_lost();
        }
        gone
    }

    fn close_lost(&mut self) {
        self.file = None;
        self.lost = true;
    }

    /// Opens the pipe if it is closed and the last attempt is [`RETRY`] old.
    pub fn ensure_open(&mut self, now: Instant) -> Reader {
        if self.file.is_some()
            || self
                .last_attempt
                .is_some_and(|t| now.duration_since(t) < RETRY)
        {
            return Reader::Unchanged;
        }
        self.last_attempt = Some(now);
        match Pipe::open(&self.path) {
            Ok(f) => {
                self.file = Some(f);
                if std::mem::take(&mut self.lost) {
                    Reader::Back
                } else {
                    Reader::Opened
                }
            }
            Err(_) => Reader::Failed,
        }
    }

    /// Writes `lines` in order until one does not go: each with one non-blocking write, whole
    /// or not at all.
    pub fn flush(&mut self, lines: &[Out]) -> Flushed {
        let mut done = Flushed::default();
        let Some(file) = self.file.as_mut() else {
            return done;
        };
        for out in lines {
            let line = out.line();
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if buf.len() > PIPE_BUF {
                // never written whole: given up (routes this long are refused before)
                done.too_long += 1;
                done.written += 1;
                continue;
            }
            loop {
                match file.write(&buf) {
                    Ok(n) if n == buf.len() => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return done,
                    // EPIPE: the reader went away; a short write: not a pipe any more
                    _ => {
                        self.close_lost();
                        done.lost = true;
                        return done;
                    }
                }
            }
            done.written += 1;
        }
        done
    }
}
