//! Renderers for the VM pipeline's event stream: a progress bar on a TTY,
//! one plain line per phase otherwise (CI logs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use fibneigh_vm::{Event, Phase, Reporter};
use indicatif::{ProgressBar, ProgressStyle};

pub fn reporter() -> Box<dyn Reporter> {
    if std::io::stderr().is_terminal() {
        Box::new(BarReporter::default())
    } else {
        Box::new(LineReporter::default())
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Plain lines: a phase's start, its end with elapsed time, and for long
/// builds a line every 500 objects.
#[derive(Default)]
pub struct LineReporter {
    started: Option<(Phase, Instant)>,
}

impl Reporter for LineReporter {
    fn event(&mut self, event: Event) {
        match event {
            Event::Start(phase, what) => {
                eprintln!("[{phase}] {what}");
                self.started = Some((phase, Instant::now()));
            }
            Event::Progress { done, item } => {
                if done % 500 == 0 {
                    let elapsed = self
                        .started
                        .map(|(_, t)| secs(t.elapsed()))
                        .unwrap_or_default();
                    eprintln!("[build] {done} objects, {elapsed} ({item})");
                }
            }
            Event::End(phase) => {
                let elapsed = self
                    .started
                    .take()
                    .map(|(_, t)| secs(t.elapsed()))
                    .unwrap_or_default();
                eprintln!("[{phase}] done in {elapsed}");
            }
            Event::Cached(phase, what) => eprintln!("[{phase}] cached: {what}"),
            Event::Note(text) => {
                if std::env::var_os("FIBNEIGH_DEBUG").is_some() {
                    eprintln!("[debug] {text}");
                }
            }
            Event::Warning(text) => eprintln!("fibneigh: {text}"),
        }
    }
}

/// A spinner per phase showing elapsed time and objects done.
#[derive(Default)]
pub struct BarReporter {
    bar: Option<(Phase, ProgressBar)>,
}

impl Reporter for BarReporter {
    fn event(&mut self, event: Event) {
        match event {
            Event::Start(phase, what) => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{prefix}] {elapsed:>4} {pos:>6} objects  {msg}",
                    )
                    .expect("valid template"),
                );
                bar.set_prefix(phase.to_string());
                bar.set_message(what);
                bar.enable_steady_tick(Duration::from_millis(200));
                self.bar = Some((phase, bar));
            }
            Event::Progress { done, item } => {
                if let Some((_, bar)) = &self.bar {
                    bar.set_position(done);
                    bar.set_message(item);
                }
            }
            Event::End(phase) => {
                if let Some((_, bar)) = self.bar.take() {
                    bar.finish_and_clear();
                    eprintln!("[{phase}] done in {}", secs(bar.elapsed()));
                }
            }
            Event::Cached(phase, what) => eprintln!("[{phase}] cached: {what}"),
            Event::Note(text) => {
                if std::env::var_os("FIBNEIGH_DEBUG").is_some() {
                    eprintln!("[debug] {text}");
                }
            }
            Event::Warning(text) => eprintln!("fibneigh: {text}"),
        }
    }
}
