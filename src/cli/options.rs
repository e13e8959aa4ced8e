//! The one option table: parsing, `--help` of each command, the `-vv` settings report and
//! the README's options table all come from it, so they cannot drift apart.

/// A subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The cache program go starts (the default).
    Serve,
    /// Probes the configuration and the bucket, then exits.
    Check,
    /// Trims the local tier.
    Trim,
    /// Deletes what no build used for a while from the bucket.
    Prune,
    /// Reports what the bucket and the local tier hold.
    Usage,
    /// Sums a job's sessions into a short report.
    Report,
    /// Dates a checkout's files by their contents, for go's test cache.
    Stamp,
}

/// The subcommands: name, what it does, and its usage line.
pub(crate) const COMMANDS: &[(Command, &str, &str, &str)] = &[
    (
        Command::Serve,
        "serve",
        "the cache program go starts (the default: `serve` may be left out)",
        "GOCACHEPROG=\"gocacheprog-s3 [serve] [OPTIONS] [BUCKET]\" go build ./...",
    ),
    (
        Command::Check,
        "check",
        "check the settings, the credentials and the bucket, then exit",
        "gocacheprog-s3 check [OPTIONS] [BUCKET]",
    ),
    (
        Command::Trim,
        "trim",
        "remove local entries past --local-max-age or --local-max-size, now",
        "gocacheprog-s3 trim [--dry-run] [OPTIONS]",
    ),
    (
        Command::Prune,
        "prune",
        "delete from the bucket what no build used for --unused-for",
        "gocacheprog-s3 prune --unused-for 30d [--dry-run] [OPTIONS] [BUCKET]",
    ),
    (
        Command::Usage,
        "usage",
        "what the bucket's prefix and the local tier hold: objects, bytes, ages",
        "gocacheprog-s3 usage [--json] [OPTIONS] [BUCKET]",
    ),
    (
        Command::Report,
        "report",
        "sum a CI job's sessions (every go command) into a short report",
        "gocacheprog-s3 report [--stats-dir DIR] [FILES...] [--json]",
    ),
    (
        Command::Stamp,
        "stamp",
        "date files by contents, so go reuses test results on fresh checkouts",
        "gocacheprog-s3 stamp [DIR]",
    ),
];

impl Command {
    /// The subcommand named `word`.
    pub(crate) fn named(word: &str) -> Option<Command> {
        COMMANDS.iter().find(|(_, name, ..)| *name == word).map(|(c, ..)| *c)
    }

    pub(crate) fn name(self) -> &'static str {
        COMMANDS.iter().find(|(c, ..)| *c == self).map_or("serve", |(_, name, ..)| name)
    }

    /// What its positional arguments are, and how many it takes at most (the bucket of the
    /// others is one).
    pub(crate) fn positional(self) -> (&'static str, usize) {
        match self {
            Command::Report => ("stats files", usize::MAX),
            Command::Stamp => ("the directory", 1),
            _ => ("the bucket", 1),
        }
    }

    /// Whether its positional arguments are paths rather than the bucket.
    pub(crate) fn takes_paths(self) -> bool {
        matches!(self, Command::Report | Command::Stamp)
    }
}

/// An option's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// Unset unless given.
    None,
    /// This value, parsed like a given one.
    Value(&'static str),
    /// Worked out at run time, as described.
    Described(&'static str),
}

/// One option.
#[derive(Debug)]
pub(crate) struct Opt {
    /// The long name (`--name`); its variable is `GOCACHEPROG_S3_<NAME>`.
    pub(crate) name: &'static str,
    pub(crate) short: Option<char>,
    /// Other spellings accepted (the original Go program's).
    pub(crate) aliases: &'static [&'static str],
    /// What the value looks like in the help (`DIR`, `N`); `None` for a switch.
    pub(crate) value: Option<&'static str>,
    /// Variables read after `GOCACHEPROG_S3_<NAME>`, in order (the AWS tools' names).
    pub(crate) also_env: &'static [&'static str],
    pub(crate) default: Fallback,
    pub(crate) help: &'static str,
    /// Empty: every command takes it (the other commands run with the cache's own
    /// options); else only these.
    pub(crate) only: &'static [Command],
}

impl Opt {
    /// `GOCACHEPROG_S3_<NAME>`.
    #[cfg(test)]
    pub(crate) fn env_name(&self) -> String {
        env_name(self.name)
    }

    pub(crate) fn applies_to(&self, command: Command) -> bool {
        self.only.is_empty() || self.only.contains(&command)
    }

    /// Whether it reads a variable (not the ones that choose what to print).
    pub(crate) fn has_env(&self) -> bool {
        !matches!(self.name, "help" | "version" | "json" | "dry-run" | "unused-for")
    }
}

