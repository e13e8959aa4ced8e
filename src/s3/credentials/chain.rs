//! The default credential chain, in the order the AWS SDKs use:
//!
//! 1. `GOCACHEPROG_S3_ACCESS_KEY_ID` / `_SECRET_ACCESS_KEY` / `_SESSION_TOKEN` (keys for the
//!    cache only), then `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`;
//! 2. the shared files' profile (`--profile`, `AWS_PROFILE`, else `default`): `role_arn`
//!    with `web_identity_token_file`, `source_profile` or `credential_source`; an IAM Identity
//!    Center (SSO) role; a console session (`login_session`); `credential_process`; static
//!    keys;
//! 3. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (EKS IRSA, GitHub OIDC);
//! 4. container credentials: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI` (ECS,
//!    EKS Pod Identity);
//! 5. EC2 instance metadata (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`.
//!
//! Resolving only reads the environment and the files; fetching is what talks to STS, the
//! SSO portal, AWS Sign-In, a container endpoint or the instance. A source that is configured but cannot
//! work is an error that names it; the instance metadata fallback that does not answer is
//! "none".

use super::profile::{self, Files, Properties};
use super::{container, imds, login, process, sso, sts, Context, Credentials, Issued};
use std::path::PathBuf;

/// Where credentials come from, once resolved (fetched again on each refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Keys as they are; `origin` names where they were found.
    Static { credentials: Credentials, origin: String },
    /// A `credential_process` command of a profile.
    Process { command: String, profile: String },
    /// STS `AssumeRoleWithWebIdentity` with the token in a file (read on every refresh).
    WebIdentity(sts::WebIdentity),
    /// STS `AssumeRole`, signed with what `source` gives.
    AssumeRole { role: sts::AssumeRole, source: Box<Source> },
    /// An SSO role, for the login `aws sso login` cached.
    Sso(Box<sso::Sso>),
    /// A console session `aws login` cached.
    Login(Box<login::Login>),
    /// The ECS / EKS Pod Identity endpoint.
    Container(container::Endpoint),
    /// The EC2 instance metadata service.
    Instance(imds::Endpoint),
}

/// What the chain found, and what it looked at without finding anything (for the message
/// when it finds nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) source: Option<Source>,
    pub(crate) tried: Vec<String>,
}

impl Source {
    /// Fetches credentials from this source.
    pub(crate) fn fetch(&self, ctx: &Context) -> Result<Issued, String> {
        match self {
            Source::Static { credentials, .. } => Ok(Issued { credentials: credentials.clone(), expires: None }),
            Source::Process { command, .. } => process::fetch(ctx, command),
            Source::WebIdentity(w) => w.fetch(ctx),
            Source::AssumeRole { role, source } => {
                let with = source.fetch(ctx)?;
                role.fetch(ctx, &with.credentials)
            }
            Source::Sso(role) => role.fetch(ctx),
            Source::Login(session) => session.fetch(ctx),
            Source::Container(endpoint) => endpoint.fetch(ctx),
            Source::Instance(endpoint) => endpoint.fetch(ctx),
        }
    }

    /// For messages: where the credentials come from.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::Static { origin, .. } => origin.clone(),
            Source::Process { profile, .. } => format!("credential_process of profile {profile}"),
            Source::WebIdentity(w) => format!("web identity ({})", w.role_arn),
            Source::AssumeRole { role, source } => format!("role {} assumed with {}", role.role_arn, source.describe()),
            Source::Sso(role) => role.describe(),
            Source::Login(session) => session.describe(),
            Source::Container(e) => format!("container credentials ({})", e.url),
            Source::Instance(e) => format!("EC2 instance metadata ({})", e.base),
        }
    }

    /// Whether this is the chain's last resort, which not answering makes "none".
    pub(crate) fn is_fallback(&self) -> bool {
        matches!(self, Source::Instance(e) if e.fallback)
    }

    /// The SSO role at the root of this source, if there is one.
    pub(crate) fn sso(&self) -> Option<&sso::Sso> {
        match self {
            Source::Sso(role) => Some(role),
            Source::AssumeRole { source, .. } => source.sso(),
            _ => None,
        }
    }
}

