//! SIGTERM and SIGHUP stop a run as Ctrl-C does: `pare train` saves a checkpoint of the epoch in
//! progress, exits with 130 and the same command plus `--resume` finishes the run.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn termination_signals_checkpoint_training_like_ctrl_c() {
    for signal in [libc::SIGTERM, libc::SIGHUP] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("run");
        let o = out.to_str().unwrap();
        let args = ["train", "--model", "lenet300", "--epochs", "2", "--out", o];
        let child = Command::new(env!("CARGO_BIN_EXE_pare"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The first epoch's checkpoint: the run is inside epoch 2, its handler installed.
        let checkpoint = out.join("checkpoint.safetensors");
        let t0 = Instant::now();
        while !checkpoint.exists() {
            assert!(
                t0.elapsed() < Duration::from_secs(300),
                "no checkpoint after 5 minutes"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = std::fs::read(&checkpoint).unwrap();
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
        let run = child.wait_with_output().unwrap();
        let (stdout, stderr) = (common::stdout(&run), common::stderr(&run));
        assert_eq!(
            run.status.code(),
            Some(130),
            "signal {signal}: {stdout}\n{stderr}"
        );
        assert!(stdout.contains("interrupted: checkpoint saved"), "{stdout}");
        assert_ne!(
            std::fs::read(&checkpoint).unwrap(),
            first,
            "signal {signal}: the interrupted epoch's progress is saved"
        );
        assert!(!out.join(".pare.lock").exists(), "the lock is released");
        let resumed = common::ok(&[&args[..], &["--resume"]].concat());
        assert!(resumed.contains("test accuracy"), "{resumed}");
        assert!(out.join("weights.safetensors").is_file());
    }
}
