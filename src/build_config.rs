//! The build configuration of a go command: the flags and settings that change nearly
//! every action ID (`-race`, `-cover`, `-tags`, `-gcflags`, `GOEXPERIMENT`, ...), read from
//! `GOFLAGS` and the go command line the way cmd/go reads them, and written as a short,
//! normalised part of the build key: two go commands of one configuration get the same
//! part however their flags are spelt, and `go build` and `go test` of one configuration
//! share it.
//!
//! Left out on purpose: `-ldflags` (and `-buildvcs`) enter only the link's action ID, not
//! the compiles'; CI often stamps the commit with `-ldflags -X`, which would give every
//! commit a manifest of its own for nothing. Test-only flags (`-run`, `-count`, `-v`, ...)
//! change no build action.

use std::collections::BTreeSet;

/// Flags whose value is the next argument when not given as `-flag=value`, beyond those
/// the configuration reads: build flags of every go subcommand, `go test`'s own and the
/// test binary's, and `go list`'s; an argument after one of them is its value, not a
/// package.
const OTHER_VALUE_FLAGS: &[&str] = &[
    "C",
    "o",
    "p",
    "gccgoflags",
    "installsuffix",
    "ldflags",
    "mod",
    "modfile",
    "overlay",
    "pkgdir",
    "exec",
    "debug-actiongraph",
    "debug-runtime-trace",
    "debug-trace",
    "coverprofile",
    "f",
    "reuse",
    "vettool",
    "run",
    "skip",
    "bench",
    "benchtime",
    "count",
    "cpu",
    "timeout",
    "parallel",
    "vet",
    "outputdir",
    "cpuprofile",
    "memprofile",
    "memprofilerate",
    "blockprofile",
    "blockprofilerate",
    "mutexprofile",
    "mutexprofilefraction",
    "trace",
    "fuzz",
    "fuzztime",
    "fuzzminimizetime",
    "list",
    "shuffle",
];

/// Flags of the configuration that take a value.
const CONFIG_VALUE_FLAGS: &[&str] =
    &["covermode", "coverpkg", "tags", "gcflags", "asmflags", "buildmode", "pgo", "toolexec", "compiler"];

/// The longest value written as it is; longer ones, and ones with characters outside
/// [`plain_value`]'s, are written as a hash.
const MAX_PLAIN_VALUE: usize = 40;

/// The configuration, as go will apply it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BuildConfig {
    race: bool,
    msan: bool,
    asan: bool,
    cover: bool,
    covermode: Option<String>,
    coverpkg: Option<String>,
    tags: Option<String>,
    /// Every `-gcflags` (from GOFLAGS, then the command line): go applies them all.
    gcflags: Vec<String>,
    asmflags: Vec<String>,
    buildmode: Option<String>,
    trimpath: bool,
    linkshared: bool,
    pgo: Option<String>,
    toolexec: Option<String>,
    compiler: Option<String>,
    experiment: Option<String>,
    fips140: Option<String>,
}

impl BuildConfig {
    /// The configuration of a go command: `GOFLAGS` and `GOEXPERIMENT`/`GOFIPS140` from
    /// `env` (go exports them to the cache program, from its environment or its `go env -w`
    /// file), then `args`, the command line after the subcommand (`None`: unknown, e.g.
    /// where the parent's command line cannot be read). The program uses
    /// [`BuildConfig::detect_with_packages`]; the tests read the configuration alone.
    #[cfg(test)]
    pub(crate) fn detect(
        subcommand: Option<&str>,
        args: Option<&[String]>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Self::detect_with_packages(subcommand, args, env).0
    }

    /// The configuration of a go command (`GOFLAGS` and `GOEXPERIMENT`/`GOFIPS140` from
    /// `env`, go exports them to the cache program; then `args`, the command line after the
    /// subcommand, `None` where it cannot be read), and the arguments that are not flags
    /// (nor flags' values): the packages (and for `go test`, the values of test flags it
    /// does not know).
    pub(crate) fn detect_with_packages(
        subcommand: Option<&str>,
        args: Option<&[String]>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (Self, Vec<String>) {
        let mut config = BuildConfig::default();
        for flag in split_quoted(&env("GOFLAGS").unwrap_or_default()) {
            if let Some((name, value)) = flag_name(&flag) {
                config.set(name, value);
            }
        }
        let packages = args.map_or_else(Vec::new, |args| config.apply_command_line(subcommand, args));
        config.experiment = env("GOEXPERIMENT").map(|v| sorted_list(&v)).filter(|v| !v.is_empty());
        config.fips140 = env("GOFIPS140").filter(|v| !v.is_empty() && v != "off");
        (config, packages)
    }

    /// Applies the flags of a command line (after the subcommand) and returns the other
    /// arguments. `go test` and `go vet` take flags after the packages too (up to
    /// `-args`); the others stop at the first package (`go run` passes what follows it
    /// to the program).
    fn apply_command_line(&mut self, subcommand: Option<&str>, args: &[String]) -> Vec<String> {
        let flags_anywhere = matches!(subcommand, Some("test" | "vet"));
        let mut packages = Vec::new();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if arg == "--" || arg == "-args" || arg == "--args" {
                break;
            }
            let Some((name, value)) = flag_name(arg) else {
                packages.push(arg.clone());
                if flags_anywhere {
                    continue;
                }
                if subcommand != Some("run") {
                    packages.extend(rest.cloned());
                }
                break;
            };
            let takes_value = CONFIG_VALUE_FLAGS.contains(&name) || OTHER_VALUE_FLAGS.contains(&name);
            let value = match value {
                None if takes_value => rest.next().cloned(),
                v => v,
            };
            self.set(name, value);
        }
        packages
    }