/// Resolves the chain in `ctx`.
pub(crate) fn resolve(ctx: &Context) -> Result<Resolved, String> {
    let mut tried = Vec::new();
    for (prefix, origin) in [("GOCACHEPROG_S3_", "GOCACHEPROG_S3_ACCESS_KEY_ID"), ("AWS_", "AWS_ACCESS_KEY_ID")] {
        if let Some(credentials) = keys_from_env(ctx, prefix)? {
            return Ok(Resolved {
                source: Some(Source::Static { credentials, origin: format!("{origin} (environment)") }),
                tried,
            });
        }
    }
    tried.push("AWS_ACCESS_KEY_ID/GOCACHEPROG_S3_ACCESS_KEY_ID (unset)".into());

    let explicit = ctx.profile.clone().or_else(|| ctx.var("AWS_PROFILE"));
    let name = explicit.clone().unwrap_or_else(|| "default".into());
    let files = load_files(ctx);
    match files.profile(&name) {
        Some(props) => {
            if let Some(source) = from_profile(ctx, &files, &name, &props, 0)? {
                return Ok(Resolved { source: Some(source), tried });
            }
            tried.push(format!("profile {name} (no credentials in it)"));
        }
        None if explicit.is_some() => {
            return Err(format!(
                "profile {name:?} (from {}) is in neither {} nor {}",
                if ctx.profile.is_some() { "--profile" } else { "AWS_PROFILE" },
                files_label(ctx).0,
                files_label(ctx).1
            ))
        }
        None => tried.push(format!("profile default (not in {} or {})", files_label(ctx).0, files_label(ctx).1)),
    }

    if let (Some(token_file), Some(role_arn)) = (ctx.var("AWS_WEB_IDENTITY_TOKEN_FILE"), ctx.var("AWS_ROLE_ARN")) {
        let web =
            sts::WebIdentity::new(ctx, role_arn, ctx.var("AWS_ROLE_SESSION_NAME"), PathBuf::from(token_file), None);
        return Ok(Resolved { source: Some(Source::WebIdentity(web)), tried });
    }
    tried.push("web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN unset)".into());

    if let Some(endpoint) = container::Endpoint::from_env(ctx)? {
        return Ok(Resolved { source: Some(Source::Container(endpoint)), tried });
    }
    tried.push("container (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, _FULL_URI unset)".into());

    match imds::Endpoint::from_env(ctx, true) {
        Some(endpoint) => Ok(Resolved { source: Some(Source::Instance(endpoint)), tried }),
        None => {
            tried.push("EC2 instance metadata (AWS_EC2_METADATA_DISABLED)".into());
            Ok(Resolved { source: None, tried })
        }
    }
}

fn files_label(ctx: &Context) -> (String, String) {
    let (config, credentials) = profile::paths(&|k| ctx.var(k));
    let show = |p: Option<PathBuf>| p.map_or("(no HOME)".to_string(), |p| p.display().to_string());
    (show(config), show(credentials))
}

fn load_files(ctx: &Context) -> Files {
    let (config, credentials) = profile::paths(&|k| ctx.var(k));
    let read = |p: Option<PathBuf>| p.and_then(|p| ctx.text(&p)).unwrap_or_default();
    Files::from_texts(&read(config), &read(credentials))
}

/// `<prefix>ACCESS_KEY_ID` and `<prefix>SECRET_ACCESS_KEY` (and `<prefix>SESSION_TOKEN`);
/// one without the other is an error.
fn keys_from_env(ctx: &Context, prefix: &str) -> Result<Option<Credentials>, String> {
    let id = ctx.var(&format!("{prefix}ACCESS_KEY_ID"));
    let secret = ctx.var(&format!("{prefix}SECRET_ACCESS_KEY"));
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Credentials {
            access_key_id,
            secret_access_key,
            session_token: ctx.var(&format!("{prefix}SESSION_TOKEN")),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(format!("{prefix}ACCESS_KEY_ID is set but {prefix}SECRET_ACCESS_KEY is not; set both")),
        (None, Some(_)) => Err(format!("{prefix}SECRET_ACCESS_KEY is set but {prefix}ACCESS_KEY_ID is not; set both")),
    }
}

