//! `--help` of each command and the README's options table, written from the option table.

use super::options::{Command, Fallback, Opt, COMMANDS, OPTIONS};

const WIDTH: usize = 92;
const COLUMN: usize = 27;

/// The `--help` text of `command`.
pub fn help(command: Command) -> String {
    let (_, name, summary, usage) = COMMANDS.iter().find(|(c, ..)| *c == command).copied().unwrap_or(COMMANDS[0]);
    let mut out = String::new();
    match command {
        Command::Serve => {
            out.push_str(
                "gocacheprog-s3: a Go build cache program (GOCACHEPROG) with a local tier and an S3 bucket\n\n",
            );
            out.push_str(&format!("USAGE:\n    {usage}\n    gocacheprog-s3 <COMMAND> --help\n\nCOMMANDS:\n"));
            for (_, n, s, _) in COMMANDS {
                push_item(&mut out, &format!("    {n}"), s);
            }
            out.push_str(
                "\nWith no bucket it is a local-only cache. A bucket named like a command is given with\n\
                 --bucket. Every option also reads GOCACHEPROG_S3_<NAME> (e.g. GOCACHEPROG_S3_CACHE_DIR);\n\
                 flags win.\n",
            );
        }
        Command::Check => {
            out.push_str(&format!("gocacheprog-s3 {name}: {summary}\n\nUSAGE:\n    {usage}\n\n"));
            out.push_str(
                "It reads the cache's own options and environment (run it with the GOCACHEPROG string's\n\
                 options), prints every setting and where it came from and which credentials were found,\n\
                 then writes, reads back, verifies and deletes a probe object under <prefix>/_check/\n\
                 and lists the prefix. Exit status: 0 the cache can use the bucket, 1 it cannot (the\n\
                 report says why and what to change), 2 a bad option.\n",
            );
        }
        Command::Trim => {
            out.push_str(&format!("gocacheprog-s3 {name}: {summary}\n\nUSAGE:\n    {usage}\n\n"));
            out.push_str(
                "The cache does this itself at most once a day (trim.txt, shared with go). Use is a file's\n\
                 mtime, which every hit bumps at most hourly; nothing used in the last hour is removed.\n",
            );
        }
        Command::Prune => {
            out.push_str(&format!("gocacheprog-s3 {name}: {summary}\n\nUSAGE:\n    {usage}\n\n"));
            out.push_str(
                "Lists the prefix and deletes, in parallel, every object (outputs, manifests, check\n\
                 probes) whose date is older than --unused-for plus --refresh-after: hits rewrite an\n\
                 object's date at most once per --refresh-after, so nothing a build used within\n\
                 --unused-for is deleted. --unused-for 0s deletes everything under the prefix.\n",
            );
        }
        Command::Usage => {
            out.push_str(&format!("gocacheprog-s3 {name}: {summary}\n\nUSAGE:\n    {usage}\n\n"));
            out.push_str(
                "Lists every object under the prefix (outputs, manifests and anything else) and walks\n\
                 the local tier; --json prints one object with the fields docs/operations.md lists.\n",
            );
        }
        Command::Report => {
            out.push_str(&format!("gocacheprog-s3 {name}: {summary}\n\nUSAGE:\n    {usage}\n\n"));
            out.push_str(
                "Reads the session files of --stats-dir (GOCACHEPROG_S3_STATS_DIR, set for the whole job so\n\
                 every go command writes one) and any --stats-file or --metrics-csv files given, and prints\n\
                 what the cache did for the job: gets and where they were answered, bytes each way, time\n\
                 the build waited on the bucket, prefetch waste, errors and what was switched off. In\n\
                 GitHub Actions (GITHUB_STEP_SUMMARY set) it appends the same as Markdown to the summary.\n",
            );
        }
        Command::Stamp => {
            out.push_str(&format!("gocacheprog-s3 {name}: {summary}\n\nUSAGE:\n    {usage}\n\n"));
            out.push_str(
                "go keys a cached test result on the mtimes of the files the test read, and a fresh\n\
                 checkout gives every file a new one, so tests that read files rerun on every CI runner.\n\
                 Run this right after the checkout: each file gets an mtime made from a hash of its bytes,\n\
                 each folder one from its entry names (between 2000 and 2017, with nanoseconds), so the\n\
                 same code gets the same times everywhere and any change another. It changes mtimes only;\n\
                 .git is skipped, symbolic links are neither followed nor changed.\n",
            );
        }
    }
    out.push_str("\nOPTIONS:\n");
    for o in OPTIONS.iter().filter(|o| o.applies_to(command)) {
        let mut text = o.help.to_string();
        let default = match o.default {
            Fallback::Value(v) if o.value.is_some() => format!("[default: {v}]"),
            Fallback::Described(d) => format!("[default: {d}]"),
            _ => String::new(),
        };
        if !default.is_empty() {
            // A short default stays on one line (\u{1}: a space the wrapping keeps).
            text.push(' ');
            text.push_str(&if default.len() <= 24 { default.replace(' ', "\u{1}") } else { default });
        }
        if !o.also_env.is_empty() {
            text.push_str(&format!(" [env: {}]", o.also_env.join(", ")));
        }
        push_item(&mut out, &format!("    {}", spelling(o)), &text);
    }
    out.push_str(
        "\nDurations: 500ms, 30s, 2m, 1h, 7d or a plain number of seconds. Sizes: 500M, 2G or bytes.\n\
         Credentials: the AWS default chain (GOCACHEPROG_S3_ACCESS_KEY_ID..., AWS_ACCESS_KEY_ID...,\n\
         the shared files' profile, web identity, container, EC2 instance metadata).\n",
    );
    out.replace('\u{1}', " ")
}