    /// Applies one flag (`value`: what follows its `=`, or its argument).
    fn set(&mut self, name: &str, value: Option<String>) {
        let on = || value.as_deref().is_none_or(parse_bool);
        match name {
            "race" => self.race = on(),
            "msan" => self.msan = on(),
            "asan" => self.asan = on(),
            "cover" => self.cover = on(),
            // `go test -coverprofile=file` implies -cover.
            "coverprofile" => self.cover |= value.is_some_and(|v| !v.is_empty()),
            "covermode" => {
                self.cover = true;
                self.covermode = value;
            }
            "coverpkg" => {
                self.cover = true;
                self.coverpkg = value.map(|v| sorted_list(&v));
            }
            "tags" => self.tags = value.map(|v| sorted_list(&v)),
            "gcflags" => self.gcflags.extend(value.map(|v| v.trim().to_string())),
            "asmflags" => self.asmflags.extend(value.map(|v| v.trim().to_string())),
            "buildmode" => self.buildmode = value,
            "trimpath" => self.trimpath = on(),
            "linkshared" => self.linkshared = on(),
            "pgo" => self.pgo = value,
            "toolexec" => self.toolexec = value,
            "compiler" => self.compiler = value,
            _ => {}
        }
    }

    /// The configuration's part of the build key: `""` for a default build, else its parts
    /// joined by `+` in a fixed order, e.g. `race+cover=atomic+tags=integration,sqlite`.
    pub(crate) fn key_part(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (on, name) in [(self.race, "race"), (self.msan, "msan"), (self.asan, "asan")] {
            if on {
                parts.push(name.to_string());
            }
        }
        if self.cover {
            // go's default mode: atomic under -race, else set.
            let default = if self.race { "atomic" } else { "set" };
            parts.push(part("cover", self.covermode.as_deref().filter(|m| !m.is_empty()).unwrap_or(default)));
            if let Some(pkgs) = self.coverpkg.as_deref().filter(|p| !p.is_empty()) {
                parts.push(part("coverpkg", pkgs));
            }
        }
        if let Some(tags) = self.tags.as_deref().filter(|t| !t.is_empty()) {
            parts.push(part("tags", tags));
        }
        for (name, values) in [("gcflags", &self.gcflags), ("asmflags", &self.asmflags)] {
            // `-gcflags=` alone (no flags) builds as the default does.
            if !values.iter().all(String::is_empty) {
                parts.push(part(name, &values.join(" ")));
            }
        }
        if let Some(mode) = not(&self.buildmode, "default") {
            parts.push(part("buildmode", mode));
        }
        for (on, name) in [(self.trimpath, "trimpath"), (self.linkshared, "linkshared")] {
            if on {
                parts.push(name.to_string());
            }
        }
        for (name, value) in [
            ("pgo", not(&self.pgo, "auto")),
            ("compiler", not(&self.compiler, "gc")),
            ("toolexec", not(&self.toolexec, "")),
            ("experiment", not(&self.experiment, "")),
            ("fips140", not(&self.fips140, "off")),
        ] {
            if let Some(value) = value {
                parts.push(part(name, value));
            }
        }
        parts.join("+")
    }
}

/// A setting's value unless it is empty or go's default.
fn not<'a>(value: &'a Option<String>, default: &str) -> Option<&'a str> {
    value.as_deref().filter(|v| !v.is_empty() && *v != default)
}

/// `name=value`, or `name~<hash>` for a value too long or not plain.
fn part(name: &str, value: &str) -> String {
    if value.len() <= MAX_PLAIN_VALUE && value.chars().all(plain_value) {
        format!("{name}={value}")
    } else {
        let hash = crate::s3::sigv4::sha256_hex(value.as_bytes());
        format!("{name}~{}", &hash[..12])
    }
}