/// `GOCACHEPROG_S3_<NAME>` for an option name.
pub(crate) fn env_name(option: &str) -> String {
    format!("GOCACHEPROG_S3_{}", option.to_ascii_uppercase().replace('-', "_"))
}

const fn opt(name: &'static str, value: Option<&'static str>, default: Fallback, help: &'static str) -> Opt {
    Opt { name, short: None, aliases: &[], value, also_env: &[], default, help, only: &[] }
}

use Fallback::{Described, Value};

/// Every option, in the order of `--help`.
pub(crate) const OPTIONS: &[Opt] = &[
    Opt {
        aliases: &["local-cache-dir"],
        ..opt(
            "cache-dir",
            Some("DIR"),
            Described("$GOCACHE (go always sets it), else go's default"),
            "the local tier, in go's own GOCACHE layout",
        )
    },
    Opt {
        also_env: &["GOCACHEPROGS3_BUCKET"],
        ..opt("bucket", Some("NAME"), Described("none: a local-only cache"), "the S3 bucket (or the positional BUCKET)")
    },
    Opt {
        aliases: &["s3-prefix"],
        ..opt("prefix", Some("P"), Value("go-cache"), "key prefix in the bucket; objects are P/<action ID>[.lz4]")
    },
    opt(
        "read-prefix",
        Some("P"),
        Fallback::None,
        "a prefix reads fall back to after --prefix, never written (a pull request reads its base branch's \
         scope); repeat it for more, in order; the variable takes a comma-separated list",
    ),
    Opt {
        also_env: &["AWS_REGION", "AWS_DEFAULT_REGION"],
        ..opt(
            "region",
            Some("R"),
            Described("the profile's region, else us-east-1"),
            "signing region (garage, auto for R2, ...); a wrong one is corrected from the store's answer",
        )
    },
    Opt {
        also_env: &["AWS_ENDPOINT_URL_S3"],
        ..opt(
            "endpoint",
            Some("URL"),
            Described("the profile's S3 endpoint, else AWS (https://s3.<region>.amazonaws.com)"),
            "the store, http(s)://host[:port][/path] (AWS_ENDPOINT_URL comes after the profile's)",
        )
    },
    opt(
        "path-style",
        None,
        Described("on with a custom endpoint or a bucket name with dots"),
        "bucket in the path (http://host/bucket/key)",
    ),
    opt("virtual-hosted", None, Described("on for AWS"), "bucket in the host name (http://bucket.host/key)"),
    opt(
        "read-only",
        None,
        Value("false"),
        "read the bucket, never write to it (local puts still work); check: probe reads only",
    ),
    Opt {
        also_env: &["AWS_PROFILE"],
        ..opt("profile", Some("P"), Value("default"), "the AWS shared files' profile (credentials, region, endpoint)")
    },
    opt("no-sign-request", None, Value("false"), "unsigned requests (a public-read bucket); nothing is uploaded"),
    Opt {
        also_env: &["AWS_CA_BUNDLE"],
        ..opt(
            "ca-bundle",
            Some("FILE"),
            Fallback::None,
            "trust the CA certificates of this PEM file instead of the built-in roots (a private CA)",
        )
    },
    opt("sse", Some("MODE"), Fallback::None, "server-side encryption of uploads: AES256 or aws:kms"),
    opt("sse-kms-key-id", Some("ID"), Fallback::None, "the KMS key of --sse aws:kms"),
    opt("workers", Some("N"), Value("16"), "parallel uploads, and parallel downloads of what go waits for"),
    opt("queue-len", Some("N"), Value("10000"), "uploads waiting at most; beyond that they are skipped and counted"),
    opt(
        "get-timeout",
        Some("DUR"),
        Value("5s"),
        "how long one get from go may wait for the bucket in all, retries included; then it is a miss (a \
         store that answers no download for half of it is switched off for reads at once)",
    ),
    opt(
        "timeout",
        Some("DUR"),
        Value("30s"),
        "bound on one S3 request go does not wait for (uploads, prefetch, listing), body included",
    ),
    opt(
        "stall-timeout",
        Some("DUR"),
        Value("5s"),
        "bound on each read and write of a request: a store that stops moving bytes fails it",
    ),
    opt("connect-timeout", Some("DUR"), Value("3s"), "bound on opening a connection"),
    opt(
        "max-object-size",
        Some("N"),
        Value("256M"),
        "largest object a download accepts, before and after decompression, and an upload sends (k, M, G suffixes)",
    ),
    opt("no-prefetch", None, Value("false"), "do not prefetch the build's working set, nor record it"),
    opt(
        "prefetch-key",
        Some("K"),
        Described("module path, go version, target, cgo and build flags (docs/architecture.md, Prefetch)"),
        "names the working-set manifest",
    ),
    opt("prefetch-workers", Some("N"), Value("64"), "parallel prefetch downloads (go's own gets go first)"),
    opt("prefetch-max-bytes", Some("N"), Value("2G"), "most bytes one session prefetches"),
    opt(
        "fast-miss-max-keys",
        Some("N"),
        Value("200000"),
        "list the bucket at the start of a build when it holds at most N outputs, and answer misses from \
         that listing; 0: never",
    ),
    opt(
        "compression",
        Some("C"),
        Value("lz4"),
        "how outputs are uploaded: lz4 (P/<action>.lz4) or none (P/<action>, the original Go program's \
         form); both are always read",
    ),
    opt("close-timeout", Some("DUR"), Value("60s"), "how long the end of a go command waits for queued uploads"),
    opt(
        "max-failures",
        Some("N"),
        Value("5"),
        "consecutive failures (of reads, or of uploads) before that side of the bucket is switched off",
    ),
    opt(
        "probe-interval",
        Some("DUR"),
        Value("30s"),
        "how long a side switched off by failures waits before one request tries it again (doubling to \
         5 min while it fails); 0: never",
    ),
    opt(
        "refresh-after",
        Some("DUR"),
        Value("1d"),
        "a hit on an object last written longer ago rewrites its date in the background (a self-copy), \
         so lifecycle rules and prune see it as used; 0: never",
    ),
    opt(
        "local-max-age",
        Some("DUR"),
        Value("5d"),
        "local entries unused this long are removed, at most once a day at the start of a session (as go \
         does)",
    ),
    opt(
        "local-max-size",
        Some("N"),
        Fallback::None,
        "then the least recently used beyond this size (never what was used in the last hour)",
    ),
    Opt {
        only: &[Command::Trim, Command::Prune],
        ..opt("dry-run", None, Value("false"), "say what would be removed; remove nothing")
    },
    Opt {
        only: &[Command::Prune],
        ..opt(
            "unused-for",
            Some("DUR"),
            Fallback::None,
            "delete what no build used for this long (30d; 0s: everything under the prefix)",
        )
    },
    opt("stats-file", Some("PATH"), Fallback::None, "write the session's counters as JSON at exit"),
    opt(
        "stats-dir",
        Some("DIR"),
        Fallback::None,
        "write each session's counters as a new JSON file in DIR (set it for a whole CI job); report sums them",
    ),
    Opt {
        aliases: &[],
        ..opt("metrics-csv", Some("PATH"), Fallback::None, "append the counters as a CSV row at exit")
    },
    Opt {
        only: &[Command::Check, Command::Usage, Command::Report],
        ..opt("json", None, Value("false"), "print the report as one JSON object")
    },
    opt(
        "log-file",
        Some("FILE"),
        Fallback::None,
        "write every message here (appended, each line with its time and process) instead of stderr, which \
         then stays empty",
    ),
    Opt {
        short: Some('v'),
        ..opt(
            "verbose",
            None,
            Value("0"),
            "more on stderr, repeat or -v=N: 1 a summary at exit, 2 each failed remote request, every \
             setting and signature debugging, 3 every request",
        )
    },
    Opt {
        short: Some('h'),
        ..opt("help", None, Fallback::None, "this text (of a command: gocacheprog-s3 check --help)")
    },
    Opt { short: Some('V'), ..opt("version", None, Fallback::None, "the version") },
];

/// The option called `name` (or one of its aliases).
pub(crate) fn find(name: &str) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.name == name || o.aliases.contains(&name))
}

/// The option whose short form is `c`.
pub(crate) fn find_short(c: char) -> Option<&'static Opt> {
    OPTIONS.iter().find(|o| o.short == Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_defaults_parse() {
        for (i, o) in OPTIONS.iter().enumerate() {
            for other in &OPTIONS[i + 1..] {
                assert_ne!(o.name, other.name);
                assert!(!other.aliases.contains(&o.name), "{}", o.name);
                assert!(o.short.is_none() || o.short != other.short, "{}", o.name);
            }
            assert!(Command::named(o.name).is_none(), "--{} reads as a command", o.name);
            assert!(!o.help.is_empty() && !o.help.ends_with('.'), "{}", o.name);
        }
        assert_eq!(find("s3-prefix").map(|o| o.name), Some("prefix"));
        assert_eq!(find_short('v').map(|o| o.name), Some("verbose"));
        assert_eq!(Command::named("check"), Some(Command::Check));
        assert_eq!(Command::Check.name(), "check");
        assert_eq!(env_name("cache-dir"), "GOCACHEPROG_S3_CACHE_DIR");
    }
}
