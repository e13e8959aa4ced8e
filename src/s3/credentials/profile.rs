//! The AWS shared files: `~/.aws/config` (`[default]`, `[profile NAME]`, `[services NAME]`)
//! and `~/.aws/credentials` (`[NAME]`), or `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`.
//! A profile is the merge of its sections in both files, the credentials file winning.
//! Nested properties (`s3 =` followed by indented `endpoint_url = ...`) are kept as
//! `s3.endpoint_url`.

use std::collections::HashMap;
use std::path::PathBuf;

/// One section's properties, names lower-cased.
pub type Properties = HashMap<String, String>;

/// Parses one ini-style AWS file into its sections (names as written, trimmed).
pub fn parse(text: &str) -> HashMap<String, Properties> {
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
pub struct Files {
    config: HashMap<String, Properties>,
    credentials: HashMap<String, Properties>,
}

/// Where the files are, by the SDKs' rules.
pub fn paths(env: &dyn Fn(&str) -> Option<String>) -> (Option<PathBuf>, Option<PathBuf>) {
    let home = env("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let pick = |var: &str, default: &str| {
        env(var).filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(default)))
    };
    (pick("AWS_CONFIG_FILE", ".aws/config"), pick("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"))
}

impl Files {
    /// The two files' texts (absent files are empty).
    pub fn from_texts(config: &str, credentials: &str) -> Files {
        Files { config: parse(config), credentials: parse(credentials) }
    }

    /// The merged properties of profile `name`, or `None` if neither file has it.
    pub fn profile(&self, name: &str) -> Option<Properties> {
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
    pub fn services(&self, name: &str) -> Option<&Properties> {
        self.config.get(&format!("services {name}"))
    }

    /// An `[sso-session NAME]` section of the config file.
    pub fn sso_session(&self, name: &str) -> Option<&Properties> {
        self.config.get(&format!("sso-session {name}"))
    }

    /// The S3 endpoint a profile names: `s3.endpoint_url` in its services section, then its
    /// own `s3.endpoint_url`, then its `endpoint_url`.
    pub fn s3_endpoint(&self, profile: &Properties) -> Option<String> {
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
