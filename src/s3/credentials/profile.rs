//! The AWS shared files: `~/.aws/config` (`[default]`, `[profile NAME]`, `[services NAME]`)
//! and `~/.aws/credentials` (`[NAME]`), or `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`.
//! A profile is the merge of its sections in both files, the credentials file winning.
//! Nested properties (`s3 =` followed by indented `endpoint_url = ...`) are kept as
//! `s3.endpoint_url`.

use std::collections::HashMap;
use std::path::PathBuf;

/// One section's properties, names lower-cased.
pub(crate) type Properties = HashMap<String, String>;

/// Parses one ini-style AWS file into its sections (names as written, trimmed).
pub(crate) fn parse(text: &str) -> HashMap<String, Properties> {
    let mut sections: HashMap<String, Properties> = HashMap::new();
    let mut current: Option<String> = None;
    let mut parent: Option<String> = None;
    for raw in text.lines() {
        let indented = raw.starts_with([' ', '\t']);
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            parent = None;
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, line.split_once('=')) else { continue };
        let key = key.trim().to_ascii_lowercase();
        let value = value.split(" #").next().unwrap_or("").trim().to_string();
        let props = sections.entry(section.clone()).or_default();
        match (&parent, indented) {
            (Some(p), true) => {
                props.insert(format!("{p}.{key}"), value);
            }
            _ if value.is_empty() => parent = Some(key),
            _ => {
                parent = None;
                props.insert(key, value);
            }
        }
    }
    sections
}

/// Both files, parsed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Files {
    config: HashMap<String, Properties>,
    credentials: HashMap<String, Properties>,
}

/// Where the files are, by the SDKs' rules (the home folder is `USERPROFILE` on Windows
/// when `HOME` is unset).
pub(crate) fn paths(env: &dyn Fn(&str) -> Option<String>) -> (Option<PathBuf>, Option<PathBuf>) {
    let home = env("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| env("USERPROFILE").filter(|h| cfg!(windows) && !h.is_empty()))
        .map(PathBuf::from);
    let pick = |var: &str, default: &str| {
        env(var).filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    (pick("AWS_CONFIG_FILE", ".aws/config"), pick("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"))
}

/// Reads both files for the settings they hold (region, endpoints). A file that a
/// variable names but that cannot be read, or a file that is there but cannot be read or
/// is not an AWS ini file (the SDKs refuse those too), is a problem: which profile the
/// user meant, with which endpoint, is unknown. A default file that is absent is not.
/// Returns the files (a file with a problem as empty) and the first problem, naming the
/// setting and the file.
pub(crate) fn load(env: &dyn Fn(&str) -> Option<String>) -> (Files, Option<String>) {
    let (config, credentials) = paths(env);
    let mut problem = None;
    let mut read = |path: Option<PathBuf>, var: &str| {
        let path = path?;
        let named = env(var).is_some_and(|v| !v.is_empty());
        let setting = if named { var.to_string() } else { format!("the default of {var}") };
        let checked = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => return None,
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            Ok(bytes) => String::from_utf8(bytes)
                .map_err(|_| format!("{} is not a text file", path.display()))
                .and_then(|text| validate(&text).map(|()| text).map_err(|e| format!("{}: {e}", path.display()))),
        };
        match checked {
            Ok(text) => Some(text),
            Err(e) => {
                problem.get_or_insert(format!("{setting}: {e}"));
                None
            }
        }
    };
    let config = read(config, "AWS_CONFIG_FILE").unwrap_or_default();
    let credentials = read(credentials, "AWS_SHARED_CREDENTIALS_FILE").unwrap_or_default();
    (Files::from_texts(&config, &credentials), problem)
}

/// Whether `text` is an AWS ini file: every line blank, a comment, `[section]`, a
/// property (`name = value`, or `name: value`) in a section, or an indented continuation.
fn validate(text: &str) -> Result<(), String> {
    let mut in_section = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let fault = if line.starts_with('[') {
            if line.ends_with(']') {
                in_section = true;
                continue;
            }
            "a section header without its closing ]"
        } else if !in_section {
            "a line before the first [section]"
        } else if raw.starts_with([' ', '\t']) || line.contains(['=', ':']) {
            continue;
        } else {
            "neither `name = value` nor a comment"
        };
        return Err(format!("line {} is {fault}", n + 1));
    }
    Ok(())
}

impl Files {
    /// The two files' texts (absent files are empty).
    pub(crate) fn from_texts(config: &str, credentials: &str) -> Files {
        Files { config: parse(config), credentials: parse(credentials) }
    }

    /// The merged properties of profile `name`, or `None` if neither file has it.
    pub(crate) fn profile(&self, name: &str) -> Option<Properties> {
        let in_config = if name == "default" {
            self.config.get("default").or_else(|| self.config.get("profile default"))
        } else {
            self.config.get(&format!("profile {name}"))
        };
        let in_credentials = self.credentials.get(name);
        if in_config.is_none() && in_credentials.is_none() {
            return None;
        }
        let mut merged = in_config.cloned().unwrap_or_default();
        merged.extend(in_credentials.cloned().unwrap_or_default());
        Some(merged)
    }

    /// A `[services NAME]` section of the config file.
    pub(crate) fn services(&self, name: &str) -> Option<&Properties> {
        self.config.get(&format!("services {name}"))
    }

