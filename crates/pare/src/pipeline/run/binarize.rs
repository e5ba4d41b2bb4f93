//! The binarize stage: the model rewritten into a binary network (BinaryConnect, BNN,
//! XNOR-Net) and trained under its binary weights, which stay in the state's reparams.

use super::*;

/// Rewrites the model into the stage's binary network and trains it under binary weights.
pub(super) fn binarize(
    b: &BinarizeStage,
    state: &mut State,
    seed: u64,
    data: &Data,
    events: &mut dyn Events,
) -> Result<(Option<f32>, String)> {
    let mut bin = crate::binary::binarize(&state.model, b.method)?;
    if b.stochastic {
        bin = bin.with_stochastic_weights();
    }
    state.model = bin.model.clone();
    state.reparams = bin.reparams.clone();
    let before = accuracy(&state.model, &state.reparams, data)?;
    let mut cfg = stages::fit_config(&b.train, seed);
    if b.glorot_lr {
        cfg.lr_scales = bin.glorot_lr_scales();
    }
    let mut hook = crate::train::ReparamHook::new(state.reparams.clone());
    stages::fit_with(&mut state.model, &cfg, data, &mut hook, events)?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let detail = format!(
        "{}{}{}: binary weights in {}; binary inputs to {}",
        b.method.name(),
        if b.stochastic { ", stochastic" } else { "" },
        if b.glorot_lr { ", Glorot-scaled rates" } else { "" },
        list(&bin.binary_layers),
        list(&bin.binary_inputs)
    );
    Ok((Some(before), detail))
}
