//! The provider seam (docs/architecture.md, "Adding a provider"): the one list of providers
//! and the narrow interface the engine, the commands and the webhook use, whatever the store.
//!
//! A provider is a folder below this one. It parses a SecretProviderClass's `parameters`
//! into its typed spec, describes its plan without secrets, opens a session (credentials or a
//! login, adopting a saved one), fetches its objects into a render, says when it must act
//! next, and revokes what it holds on exit where its store has leases. Nothing outside this
//! file and the providers' folders names a provider.

pub mod aws;
pub mod azure;
pub mod cluster;
pub mod gcp;
pub mod pod;
pub mod vault;

use vault::spec::VaultSpec;

/// Which store a volume's secrets come from, with everything that store needs.
#[derive(Debug, Clone, PartialEq)]
// A process holds one spec per volume, built once: their size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ProviderSpec {
    /// `provider: vault` or `openbao` (docs/configuration.md).
    Vault(VaultSpec),
    /// `provider: aws` (docs/aws.md): Secrets Manager and SSM Parameter Store.
    Aws(aws::params::AwsSpec),
    /// `provider: gcp` (docs/gcp.md): Google Secret Manager.
    Gcp(gcp::spec::GcpSpec),
    /// `provider: azure` (docs/azure.md): Azure Key Vault.
    Azure(azure::spec::AzureSpec),
}

impl ProviderSpec {
    /// The provider's name as a SecretProviderClass spells it; also the `provider` label of
    /// metrics.
    pub fn name(&self) -> &'static str {
        match self {
            ProviderSpec::Vault(_) => "vault",
            ProviderSpec::Aws(_) => "aws",
            ProviderSpec::Gcp(_) => "gcp",
            ProviderSpec::Azure(_) => "azure",
        }
    }
}

pub use crate::render::FileSpec;

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::env::VaultEnv;
use crate::config::error::ConfigError;
use crate::config::names::PREFIX;
use crate::config::param::FileDefaults;
use crate::config::pod_settings::PodSettings;

/// The providers as `spec.provider`, a native config's `provider` and the `provider` annotation
/// name them; the first is the default of a native config and of annotations.
pub const NAMES: &[&str] = &["vault", "openbao", "aws", "azure", "gcp"];

/// The provider sections of a native config (docs/configuration.md): Vault's at the top level
/// (`vault`, `auth`, `objects`), every other provider's in a section named after it.
pub struct NativeSections {
    pub vault: vault::native::VaultSection,
    pub auth: Option<vault::native::AuthSection>,
    pub objects: Vec<vault::objects::ObjectEntry>,
    pub aws: Option<serde_yaml::Value>,
}

/// The pod annotations (without the prefix) each provider owns, beside `objects`, which all
/// share; one provider's are refused on a pod of another.
fn annotations_of(provider: &str) -> Vec<&'static str> {
    match provider {
        "aws" => aws::params::ANNOTATIONS
            .iter()
            .map(|(_, an)| *an)
            .filter(|an| *an != "objects")
            .collect(),
        // Read from a SecretProviderClass only.
        "gcp" => Vec::new(),
        // No annotation form (docs/azure.md): nothing of its own.
        "azure" => Vec::new(),
        _ => vault::params::ANNOTATIONS.to_vec(),
    }
}

fn not_supported(name: &str) -> String {
    format!(
        "{:?} is not supported: allowed are {}",
        name.chars().take(64).collect::<String>(),
        NAMES.join(", ")
    )
}