    /// An `[sso-session NAME]` section of the config file.
    pub(crate) fn sso_session(&self, name: &str) -> Option<&Properties> {
        self.config.get(&format!("sso-session {name}"))
    }

    /// The S3 endpoint a profile names: `s3.endpoint_url` in its services section, then its
    /// own `s3.endpoint_url`, then its `endpoint_url`.
    pub(crate) fn s3_endpoint(&self, profile: &Properties) -> Option<String> {
        let from_services =
            profile.get("services").and_then(|s| self.services(s)).and_then(|s| s.get("s3.endpoint_url"));
        from_services.or_else(|| profile.get("s3.endpoint_url")).or_else(|| profile.get("endpoint_url")).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# comment
[default]
region = us-east-1
aws_access_key_id = config_key

[profile dev]
region=eu-west-1
role_arn = arn:aws:iam::1:role/dev  # trailing comment
source_profile = default
services = local
s3 =
  endpoint_url = http://profile-s3:9000
  addressing_style = path

[services local]
s3 =
  endpoint_url = http://127.0.0.1:3900
sts =
  endpoint_url = http://127.0.0.1:5000
";

    const CREDENTIALS: &str = "[default]\naws_access_key_id = creds_key\naws_secret_access_key = creds_secret\n";

    #[test]
    fn profiles_merge_both_files_and_nested_properties() {
        let files = Files::from_texts(CONFIG, CREDENTIALS);
        let default = files.profile("default").unwrap();
        assert_eq!(default["aws_access_key_id"], "creds_key", "the credentials file wins");
        assert_eq!(default["region"], "us-east-1");
        let dev = files.profile("dev").unwrap();
        assert_eq!(dev["role_arn"], "arn:aws:iam::1:role/dev");
        assert_eq!(dev["region"], "eu-west-1");
        assert_eq!(dev["s3.endpoint_url"], "http://profile-s3:9000");
        assert_eq!(files.s3_endpoint(&dev).as_deref(), Some("http://127.0.0.1:3900"), "services section first");
        assert!(files.profile("nope").is_none());
    }

    #[test]
    fn what_counts_as_an_ini_file() {
        assert_eq!(validate(CONFIG), Ok(()));
        assert_eq!(validate(CREDENTIALS), Ok(()));
        assert_eq!(validate(""), Ok(()));
        assert_eq!(validate("[default]\nregion: eu-west-1\nmultiline =\n  more\n"), Ok(()));
        for (bad, line) in [
            ("region = x\n[default]\n", 1),
            ("# c\n[default\nregion = x\n", 2),
            ("[default]\nregion = x\nAKIAEXAMPLE\n", 3),
            ("{\"not\": \"ini\"}\n", 1),
        ] {
            let e = validate(bad).unwrap_err();
            assert!(e.starts_with(&format!("line {line} ")), "{bad:?}: {e}");
        }
        // The SDKs' own files (smithy-rs's credential cases) are all valid.
        let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/credentials/default-credential-provider-chain");
        let mut seen = 0;
        for case in std::fs::read_dir(cases).unwrap().flatten() {
            for name in ["fs/home/.aws/config", "fs/home/.aws/credentials"] {
                if let Ok(text) = std::fs::read_to_string(case.path().join(name)) {
                    assert_eq!(validate(&text), Ok(()), "{}", case.path().join(name).display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 2, "{seen} files");
    }

    #[test]
    fn file_problems_name_the_setting_and_the_file() {
        let dir = std::env::temp_dir().join(format!("gocacheprog-profile-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        let home = dir.to_string_lossy().into_owned();
        let missing = dir.join("missing").to_string_lossy().into_owned();
        let env = |vars: Vec<(&'static str, String)>| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        // Absent default files are normal.
        assert_eq!(load(&env(vec![("HOME", home.clone())])).1, None);
        // A named file that is absent, or a directory.
        let (_, problem) = load(&env(vec![("HOME", home.clone()), ("AWS_CONFIG_FILE", missing.clone())]));
        let problem = problem.unwrap();
        assert!(problem.starts_with(&format!("AWS_CONFIG_FILE: cannot read {missing}: ")), "{problem}");
        let (_, problem) = load(&env(vec![("HOME", home.clone()), ("AWS_SHARED_CREDENTIALS_FILE", home.clone())]));
        assert!(problem.unwrap().starts_with("AWS_SHARED_CREDENTIALS_FILE: cannot read "));
        // A default file that is there but is not an ini file; the other file still counts.
        std::fs::write(dir.join(".aws/credentials"), [0xff, 0xfe, 0]).unwrap();
        std::fs::write(dir.join(".aws/config"), "[default]\nregion = eu-west-3\n").unwrap();
        let (files, problem) = load(&env(vec![("HOME", home.clone())]));
        assert_eq!(
            problem.as_deref(),
            Some(
                format!(
                    "the default of AWS_SHARED_CREDENTIALS_FILE: {} is not a text file",
                    dir.join(".aws/credentials").display()
                )
                .as_str()
            )
        );
        assert_eq!(files.profile("default").unwrap()["region"], "eu-west-3");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn file_locations() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            "AWS_CONFIG_FILE" => Some("/etc/aws.conf".to_string()),
            _ => None,
        };
        let (config, credentials) = paths(&env);
        assert_eq!(config, Some(PathBuf::from("/etc/aws.conf")));
        assert_eq!(credentials, Some(PathBuf::from("/home/u/.aws/credentials")));
    }
}
