//! Runs the native engine's forward pass in a loop on one model directory, for profilers
//! (`perf record`), which would otherwise also sample the training engine that `pare bench
//! latency` times beside it.
//!   cargo run --release --example native_loop -- DIR [BATCH] [REPS]

use std::time::Instant;

fn main() -> pare::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1) else {
        eprintln!("usage: native_loop DIR [BATCH] [REPS]");
        std::process::exit(2);
    };
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let reps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let model = pare::fuse::fold_batch_norm(&pare::ir::io::load(std::path::Path::new(dir))?)?;
    let mut shape = vec![batch];
    shape.extend(&model.graph.input.shape);
    let x = pare::ir::Tensor::zeros(shape);
    let plan = pare::native::compile(&model)?;
    plan.run(&x)?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        plan.run(&x)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{dir}: batch {batch}, median {:.3} ms over {reps} runs",
        times[reps / 2]
    );
    Ok(())
}