impl ProviderSpec {
    /// A SecretProviderClass's `parameters` for the provider `spec.provider` names; `text` is
    /// the whole manifest, to place errors on its lines.
    pub fn from_spc(
        file: &Path,
        text: &str,
        provider: &str,
        parameters: BTreeMap<String, serde_yaml::Value>,
        env: &VaultEnv,
    ) -> Result<ProviderSpec, ConfigError> {
        Ok(match provider {
            "vault" => ProviderSpec::Vault(vault::params::from_spc(
                file, text, "vault", parameters, env,
            )?),
            "openbao" => ProviderSpec::Vault(vault::params::from_spc(
                file, text, "openbao", parameters, env,
            )?),
            "aws" => ProviderSpec::Aws(aws::params::from_spc(file, text, parameters, env)?),
            "gcp" => ProviderSpec::Gcp(gcp::params::from_spc(file, text, parameters)?),
            "azure" => ProviderSpec::Azure(azure::params::from_spc(file, text, parameters)?),
            other => {
                return Err(ConfigError::field(
                    file,
                    "spec.provider",
                    not_supported(other),
                ))
            }
        })
    }

    /// A native config's provider sections for `provider` (absent: Vault); a section of
    /// another provider is refused, not ignored.
    pub fn from_native(
        file: &Path,
        provider: Option<&str>,
        s: NativeSections,
        defaults: FileDefaults,
        env: &VaultEnv,
    ) -> Result<ProviderSpec, ConfigError> {
        let name = provider.unwrap_or(NAMES[0]);
        if name == "gcp" {
            return Err(ConfigError::field(file, "provider", gcp::params::ONLY_SPC));
        }
        let vault_set = s.vault != Default::default() || s.auth.is_some() || !s.objects.is_empty();
        let foreign = match name {
            "vault" | "openbao" => s.aws.is_some().then_some(("aws", "aws")),
            _ => vault_set.then(|| {
                let f = if s.auth.is_some() {
                    "auth"
                } else if !s.objects.is_empty() {
                    "objects"
                } else {
                    "vault"
                };
                (f, "vault")
            }),
        };
        if let Some((field, owner)) = foreign {
            return Err(ConfigError::field(
                file,
                field,
                match owner {
                    "vault" => format!(
                        "does not apply with provider: {name} (objects go under {name}.objects)"
                    ),
                    _ => format!("only applies with provider: {owner}"),
                },
            ));
        }
        Ok(match name {
            "vault" | "openbao" => ProviderSpec::Vault(vault::native::from_native(
                file, s.vault, s.auth, &s.objects, defaults, env,
            )?),
            "aws" => ProviderSpec::Aws(aws::params::from_native(
                file,
                &s.aws.unwrap_or(serde_yaml::Value::Null),
                defaults,
                env,
            )?),
            "azure" => {
                return Err(ConfigError::field(
                    file,
                    "provider",
                    "azure has no native config: give secretdrop the Azure provider's \
                     SecretProviderClass (docs/azure.md)",
                ))
            }
            other => return Err(ConfigError::field(file, "provider", not_supported(other))),
        })
    }

    /// A pod's `secretdrop.dev/` annotations (`a`, without the prefix) for the provider its
    /// `provider` annotation names (absent: Vault); `settings` are its pod settings.
    pub fn from_annotations(
        file: &Path,
        a: &BTreeMap<String, String>,
        settings: &PodSettings,
        env: &VaultEnv,
    ) -> Result<ProviderSpec, ConfigError> {
        let name = a.get("provider").map_or(NAMES[0], String::as_str);
        if !NAMES.contains(&name) {
            return Err(ConfigError::field(
                file,
                format!("{PREFIX}provider"),
                format!(
                    "{:?} is not a provider: allowed are {} (the default), {}",
                    name.chars().take(64).collect::<String>(),
                    NAMES[0],
                    NAMES[1..].join(", ")
                ),
            ));
        }
        if name == "gcp" {
            return Err(ConfigError::field(
                file,
                format!("{PREFIX}provider"),
                gcp::params::ONLY_SPC,
            ));
        }
        let own = annotations_of(name);
        for owner in NAMES.iter().filter(|n| annotations_of(n) != own) {
            if let Some(an) = annotations_of(owner)
                .into_iter()
                .find(|an| a.contains_key(*an) && !own.contains(an))
            {
                return Err(ConfigError::field(
                    file,
                    format!("{PREFIX}{an}"),
                    if *owner == NAMES[0] {
                        format!(
                            "only applies to Vault, and this pod has {PREFIX}provider: {name}: \
                             remove it"
                        )
                    } else {
                        format!("only applies with {PREFIX}provider: {owner}")
                    },
                ));
            }
        }
        Ok(match name {
            "aws" => ProviderSpec::Aws(aws::params::from_annotations(file, a, env)?),
            "azure" => {
                return Err(ConfigError::field(
                    file,
                    format!("{PREFIX}provider"),
                    "azure has no annotation form: convert a CSI volume of the Azure provider's \
                     SecretProviderClass, or give secretdrop the class (docs/azure.md)",
                ))
            }
            _ => ProviderSpec::Vault(vault::params::from_annotations(file, a, settings, env)?),
        })
    }

