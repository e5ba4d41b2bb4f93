//! Exit rules: when a sample may leave at an exit, given that exit's logits (and, for
//! patience, the earlier exits' predictions). One [`Decider`] serves both the simulation over
//! stored logits (calibration, curves) and the native engine's early-exit run, so the two take
//! the same decisions.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ir::tensor::argmax;

/// How an exit decides that a sample may leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// The largest softmax probability is at least the threshold (BranchyNet, Shallow-Deep
    /// Networks).
    Confidence,
    /// The softmax entropy, in nats, is at most the threshold (BranchyNet's original rule).
    Entropy,
    /// The exit's prediction equals the previous exits' for `threshold` exits in a row
    /// (PABEE, Zhou et al. 2020: patience-based early exit).
    Patience,
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::Confidence, Rule::Entropy, Rule::Patience];

    pub fn parse(s: &str) -> Result<Rule> {
        match s {
            "confidence" => Ok(Rule::Confidence),
            "entropy" => Ok(Rule::Entropy),
            "patience" => Ok(Rule::Patience),
            _ => Err(Error::Config(format!(
                "unknown exit rule '{s}' (expected confidence, entropy or patience)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Rule::Confidence => "confidence",
            Rule::Entropy => "entropy",
            Rule::Patience => "patience",
        }
    }

    /// The threshold at which no sample ever leaves early: the model then gives exactly the
    /// main output's predictions.
    pub fn never(self) -> f32 {
        match self {
            Rule::Confidence | Rule::Patience => f32::INFINITY,
            Rule::Entropy => f32::NEG_INFINITY,
        }
    }

    /// The thresholds a curve sweeps, from the one letting most samples leave to the strictest
    /// (then [`Rule::never`]). Patience counts agreeing exits, so it has at most `exits - 1`
    /// useful values.
    pub fn sweep(self, exits: usize) -> Vec<f32> {
        match self {
            Rule::Confidence => {
                let mut t: Vec<f32> = (6..18).map(|i| i as f32 * 0.05).collect();
                t.extend((91..100).map(|i| i as f32 * 0.01));
                t.extend([0.995, 0.998, 0.999, 0.9995, 0.9999]);
                t
            }
            Rule::Entropy => vec![
                1.5, 1.0, 0.7, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 5e-3, 2e-3, 1e-3,
                5e-4, 2e-4, 1e-4,
            ],
            Rule::Patience => (1..exits.max(1)).map(|p| p as f32).collect(),
        }
    }

    /// Checks a threshold given by a user or a file.
    pub fn check(self, t: f32) -> Result<()> {
        let ok = match self {
            Rule::Confidence => t > 0.0,
            Rule::Entropy => !t.is_nan(),
            Rule::Patience => t >= 1.0 && (t.is_infinite() || t.fract() == 0.0),
        };
        if t.is_nan() || !ok {
            return Err(Error::Config(format!(
                "{} threshold {t} is out of range (confidence: above 0; entropy: a number of nats; patience: a whole number of exits, at least 1)",
                self.name()
            )));
        }
        Ok(())
    }
}

/// A rule and its threshold, shared by every exit (as Shallow-Deep Networks' confidence
/// threshold and PABEE's patience are).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub rule: Rule,
    /// `"never"` in JSON for the infinite thresholds (see [`Rule::never`]).
    #[serde(with = "finite_or_null")]
    pub threshold: f32,
}

impl Policy {
    pub fn new(rule: Rule, threshold: f32) -> Result<Policy> {
        rule.check(threshold)?;
        Ok(Policy { rule, threshold })
    }

    /// The policy under which every sample runs to the main output.
    pub fn never(rule: Rule) -> Policy {
        Policy {
            rule,
            threshold: rule.never(),
        }
    }

    /// Per-sample state for a batch of `n` samples.
    pub fn decider(&self, n: usize) -> Decider {
        Decider {
            policy: *self,
            prev: vec![None; n],
            streak: vec![0; n],
        }
    }
}

/// A policy applied to the samples of one batch, in exit order.
#[derive(Clone, Debug)]
pub struct Decider {
    policy: Policy,
    /// Patience: each sample's prediction at the last exit it passed, and for how many exits
    /// in a row it has not changed.
    prev: Vec<Option<usize>>,
    streak: Vec<u32>,
}

impl Decider {
    /// Whether `sample` leaves at exit `k` with these `logits`. Call it for the exits of a
    /// sample in order.
    pub fn exits_here(&mut self, _k: usize, sample: usize, logits: &[f32]) -> bool {
        let t = self.policy.threshold;
        match self.policy.rule {
            Rule::Confidence => max_prob(logits) >= t,
            Rule::Entropy => entropy(logits) <= t,
            Rule::Patience => {
                let p = argmax(logits);
                self.streak[sample] = if self.prev[sample] == Some(p) {
                    self.streak[sample] + 1
                } else {
                    0
                };
                self.prev[sample] = Some(p);
                self.streak[sample] as f32 >= t
            }
        }
    }
}

/// The softmax probabilities of `logits`, computed stably.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn max_prob(logits: &[f32]) -> f32 {
    softmax(logits).into_iter().fold(0.0, f64::max) as f32
}

fn entropy(logits: &[f32]) -> f32 {
    -softmax(logits)
        .into_iter()
        .filter(|&p| p > 0.0)
        .map(|p| p * p.ln())
        .sum::<f64>() as f32
}

/// Serializes the infinite "never" thresholds as the strings `"never"` (+infinity) and
/// `"never-"` (-infinity, the entropy rule's): JSON has no infinity.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &f32, s: S) -> Result<S::Ok, S::Error> {
        if t.is_finite() {
            s.serialize_f32(*t)
        } else if *t > 0.0 {
            s.serialize_str("never")
        } else {
            s.serialize_str("never-")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum V {
            N(f32),
            S(String),
        }
        match V::deserialize(d)? {
            V::N(v) => Ok(v),
            V::S(s) if s == "never" => Ok(f32::INFINITY),
            V::S(s) if s == "never-" => Ok(f32::NEG_INFINITY),
            V::S(s) => Err(serde::de::Error::custom(format!(
                "threshold must be a number or \"never\", got \"{s}\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_keeps_every_sample_and_patience_counts_agreement() {
        for rule in Rule::ALL {
            let mut d = Policy::never(rule).decider(1);
            assert!(!(0..5).any(|k| d.exits_here(k, 0, &[10.0, 0.0, 0.0])));
        }
        let mut d = Policy::new(Rule::Patience, 2.0).unwrap().decider(1);
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        // a, a (streak 1), b (reset), b (1), b (2: leaves)
        let seen: Vec<bool> = [a, a, b, b, b]
            .iter()
            .enumerate()
            .map(|(k, l)| d.exits_here(k, 0, l))
            .collect();
        assert_eq!(seen, [false, false, false, false, true]);
        let c = Policy::new(Rule::Confidence, 0.9).unwrap();
        assert!(c.decider(1).exits_here(0, 0, &[5.0, 0.0]));
        assert!(!c.decider(1).exits_here(0, 0, &[1.0, 0.0]));
        let e = Policy::new(Rule::Entropy, 0.1).unwrap();
        assert!(e.decider(1).exits_here(0, 0, &[8.0, 0.0]));
        assert!(!e.decider(1).exits_here(0, 0, &[0.0, 0.0]));
        assert!(Policy::new(Rule::Patience, 1.5).is_err());
        assert!(Policy::new(Rule::Confidence, f32::NAN).is_err());
        let json = serde_json::to_string(&Policy::never(Rule::Entropy)).unwrap();
        let back: Policy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Policy::never(Rule::Entropy));
    }
}
