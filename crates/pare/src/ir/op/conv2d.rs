//! The `conv2d` op.

use serde::{Deserialize, Serialize};

use super::rules::{keep, Rules};
use super::shape::{conv_out, image};
use super::{AxisRule, Couple, Kept, ParamKind, ParamSpec, Source};

/// 2-D convolution, weight `[out, in / groups, kh, kw]`. `groups == in == out` is depthwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conv2d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
    pub bias: bool,
}

impl Conv2d {
    /// True when every group holds one input and one output channel.
    pub fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }
}

impl Rules for Conv2d {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>, String> {
        let Conv2d {
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            ..
        } = *self;
        let (c, h, w) = image("conv2d", inputs[0])?;
        if c != in_channels {
            return Err(format!("conv2d expects {in_channels} input channels, got {c}"));
        }
        if groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
            return Err(format!(
                "conv2d groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            ));
        }
        if kernel_size.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
            return Err("conv2d kernel_size, stride and dilation must be positive".into());
        }
        let oh = conv_out(h, kernel_size[0], stride[0], padding[0], dilation[0]);
        let ow = conv_out(w, kernel_size[1], stride[1], padding[1], dilation[1]);
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok(vec![out_channels, oh, ow]),
            _ => Err(format!(
                "conv2d kernel {kernel_size:?} does not fit input {h}x{w} with padding {padding:?}"
            )),
        }
    }

    fn axis_rule(&self, _inputs: &[&[usize]], _out_rank: usize) -> AxisRule {
        // A depthwise conv carries its channels through; its sizes still count them.
        let mut r = AxisRule::same_axes(3, &[1, 2]);
        r.weight_out = Some(0);
        r.weight_in = Some(0);
        if self.is_depthwise() {
            return r;
        }
        r.outputs[0] = Source::Made;
        if self.groups > 1 {
            // Equal groups: as many positions go from every group, on both sides.
            let groups = self.groups;
            r.couples = vec![
                Couple::OutputGroups { axis: 0, groups },
                Couple::InputGroups {
                    input: 0,
                    axis: 0,
                    groups,
                },
            ];
        }
        r
    }

    fn params(&self) -> Vec<ParamSpec> {
        // Axis 1 holds a group's input slots (all inputs for groups = 1); a depthwise kernel
        // has one input channel per filter: nothing to slice there.
        let in_axis = (!self.is_depthwise()).then_some(1);
        let [kh, kw] = self.kernel_size;
        let shape = vec![self.out_channels, self.in_channels / self.groups.max(1), kh, kw];
        let mut v = vec![ParamSpec::new(
            "weight",
            shape,
            ParamKind::Weight,
            Some(0),
            in_axis,
        )];
        if self.bias {
            v.push(ParamSpec::new(
                "bias",
                vec![self.out_channels],
                ParamKind::Bias,
                Some(0),
                None,
            ));
        }
        v
    }

    fn macs(&self, _inputs: &[&[usize]], output: &[usize]) -> u64 {
        let out_elems: usize = output.iter().product();
        let [kh, kw] = self.kernel_size;
        (out_elems * (self.in_channels / self.groups.max(1)) * kh * kw) as u64
    }

    /// A depthwise conv keeps one group per channel.
    fn shrunk(&self, kept: &Kept) -> Self {
        let mut op = self.clone();
        keep(&mut op.in_channels, kept.inputs);
        keep(&mut op.out_channels, kept.outputs);
        if self.is_depthwise() {
            op.groups = op.out_channels;
        }
        op
    }
}