    /// What the webhook gives an injected container for this volume beyond Vault's defaults
    /// ([`pod`]); `None` for Vault, whose token, address and CA are those defaults.
    pub fn pod_use(&self) -> Option<pod::Use> {
        match self {
            ProviderSpec::Vault(_) => None,
            ProviderSpec::Aws(a) => Some(pod::Use::Aws(aws::pod::AwsUse::of(a))),
            ProviderSpec::Gcp(_) => Some(pod::Use::Gcp),
            ProviderSpec::Azure(a) => Some(pod::Use::Azure(azure::pod::AzureUse::of(a))),
        }
    }

    /// The address this volume sends the pod's token to, where the volume chooses it (Vault):
    /// what the webhook's allow-list and pins check. Cloud stores have fixed endpoints: `None`.
    pub fn address(&self) -> Option<&str> {
        match self {
            ProviderSpec::Vault(v) => Some(&v.vault.address),
            ProviderSpec::Aws(_) | ProviderSpec::Azure(_) | ProviderSpec::Gcp(_) => None,
        }
    }

    /// The audience of the service-account token this volume logs in with, where its config
    /// names one (a Vault role's `audience`); the webhook projects a token for it.
    pub fn token_audience(&self) -> Option<&str> {
        match self {
            ProviderSpec::Vault(v) => match &v.auth {
                vault::spec::Auth::Kubernetes(l) | vault::spec::Auth::Jwt(l) => {
                    l.audience.as_deref()
                }
                _ => None,
            },
            ProviderSpec::Aws(_) | ProviderSpec::Azure(_) | ProviderSpec::Gcp(_) => None,
        }
    }

    /// Whether a provider reads the annotation `name` (without the prefix).
    pub fn owns_annotation(name: &str) -> bool {
        NAMES.iter().any(|p| annotations_of(p).contains(&name))
    }

    /// Every annotation (without the prefix) some provider reads.
    pub fn annotations() -> Vec<&'static str> {
        NAMES.iter().flat_map(|p| annotations_of(p)).collect()
    }
}

impl ProviderSpec {
    /// Every file this spec renders, in its order.
    pub fn files(&self) -> Vec<FileSpec> {
        match self {
            ProviderSpec::Vault(v) => vault::files(v),
            ProviderSpec::Aws(a) => aws::files(a),
            ProviderSpec::Gcp(g) => gcp::files(g),
            ProviderSpec::Azure(a) => azure::files(a),
        }
    }

    /// What the webhook pins for this volume, so that an injected container talks only to what
    /// the cluster admitted: the provider, and for Vault its address with everything that
    /// decides whom the pod's token is sent to (the TLS trust: CA, server name, skip-verify,
    /// client certificate) as one fingerprint. A pod whose annotations are edited after
    /// admission gets no further than the pin.
    pub fn pin(&self) -> String {
        match self {
            ProviderSpec::Vault(v) => format!("vault:{}", vault::trust_pin(&v.vault)),
            ProviderSpec::Aws(_) => "aws".into(),
            ProviderSpec::Gcp(_) => "gcp".into(),
            ProviderSpec::Azure(a) => azure::pin(a),
        }
    }

