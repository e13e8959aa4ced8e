//! Which go command started this session, for which build: what decides whether the
//! session prefetches, and which manifest ("the same build") it reads and extends.
//!
//! The build key is the main module's path (from the `go.mod` found upwards of go's
//! working directory, which is ours), the toolchain (`GOVERSION`), the target
//! (`GOOS`/`GOARCH` and its level, `GOAMD64` and friends), whether cgo is on, and the
//! build configuration (`-race`, `-tags`, ...: see `build_config`): each of these changes
//! nearly every action ID, so sessions that differ in one of them share almost nothing.
//! The go subcommand is deliberately not part of it: `go build` and `go test` of a module
//! share their dependencies' actions, so one manifest serves both. What the command
//! builds (its subcommand, directory and packages) is the session's kind within the
//! manifest, which keeps each kind's working set apart.

use crate::build_config::BuildConfig;
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
    /// The target's level (`GOAMD64`, `GOARM`, ... of `GOARCH`).
    pub(crate) arch_level: Option<String>,
    pub(crate) cgo: bool,
    /// The flags and settings that change nearly every action ID.
    pub(crate) config: BuildConfig,
    /// What the command builds: its subcommand, its directory within the module and its
    /// packages (the manifest keeps each kind's working set apart).
    pub(crate) kind: String,
}

