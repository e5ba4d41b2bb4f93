//! Progress bars and Ctrl-C for the fit loop, as `pare::train::Hooks`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Set by the Ctrl-C handler.
static STOP: AtomicBool = AtomicBool::new(false);

use indicatif::{ProgressBar, ProgressStyle};
use pare::ir::Model;
use pare::train::{EpochRecord, Hooks, StepInfo};

/// Shows one bar per epoch (loss, accuracy, images/s), prints a line per finished epoch, and
/// stops the run cleanly on Ctrl-C (the fit loop then saves a checkpoint).
pub struct ProgressHooks {
    bar: Option<ProgressBar>,
    /// Without a terminal the bar is hidden; a plain line every 10% of an epoch shows progress
    /// in logs instead.
    tty: bool,
    epochs: usize,
    quiet: bool,
}

impl ProgressHooks {
    pub fn new(epochs: usize, quiet: bool) -> Self {
        // One handler per process (ctrlc allows no second one); every hook reads the same flag.
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let _ = ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst));
        });
        ProgressHooks {
            bar: None,
            tty: std::io::stderr().is_terminal(),
            epochs,
            quiet,
        }
    }
}

impl Hooks for ProgressHooks {
    fn after_step(&mut self, _model: &mut Model, info: &StepInfo) -> pare::Result<()> {
        if self.quiet {
            return Ok(());
        }
        if !self.tty {
            let tenth = info.steps_per_epoch.div_ceil(10).max(1);
            if (info.step + 1).is_multiple_of(tenth) && info.step + 1 < info.steps_per_epoch {
                eprintln!(
                    "epoch {}/{}: {}/{} steps, loss {:.4} acc {:.4}, {:.0} img/s",
                    info.epoch + 1,
                    self.epochs,
                    info.step + 1,
                    info.steps_per_epoch,
                    info.loss,
                    info.accuracy,
                    info.images_per_sec
                );
            }
            return Ok(());
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(info.steps_per_epoch as u64);
            b.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("{}/{}", info.epoch + 1, self.epochs));
            b
        });
        bar.set_position(info.step as u64 + 1);
        if info.step.is_multiple_of(10) || info.step + 1 == info.steps_per_epoch {
            bar.set_message(format!(
                "loss {:.4} acc {:.4} {:.0} img/s",
                info.loss, info.accuracy, info.images_per_sec
            ));
        }
        Ok(())
    }

    fn after_epoch(&mut self, _model: &mut Model, r: &EpochRecord) -> pare::Result<()> {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if !self.quiet {
            let val = match (r.val_loss, r.val_accuracy) {
                (Some(l), Some(a)) => format!("  val loss {l:.4} acc {a:.4}"),
                _ => String::new(),
            };
            println!(
                "epoch {:>3}/{}  lr {:.5}  train loss {:.4} acc {:.4}{val}  {:.1}s ({:.0} img/s)",
                r.epoch, self.epochs, r.lr, r.train_loss, r.train_accuracy, r.seconds, r.images_per_sec
            );
        }
        Ok(())
    }

    fn should_stop(&mut self) -> bool {
        STOP.load(Ordering::SeqCst)
    }
}
