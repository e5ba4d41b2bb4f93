//! How an op's attributes shrink when structured pruning removes positions of its axes.

/// How many channels (or heads) of a node structured pruning keeps: the sizes its op
/// attributes take after the removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// Channels kept of the input's channel axis (`None`: not tracked, unchanged).
    pub inputs: Option<usize>,
    /// Channels kept of the output's channel axis (`None`: unchanged).
    pub outputs: Option<usize>,
    /// Internal elements kept, attention heads (`None`: unchanged).
    pub internal: Option<usize>,
    /// The output's per-sample shape once positions of its axes are removed (`None`:
    /// unchanged): what a reshape's target becomes.
    pub shape: Option<Vec<usize>>,
}