impl Invocation {
    /// Reads the session's facts from the environment, the working directory and (on
    /// Linux) `/proc/<parent>/cmdline`. Missing facts stay `None`.
    pub(crate) fn detect(env: &dyn Fn(&str) -> Option<String>) -> Invocation {
        let command = parent_command_line().and_then(|args| go_command(&args));
        let (subcommand, args) = command.map_or((None, None), |(sub, args)| (Some(sub), Some(args)));
        let export = args.as_deref().is_some_and(asks_export);
        let (config, packages) = BuildConfig::detect_with_packages(subcommand.as_deref(), args.as_deref(), env);
        let cwd = std::env::current_dir().ok();
        let root = cwd.as_deref().and_then(module_root);
        let module = root.as_ref().and_then(|(_, path)| path.clone());
        let dir = match (&cwd, &root) {
            (Some(cwd), Some((root, _))) => cwd.strip_prefix(root).map(|d| d.to_string_lossy().into_owned()).ok(),
            _ => None,
        };
        let goarch = env("GOARCH").filter(|v| !v.is_empty());
        let arch_level = goarch.as_deref().and_then(arch_level_variable).and_then(env).filter(|v| !v.is_empty());
        let kind = format!(
            "{} {} {}",
            subcommand.as_deref().unwrap_or("?"),
            dir.as_deref().map_or("?", |d| if d.is_empty() { "." } else { d }),
            packages.join(" ")
        );
        Invocation {
            subcommand,
            export,
            module,
            go_version: env("GOVERSION").filter(|v| !v.is_empty()),
            goos: env("GOOS").filter(|v| !v.is_empty()),
            goarch,
            arch_level,
            cgo: env("CGO_ENABLED").is_some_and(|v| v == "1"),
            config,
            kind,
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

    /// The build key: what identifies "the same build" across machines and sessions,
    /// `<module>/<go version>/<GOOS>-<GOARCH>[-<level>][-cgo][/<configuration>]`.
    pub(crate) fn build_key(&self) -> String {
        let module = self.module.as_deref().unwrap_or("(no module)");
        let version = self.go_version.as_deref().unwrap_or("go-unknown");
        let goos = self.goos.as_deref().unwrap_or("unknown");
        let goarch = self.goarch.as_deref().unwrap_or("unknown");
        let level = self.arch_level.as_deref().map_or(String::new(), |l| format!("-{l}"));
        let cgo = if self.cgo { "-cgo" } else { "" };
        let config = self.config.key_part();
        let config = if config.is_empty() { config } else { format!("/{config}") };
        format!("{module}/{version}/{goos}-{goarch}{level}{cgo}{config}")
    }
}

/// The command line of the process that started us (Linux).
#[cfg(target_os = "linux")]
fn parent_command_line() -> Option<Vec<String>> {
    // The nearest go among our ancestors: a wrapper between go and the program (a shell
    // script that execs `time`, `env`, a CI's own launcher) is common, and its command
    // line says nothing of the build. A few levels at most: go starts us directly.
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..4 {
        let args = command_line(pid)?;
        if go_command(&args).is_some() {
            return Some(args);
        }
        pid = parent_of(pid).filter(|&p| p > 1)?;
    }
    None
}

/// A process's command line, from `/proc/<pid>/cmdline`.
#[cfg(target_os = "linux")]
fn command_line(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
}

/// A process's parent, from `/proc/<pid>/stat` (`pid (comm) state ppid ...`; the name
/// may hold spaces and parentheses, so the fields are counted after the last `)`).
#[cfg(target_os = "linux")]
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Elsewhere there is no `/proc`: unknown (reading another process's command line would
/// take unsafe system calls), so the subcommand is unknown and the session counts as
/// building; the build key still has what `GOFLAGS` and the environment say.
#[cfg(not(target_os = "linux"))]
fn parent_command_line() -> Option<Vec<String>> {
    None
}

/// The subcommand of a go command line and the arguments after it.
fn go_command(args: &[String]) -> Option<(String, Vec<String>)> {
    let program = args.first()?;
    let name = Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !(name == "go" || name.starts_with("go1.") || name == "go.exe") {
        return None;
    }
    let mut rest = args[1..].iter();
    loop {
        match rest.next().map(String::as_str) {
            // `go -C dir build`: -C (the only flag before the subcommand) takes a value.
            Some("-C") => {
                rest.next();
            }
            Some(flag) if flag.starts_with('-') => {}
            Some(sub) => return Some((sub.to_string(), rest.cloned().collect())),
            None => return None,
        }
    }
}

/// Whether a command line (after the subcommand) asks for `-export`.
fn asks_export(args: &[String]) -> bool {
    args.iter().any(|a| a == "-export" || a == "-export=true" || a == "--export")
}

/// The environment variable that sets the level of `goarch` (`GOAMD64=v3`, `GOARM=7`).
fn arch_level_variable(goarch: &str) -> Option<&'static str> {
    Some(match goarch {
        "amd64" => "GOAMD64",
        "arm" => "GOARM",
        "arm64" => "GOARM64",
        "386" => "GO386",
        "ppc64" | "ppc64le" => "GOPPC64",
        "riscv64" => "GORISCV64",
        "mips" | "mipsle" => "GOMIPS",
        "mips64" | "mips64le" => "GOMIPS64",
        "wasm" => "GOWASM",
        _ => return None,
    })
}

/// The directory of the `go.mod` at or above `dir`, and its module path.
fn module_root(dir: &Path) -> Option<(PathBuf, Option<String>)> {
    let mut here: Option<PathBuf> = Some(dir.to_path_buf());
    while let Some(d) = here {
        if let Ok(text) = std::fs::read_to_string(d.join("go.mod")) {
            let path = parse_module_line(&text);
            return Some((d, path));
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

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_parent_is_read_from_proc() {
        assert_eq!(parent_of(std::process::id()), Some(std::os::unix::process::parent_id()));
        let own = command_line(std::process::id()).unwrap();
        assert!(own[0].contains("gocacheprog_s3") || own[0].contains("deps"), "{own:?}");
    }

    #[test]
    fn subcommands_of_go_command_lines() {
        let sub = |line: &str| go_command(&args(line)).map(|(s, rest)| (s, asks_export(&rest)));
        assert_eq!(sub("go build ./..."), Some(("build".into(), false)));
        assert_eq!(sub("/usr/local/go/bin/go test -run XXX ./..."), Some(("test".into(), false)));
        assert_eq!(sub("go -C sub/dir vet ."), Some(("vet".into(), false)));
        assert_eq!(sub("go list -e -export -deps ./..."), Some(("list".into(), true)));
        assert_eq!(sub("go1.27.3 env"), Some(("env".into(), false)));
        assert_eq!(sub("bash -c go"), None);
        assert_eq!(go_command(&[]), None);
        assert_eq!(go_command(&args("go test -race ./...")).map(|c| c.1), Some(args("-race ./...")));
    }

    fn invocation() -> Invocation {
        Invocation {
            subcommand: Some("test".into()),
            export: false,
            module: Some("github.com/go-task/task/v3".into()),
            go_version: Some("go1.26.8".into()),
            goos: Some("linux".into()),
            goarch: Some("amd64".into()),
            arch_level: Some("v1".into()),
            cgo: true,
            config: BuildConfig::default(),
            kind: "test . ./...".into(),
        }
    }

    #[test]
    fn which_commands_build() {
        let mut inv = Invocation { subcommand: None, ..invocation() };
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
    fn build_key_from_module_toolchain_and_configuration() {
        let inv = invocation();
        assert_eq!(inv.build_key(), "github.com/go-task/task/v3/go1.26.8/linux-amd64-v1-cgo");
        let build = Invocation { subcommand: Some("build".into()), kind: "build . ./...".into(), ..inv.clone() };
        assert_eq!(build.build_key(), inv.build_key(), "build and test share a manifest");
        let config = |line: &str, goflags: &str| {
            let goflags = goflags.to_string();
            BuildConfig::detect(Some("test"), Some(&args(line)), &move |k| (k == "GOFLAGS").then(|| goflags.clone()))
        };
        let race = Invocation { config: config("-race -tags=b,a ./...", ""), ..inv.clone() };
        assert_eq!(race.build_key(), "github.com/go-task/task/v3/go1.26.8/linux-amd64-v1-cgo/race+tags=a,b");
        let same = Invocation { config: config("-tags a,b ./...", "-race"), ..inv.clone() };
        assert_eq!(same.build_key(), race.build_key(), "GOFLAGS and the command line alike");
        let v3 = Invocation { arch_level: Some("v3".into()), ..inv.clone() };
        assert_eq!(v3.build_key(), "github.com/go-task/task/v3/go1.26.8/linux-amd64-v3-cgo");
        let none = Invocation {
            module: None,
            go_version: None,
            goos: None,
            goarch: None,
            arch_level: None,
            cgo: false,
            ..inv
        };
        assert_eq!(none.build_key(), "(no module)/go-unknown/unknown-unknown");
    }

    #[test]
    fn levels_of_targets() {
        assert_eq!(arch_level_variable("amd64"), Some("GOAMD64"));
        assert_eq!(arch_level_variable("arm"), Some("GOARM"));
        assert_eq!(arch_level_variable("ppc64le"), Some("GOPPC64"));
        assert_eq!(arch_level_variable("s390x"), None);
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
        let (root, path) = module_root(&dir.join("a/b")).unwrap();
        assert_eq!((root, path.as_deref()), (dir.clone(), Some("example.com/up")));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