    /// Err (what differs, fit for the user) when `settings` pin other specs than this one.
    pub fn check_admitted(&self, settings: &Settings) -> Result<(), String> {
        let Some(admitted) = &settings.admitted else {
            return Ok(());
        };
        let pin = self.pin();
        if admitted.contains(&pin) {
            return Ok(());
        }
        let providers: Vec<&str> = admitted
            .iter()
            .map(|a| a.split(':').next().unwrap_or(a))
            .collect();
        Err(if providers.contains(&self.name()) {
            format!(
                "this {} volume's address or TLS settings (CA, server name, skip-verify, client \
                 certificate) are not the ones the webhook admitted for this pod; the pod's \
                 service-account token goes only where the cluster admitted (recreate the pod to \
                 apply a changed class or annotation)",
                self.name()
            )
        } else {
            format!(
                "provider {} was not admitted (admitted: {}): this pod's service-account \
                 token goes only where the cluster admitted (recreate the pod to apply a \
                 changed class or annotation)",
                self.name(),
                providers.join(", ")
            )
        })
    }

    /// `secretdrop check`: what is fetched and which files it makes, without secret values.
    pub fn plan(&self, source: &std::path::Path) -> String {
        match self {
            ProviderSpec::Vault(v) => vault::plan(source, v),
            ProviderSpec::Aws(a) => aws::plan(source, a),
            ProviderSpec::Gcp(g) => gcp::plan(source, g, &gcp::credentials::GcpEnv::from_process()),
            ProviderSpec::Azure(a) => azure::plan(source, a),
        }
    }

    /// Whether two volumes can be served by one session (one login, one set of credentials):
    /// the same provider, reached and authenticated the same way.
    pub fn shares_session_with(&self, other: &ProviderSpec) -> bool {
        match (self, other) {
            (ProviderSpec::Vault(a), ProviderSpec::Vault(b)) => vault::shares_session(a, b),
            (ProviderSpec::Aws(a), ProviderSpec::Aws(b)) => aws::shares_session(a, b),
            (ProviderSpec::Gcp(a), ProviderSpec::Gcp(b)) => gcp::shares_session(a, b),
            (ProviderSpec::Azure(a), ProviderSpec::Azure(b)) => azure::shares_session(a, b),
            _ => false,
        }
    }

    /// One spec serving every member (all [`ProviderSpec::shares_session_with`] the first):
    /// each member's file names prefixed `..N/` (N its index), a form no file name can have,
    /// which the volume set strips when it writes member N's directory.
    pub fn merge(mut members: Vec<ProviderSpec>) -> ProviderSpec {
        if members.len() == 1 {
            return members.remove(0);
        }
        match &members[0] {
            ProviderSpec::Vault(_) => ProviderSpec::Vault(vault::merge(
                members
                    .into_iter()
                    .filter_map(|m| match m {
                        ProviderSpec::Vault(v) => Some(v),
                        _ => None,
                    })
                    .collect(),
            )),
            ProviderSpec::Aws(_) => ProviderSpec::Aws(aws::merge(
                members
                    .into_iter()
                    .filter_map(|m| match m {
                        ProviderSpec::Aws(a) => Some(a),
                        _ => None,
                    })
                    .collect(),
            )),
            ProviderSpec::Gcp(_) => ProviderSpec::Gcp(gcp::merge(
                members
                    .into_iter()
                    .filter_map(|m| match m {
                        ProviderSpec::Gcp(g) => Some(g),
                        _ => None,
                    })
                    .collect(),
            )),
            ProviderSpec::Azure(_) => ProviderSpec::Azure(azure::merge(
                members
                    .into_iter()
                    .filter_map(|m| match m {
                        ProviderSpec::Azure(a) => Some(a),
                        _ => None,
                    })
                    .collect(),
            )),
        }
    }

    /// A converted CSI volume logs in with the token the webhook projected for the audience
    /// its class names (in `token_dir`, named by [`crate::config::names::audience_token_file`]).
    pub fn use_audience_token(&mut self, token_dir: &std::path::Path) {
        if let ProviderSpec::Vault(v) = self {
            vault::use_audience_token(v, token_dir);
        }
    }
}

