//! Where the store is: its region, endpoint and addressing, from the command line, the
//! environment and then the shared AWS files' profile.

use super::lookup::Lookup;
use super::ConfigError;
use crate::s3::credentials::profile;
use crate::s3::endpoint::{Addressing, Endpoint};

/// The store of a bucket, and the profile its settings were read from.
pub(super) struct Store {
    pub(super) region: String,
    pub(super) endpoint: Endpoint,
    pub(super) addressing: Addressing,
    /// `--profile` or `AWS_PROFILE`, if given.
    pub(super) profile: Option<String>,
}

/// The store of `bucket`, and the first setting the host lends that cannot be used (a
/// shared file that cannot be read, an endpoint that does not parse), for the caller to
/// report once every other setting has been checked.
pub(super) fn locate(
    look: &Lookup,
    bucket: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Store, Option<String>), ConfigError> {
    // The shared files' profile: its region and endpoints come after the environment's.
    let profile_name = look.get("profile").map(|(p, _)| p);
    let (files, mut unusable) = profile::load(env);
    let profile = files.profile(profile_name.as_deref().unwrap_or("default"));
    let profile_label = format!("profile {}", profile_name.as_deref().unwrap_or("default"));
    let from_profile = |value: Option<String>| value.map(|v| (v, format!("{profile_label} ({})", files_label(env))));
    let (region, region_source) = look
        .get("region")
        .or_else(|| from_profile(profile.as_ref().and_then(|p| p.get("region").cloned())))
        .unwrap_or_else(|| ("us-east-1".to_string(), "default".to_string()));
    look.note("region", region.clone(), region_source);
    let custom_endpoint = look
        .get("endpoint")
        .or_else(|| from_profile(profile.as_ref().and_then(|p| files.s3_endpoint(p))))
        .or_else(|| look.var("AWS_ENDPOINT_URL").map(|v| (v, "AWS_ENDPOINT_URL".to_string())));
    let path_style = look.switch("path-style")?;
    let virtual_hosted = look.switch("virtual-hosted")?;
    if path_style && virtual_hosted {
        return Err(ConfigError("--path-style and --virtual-hosted exclude each other; choose one".into()));
    }
    let (endpoint, default_addressing, endpoint_source) = match custom_endpoint {
        Some((url, source)) => match Endpoint::parse(&url) {
            Ok(e) => (e, Addressing::Path, source),
            Err(e) if is_own(&source) => return Err(ConfigError(format!("{source}: {e}"))),
            Err(e) => {
                unusable.get_or_insert(format!("{source}: {e}"));
                (Endpoint::aws(&region), Addressing::Path, source)
            }
        },
        // Bucket names with dots break TLS host matching in virtual-hosted form.
        None if bucket.contains('.') => (Endpoint::aws(&region), Addressing::Path, "default (AWS)".to_string()),
        None => (Endpoint::aws(&region), Addressing::VirtualHosted, "default (AWS)".to_string()),
    };
    look.note("endpoint", endpoint.to_string(), endpoint_source);
    let addressing = if path_style {
        Addressing::Path
    } else if virtual_hosted {
        Addressing::VirtualHosted
    } else {
        let path = default_addressing == Addressing::Path;
        look.note("path-style", path.to_string(), "default (for this endpoint and bucket)");
        look.note("virtual-hosted", (!path).to_string(), "default (for this endpoint and bucket)");
        default_addressing
    };
    Ok((Store { region, endpoint, addressing, profile: profile_name }, unusable))
}

/// Whether a value came from this program's own settings (its command line or its
/// `GOCACHEPROG_S3_*` variables), not from a variable or file the host lends.
fn is_own(source: &str) -> bool {
    source.starts_with("--") || source.starts_with("GOCACHEPROG_S3_")
}

/// The shared config file, as the settings report names it.
fn files_label(env: &dyn Fn(&str) -> Option<String>) -> String {
    let (config, _) = profile::paths(env);
    config.map_or("~/.aws/config".into(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{run, GOCACHE};
    use super::*;

    #[test]
    fn region_and_endpoint_from_the_profile_after_the_environment() {
        let home = std::env::temp_dir().join(format!("gocacheprog-config-profile-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".aws")).unwrap();
        std::fs::write(
            home.join(".aws/config"),
            "[default]\nregion = eu-west-3\n[profile minio]\nregion = minio-1\nservices = lab\n\
             [services lab]\ns3 =\n  endpoint_url = http://minio.lab:9000\n",
        )
        .unwrap();
        let h = home.to_string_lossy().into_owned();
        let r = run(&["b"], &[GOCACHE, ("HOME", &h)]).unwrap().remote.unwrap();
        assert_eq!(r.region, "eu-west-3");
        let c = run(&["b"], &[GOCACHE, ("HOME", &h)]).unwrap();
        let region = c.settings.iter().find(|s| s.name == "region").unwrap();
        assert!(region.source.starts_with("profile default"), "{:?}", c.settings);
        let r = run(&["b", "--profile", "minio"], &[GOCACHE, ("HOME", &h)]).unwrap().remote.unwrap();
        assert_eq!((r.region.as_str(), r.endpoint.to_string().as_str()), ("minio-1", "http://minio.lab:9000"));
        assert_eq!(r.addressing, Addressing::Path);
        assert_eq!(r.profile.as_deref(), Some("minio"));
        // The environment wins over the profile.
        let env = [
            GOCACHE,
            ("HOME", h.as_str()),
            ("AWS_PROFILE", "minio"),
            ("AWS_REGION", "r"),
            ("AWS_ENDPOINT_URL_S3", "http://e:1"),
        ];
        let r = run(&["b"], &env).unwrap().remote.unwrap();
        assert_eq!((r.region.as_str(), r.endpoint.to_string().as_str()), ("r", "http://e:1"));
        std::fs::remove_dir_all(home).unwrap();
    }
}
