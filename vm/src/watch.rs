//! Waiting for a guest's process, one path for virtme-ng and User-Mode
//! Linux: its exit, a cancel (Ctrl-C), the run's timeout and, under KVM, a
//! kernel that never prints a line.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What the wait watches besides the process.
pub(crate) struct Watch<'a> {
    pub cancel: &'a AtomicBool,
    pub timeout: Duration,
    /// Named by the errors, for the user to read.
    pub console_log: &'a Path,
    /// The program run (named when the process cannot be waited for).
    pub program: &'a Path,
    /// Fail when the kernel has printed nothing after this long, with the
    /// flag the console reader sets when it does.
    pub first_output: Option<(Duration, &'a AtomicBool)>,
    /// How often to look.
    pub poll: Duration,
}

/// Wait for `child` to exit; an error if it is cancelled, runs past the
/// timeout or stays silent too long. The caller stops the process group
/// afterwards, whatever the outcome.
pub(crate) fn wait(child: &mut Child, w: &Watch) -> Result<ExitStatus> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) => {}
            Err(source) => {
                return Err(Error::Io {
                    path: w.program.to_path_buf(),
                    source,
                })
            }
        }
        if w.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted {
                console_log: w.console_log.to_path_buf(),
            });
        }
        if let Some((limit, spoke)) = w.first_output {
            if !spoke.load(Ordering::Relaxed) && started.elapsed() > limit {
                return Err(Error::KvmStalled {
                    waited: limit,
                    console_log: w.console_log.to_path_buf(),
                });
            }
        }
        if started.elapsed() > w.timeout {
            return Err(Error::GuestTimeout {
                timeout: w.timeout,
                console_log: w.console_log.to_path_buf(),
            });
        }
        std::thread::sleep(w.poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn watch<'a>(cancel: &'a AtomicBool, timeout: Duration) -> Watch<'a> {
        Watch {
            cancel,
            timeout,
            console_log: Path::new("/tmp/console.log"),
            program: Path::new("sleep"),
            first_output: None,
            poll: Duration::from_millis(10),
        }
    }

    #[test]
    fn exit_timeout_cancel_and_silence_each_end_the_wait() {
        let no = AtomicBool::new(false);
        let mut c = Command::new("true").spawn().unwrap();
        assert!(wait(&mut c, &watch(&no, Duration::from_secs(30)))
            .unwrap()
            .success());

        let mut c = Command::new("sleep").arg("30").spawn().unwrap();
        let err = wait(&mut c, &watch(&no, Duration::from_millis(50))).unwrap_err();
        assert!(matches!(err, Error::GuestTimeout { .. }), "{err}");
        let _ = c.kill();
        let _ = c.wait();

        let yes = AtomicBool::new(true);
        let mut c = Command::new("sleep").arg("30").spawn().unwrap();
        let err = wait(&mut c, &watch(&yes, Duration::from_secs(30))).unwrap_err();
        assert!(matches!(err, Error::Interrupted { .. }), "{err}");
        let _ = c.kill();
        let _ = c.wait();

        let mut c = Command::new("sleep").arg("30").spawn().unwrap();
        let mut w = watch(&no, Duration::from_secs(30));
        w.first_output = Some((Duration::from_millis(50), &no));
        let err = wait(&mut c, &w).unwrap_err();
        assert!(matches!(err, Error::KvmStalled { .. }), "{err}");
        let _ = c.kill();
        let _ = c.wait();
    }
}
