//! Learned supermasks (Ramanujan et al. 2020, "What's hidden in a randomly weighted neural
//! network?"; the straight-through variant of Zhou et al. 2019's learned masks): the weights
//! stay at their random initialization and only a score per weight is trained; each layer uses
//! the `keep` fraction of its weights with the highest scores. The result is a subnetwork of an
//! *untrained* network.

use crate::error::{Error, Result};
use crate::ir::{Model, Params, Reparam, Reparams};
use crate::train::Hooks;

/// Trains the scores; every other parameter (biases, BN) is frozen at its initial value.
pub struct SupermaskHook {
    reparams: Reparams,
}

impl Hooks for SupermaskHook {
    fn reparams(&self) -> Option<&Reparams> {
        Some(&self.reparams)
    }

    fn on_gradients(&mut self, _model: &Model, grads: &mut Params) {
        for (name, g) in grads.iter_mut() {
            if !self.reparams.contains_key(name) {
                g.data_mut().iter_mut().for_each(|v| *v = 0.0);
            }
        }
    }
}

/// The model whose layer weights hold scores (absolute values of a second, independent
/// initialization, as edge-popup's Kaiming-uniform scores), and the hook that trains them.
pub fn scores(init: &Model, keep: f32, seed: u64) -> Result<(Model, SupermaskHook)> {
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(Error::Config(format!(
            "supermask keep fraction {keep} must be in (0, 1]"
        )));
    }
    let other = Model::init(init.graph.clone(), seed ^ 0x5C0E)?;
    let mut m = init.clone();
    let mut reparams = Reparams::new();
    for (_, w) in init.layer_weights() {
        let s = other.params[&w].data().iter().map(|v| v.abs()).collect();
        m.params.insert(
            w.clone(),
            crate::ir::Tensor::from_vec(init.params[&w].shape().to_vec(), s),
        );
        reparams.insert(
            w.clone(),
            vec![Reparam::Supermask {
                init: init.params[&w].clone(),
                keep,
            }],
        );
    }
    Ok((m, SupermaskHook { reparams }))
}

impl SupermaskHook {
    /// The subnetwork itself: initial weights times the learned masks.
    pub fn bake(&self, scored: &Model) -> Model {
        let mut out = scored.clone();
        for (name, rs) in &self.reparams {
            for r in rs {
                let v = r.apply(&out.params[name]);
                out.params.insert(name.clone(), v);
            }
        }
        out
    }
}
