//! One run per output directory: an advisory lock file (`OUT/.pare.lock`, holding the owner's
//! pid) taken before a command writes anything, so two runs on one `--out` cannot mix their
//! files. Taking it also proves early that the directory can be written.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The lock file's name inside the output directory.
pub const LOCK_FILE: &str = ".pare.lock";

/// Held while a command writes its output directory; released (and the directory removed if
/// the lock created it and nothing else was written) when dropped.
pub struct OutputLock {
    file: PathBuf,
    created: Option<PathBuf>,
}

impl OutputLock {
    /// Takes the lock on `out`, creating the directory if needed.
    ///
    /// # Errors
    /// When another live pare process holds it, or the directory cannot be written. A lock
    /// left by a process that no longer runs (killed, or exited without cleaning up) is
    /// reported on stderr and taken over.
    pub fn take(out: &Path) -> Result<OutputLock> {
        let created = (!out.exists()).then(|| out.to_path_buf());
        fs::create_dir_all(out)
            .with_context(|| format!("output directory {}: cannot create it", out.display()))?;
        let file = out.join(LOCK_FILE);
        for _ in 0..2 {
            match fs::OpenOptions::new().write(true).create_new(true).open(&file) {
                Ok(mut f) => {
                    write!(f, "{}", std::process::id())
                        .with_context(|| format!("output directory {}: cannot write it", out.display()))?;
                    if let Ok(mut held) = HELD.lock() {
                        held.push(file.clone());
                    }
                    remove_stale_temporaries(out);
                    return Ok(OutputLock { file, created });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(&file).unwrap_or_default();
                    let pid: Option<u32> = owner.trim().parse().ok();
                    if pid.is_some_and(alive) {
                        bail!(
                            "output directory {} is in use by pare process {} (lock file {}); wait for it or choose another --out",
                            out.display(),
                            owner.trim(),
                            file.display()
                        );
                    }
                    eprintln!(
                        "note: {} was left by process {}, which no longer runs; taking it over",
                        file.display(),
                        if owner.trim().is_empty() {
                            "?"
                        } else {
                            owner.trim()
                        }
                    );
                    fs::remove_file(&file)
                        .with_context(|| format!("removing the stale lock {}", file.display()))?;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("output directory {}: cannot write it", out.display()));
                }
            }
        }
        bail!(
            "output directory {}: the lock file keeps reappearing; another run may be starting",
            out.display()
        )
    }
}

/// Ends the process with `code` after releasing the output lock(s) held, which
/// `std::process::exit` alone would skip (drops do not run): how an interrupted command stops.
pub fn exit(code: i32) -> ! {
    for file in HELD.lock().map(|h| h.clone()).unwrap_or_default() {
        let _ = fs::remove_file(file);
    }
    std::process::exit(code)
}

/// The lock files this process holds, for [`exit`].
static HELD: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

impl Drop for OutputLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.file);
        if let Ok(mut held) = HELD.lock() {
            held.retain(|f| *f != self.file);
        }
        if let Some(dir) = &self.created {
            // Only succeeds when the run wrote nothing there (a refused run leaves no trace).
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Removes the temporary files (`.NAME.PID.tmp`, see `pare::ir::io::write_atomic`) that a
/// killed run left in `out`: with the lock held, no live run writes there.
fn remove_stale_temporaries(out: &Path) {
    let Ok(entries) = fs::read_dir(out) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        if pid.is_some_and(|p| !alive(p)) && fs::remove_file(e.path()).is_ok() {
            eprintln!("note: removed {}, left by an interrupted run", e.path().display());
        }
    }
}

/// Whether process `pid` runs (signal 0 checks without sending anything).
#[cfg(unix)]
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn alive(_pid: u32) -> bool {
    true
}