/// `-v, --verbose` / `--cache-dir DIR`.
fn spelling(o: &Opt) -> String {
    let long = match o.value {
        Some(v) => format!("--{} {v}", o.name),
        None => format!("--{}", o.name),
    };
    match o.short {
        Some(c) => format!("-{c}, {long}"),
        None => long,
    }
}

/// `left` then `text` wrapped into the help column.
fn push_item(out: &mut String, left: &str, text: &str) {
    let mut line = left.to_string();
    if line.len() + 1 >= COLUMN {
        out.push_str(&line);
        out.push('\n');
        line.clear();
    }
    let mut first_word = true;
    for word in text.split_whitespace() {
        let start = line.len() < COLUMN || (first_word && line.trim().is_empty());
        if !start && line.len() + 1 + word.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line.clear();
        }
        if line.len() < COLUMN {
            line.push_str(&" ".repeat(COLUMN - line.len()));
        } else {
            line.push(' ');
        }
        line.push_str(word);
        first_word = false;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// The README's options table (Markdown).
#[cfg(test)]
pub(crate) fn markdown_table() -> String {
    let mut out = String::from("| option | variable | default | meaning |\n| --- | --- | --- | --- |\n");
    for o in OPTIONS {
        let mut option = format!("`{}`", spelling(o));
        if o.name == "bucket" {
            option.push_str(" or `BUCKET`");
        }
        for alias in o.aliases {
            option.push_str(&format!(", `-{alias}`"));
        }
        let mut vars: Vec<String> = Vec::new();
        if o.has_env() {
            vars.push(format!("`{}`", o.env_name()));
        }
        vars.extend(o.also_env.iter().map(|v| format!("`{v}`")));
        let default = match o.default {
            Fallback::None => String::new(),
            Fallback::Value(v) => format!("`{v}`"),
            Fallback::Described(d) => d.to_string(),
        };
        let meaning = match o.only {
            [] => o.help.to_string(),
            only => {
                let names: Vec<&str> = only.iter().map(|c| c.name()).collect();
                format!("({} only) {}", names.join(", "), o.help)
            }
        };
        out.push_str(&format!("| {option} | {} | {default} | {} |\n", vars.join(", "), meaning.replace('|', "\\|")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option_of_the_command_within_the_width() {
        for (command, ..) in COMMANDS {
            let text = help(*command);
            let options = text.split("\nOPTIONS:\n").nth(1).unwrap_or_default();
            for o in OPTIONS {
                assert_eq!(
                    options.contains(&format!("--{} ", o.name)) || options.contains(&format!("--{}\n", o.name)),
                    o.applies_to(*command),
                    "--{} in the help of {}",
                    o.name,
                    command.name()
                );
            }
            for line in text.lines() {
                assert!(line.chars().count() <= WIDTH, "too long: {line}");
            }
        }
        let serve = help(Command::Serve);
        for name in ["check", "trim", "prune", "usage", "report", "stamp"] {
            assert!(serve.contains(&format!("    {name} ")), "{serve}");
        }
        assert!(help(Command::Check).contains("Exit status"));
        assert!(help(Command::Prune).contains("--unused-for 0s deletes everything"));
    }

    /// The README's table is this table: regenerate it from the expected text when it fails.
    #[test]
    fn readme_options_table_is_current() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let (begin, end) =
            ("<!-- options table: generated from src/cli/options.rs -->\n", "<!-- end of options table -->");
        let start = readme.find(begin).map(|i| i + begin.len());
        let stop = readme.find(end);
        let expected = markdown_table();
        match (start, stop) {
            (Some(s), Some(e)) if s <= e && readme[s..e] == expected => {}
            _ => panic!(
                "README.md's options table is out of date; put this between the markers:\n{begin}{expected}{end}"
            ),
        }
    }
}