/// The source a profile describes (`None`: it holds no credentials).
fn from_profile(
    ctx: &Context,
    files: &Files,
    name: &str,
    props: &Properties,
    depth: u32,
) -> Result<Option<Source>, String> {
    if depth > 5 {
        return Err(format!("profile {name}: source_profile chain longer than 5 (a cycle?)"));
    }
    let region =
        props.get("region").cloned().or_else(|| ctx.var("AWS_REGION")).or_else(|| ctx.var("AWS_DEFAULT_REGION"));
    let sts_endpoint = props
        .get("services")
        .and_then(|s| files.services(s))
        .and_then(|s| s.get("sts.endpoint_url"))
        .or_else(|| props.get("sts.endpoint_url"))
        .cloned();
    if let Some(role_arn) = props.get("role_arn").cloned() {
        let session = props.get("role_session_name").cloned();
        if let Some(token_file) = props.get("web_identity_token_file") {
            let mut web = sts::WebIdentity::new(ctx, role_arn, session, PathBuf::from(token_file), sts_endpoint);
            if let Some(r) = region {
                web.region = r;
            }
            return Ok(Some(Source::WebIdentity(web)));
        }
        let source = if let Some(source_name) = props.get("source_profile") {
            let source_props = files
                .profile(source_name)
                .ok_or_else(|| format!("profile {name}: its source_profile {source_name:?} does not exist"))?;
            // The source profile's own keys, even if it has a role_arn too (as the CLI does).
            if source_name == name {
                static_keys(source_name, &source_props)
                    .ok_or_else(|| format!("profile {name}: source_profile {source_name} holds no keys"))?
            } else if !source_props.contains_key("role_arn") {
                base(ctx, files, source_name, &source_props)?
                    .or_else(|| static_keys(source_name, &source_props))
                    .ok_or_else(|| format!("profile {name}: source_profile {source_name} holds no keys"))?
            } else {
                from_profile(ctx, files, source_name, &source_props, depth + 1)?
                    .ok_or_else(|| format!("profile {name}: source_profile {source_name} holds no credentials"))?
            }
        } else if let Some(kind) = props.get("credential_source") {
            match kind.as_str() {
                "Environment" => keys_from_env(ctx, "AWS_")?
                    .map(|credentials| Source::Static { credentials, origin: "AWS_ACCESS_KEY_ID (environment)".into() })
                    .ok_or_else(|| {
                        format!("profile {name}: credential_source Environment, but AWS_ACCESS_KEY_ID is unset")
                    })?,
                "Ec2InstanceMetadata" => Source::Instance(imds::Endpoint::from_env(ctx, false).ok_or_else(|| {
                    format!(
                        "profile {name}: credential_source Ec2InstanceMetadata, but AWS_EC2_METADATA_DISABLED is set"
                    )
                })?),
                "EcsContainer" => Source::Container(container::Endpoint::from_env(ctx)?.ok_or_else(|| {
                    format!("profile {name}: credential_source EcsContainer, but AWS_CONTAINER_CREDENTIALS_* is unset")
                })?),
                other => return Err(format!("profile {name}: unknown credential_source {other:?}")),
            }
        } else {
            return Err(format!(
                "profile {name} has role_arn but neither source_profile, credential_source nor web_identity_token_file"
            ));
        };
        let role = sts::AssumeRole {
            role_arn,
            session_name: session.unwrap_or_else(sts::default_session_name),
            external_id: props.get("external_id").cloned(),
            region: region.unwrap_or_else(|| "us-east-1".into()),
            endpoint: sts_endpoint.or_else(|| ctx.var("AWS_ENDPOINT_URL_STS")),
        };
        return Ok(Some(Source::AssumeRole { role, source: Box::new(source) }));
    }
    if let Some(source) = base(ctx, files, name, props)? {
        return Ok(Some(source));
    }
    if let Some(command) = props.get("credential_process") {
        return Ok(Some(Source::Process { command: command.clone(), profile: name.to_string() }));
    }
    Ok(static_keys(name, props))
}

/// A profile's SSO role or console session (the SDKs' order), which can also sign an
/// `AssumeRole` as a `source_profile`.
fn base(ctx: &Context, files: &Files, name: &str, props: &Properties) -> Result<Option<Source>, String> {
    if let Some(role) = sso::Sso::from_profile(ctx, files, name, props)? {
        return Ok(Some(Source::Sso(Box::new(role))));
    }
    Ok(login::Login::from_profile(ctx, files, name, props)?.map(|session| Source::Login(Box::new(session))))
}

fn static_keys(name: &str, props: &Properties) -> Option<Source> {
    let (id, secret) = (props.get("aws_access_key_id")?, props.get("aws_secret_access_key")?);
    Some(Source::Static {
        credentials: Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: props.get("aws_session_token").cloned(),
        },
        origin: format!("profile {name}"),
    })
}
