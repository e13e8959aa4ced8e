//! Other platforms' binaries, built by scripts/build-cross.sh (scripts/test.sh builds them
//! before the tests), and what runs them here: qemu-user for aarch64 Linux, wine for
//! Windows. A binary or an emulator that is missing fails the test with what to run.

use super::servers::which;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The release binary of `target` that scripts/build-cross.sh leaves in the target dir.
pub fn cross_binary(target: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |d| root.join(d));
    let name = if target.contains("windows") { "gocacheprog-s3.exe" } else { "gocacheprog-s3" };
    let bin = target_dir.join(target).join("release").join(name);
    assert!(
        bin.is_file(),
        "no {target} binary at {}: build it with `scripts/build-cross.sh {target}` (scripts/test.sh does, before \
         the tests)",
        bin.display()
    );
    bin
}

/// `qemu-aarch64-static` (Debian's qemu-user-static): runs aarch64 Linux binaries here
/// without binfmt_misc.
pub fn qemu_aarch64() -> PathBuf {
    which("qemu-aarch64-static").unwrap_or_else(|| {
        panic!(
            "qemu-aarch64-static is missing: `scripts/build-cross.sh aarch64-unknown-linux-musl` installs it \
             (Debian qemu-user-static)"
        )
    })
}

/// A wine prefix of its own (a temporary directory) and `scripts/wine.sh` to run Windows
/// programs in it. On drop its wineserver is stopped and no process of the prefix is
/// left (checked).
pub struct Wine {
    pub prefix: PathBuf,
}

/// How long wine may take to stop a prefix's processes.
const WINE_STOP_LIMIT: Duration = Duration::from_secs(30);

impl Wine {
    /// A fresh prefix (made by the first program run in it).
    pub fn new(label: &str) -> Wine {
        assert!(
            which("wine").is_some(),
            "wine is missing: `scripts/build-cross.sh x86_64-pc-windows-gnu` installs it (Debian wine, wine64)"
        );
        Wine { prefix: super::go::fresh_dir(&format!("wine-{label}")) }
    }

    /// A command that runs `program` (a Windows executable) under wine in this prefix.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wine.sh")).arg(program);
        cmd.env_clear().envs(self.env());
        cmd
    }

    /// What wine itself needs in the environment.
    pub fn env(&self) -> Vec<(String, OsString)> {
        let mut env = vec![
            ("WINEPREFIX".to_string(), self.prefix.clone().into_os_string()),
            ("WINEDEBUG".to_string(), "-all".into()),
            ("HOME".to_string(), self.prefix.clone().into_os_string()),
        ];
        if let Some(path) = std::env::var_os("PATH") {
            env.push(("PATH".into(), path));
        }
        env
    }

    /// Processes running in this prefix (their environment names it).
    fn processes(&self) -> Vec<u32> {
        let needle = format!("WINEPREFIX={}", self.prefix.display());
        let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
            })
            .collect()
    }
}

/// The path a Windows program under wine sees for a path here (wine's `Z:` is `/`).
pub fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.to_string_lossy().replace('/', "\\"))
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = Command::new("wineserver")
            .arg("--kill")
            .env("WINEPREFIX", &self.prefix)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + WINE_STOP_LIMIT;
        let mut left = self.processes();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            left = self.processes();
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "wine processes of {} still running: {left:?}", self.prefix.display());
            let _ = fs::remove_dir_all(&self.prefix);
        }
    }
}
