//! The compression report, as Deep Compression's tables: accuracy after every stage, and per
//! tensor the weights kept, the encoding, the bits per kept weight for values and for the
//! sparse index, and bytes before/after, with every byte of the file accounted for.

use serde::Serialize;

use super::run::{Outcome, StageReport};
use crate::codec::{Encoding, FileBytes};
use crate::report::thousands;

/// The machine-readable report (`report.json`).
#[derive(Serialize)]
pub struct Json<'a> {
    pub recipe: &'a super::Recipe,
    pub stages: &'a [StageReport],
    pub file: &'a FileBytes,
    pub original_bytes: usize,
    pub file_bytes: usize,
    pub ratio: f64,
    pub file_accuracy: f32,
}

pub fn json<'a>(recipe: &'a super::Recipe, o: &'a Outcome) -> Json<'a> {
    Json {
        recipe,
        stages: &o.stages,
        file: &o.file,
        original_bytes: o.original_bytes,
        file_bytes: o.bytes.len(),
        ratio: o.ratio(),
        file_accuracy: o.file_accuracy,
    }
}

fn pct(a: usize, b: usize) -> String {
    format!("{:.1}%", 100.0 * a as f64 / b.max(1) as f64)
}

/// Bits per kept (non-zero) element of a byte count.
fn per_kept(bytes: usize, kept: usize) -> String {
    if kept == 0 {
        "-".into()
    } else {
        format!("{:.2}", bytes as f64 * 8.0 / kept as f64)
    }
}

/// The accuracy compressed models are compared with: the dense model after the leading stages
/// that only train it (`train`, and `distill`, whose student is as dense as it came), or the
/// starting model when the recipe starts with a compression stage. A recipe that begins by
/// distilling into a fresh student was compared with the untrained start (+74 pt) before.
pub fn reference(stages: &[StageReport]) -> &StageReport {
    let leading = stages
        .iter()
        .skip(1)
        .take_while(|s| s.name == "train" || s.name == "distill")
        .count();
    &stages[leading]
}

/// The stages table.
pub fn stages_markdown(stages: &[StageReport]) -> String {
    let reference = reference(stages);
    let base = reference.accuracy;
    let mut s = format!(
        "Differences are against the dense model (stage {}, {}).\n\n\
         | # | stage | test accuracy | before its training | vs dense | weights kept | seconds | what it did |\n\
         |---|---|---|---|---|---|---|---|\n",
        reference.index, reference.name
    );
    for r in stages {
        s += &format!(
            "| {} | {} | {:.4} | {} | {:+.2} pt | {} | {:.0} | {} |\n",
            r.index,
            r.name,
            r.accuracy,
            r.accuracy_before_training
                .map_or("-".into(), |a| format!("{a:.4}")),
            100.0 * (r.accuracy - base),
            pct(r.nonzero_weights, r.weights),
            r.seconds,
            r.detail
        );
    }
    s
}

/// The per-tensor storage table and the file totals.
pub fn file_markdown(file: &FileBytes, original_bytes: usize) -> String {
    let mut s = String::from(
        "| tensor | shape | kept | encoding | codebook | value bits / kept | index bits / kept | f32 bytes | stored bytes | ratio |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut f32_total = 0;
    let mut stored_total = 0;
    for t in &file.tensors {
        let f32_bytes = t.elements * 4;
        f32_total += f32_bytes;
        stored_total += t.total();
        let (values, index) = match t.encoding {
            Encoding::F32 => ("32".to_string(), "-".to_string()),
            Encoding::F16 => ("16".to_string(), "-".to_string()),
            Encoding::Sparse { .. } => (per_kept(t.values, t.nonzero), per_kept(t.index, t.nonzero)),
            _ => (per_kept(t.values, t.nonzero), "-".to_string()),
        };
        s += &format!(
            "| {} | {:?} | {} | {} | {} B | {} | {} | {} | {} | {:.1}x |\n",
            t.name,
            t.shape,
            pct(t.nonzero, t.elements),
            t.encoding.label(),
            t.codebook,
            values,
            index,
            thousands(f32_bytes as u64),
            thousands(t.total() as u64),
            f32_bytes as f64 / t.total().max(1) as f64
        );
    }
    let total = file.total();
    s += &format!(
        "| **all tensors** | | | | | | | {} | {} | {:.1}x |\n\n",
        thousands(f32_total as u64),
        thousands(stored_total as u64),
        f32_total as f64 / stored_total.max(1) as f64
    );
    s += &format!(
        "File: {} bytes = {} tensor payloads + {} header (architecture and encodings, deflated) + {} magic/version/length + {} checksum.\n\n",
        thousands(total as u64),
        thousands(stored_total as u64),
        file.header,
        file.preamble,
        file.checksum
    );
    s += &format!(
        "**Compression ratio: {:.1}x** ({} bytes of f32 parameters / {} bytes of file).\n",
        original_bytes as f64 / total.max(1) as f64,
        thousands(original_bytes as u64),
        thousands(total as u64)
    );
    s
}

/// The whole Markdown report.
pub fn markdown(title: &str, o: &Outcome) -> String {
    let last = o.stages.last().map_or(0.0, |s| s.accuracy);
    let base = reference(&o.stages).accuracy;
    format!(
        "# {title}\n\n## Accuracy after every stage (Fashion-MNIST test set)\n\n{}\n\
         Decoded file: test accuracy {:.4} ({}), {:+.2} pt against the dense model.\n\n\
         ## Storage\n\n{}",
        stages_markdown(&o.stages),
        o.file_accuracy,
        if o.file_accuracy == last {
            "identical to the last stage"
        } else {
            "DIFFERS from the last stage"
        },
        100.0 * (o.file_accuracy - base),
        file_markdown(&o.file, o.original_bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(index: usize, name: &str, accuracy: f32) -> StageReport {
        StageReport {
            index,
            name: name.into(),
            accuracy,
            accuracy_before_training: None,
            nonzero_weights: 10,
            weights: 10,
            seconds: 1.0,
            detail: String::new(),
        }
    }

    #[test]
    fn the_reference_is_the_model_after_its_leading_training_stages() {
        let kd = [
            stage(0, "start", 0.1),
            stage(1, "distill", 0.9),
            stage(2, "prune", 0.88),
        ];
        assert_eq!(reference(&kd).index, 1);
        let dc = [
            stage(0, "start", 0.1),
            stage(1, "train", 0.85),
            stage(2, "train", 0.89),
            stage(3, "prune", 0.88),
            stage(4, "distill", 0.885),
        ];
        assert_eq!(reference(&dc).index, 2);
        let trained = [stage(0, "start", 0.9), stage(1, "quantize", 0.89)];
        assert_eq!(reference(&trained).index, 0);
        assert!(stages_markdown(&kd).contains("| 2 | prune | 0.8800 | - | -2.00 pt |"));
    }
}
