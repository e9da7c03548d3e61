//! Progress on long work, on a terminal only (indicatif draws nothing when stderr is not one, so
//! scripts and golden tests see kubectl's output alone): a bar over `apply -f` of many objects,
//! a spinner while `delete` waits for objects to go.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// From how many objects `apply -f` shows a bar.
const MANY: usize = 10;

/// A bar over `len` objects, or a hidden one when there are few.
pub fn objects(len: usize, verb: &str) -> ProgressBar {
    if len < MANY {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(verb.to_owned());
    bar
}

/// A spinner saying what is awaited.
pub fn waiting(what: String) -> ProgressBar {
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        spinner.set_style(style);
    }
    spinner.set_message(what);
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}
