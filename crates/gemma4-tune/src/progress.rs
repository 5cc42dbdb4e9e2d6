//! What the libraries report through `tracing`, printed as the CLI always has: info lines on
//! stdout (above the progress bar while one is drawn), warnings on stderr as `warning: …`, and
//! the training loop's progress events (`gemma4_train::report::PROGRESS`) as an indicatif bar
//! on stderr (hidden when stderr is not a terminal). Only our crates' events are printed.

use std::fmt::Debug;
use std::sync::Mutex;

use gemma4_train::report::PROGRESS;
use indicatif::{ProgressBar, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Install the printer as the process's `tracing` subscriber.
pub fn install() {
    let subscriber = tracing_subscriber::registry().with(Printer::default());
    // Fails only if one is installed already (then that one prints).
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Prints events; owns the progress bar while the loop runs.
#[derive(Default)]
struct Printer {
    bar: Mutex<Option<ProgressBar>>,
}

/// The fields of one event that we print.
#[derive(Default)]
struct Fields {
    message: String,
    step: Option<u64>,
    iters: Option<u64>,
    finish: bool,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "step" => self.step = Some(value),
            "iters" => self.iters = Some(value),
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "finish" {
            self.finish = value;
        }
    }
}

impl<S: Subscriber> Layer<S> for Printer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("gemma4_") || *meta.level() > Level::INFO {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let mut bar = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if meta.target() == PROGRESS {
            progress(&mut bar, f);
        } else if *meta.level() <= Level::WARN {
            eprintln!("warning: {}", f.message);
        } else {
            match bar.as_ref() {
                Some(b) if !b.is_hidden() => b.println(&f.message),
                _ => println!("{}", f.message),
            }
        }
    }
}

/// Start, move or clear the bar.
fn progress(bar: &mut Option<ProgressBar>, f: Fields) {
    if f.finish {
        if let Some(b) = bar.take() {
            b.finish_and_clear();
        }
        return;
    }
    let (Some(step), Some(iters)) = (f.step, f.iters) else {
        return;
    };
    let b = bar.get_or_insert_with(|| {
        let style = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]");
        let b = ProgressBar::new(iters).with_position(step);
        b.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
        b
    });
    b.set_position(step);
    if !f.message.is_empty() {
        b.set_message(f.message);
    }
}
