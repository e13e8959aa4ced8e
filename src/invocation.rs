//! Which go command started this session, for which build: what decides whether the
//! session prefetches, and which manifest ("the same build") it reads and extends.
//!
//! The build key is the main module's path (from the `go.mod` found upwards of go's
//! working directory, which is ours), the toolchain (`GOVERSION`), the target
//! (`GOOS`/`GOARCH`) and whether cgo is on: each of these changes nearly every action ID,
//! so sessions that differ in one of them share almost nothing. The go subcommand is
//! deliberately not part of it: `go build` and `go test` of a module share their
//! dependencies' actions, so one manifest serves both (and each prefetches the other's
//! outputs, which the other then finds local).

use std::path::{Path, PathBuf};

/// What go told us about this session, through our environment, working directory and
/// parent process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    /// The go subcommand (`build`, `test`, ...), when the parent is a go command whose
    /// command line could be read.
    pub(crate) subcommand: Option<String>,
    /// Whether the subcommand's arguments include `-export` (`go list -export` builds).
    pub(crate) export: bool,
    /// The main module's path, when a `go.mod` was found.
    pub(crate) module: Option<String>,
    pub(crate) go_version: Option<String>,
    pub(crate) goos: Option<String>,
    pub(crate) goarch: Option<String>,
    pub(crate) cgo: bool,
}

impl Invocation {
    /// Reads the session's facts from the environment, the working directory and (on
    /// Linux) `/proc/<parent>/cmdline`. Missing facts stay `None`; on macOS and Windows the
    /// parent's command line is not read (it would take unsafe system calls), so the
    /// subcommand is unknown and the session counts as building.
    pub(crate) fn detect(env: &dyn Fn(&str) -> Option<String>) -> Invocation {
        let (subcommand, export) = parent_command_line().map_or((None, false), |args| go_subcommand(&args));
        let module = std::env::current_dir().ok().and_then(|dir| module_path(&dir));
        Invocation {
            subcommand,
            export,
            module,
            go_version: env("GOVERSION").filter(|v| !v.is_empty()),
            goos: env("GOOS").filter(|v| !v.is_empty()),
            goarch: env("GOARCH").filter(|v| !v.is_empty()),
            cgo: env("CGO_ENABLED").is_some_and(|v| v == "1"),
        }
    }

    /// Whether this go command compiles or links, so that the build's working set is
    /// worth prefetching and recording. Commands that only look things up (`go list`
    /// without `-export`, `go env`, `go mod`, gopls' frequent queries) neither prefetch nor
    /// change the manifest. An unknown parent counts as building.
    pub(crate) fn builds(&self) -> bool {
        match self.subcommand.as_deref() {
            None => true,
            Some("build" | "install" | "test" | "run" | "vet" | "tool" | "generate") => true,
            Some("list") => self.export,
            Some(_) => false,
        }
    }

    /// The build key: what identifies "the same build" across machines and sessions.
    pub(crate) fn build_key(&self) -> String {
        let module = self.module.as_deref().unwrap_or("(no module)");
        let version = self.go_version.as_deref().unwrap_or("go-unknown");
        let goos = self.goos.as_deref().unwrap_or("unknown");
        let goarch = self.goarch.as_deref().unwrap_or("unknown");
        let cgo = if self.cgo { "-cgo" } else { "" };
        format!("{module}/{version}/{goos}-{goarch}{cgo}")
    }
}