fn plain_value(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._,-".contains(c)
}

/// A list of names separated by commas or spaces (as `-tags` and `GOEXPERIMENT` take
/// them), sorted and without repeats.
fn sorted_list(value: &str) -> String {
    let names: BTreeSet<&str> =
        value.split(|c: char| c == ',' || c.is_whitespace()).filter(|n| !n.is_empty()).collect();
    names.into_iter().collect::<Vec<_>>().join(",")
}

/// A flag's name and its `=value`, for `-name`, `--name`, `-name=value`.
fn flag_name(arg: &str) -> Option<(&str, Option<String>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if body.is_empty() || body.starts_with('-') {
        return None;
    }
    Some(match body.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (body, None),
    })
}

/// Go's `strconv.ParseBool`, as the flag package reads `-flag=value`; anything else is
/// an error for go (the command then fails), read here as true.
fn parse_bool(value: &str) -> bool {
    !matches!(value, "0" | "f" | "F" | "false" | "FALSE" | "False")
}

/// Splits `GOFLAGS` as cmd/go does (`cmd/internal/quoted.Split`): fields separated by
/// spaces, a field may be quoted whole with `'` or `"` (no escapes).
fn split_quoted(text: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let quote = rest.chars().next().filter(|&c| c == '\'' || c == '"');
        let (field, after) = match quote {
            Some(q) => match rest[1..].find(q) {
                Some(end) => (&rest[1..1 + end], &rest[2 + end..]),
                // Unterminated: go rejects GOFLAGS; keep what there is.
                None => (&rest[1..], ""),
            },
            None => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        fields.push(field.to_string());
        rest = after.trim_start();
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(subcommand: &str, line: &str, env: &[(&str, &str)]) -> String {
        let args: Vec<String> = line.split(' ').filter(|a| !a.is_empty()).map(str::to_string).collect();
        let env = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        BuildConfig::detect(Some(subcommand), Some(&args), &env).key_part()
    }

    /// A command line as a shell would split it (single quotes group).
    fn key_sh(subcommand: &str, line: &str) -> String {
        let args = split_quoted(line);
        BuildConfig::detect(Some(subcommand), Some(&args), &|_| None).key_part()
    }

    #[test]
    fn default_builds_have_no_part() {
        assert_eq!(key("build", "./...", &[]), "");
        assert_eq!(key("test", "-run XXX -count=1 -v ./...", &[]), "");
        assert_eq!(key("build", "-o bin/app -ldflags=-X=main.version=abc -buildvcs=false .", &[]), "");
        assert_eq!(
            key("test", "-json -timeout 10m -coverprofile=c.out ./...", &[]),
            "cover=set",
            "coverprofile implies cover"
        );
    }

    #[test]
    fn build_and_test_of_one_configuration_share() {
        let race = key("build", "-race ./...", &[]);
        assert_eq!(race, "race");
        assert_eq!(key("test", "-race -run XXX ./...", &[]), race);
        assert_eq!(key("test", "./... -race", &[]), race, "go test takes flags after the packages");
        assert_eq!(key("build", "-race=true ./...", &[]), race);
        assert_eq!(key("build", "--race ./...", &[]), race);
        assert_eq!(key("build", "-race=false ./...", &[]), "");
        assert_eq!(key("build", "./...", &[("GOFLAGS", "-race")]), race);
        assert_eq!(key("build", "./...", &[("GOFLAGS", "-race=true -modcacherw")]), race);
    }

    #[test]
    fn tags_are_normalised() {
        let want = "tags=integration,sqlite";
        assert_eq!(key("build", "-tags=sqlite,integration ./...", &[]), want);
        assert_eq!(key("build", "-tags integration,sqlite ./...", &[]), want);
        assert_eq!(key_sh("test", "-tags 'sqlite integration' ./..."), want);
        assert_eq!(key_sh("test", "'-tags=integration sqlite,integration' ./..."), want);
        assert_eq!(key("build", "./...", &[("GOFLAGS", "-tags=sqlite,integration")]), want);
        // The command line's -tags replaces GOFLAGS'.
        assert_eq!(key("build", "-tags=a ./...", &[("GOFLAGS", "-tags=sqlite,integration")]), "tags=a");
        assert_eq!(key("build", "-tags= ./...", &[]), "");
    }

    #[test]
    fn cover_modes_and_packages() {
        assert_eq!(key("test", "-cover ./...", &[]), "cover=set");
        assert_eq!(key("test", "-race -cover ./...", &[]), "race+cover=atomic", "go's default under -race");
        assert_eq!(key("test", "-covermode=count ./...", &[]), "cover=count");
        assert_eq!(key("build", "-cover -covermode count ./...", &[]), "cover=count");
        assert_eq!(
            key("test", "-coverpkg=./b,./a ./...", &[]),
            format!("cover=set+coverpkg~{}", &crate::s3::sigv4::sha256_hex(b"./a,./b")[..12])
        );
        assert_eq!(key("test", "-coverpkg all ./...", &[]), "cover=set+coverpkg=all");
    }

    #[test]
    fn compiler_flags_and_modes() {
        let hashed = |v: &str| crate::s3::sigv4::sha256_hex(v.as_bytes())[..12].to_string();
        assert_eq!(key_sh("build", "-gcflags 'all=-N -l' ./..."), format!("gcflags~{}", hashed("all=-N -l")));
        assert_eq!(key_sh("build", "'-gcflags=all=-N -l' ./..."), key_sh("build", "-gcflags 'all=-N -l' ./..."));
        assert_eq!(key_sh("build", "-gcflags=-B ./..."), "gcflags=-B");
        // Repeated per-package flags all apply, GOFLAGS' first.
        let env = |k: &str| (k == "GOFLAGS").then(|| "-gcflags=-B".to_string());
        let args: Vec<String> = ["-gcflags=all=-l", "."].map(String::from).to_vec();
        assert_eq!(
            BuildConfig::detect(Some("build"), Some(&args), &env).key_part(),
            format!("gcflags~{}", hashed("-B all=-l"))
        );
        assert_eq!(key_sh("build", "-asmflags=-spectre=all ./..."), "asmflags~".to_string() + &hashed("-spectre=all"));
        assert_eq!(key("build", "-buildmode=pie -trimpath ./...", &[]), "buildmode=pie+trimpath");
        assert_eq!(key("build", "-buildmode default ./...", &[]), "");
        assert_eq!(key("build", "-msan -asan ./...", &[]), "msan+asan");
        assert_eq!(key("build", "-pgo=off ./...", &[]), "pgo=off");
        assert_eq!(key("build", "-pgo auto ./...", &[]), "");
        assert_eq!(key("build", "-toolexec /usr/bin/time ./...", &[]), format!("toolexec~{}", hashed("/usr/bin/time")));
    }

    #[test]
    fn environment_settings() {
        assert_eq!(
            key("build", ".", &[("GOEXPERIMENT", "rangefunc,aliastypeparams")]),
            "experiment=aliastypeparams,rangefunc"
        );
        assert_eq!(key("build", ".", &[("GOEXPERIMENT", "")]), "");
        assert_eq!(key("build", ".", &[("GOFIPS140", "latest")]), "fips140=latest");
        assert_eq!(key("build", ".", &[("GOFIPS140", "off")]), "");
    }

    #[test]
    fn where_flags_end() {
        // `go run` passes what follows the package to the program.
        assert_eq!(key("run", ". -race", &[]), "");
        assert_eq!(key("run", "-race . -tags x", &[]), "race");
        // A flag's value is not a package: the flags after it still count.
        assert_eq!(key("build", "-o out -race ./...", &[]), "race");
        assert_eq!(key("list", "-export -f {{.Export}} -tags=x ./...", &[]), "tags=x");
        // The test binary's arguments are not go's.
        assert_eq!(key("test", "./... -args -race", &[]), "");
        assert_eq!(key("build", "-- -race", &[]), "");
    }

    #[test]
    fn packages_are_what_is_not_a_flag() {
        let packages = |sub: &str, line: &str| {
            let args: Vec<String> = line.split(' ').map(str::to_string).collect();
            BuildConfig::detect_with_packages(Some(sub), Some(&args), &|_| None).1
        };
        assert_eq!(packages("build", "-o out -tags x ./cmd/... ./lib"), ["./cmd/...", "./lib"]);
        assert_eq!(packages("run", "-race . arg -v"), ["."]);
        assert_eq!(packages("test", "-run XXX ./... -count 1 -args -x"), ["./..."]);
        assert_eq!(packages("test", "-run=XXX ./a -v ./b"), ["./a", "./b"]);
    }

    #[test]
    fn goflags_quoting() {
        assert_eq!(split_quoted(""), Vec::<String>::new());
        assert_eq!(split_quoted("  -a  -b=c "), ["-a", "-b=c"]);
        assert_eq!(split_quoted("'-gcflags=all=-N -l' \"-tags=a b\" -x"), ["-gcflags=all=-N -l", "-tags=a b", "-x"]);
        assert_eq!(split_quoted("'-unterminated x"), ["-unterminated x"]);
        assert_eq!(key("build", ".", &[("GOFLAGS", "'-tags=b a' -trimpath")]), "tags=a,b+trimpath");
    }
}