/// The member prefix of a merged spec's file names (see [`ProviderSpec::merge`]).
pub fn member_prefix(member: usize, name: &str) -> String {
    format!("..{member}/{name}")
}

/// The process environment the providers read the way their SDKs do, captured once at start
/// (a provider without variables of its own has no field).
#[derive(Debug, Clone, Default)]
pub struct ProviderEnv {
    /// IRSA, Pod Identity, endpoints.
    pub aws: aws::credentials::AwsEnv,
    /// GOOGLE_APPLICATION_CREDENTIALS, GCE_METADATA_HOST.
    pub gcp: gcp::credentials::GcpEnv,
    /// Workload identity: client, tenant, token file, authority, cloud file.
    pub azure: azure::auth::AzureEnv,
}

impl ProviderEnv {
    pub fn from_process() -> ProviderEnv {
        ProviderEnv {
            aws: aws::credentials::AwsEnv::from_process(),
            gcp: gcp::credentials::GcpEnv::from_process(),
            azure: azure::auth::AzureEnv::from_process(),
        }
    }
}

/// What the operator gives every session, whatever the provider (flags and the environment).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--token-path`: the pod's service-account token, for providers that log in with it.
    pub token_path: std::path::PathBuf,
    /// What the operator allows the Vault client (pinned addresses, answer size).
    pub vault_policy: vault::client::ClientPolicy,
    /// The variables each provider's SDK reads, captured once ([`ProviderEnv`]).
    pub env: ProviderEnv,
    /// `--revoke-replaced-after`: grace before a replaced lease is revoked; None: never.
    pub revoke_replaced_after: Option<std::time::Duration>,
    /// How often static secrets are polled.
    pub poll: std::time::Duration,
    /// Retries inside a step are logged at debug level only (the sidecar logs state changes).
    pub quiet: bool,
    /// `--admitted`: the pins ([`ProviderSpec::pin`]) of what the webhook admitted for this
    /// pod; a spec with another pin is refused, at start and at a reload. `None`: no pin (a
    /// process the operator runs by hand).
    pub admitted: Option<Vec<String>>,
}

/// One network step of a session, owned, so that the engine can run it while it watches
/// signals and config changes; dropping it cancels the step.
pub type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome>>>;

/// What a [`Job`] brought back, for the session that made it.
pub enum Outcome {
    Vault(vault::session::Outcome),
    Aws(aws::session::Outcome),
    Gcp(gcp::session::Outcome),
    Azure(azure::session::Outcome),
}

/// What a session can render now.
pub enum Render {
    /// Every file, from the values held.
    Payload(crate::render::Payload),
    /// The files on disk are already the render of what is held (adopted from `--state-dir`
    /// and unchanged since): nothing to write.
    Current,
    /// Not everything is held yet; the session has scheduled what is missing.
    NotYet,
}

/// How fresh a session is, for `/readyz` and the gauges (paths and states, never a value).
#[derive(Debug, Clone, Default)]
pub struct Freshness {
    /// Every object has been fetched at least once.
    pub complete: bool,
    /// Why not, or what expired: the first thing missing, by path.
    pub problem: Option<String>,
    pub token_expires: Option<std::time::SystemTime>,
    /// (object path, lease or certificate expiry)
    pub expiries: Vec<(String, std::time::SystemTime)>,
}

/// An open session with a store: credentials or a login, the objects it holds and when each
/// must be fetched, renewed or polled again.
pub enum Session {
    Vault(Box<vault::session::Session>),
    Aws(Box<aws::session::Session>),
    Gcp(Box<gcp::session::Session>),
    Azure(Box<azure::session::Session>),
}

