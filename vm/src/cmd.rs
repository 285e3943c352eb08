//! Running host commands with errors that say which command failed and why.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// A printable form of a command line, for error messages and debug logs.
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    shlex::try_join(parts.iter().map(String::as_str)).unwrap_or_else(|_| parts.join(" "))
}

/// Run to completion; return stdout. Fails with stderr and stdout on a
/// non-zero exit.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    checked(shown, out)
}

/// [`output`] with `input` on the command's stdin.
pub fn output_with_input(cmd: &mut Command, input: &[u8]) -> Result<String> {
    let shown = display(cmd);
    checked(shown, fed(cmd, input)?)
}

/// Run to completion with `input` on stdin and the output captured, whatever
/// the exit status (for callers that turn a failure into an error of their
/// own); only a command that cannot be started, or that succeeds without
/// taking its input, is an error.
pub fn fed(cmd: &mut Command, input: &[u8]) -> Result<Output> {
    use std::io::Write;

    let shown = display(cmd);
    let spawn_err = |source| Error::Spawn {
        cmd: shown.clone(),
        source,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    // Fed from its own thread: a command that writes much before reading
    // all of its input must not block on a full pipe.
    let stdin = child.stdin.take();
    let (fed, out) = std::thread::scope(|s| {
        let feeder = s.spawn(move || stdin.map(|mut w| w.write_all(input)));
        let out = child.wait_with_output();
        (feeder.join(), out)
    });
    let out = out.map_err(spawn_err)?;
    if let Ok(Some(Err(source))) = fed {
        if out.status.success() {
            return Err(spawn_err(source));
        }
    }
    Ok(out)
}

/// stdout of a command that succeeded; otherwise an error with its stderr
/// and stdout.
fn checked(shown: String, out: Output) -> Result<String> {
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        return Err(Error::Command {
            cmd: shown,
            status: out.status.to_string(),
            output: text,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run to completion, discarding stdout.
pub fn run(cmd: &mut Command) -> Result<()> {
    output(cmd).map(drop)
}

/// Run with stdout and stderr merged into `log`, calling `on_line` for each
/// line as it arrives. Returns whether the command succeeded.
pub fn stream(mut cmd: Command, log: &Path, mut on_line: impl FnMut(&str)) -> Result<bool> {
    use std::io::Write;

    let shown = display(&cmd);
    let (reader, writer) = std::io::pipe().map_err(|source| Error::Spawn {
        cmd: shown.clone(),
        source,
    })?;
    let writer2 = writer.try_clone().map_err(|source| Error::Spawn {
        cmd: shown.clone(),
        source,
    })?;
    // Before the command starts, so that a log that cannot be written
    // leaves nothing running.
    let mut file = std::fs::File::create(log).map_err(|source| Error::Io {
        path: log.to_path_buf(),
        source,
    })?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|source| Error::Spawn {
            cmd: shown.clone(),
            source,
        })?;
    // The command holds copies of the write end: drop it, or the reader
    // never sees EOF.
    drop(cmd);
    let mut lines = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let _ = file.write_all(&buf);
                on_line(String::from_utf8_lossy(&buf).trim_end());
            }
            Err(source) => {
                let _ = child.kill();
                return Err(Error::Io {
                    path: log.to_path_buf(),
                    source,
                });
            }
        }
    }
    let status = child
        .wait()
        .map_err(|source| Error::Spawn { cmd: shown, source })?;
    Ok(status.success())
}
