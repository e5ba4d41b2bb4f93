//! The recipes shipped in `recipes/` parse and validate; a recipe-level mistake in the fields
//! added for distillation gets a clear error; a structured stage with a threshold runs.

use std::path::Path;

use pare::ir::op::HashedLinear;
use pare::pipeline::recipe::{Recipe, Stage};

#[test]
fn every_shipped_recipe_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let r = Recipe::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!r.stages.is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 6, "found {n} recipes");
    let kd = Recipe::load(&dir.join("kd-vgg-lenet300.toml")).unwrap();
    let Stage::Distill(d) = &kd.stages[0] else {
        panic!("the KD recipe is one distill stage");
    };
    assert_eq!((d.train.epochs, d.train.views, d.train.augment), (200, 8, true));
    // Relative paths resolve against the recipe's directory: the teacher its header tells the
    // user to train lands in the repository's runs/, not in recipes/runs/.
    assert_eq!(
        d.teacher.as_deref(),
        Some(dir.join("../runs/vgg-teacher").as_path())
    );
}

#[test]
fn views_without_augmentation_is_an_error() {
    let text = "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.train]\ntrain = { epochs = 1, lr = 0.1, views = 4 }\n";
    let e = Recipe::parse(text, Path::new("r.toml")).unwrap_err().to_string();
    assert!(
        e.contains("r.toml") && e.contains("views") && e.contains("augment"),
        "{e}"
    );
}

struct Quiet;
impl pare::train::Hooks for Quiet {}
impl pare::pipeline::run::Events for Quiet {
    fn training_hooks(&mut self, _epochs: usize) -> Box<dyn pare::train::Hooks> {
        Box::new(Quiet)
    }
}

/// Runs `recipe` on `model`, training and testing on `set` (no validation split).
fn run_on(
    recipe: &Recipe,
    model: pare::ir::Model,
    set: &dyn pare::data::Dataset,
) -> pare::pipeline::run::Outcome {
    let data = pare::pipeline::run::Data {
        train: set,
        val: None,
        test: set,
    };
    pare::pipeline::run::run(recipe, model, &data, &mut Quiet, None, false).unwrap()
}