impl Session {
    /// A session for `spec`; nothing is sent yet. Refused (exit 2) when the operator's pins do
    /// not allow where the spec points.
    pub fn open(spec: &ProviderSpec, settings: &Settings) -> Result<Session, crate::error::Error> {
        Ok(match spec {
            ProviderSpec::Vault(v) => {
                Session::Vault(Box::new(vault::session::Session::open(v, settings)?))
            }
            ProviderSpec::Aws(a) => {
                Session::Aws(Box::new(aws::session::Session::open(a, settings)?))
            }
            ProviderSpec::Gcp(g) => {
                Session::Gcp(Box::new(gcp::session::Session::open(g, settings)?))
            }
            ProviderSpec::Azure(a) => {
                Session::Azure(Box::new(azure::session::Session::open(a, settings)?))
            }
        })
    }

    pub fn provider(&self) -> &'static str {
        match self {
            Session::Vault(_) => "vault",
            Session::Aws(_) => "aws",
            Session::Gcp(_) => "gcp",
            Session::Azure(_) => "azure",
        }
    }

    /// Takes over what a previous process recorded (`saved`, the state file's bytes) when it
    /// still holds; `on_disk` is the version the volume holds now. True when the files on disk
    /// are current and only need confirming ([`Render::Current`]).
    pub async fn adopt(
        &mut self,
        saved: &[u8],
        dir: &str,
        on_disk: Option<crate::fingerprint::Rendered>,
        deadline: std::time::Instant,
    ) -> bool {
        match self {
            Session::Vault(s) => s.adopt(saved, dir, on_disk, deadline).await,
            Session::Aws(s) => s.adopt(saved, dir),
            Session::Gcp(s) => s.adopt(saved, dir),
            Session::Azure(s) => s.adopt(saved, dir),
        }
    }

    /// `init` and `exec --config`: everything fetched once, retrying transient failures until
    /// `deadline`.
    pub async fn fetch_all(
        &mut self,
        deadline: std::time::Instant,
    ) -> Result<(), crate::error::Error> {
        match self {
            Session::Vault(s) => s.fetch_all(deadline).await,
            Session::Aws(s) => s.fetch_all(deadline).await,
            Session::Gcp(s) => s.fetch_all(deadline).await,
            Session::Azure(s) => s.fetch_all(deadline).await,
        }
    }

    /// The earliest deadline and the step due then; `None`: nothing to send then (the engine
    /// only re-checks its own housekeeping).
    pub fn next(&self) -> (std::time::Instant, Option<Job>) {
        match self {
            Session::Vault(s) => s.next(),
            Session::Aws(s) => s.next(),
            Session::Gcp(s) => s.next(),
            Session::Azure(s) => s.next(),
        }
    }

    /// Applies what a step brought back; true when the files must be rendered again.
    pub fn apply(&mut self, outcome: Outcome, metrics: &crate::observe::Metrics) -> bool {
        match (self, outcome) {
            (Session::Vault(s), Outcome::Vault(o)) => s.apply(o, metrics),
            (Session::Aws(s), Outcome::Aws(o)) => s.apply(o, metrics),
            (Session::Gcp(s), Outcome::Gcp(o)) => s.apply(o, metrics),
            (Session::Azure(s), Outcome::Azure(o)) => s.apply(o, metrics),
            // A step of a session replaced by a reload: nothing to apply.
            _ => false,
        }
    }

    pub fn render(&mut self) -> Result<Render, crate::render::RenderError> {
        match self {
            Session::Vault(s) => s.render(),
            Session::Aws(s) => s.render(),
            Session::Gcp(s) => s.render(),
            Session::Azure(s) => s.render(),
        }
    }

    /// The files on disk are now the render of what is held (`rendered`: the version and its
    /// fingerprint); `None` confirms a [`Render::Current`].
    pub fn committed(&mut self, rendered: Option<crate::fingerprint::Rendered>) {
        match self {
            Session::Vault(s) => s.committed(rendered),
            Session::Aws(s) => s.committed(),
            Session::Gcp(s) => s.committed(),
            Session::Azure(s) => s.committed(),
        }
    }

    /// The state file's new content when something it records changed since the last call.
    pub fn take_state(&mut self) -> Option<crate::secret::SecretBytes> {
        match self {
            Session::Vault(s) => s.take_state(),
            Session::Aws(s) => s.take_state(),
            Session::Gcp(s) => s.take_state(),
            Session::Azure(s) => s.take_state(),
        }
    }

    /// A reloaded config for the same volumes. Err (the running config kept) when it cannot
    /// apply; Ok(true) when a render is due now.
    pub fn reload(&mut self, spec: &ProviderSpec, settings: &Settings) -> Result<bool, String> {
        match (self, spec) {
            (Session::Vault(s), ProviderSpec::Vault(v)) => s.reload(v, settings),
            (Session::Aws(s), ProviderSpec::Aws(a)) => s.reload(a, settings),
            (Session::Gcp(s), ProviderSpec::Gcp(g)) => s.reload(g, settings),
            (Session::Azure(s), ProviderSpec::Azure(a)) => s.reload(a, settings),
            (s, other) => Err(format!(
                "the new config switches these volumes from provider {} to provider {}; \
                 keeping the running one (a provider change needs a new pod)",
                s.provider(),
                other.name()
            )),
        }
    }

    /// On exit: with `revoke`, revoke what the store leased (within a second). True when the
    /// state file is dead with it and should go.
    pub async fn shutdown(&mut self, revoke: bool) -> bool {
        match self {
            Session::Vault(s) => s.shutdown(revoke).await,
            Session::Aws(_) | Session::Azure(_) | Session::Gcp(_) => false,
        }
    }

    pub fn freshness(&self, now: std::time::Instant) -> Freshness {
        match self {
            Session::Vault(s) => s.freshness(now),
            Session::Aws(s) => s.freshness(),
            Session::Gcp(s) => s.freshness(),
            Session::Azure(s) => s.freshness(),
        }
    }

    /// What `init` logs: objects and requests made.
    pub fn describe(&self) -> String {
        match self {
            Session::Vault(s) => s.describe(),
            Session::Aws(s) => s.describe(),
            Session::Gcp(s) => s.describe(),
            Session::Azure(s) => s.describe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, VaultEnv};
    use std::path::Path;

    fn spc(parameters: &str) -> ProviderSpec {
        let text = format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: a}}\nspec:\n  provider: vault\n  parameters:\n    roleName: r\n    vaultAddress: https://vault.example:8200\n{parameters}    objects: |\n      - {{objectName: p, secretPath: secret/data/a, secretKey: p}}\n"
        );
        config::parse(Path::new("spc.yaml"), &text, &VaultEnv::default())
            .unwrap()
            .provider
    }

    fn settings(admitted: Option<Vec<String>>) -> Settings {
        Settings {
            token_path: "/t".into(),
            vault_policy: Default::default(),
            env: Default::default(),
            revoke_replaced_after: None,
            poll: std::time::Duration::from_secs(300),
            quiet: true,
            admitted,
        }
    }

    #[test]
    fn only_the_admitted_trust_passes_the_pin() {
        let admitted = spc("");
        let pins = Some(vec![admitted.pin()]);
        assert!(admitted.check_admitted(&settings(pins.clone())).is_ok());
        assert!(admitted.check_admitted(&settings(None)).is_ok(), "no pin");
        // Everything that decides whom the token goes to changes the pin.
        for loosened in [
            "    vaultSkipTLSVerify: \"true\"\n",
            "    vaultTLSServerName: evil.example\n",
            "    vaultCACertPath: /tmp/evil.pem\n",
            "    vaultCADirectory: /tmp/evil\n",
        ] {
            let e = spc(loosened)
                .check_admitted(&settings(pins.clone()))
                .unwrap_err();
            assert!(
                e.contains("not the ones the webhook admitted"),
                "{loosened}: {e}"
            );
        }
        // What does not (the role, the objects) keeps it.
        let same = spc("    vaultNamespace: team\n");
        assert_eq!(same.pin(), admitted.pin());
        let e = admitted
            .check_admitted(&settings(Some(vec!["aws".into()])))
            .unwrap_err();
        assert!(
            e.contains("provider vault was not admitted (admitted: aws)"),
            "{e}"
        );
    }
}
