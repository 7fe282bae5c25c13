//! Docker's JSON progress stream (pull, push, load, build's pulls) drawn as one bar per layer with
//! indicatif on a terminal, and as plain `id: status` lines otherwise (what docker prints when piped).

use berth_api::progress::JsonMessage;
use std::collections::HashMap;
use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bars: Option<(MultiProgress, HashMap<String, ProgressBar>)>,
    to_stderr: bool,
    quiet: bool,
}

impl Progress {
    /// Bars when the chosen stream is a terminal (and `$TERM` is not `dumb`), plain lines otherwise.
    pub fn new(quiet: bool, to_stderr: bool) -> Progress {
        let tty = if to_stderr { crate::tty::stderr_is_tty() } else { crate::tty::stdout_is_tty() };
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let bars = (tty && !dumb && !quiet).then(|| {
            let target = if to_stderr { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::stdout() };
            (MultiProgress::with_draw_target(target), HashMap::new())
        });
        Progress { bars, to_stderr, quiet }
    }

    fn line(&self, s: &str) {
        if self.to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Shows one message of the stream.
    pub fn show(&mut self, v: &JsonMessage) {
        if self.quiet {
            return;
        }
        let status = v.status.as_deref().unwrap_or("");
        let (current, total) = v.progress_detail.as_ref().map_or((None, None), |p| (p.current, p.total));
        let Some((mp, bars)) = &mut self.bars else {
            // Without a terminal docker prints each status once, without per-byte updates.
            if status.is_empty() || current.is_some() {
                return;
            }
            let s = match v.id.as_deref() {
                Some(id) => format!("{id}: {status}"),
                None => status.to_string(),
            };
            self.line(&s);
            return;
        };
        let Some(id) = v.id.as_deref() else {
            if !status.is_empty() {
                let _ = mp.println(status);
            }
            return;
        };
        let bar = bars.entry(id.to_string()).or_insert_with(|| {
            let b = mp.add(ProgressBar::new(0));
            b.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("static template"));
            b.set_prefix(id.to_string());
            b
        });
        let total = total.filter(|t| *t > 0);
        match (current, total) {
            (Some(cur), Some(total)) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix}: {msg} [{bar:40}] {bytes}/{total_bytes}")
                        .expect("static template")
                        .progress_chars("=> "),
                );
                bar.set_length(total);
                bar.set_position(cur);
            }
            _ => bar.set_style(ProgressStyle::with_template("{prefix}: {msg}").expect("static template")),
        }
        bar.set_message(status.to_string());
    }

    /// Leaves every bar drawn in its final state.
    pub fn finish(&mut self) {
        if let Some((_, bars)) = &self.bars {
            for b in bars.values() {
                b.finish();
            }
        }
    }
}
