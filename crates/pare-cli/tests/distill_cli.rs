//! `pare distill` and `pare supermask` end to end on the real data set (tiny budgets).

mod common;

use common::{fails_with, ok, trained};

fn results(path: &std::path::Path) -> Vec<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_string(),
                r["accuracy"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn distill_reports_the_student_next_to_its_baseline_and_the_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let teacher = trained(dir.path());
    let out = dir.path().join("kd");
    let common = ["--student", "mlp:30,30", "--epochs", "1", "--lr", "0.01"];
    let mut args = vec![
        "distill",
        "--teacher",
        &teacher,
        "--method",
        "kd",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(common);
    let text = ok(&args);
    assert!(text.contains("| student KD |"), "{text}");
    let r = results(&out.join("distill.json"));
    let names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["teacher", "student alone", "student KD"]);
    assert!(r.iter().all(|x| x.1 > 0.5), "{r:?}");
    // Born-again: generations and their ensemble, no teacher needed.
    let ban = dir.path().join("ban");
    let mut args = vec![
        "distill",
        "--method",
        "ban",
        "--generations",
        "2",
        "--out",
        ban.to_str().unwrap(),
    ];
    args.extend(common);
    ok(&args);
    let r = results(&ban.join("distill.json"));
    assert!(r.iter().any(|x| x.0 == "BAN ensemble of 2"), "{r:?}");
    // Clear errors: each case's arguments (after `distill`) and what the message must name.
    let t = teacher.as_str();
    let cases: [(&[&str], &[&str]); 8] = [
        (&["--method", "kd"], &["--method kd needs --teacher"]),
        (&["--teacher", t, "--method", "at"], &["--pairs"]),
        (
            &["--teacher", t, "--method", "sp", "--pairs", "fc9:fc1"],
            &["fc9"],
        ),
        (
            &["--teacher", t, "--method", "fitnet"],
            &["--method fitnet takes one --pairs"],
        ),
        (
            &["--teacher", t, "--method", "kd", "--views", "4"],
            &["--views 4", "--crop-padding"],
        ),
        (
            &["--teacher", t, "--method", "kd", "--train-images", "99999"],
            &["--train-images 99999", "training images remain"],
        ),
        (
            &["--method", "dml", "--teacher-cache", "c.safetensors"],
            &["--teacher-cache", "--method kd"],
        ),
        (
            &[
                "--teacher",
                t,
                "--method",
                "kd",
                "--crop-padding",
                "2",
                "--teacher-cache",
                "c.safetensors",
            ],
            &["--teacher-cache needs --views"],
        ),
    ];
    // The checks come before any training: a rejected run writes nothing (in particular, not
    // the student-alone baseline).
    let rejected = dir.path().join("rejected");
    for (case, wanted) in cases {
        let mut args = vec!["distill", "--out", rejected.to_str().unwrap()];
        args.extend(case);
        args.extend(common);
        fails_with(&args, wanted);
        assert!(!rejected.exists(), "{case:?} wrote {}", rejected.display());
    }
}

#[test]
fn supermask_compares_masks_on_the_untrained_network() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sm");
    let text = ok(&[
        "supermask",
        "--model",
        "lenet300",
        "--keep",
        "0.5",
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("learned supermask"), "{text}");
    let r = results(&out.join("supermask.json"));
    let get = |n: &str| r.iter().find(|x| x.0.starts_with(n)).unwrap().1;
    // One epoch of learning the mask beats chance by far; the untrained network does not.
    assert!(get("learned supermask") > 0.5, "{r:?}");
    assert!(get("untrained init") < 0.3, "{r:?}");
    fails_with(
        &[
            "supermask",
            "--keep",
            "0",
            "--epochs",
            "1",
            "--out",
            dir.path().join("rejected").to_str().unwrap(),
        ],
        &["keep"],
    );
}