/// A structured stage with a threshold removes exactly the channels whose score is below that
/// fraction of their layer's mean: here the 12 fc1 neurons scaled down to 5% (the other
/// neurons of a fresh init have L2 norms within a few percent of the mean), and no neuron of
/// fc2.
#[test]
fn a_threshold_structured_stage_removes_the_weak_neurons() {
    use pare::ir::Model;
    use pare::zoo::ZooModel;

    let mut model = Model::init(ZooModel::Lenet300.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let w = model.params.get_mut("fc1.weight").unwrap();
    w.data_mut()[..12 * 784].iter_mut().for_each(|v| *v *= 0.05);
    let set = common::pattern_set(16);
    let text = "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.structured]\ncriterion = \"l2\"\n\
                threshold = 0.5\ntrain = { epochs = 0, lr = 0.01 }\n[encode]\nhuffman = false\n";
    let recipe = Recipe::parse(text, Path::new("t.toml")).unwrap();
    let out = run_on(&recipe, model, &set);
    let shape = |name: &str| out.model.params[name].shape().to_vec();
    assert_eq!(shape("fc1.weight"), [288, 784]);
    assert_eq!(shape("fc2.weight"), [100, 288]);
    assert!(
        out.stages[1].detail.contains("12 channels removed"),
        "{}",
        out.stages[1].detail
    );
}

mod common;

/// Every distillation method runs as a recipe stage: FitNets (the regressor is gone after it),
/// TAKD through a zoo assistant, Born-Again generations and a refinery round, on the toy task;
/// a staged method after weight pruning is refused before anything trains.
#[test]
fn staged_distillation_methods_run_as_recipe_stages() {
    use pare::ir::io;
    use pare::pipeline::run::{run, Data};
    use pare::train::{fit, FitConfig, NoHooks, Schedule};

    let data = common::toy_data();
    let cfg = FitConfig {
        epochs: 3,
        batch_size: 32,
        schedule: Schedule::constant(0.05),
        ..Default::default()
    };
    let mut teacher = common::toy_model(7);
    fit(&mut teacher, &data, None, &cfg, &mut NoHooks).unwrap();
    let dir = tempfile::tempdir().unwrap();
    io::save(&teacher, dir.path()).unwrap();
    let t = dir.path().display().to_string().replace('\\', "/");
    let train = "train = { epochs = 2, lr = 0.05, batch_size = 32 }";
    let text = format!(
        "[model]\ndir = \"{t}\"\n\
         [[stage]]\n[stage.distill]\nteacher = \"{t}\"\nmethod = {{ fitnet = {{ guided = \"relu\", hint = \"relu\" }} }}\n{train}\n\
         [[stage]]\n[stage.distill]\nteacher = \"{t}\"\nmethod = {{ takd = {{ assistant = \"mlp:32\" }} }}\n{train}\n\
         [[stage]]\n[stage.distill]\nmethod = {{ born_again = {{ generations = 2 }} }}\n{train}\n\
         [[stage]]\n[stage.distill]\nteacher = \"{t}\"\nmethod = {{ refinery = {{ rounds = 1 }} }}\n{train}\n\
         [encode]\nhuffman = false\n"
    );
    let recipe = Recipe::parse(&text, Path::new("d.toml")).unwrap();
    let sets = Data {
        train: &data,
        val: None,
        test: &data,
    };
    let student = common::toy_model(3);
    let out = run(&recipe, student.clone(), &sets, &mut Quiet, None, false).unwrap();
    assert_eq!(
        out.model.graph, student.graph,
        "the student keeps its architecture"
    );
    let details: Vec<&str> = out.stages[1..].iter().map(|s| s.detail.as_str()).collect();
    for (d, needle) in
        details
            .iter()
            .zip(["FitNets", "TAKD", "2 Born-Again generations", "1 refinery rounds"])
    {
        assert!(d.contains(needle), "{d}");
    }
    for s in &out.stages[1..] {
        assert!(s.accuracy > 0.9, "{}: {}", s.name, s.accuracy);
    }

    let text = format!(
        "[model]\ndir = \"{t}\"\n[[stage]]\n[stage.prune]\ndefault = 0.5\ntrain = {{ epochs = 1, lr = 0.01 }}\n\
         [[stage]]\n[stage.distill]\nmethod = {{ born_again = {{ generations = 1 }} }}\n{train}\n"
    );
    let recipe = Recipe::parse(&text, Path::new("d.toml")).unwrap();
    let Err(e) = run(&recipe, student, &sets, &mut Quiet, None, false) else {
        panic!("a born_again stage after pruning runs");
    };
    let e = e.to_string();
    assert!(
        e.contains("stage 2") && e.contains("born_again") && e.contains("before the prune stage"),
        "{e}"
    );
}

/// The compressed file is a plain name inside the output directory: no path leaves it or
/// lands on another output, checked when the recipe is parsed.
#[test]
fn the_encoded_file_name_stays_inside_the_output_directory() {
    let recipe = |file: &str| {
        let text = format!(
            "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.quantize]\nbits = 8\n[encode]\nfile = {}\n",
            toml::Value::String(file.into())
        );
        Recipe::parse(&text, Path::new("e.toml"))
    };
    for bad in [
        "../../x.pare",
        "/tmp/x.pare",
        "model/weights.safetensors",
        "a\\b.pare",
        "",
        ".",
        "..",
        ".hidden",
        "model",
        "report.json",
        "report.md",
        "stages",
    ] {
        let e = recipe(bad).expect_err(bad).to_string();
        assert!(e.contains("e.toml") && e.contains("[encode] file"), "{bad}: {e}");
    }
    assert_eq!(recipe("small.pare").unwrap().encode.file, "small.pare");
}

/// Non-finite or out-of-range hyper-parameters are refused with the field, in recipes and in
/// the optimizer settings every command builds.
#[test]
fn non_finite_hyper_parameters_are_refused() {
    let parse = |stage: &str| {
        let text = format!("[model]\nzoo = \"lenet300\"\n[[stage]]\n{stage}\n");
        Recipe::parse(&text, Path::new("h.toml"))
            .map(drop)
            .map_err(|e| e.to_string())
    };
    for wd in ["nan", "inf", "-1.0"] {
        let e = parse(&format!(
            "[stage.train]\ntrain = {{ epochs = 1, lr = 0.1, weight_decay = {wd} }}"
        ))
        .unwrap_err();
        assert!(e.contains("h.toml") && e.contains("weight_decay"), "{wd}: {e}");
    }
    for p in ["nan", "150.0", "50.0", "-inf"] {
        let e = parse(&format!(
            "[stage.quantize]\nbits = 8\nactivations = {{ bits = 8, observer = \"percentile\", percentile = {p} }}"
        ))
        .unwrap_err();
        assert!(e.contains("h.toml") && e.contains("percentile"), "{p}: {e}");
    }
    assert!(parse("[stage.quantize]\nbits = 8\nactivations = { bits = 8, observer = \"percentile\", percentile = 99.9 }").is_ok());
    // The activation scope is one of two words.
    assert!(parse("[stage.quantize]\nbits = 8\nactivations = { bits = 8, scope = \"graph\" }").is_ok());
    let e =
        parse("[stage.quantize]\nbits = 8\nactivations = { bits = 8, scope = \"everywhere\" }").unwrap_err();
    assert!(
        e.contains("h.toml") && e.contains("everywhere") && e.contains("graph"),
        "{e}"
    );
    use pare::train::OptimizerConfig;
    for bad in [
        OptimizerConfig::sgd(0.9, f32::NAN),
        OptimizerConfig::sgd(0.9, f32::INFINITY),
        OptimizerConfig::sgd(f32::NAN, 0.0),
        OptimizerConfig::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: f32::NAN,
            weight_decay: 0.0,
        },
        OptimizerConfig::adam(f32::NAN),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn a_data_criterion_without_calibration_batches_is_refused() {
    let text = "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.structured]\ncriterion = \"apoz\"\nratio = 0.3\ncalib_batches = 0\ntrain = { epochs = 1, lr = 0.01 }\n";
    let e = Recipe::parse(text, Path::new("c.toml")).unwrap_err().to_string();
    assert!(
        e.contains("c.toml") && e.contains("calib_batches must be at least 1"),
        "{e}"
    );
}

/// `epochs = 0` is the stage's transformation alone where one exists (one-shot pruning here)
/// and an error, found when the recipe is parsed, where the stage only trains.
#[test]
fn zero_epochs_prune_without_training_and_are_refused_where_a_stage_only_trains() {
    use pare::pipeline::run::{run, Data};
    let data = common::toy_data();
    let sets = Data {
        train: &data,
        val: None,
        test: &data,
    };
    let text = "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.prune]\ndefault = 0.5\nramp = \"one_shot\"\n\
                train = { epochs = 0, lr = 0.01 }\n[encode]\nhuffman = false\n";
    let recipe = Recipe::parse(text, Path::new("z.toml")).unwrap();
    let out = run(&recipe, common::toy_model(3), &sets, &mut Quiet, None, false).unwrap();
    let w = &out.model.params["conv.weight"];
    assert!((w.sparsity() - 0.5).abs() < 0.03, "sparsity {}", w.sparsity());
    for stage in [
        "[stage.train]\ntrain = { epochs = 0, lr = 0.01 }",
        "[stage.distill]\nteacher = \"/tmp\"\ntrain = { epochs = 0, lr = 0.01 }",
    ] {
        let text = format!("[model]\nzoo = \"lenet300\"\n[[stage]]\n{stage}\n");
        let e = Recipe::parse(&text, Path::new("z.toml")).unwrap_err().to_string();
        assert!(
            e.contains("z.toml") && e.contains("epochs must be at least 1"),
            "{e}"
        );
    }
}

/// A `round_to` past every layer's width is refused before the first stage runs.
#[test]
fn a_round_to_wider_than_every_layer_is_refused_before_any_stage() {
    use pare::pipeline::run::{run, Data};
    let data = common::toy_data();
    let sets = Data {
        train: &data,
        val: None,
        test: &data,
    };
    let text = "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.train]\ntrain = { epochs = 1, lr = 0.01 }\n\
                [[stage]]\n[stage.structured]\nratio = 0.5\nround_to = 100000\ntrain = { epochs = 0, lr = 0.01 }\n";
    let recipe = Recipe::parse(text, Path::new("w.toml")).unwrap();
    let Err(e) = run(&recipe, common::toy_model(3), &sets, &mut Quiet, None, false) else {
        panic!("round_to = 100000 runs");
    };
    let e = e.to_string();
    assert!(
        e.contains("stage 2") && e.contains("round_to 100000 exceeds") && e.contains("the largest has 4"),
        "{e}"
    );
}

/// A factorize stage replaces the layers by their factors and fine-tunes; a bad rule or a
/// factorization after pruning is refused before any stage runs.
#[test]
fn a_factorize_stage_factorizes_and_is_checked_before_running() {
    use pare::ir::Model;
    use pare::pipeline::run::preflight;
    use pare::zoo::ZooModel;

    let model = Model::init(ZooModel::Lenet5.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let set = common::pattern_set(16);
    let text = "[model]\nzoo = \"lenet5\"\n[[stage]]\n[stage.factorize]\nrank = 8\nconv = \"tucker2\"\n\
                layers = [\"conv2\", \"fc1\"]\ntrain = { epochs = 1, lr = 0.01, batch_size = 8 }\n\
                [encode]\nhuffman = false\n";
    let recipe = Recipe::parse(text, Path::new("f.toml")).unwrap();
    let out = run_on(&recipe, model.clone(), &set);
    assert_eq!(out.model.params["conv2_core.weight"].shape(), &[8, 8, 5, 5]);
    assert_eq!(out.model.params["fc1_v.weight"].shape(), &[8, 800]);
    assert!(out.model.macs() < model.macs());
    assert!(
        out.stages[1].detail.contains("conv2 rank 8"),
        "{}",
        out.stages[1].detail
    );

    for (stage, needle) in [
        ("energy = 0.9\nrank = 4", "exactly one of energy, rank and vbmf"),
        ("vbmf = true\nrank = 4", "exactly one of energy, rank and vbmf"),
        ("conv = \"tucker2\"", "none only with conv = \"separable\""),
        ("rank = 0", "above 0"),
    ] {
        let t = format!("[model]\nzoo = \"lenet5\"\n[[stage]]\n[stage.factorize]\n{stage}\ntrain = {{ epochs = 0, lr = 0.01 }}\n");
        let e = Recipe::parse(&t, Path::new("f.toml")).unwrap_err().to_string();
        assert!(e.contains("f.toml") && e.contains(needle), "{e}");
    }
    let t = "[model]\nzoo = \"lenet5\"\n[[stage]]\n[stage.factorize]\nrank = 4\nlayers = [\"conv9\"]\n\
             train = { epochs = 0, lr = 0.01 }\n";
    let e = preflight(&Recipe::parse(t, Path::new("f.toml")).unwrap(), &model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv9"), "{e}");
    let t = "[model]\nzoo = \"lenet5\"\n[[stage]]\n[stage.prune]\ndefault = 0.5\nramp = \"one_shot\"\ntrain = { epochs = 0, lr = 0.01 }\n\
             [[stage]]\n[stage.factorize]\nrank = 4\ntrain = { epochs = 0, lr = 0.01 }\n";
    let e = preflight(&Recipe::parse(t, Path::new("f.toml")).unwrap(), &model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must come before the prune stage"), "{e}");
}

/// A separable factorize stage refits each pointwise layer on training images (as `pare
/// factorize --conv separable` does); `calib = 0` keeps the weight-space fit.
#[test]
fn a_separable_factorize_stage_refits_the_pointwise_layers() {
    use pare::ir::Model;
    use pare::zoo::ZooModel;

    let model = Model::init(ZooModel::Lenet5.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let set = common::pattern_set(32);
    let recipe = |calib: usize| {
        let text = format!(
            "[model]\nzoo = \"lenet5\"\n[[stage]]\n[stage.factorize]\nconv = \"separable\"\nlayers = [\"conv2\"]\n\
             calib = {calib}\ntrain = {{ epochs = 0, lr = 0.01 }}\n[encode]\nhuffman = false\n"
        );
        Recipe::parse(&text, Path::new("s.toml")).unwrap()
    };
    let fitted = run_on(&recipe(16), model.clone(), &set).model;
    let weight_space = run_on(&recipe(0), model, &set).model;
    assert_eq!(fitted.params["conv2_dw.weight"].shape(), &[20, 1, 5, 5]);
    assert_eq!(fitted.params["conv2.weight"].shape(), &[50, 20, 1, 1]);
    assert_eq!(
        fitted.params["conv2_dw.weight"],
        weight_space.params["conv2_dw.weight"]
    );
    assert!(
        fitted.params["conv2.weight"].max_abs_diff(&weight_space.params["conv2.weight"]) > 1e-3,
        "the pointwise layer was refitted"
    );
}

/// A tie stage shares the blocks' parameters and trains; a bad block list or tying after
/// pruning is refused before any stage runs.
#[test]
fn a_tie_stage_shares_blocks_and_is_checked_before_running() {
    use pare::ir::Model;
    use pare::pipeline::run::preflight;
    use pare::zoo::ZooModel;

    let model = Model::init(ZooModel::Vit.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let set = common::pattern_set(16);
    let stage = "[[stage]]\n[stage.tie]\nblocks = [\"blocks.0\", \"blocks.1\", \"blocks.2\", \"blocks.3\"]\n";
    let text = format!(
        "[model]\nzoo = \"vit\"\n{stage}train = {{ epochs = 1, lr = 0.01, batch_size = 8 }}\n[encode]\nhuffman = false\n"
    );
    let recipe = Recipe::parse(&text, Path::new("t.toml")).unwrap();
    let out = run_on(&recipe, model.clone(), &set);
    assert_eq!(out.model.graph.ties.len(), 3 * 3, "att, fc1, fc2 of three blocks");
    assert_eq!(out.model.num_params(), 139_018 - 3 * 33_216);
    assert!(
        out.stages[1].detail.contains("9 layers tied to blocks.0"),
        "{}",
        out.stages[1].detail
    );

    let bad = "[model]\nzoo = \"vit\"\n[[stage]]\n[stage.tie]\nblocks = [\"blocks.0\", \"blocks.7\"]\n\
               train = { epochs = 0, lr = 0.01 }\n";
    let e = preflight(&Recipe::parse(bad, Path::new("t.toml")).unwrap(), &model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("stage 1 (tie)") && e.contains("'blocks.7.'"), "{e}");
    let late = format!(
        "[model]\nzoo = \"vit\"\n[[stage]]\n[stage.prune]\ndefault = 0.5\nramp = \"one_shot\"\ntrain = {{ epochs = 0, lr = 0.01 }}\n\
         {stage}train = {{ epochs = 0, lr = 0.01 }}\n"
    );
    let e = preflight(&Recipe::parse(&late, Path::new("t.toml")).unwrap(), &model)
        .unwrap_err()
        .to_string();
    assert!(e.contains("must come before the prune stage"), "{e}");
}

/// A hash stage replaces Linear layers by hashed ones holding 1/factor of their weights, fitted
/// to the trained weights, and trains them; a bad factor, an unknown layer, hashing after
/// pruning, and a model without a Linear layer are refused before any stage runs.
#[test]
fn a_hash_stage_stores_a_fraction_and_is_checked_before_running() {
    use pare::ir::{Model, Op};
    use pare::pipeline::run::preflight;
    use pare::zoo::ZooModel;

    let model = Model::init(ZooModel::Lenet300.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let set = common::pattern_set(16);
    let text =
        "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.hash]\nfactor = 8.0\nlayers = [\"fc1\", \"fc2\"]\n\
                train = { epochs = 1, lr = 0.01, batch_size = 8 }\n[encode]\nhuffman = false\n";
    let recipe = Recipe::parse(text, Path::new("h.toml")).unwrap();
    let out = run_on(&recipe, model.clone(), &set);
    let hashed: Vec<&str> = out
        .model
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::HashedLinear(HashedLinear { .. })))
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(hashed, ["fc1", "fc2"]);
    // fc1 784x300 and fc2 300x100 in 1/8 of their weights; fc3 and the biases as they were.
    let expected = 29_400 + 3_750 + 1_000 + 300 + 100 + 10;
    assert_eq!(out.model.num_params(), expected);
    // The stored weights are the shared values: 1/8 of the layers' weights (rounded up).
    assert!(out.stages[1].nonzero_weights <= out.stages[1].weights / 7);
    assert!(
        out.stages[1].nonzero_weights > 30_000,
        "{}",
        out.stages[1].nonzero_weights
    );
    let detail = &out.stages[1].detail;
    assert!(
        detail.contains("fc1 235200 -> 29400") && detail.contains(&format!("-> {expected} parameters")),
        "{detail}"
    );

    let refused = |text: &str, m: &Model| {
        let r = Recipe::parse(text, Path::new("h.toml"));
        match r {
            Err(e) => e.to_string(),
            Ok(r) => preflight(&r, m).unwrap_err().to_string(),
        }
    };
    let stage = |body: &str| {
        format!("[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.hash]\n{body}\ntrain = {{ epochs = 0, lr = 0.01 }}\n")
    };
    let e = refused(&stage("factor = 0.5"), &model);
    assert!(e.contains("h.toml") && e.contains("must be 1 or more"), "{e}");
    let e = refused(&stage("factor = 8.0\nlayers = [\"fc9\"]"), &model);
    assert!(e.contains("stage 1 (hash)") && e.contains("fc9"), "{e}");
    let e = refused(&stage("factor = 8.0\ninit = \"random\""), &model);
    assert!(e.contains("h.toml") && e.contains("random"), "{e}");
    let late = "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.prune]\ndefault = 0.5\nramp = \"one_shot\"\n\
                train = { epochs = 0, lr = 0.01 }\n[[stage]]\n[stage.hash]\nfactor = 8.0\ntrain = { epochs = 0, lr = 0.01 }\n";
    let e = refused(late, &model);
    assert!(
        e.contains("stage 2 (hash)") && e.contains("must come before the prune stage"),
        "{e}"
    );
    // SqueezeNet classifies with a 1x1 convolution: nothing to hash.
    let squeeze = Model::init(ZooModel::Squeezenet.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let e = refused(&stage("factor = 8.0").replace("lenet300", "squeezenet"), &squeeze);
    assert!(
        e.contains("stage 1 (hash)") && e.contains("no Linear layer"),
        "{e}"
    );
}

/// An exits stage grafts and trains heads and chooses a threshold on the validation split;
/// without validation images, with two targets, after quantization or before a stage that
/// reshapes layers it is refused before anything runs.
#[test]
fn an_exits_stage_adds_heads_and_is_checked_before_running() {
    use pare::ir::Model;
    use pare::pipeline::run::{preflight, run, Data};
    use pare::zoo::ZooModel;

    let model = Model::init(ZooModel::Lenet300.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let set = common::pattern_set(40);
    let stage = "[[stage]]\n[stage.exits]\nat = [\"relu1\"]\nrule = \"entropy\"\nmax_drop = 100.0\n";
    let text = format!("val = 20\n[model]\nzoo = \"lenet300\"\n{stage}train = {{ epochs = 1, lr = 0.05, batch_size = 8 }}\n[encode]\nhuffman = false\n");
    let recipe = Recipe::parse(&text, Path::new("e.toml")).unwrap();
    let data = Data {
        train: &set,
        val: Some(&set),
        test: &set,
    };
    let out = run(&recipe, model.clone(), &data, &mut Quiet, None, false).unwrap();
    assert_eq!(out.model.graph.extra_outputs, ["exits.0.fc"]);
    let detail = &out.stages[1].detail;
    assert!(detail.contains("exits at relu1: entropy threshold"), "{detail}");
    assert!(
        detail.contains("of the MACs saved, left at each exit ["),
        "{detail}"
    );

    let parse_err = |t: String| Recipe::parse(&t, Path::new("e.toml")).unwrap_err().to_string();
    let no_val = format!("[model]\nzoo = \"lenet300\"\n{stage}train = {{ epochs = 1, lr = 0.05 }}\n");
    assert!(parse_err(no_val).contains("set `val`"));
    let two = format!(
        "val = 20\n[model]\nzoo = \"lenet300\"\n{stage}budget = 0.5\ntrain = {{ epochs = 1, lr = 0.05 }}\n"
    );
    assert!(parse_err(two).contains("at most one of max_drop, target_acc and budget"));
    let pre = |t: String| {
        preflight(&Recipe::parse(&t, Path::new("e.toml")).unwrap(), &model)
            .unwrap_err()
            .to_string()
    };
    let after = format!(
        "val = 20\n[model]\nzoo = \"lenet300\"\n{stage}train = {{ epochs = 1, lr = 0.05 }}\n\
         [[stage]]\n[stage.structured]\nratio = 0.5\ntrain = {{ epochs = 0, lr = 0.01 }}\n"
    );
    assert!(pre(after).contains("stage 2 (structured): it must come before the exits stage (stage 1)"));
    let quantized = format!(
        "val = 20\n[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.quantize]\nbits = 8\n{stage}train = {{ epochs = 1, lr = 0.05 }}\n"
    );
    assert!(pre(quantized).contains("must come before the quantize stage"));
    let bad_tap = "val = 20\n[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.exits]\nat = [\"conv9\"]\ntrain = { epochs = 1, lr = 0.05 }\n";
    assert!(pre(bad_tap.into()).contains("conv9"));
}

/// A binarize stage rewrites the model into a binary network trained with Adam; a train stage
/// after it keeps the weights binary; the file stores them as signs and computes what the
/// pipeline reported; a resumed run restores the binarization; misplaced stages are refused.
#[test]
fn a_binarize_stage_trains_a_binary_network_the_file_keeps() {
    use pare::ir::Model;
    use pare::pipeline::run::{preflight, run, Data};
    use pare::zoo::ZooModel;

    let model = Model::init(ZooModel::Lenet300.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let set = common::pattern_set(24);
    let text =
        "[model]\nzoo = \"lenet300\"\n[[stage]]\n[stage.binarize]\nmethod = \"bnn\"\nstochastic = true\n\
                glorot_lr = true\ntrain = { epochs = 2, lr = 0.001, optimizer = \"adam\", batch_size = 8 }\n\
                [[stage]]\n[stage.train]\ntrain = { epochs = 1, lr = 0.01, batch_size = 8 }\n\
                [encode]\nhuffman = false\n";
    let recipe = Recipe::parse(text, Path::new("b.toml")).unwrap();
    let data = Data {
        train: &set,
        val: None,
        test: &set,
    };
    let work = tempfile::tempdir().unwrap();
    let out = run(
        &recipe,
        model.clone(),
        &data,
        &mut Quiet,
        Some(work.path()),
        false,
    )
    .unwrap();
    let detail = &out.stages[1].detail;
    assert!(
        detail.contains("bnn, stochastic, Glorot-scaled rates")
            && detail.contains("binary weights in fc1, fc2"),
        "{detail}"
    );
    // BNN: fc1 and fc2 binary (one sign bit each in the file), fc3 real; signs before fc2, fc3.
    for w in ["fc1.weight", "fc2.weight"] {
        assert!(out.model.params[w].data().iter().all(|v| v.abs() == 1.0), "{w}");
    }
    assert!(out.model.params["fc3.weight"]
        .data()
        .iter()
        .any(|v| v.abs() != 1.0));
    assert!(out.model.graph.node("fc2_sign").is_some());
    let fc1 = out.file.tensors.iter().find(|t| t.name == "fc1.weight").unwrap();
    assert!(
        fc1.total() <= 784 * 300 / 8 + 300 * 4 + 64,
        "{} bytes",
        fc1.total()
    );
    // The file computes what the last stage reported (binary weights under the train stage).
    assert_eq!(out.file_accuracy, out.stages[2].accuracy);
    // Resumed from the saved stages, the binarization is restored: the same file.
    let again = run(&recipe, model.clone(), &data, &mut Quiet, Some(work.path()), true).unwrap();
    assert_eq!(again.bytes, out.bytes);

    let pre = |t: &str, m: &Model| match Recipe::parse(t, Path::new("b.toml")) {
        Err(e) => e.to_string(),
        Ok(r) => preflight(&r, m).unwrap_err().to_string(),
    };
    let stage = |method: &str| {
        format!("[[stage]]\n[stage.binarize]\nmethod = \"{method}\"\ntrain = {{ epochs = 0, lr = 0.001, optimizer = \"adam\" }}\n")
    };
    let head = "[model]\nzoo = \"lenet300\"\n";
    let e = pre(&format!("{head}{}", stage("ternary")), &model);
    assert!(e.contains("b.toml") && e.contains("binaryconnect"), "{e}");
    let pruned = format!(
        "{head}[[stage]]\n[stage.prune]\ndefault = 0.5\nramp = \"one_shot\"\ntrain = {{ epochs = 0, lr = 0.01 }}\n{}",
        stage("bnn")
    );
    let e = pre(&pruned, &model);
    assert!(
        e.contains("stage 2 (binarize)") && e.contains("cannot follow the prune stage"),
        "{e}"
    );
    let quantized = format!("{head}{}[[stage]]\n[stage.quantize]\nbits = 8\n", stage("xnor"));
    let e = pre(&quantized, &model);
    assert!(
        e.contains("stage 2 (quantize)") && e.contains("binarize stage"),
        "{e}"
    );
    let resnet = Model::init(ZooModel::Resnet { depth: 20 }.build(&[1, 28, 28], 10).unwrap(), 0).unwrap();
    let e = pre(&format!("{head}{}", stage("bnn")), &resnet);
    assert!(e.contains("stage 1 (binarize)") && e.contains("chains"), "{e}");
}