/// The command line of the process that started us (Linux).
#[cfg(target_os = "linux")]
fn parent_command_line() -> Option<Vec<String>> {
    let parent = std::os::unix::process::parent_id();
    let raw = std::fs::read(format!("/proc/{parent}/cmdline")).ok()?;
    Some(raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// Elsewhere there is no `/proc`: unknown.
#[cfg(not(target_os = "linux"))]
fn parent_command_line() -> Option<Vec<String>> {
    None
}

/// The subcommand of a go command line, and whether it asks for `-export`.
fn go_subcommand(args: &[String]) -> (Option<String>, bool) {
    let Some(program) = args.first() else { return (None, false) };
    let name = Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !(name == "go" || name.starts_with("go1.") || name == "go.exe") {
        return (None, false);
    }
    let mut rest = args[1..].iter();
    let subcommand = loop {
        match rest.next().map(String::as_str) {
            // `go -C dir build`: -C (the only flag before the subcommand) takes a value.
            Some("-C") => {
                rest.next();
            }
            Some(flag) if flag.starts_with('-') => {}
            Some(sub) => break Some(sub.to_string()),
            None => break None,
        }
    };
    let export = rest.any(|a| a == "-export" || a == "-export=true" || a == "--export");
    (subcommand, export)
}

/// The module path of the `go.mod` at or above `dir`.
fn module_path(dir: &Path) -> Option<String> {
    let mut here: Option<PathBuf> = Some(dir.to_path_buf());
    while let Some(d) = here {
        if let Ok(text) = std::fs::read_to_string(d.join("go.mod")) {
            return parse_module_line(&text);
        }
        here = d.parent().map(Path::to_path_buf);
    }
    None
}

/// The path of go.mod's `module` directive (quoted or not, comments ignored).
fn parse_module_line(go_mod: &str) -> Option<String> {
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("module") {
            if !rest.starts_with(|c: char| c.is_whitespace() || c == '"') {
                continue;
            }
            let path = rest.trim().trim_matches(|c| c == '"' || c == '`');
            if !path.is_empty() {
                return Some(path.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn subcommands_of_go_command_lines() {
        assert_eq!(go_subcommand(&args("go build ./...")), (Some("build".into()), false));
        assert_eq!(go_subcommand(&args("/usr/local/go/bin/go test -run XXX ./...")), (Some("test".into()), false));
        assert_eq!(go_subcommand(&args("go -C sub/dir vet .")), (Some("vet".into()), false));
        assert_eq!(go_subcommand(&args("go list -e -export -deps ./...")), (Some("list".into()), true));
        assert_eq!(go_subcommand(&args("go1.27.3 env")), (Some("env".into()), false));
        assert_eq!(go_subcommand(&args("bash -c go")), (None, false));
        assert_eq!(go_subcommand(&[]), (None, false));
    }

    #[test]
    fn which_commands_build() {
        let mut inv = Invocation {
            subcommand: None,
            export: false,
            module: None,
            go_version: None,
            goos: None,
            goarch: None,
            cgo: false,
        };
        assert!(inv.builds(), "unknown parent");
        for (sub, export, builds) in [
            ("build", false, true),
            ("test", false, true),
            ("list", false, false),
            ("list", true, true),
            ("env", false, false),
            ("mod", false, false),
        ] {
            inv.subcommand = Some(sub.into());
            inv.export = export;
            assert_eq!(inv.builds(), builds, "{sub} {export}");
        }
    }

    #[test]
    fn build_key_from_module_and_toolchain() {
        let inv = Invocation {
            subcommand: Some("test".into()),
            export: false,
            module: Some("github.com/go-task/task/v3".into()),
            go_version: Some("go1.26.8".into()),
            goos: Some("linux".into()),
            goarch: Some("amd64".into()),
            cgo: true,
        };
        assert_eq!(inv.build_key(), "github.com/go-task/task/v3/go1.26.8/linux-amd64-cgo");
        let build = Invocation { subcommand: Some("build".into()), ..inv.clone() };
        assert_eq!(build.build_key(), inv.build_key(), "build and test share a manifest");
        let none = Invocation { module: None, go_version: None, goos: None, goarch: None, cgo: false, ..inv };
        assert_eq!(none.build_key(), "(no module)/go-unknown/unknown-unknown");
    }

    #[test]
    fn module_lines() {
        assert_eq!(
            parse_module_line("// c\nmodule example.com/tiny\n\ngo 1.24\n").as_deref(),
            Some("example.com/tiny")
        );
        assert_eq!(parse_module_line("module \"example.com/q\" // x\n").as_deref(), Some("example.com/q"));
        assert_eq!(parse_module_line("modulex foo\ngo 1.2\n"), None);
        assert_eq!(parse_module_line(""), None);
        let dir = std::env::temp_dir().join(format!("gocacheprog-inv-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("go.mod"), "module example.com/up\n").unwrap();
        assert_eq!(module_path(&dir.join("a/b")).as_deref(), Some("example.com/up"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
