//! The recipes shipped in `recipes/` parse and validate; a recipe-level mistake in the fields
//! added for distillation gets a clear error.

use std::path::Path;

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
