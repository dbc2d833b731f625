//! What shapes every injection: the webhook's settings ([`Defaults`]), the injection modes,
//! the names and paths of everything secretdrop adds to a pod, and the webhook's way to read
//! objects from the Kubernetes API ([`ClassSource`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::pod_settings::ConfigMapKey;
use crate::net::kube::KubeError;

pub const CONTAINER: &str = "secretdrop";
pub const INIT_CONTAINER: &str = "secretdrop-init";
pub const SECRETS_VOLUME: &str = "secretdrop-secrets";
pub const PODINFO_VOLUME: &str = "secretdrop-podinfo";
pub const TOKEN_VOLUME: &str = "secretdrop-token";
/// secretdrop's own token and leases between its processes (`--state-dir`, docs/state.md):
/// a Memory emptyDir mounted only into the injected containers, never into the app's.
pub const STATE_VOLUME: &str = "secretdrop-state";
pub const STATE_MOUNT: &str = "/var/run/secretdrop-state";
/// The `--state-dir` in that emptyDir. Kubelet makes the emptyDir itself 0777, which
/// `--state-dir` refuses (another uid could swap the recorded state); secretdrop creates this
/// subdirectory, ours and 0700, instead. Only secretdrop's containers mount the emptyDir, all
/// as one uid, so nothing else can replace the subdirectory afterwards (and a process that
/// already runs keeps the directory it opened even if something did).
pub const STATE_DIR: &str = "/var/run/secretdrop-state/state";
/// `secretdrop.dev/env`: the init container that copies the binary for app containers, the
/// Memory emptyDir it copies into, and where every container mounts it.
pub const COPY_CONTAINER: &str = "secretdrop-copy";
pub const BIN_VOLUME: &str = "secretdrop-bin";
pub const BIN_DIR: &str = "/secretdrop-bin";
/// The directory in the emptyDir that holds the binary. Kubelet makes the emptyDir itself
/// 0777, which `copy-self` refuses to install into (another uid could swap the binary); it
/// creates this subdirectory, ours and 0755, instead. Only the copy container mounts the
/// emptyDir writable, so nothing can replace the subdirectory afterwards.
pub const BIN_COPY_DIR: &str = "/secretdrop-bin/bin";
/// Where the injected container sees the files, the annotations and its token.
pub const DIR: &str = "/mnt/secretdrop";
pub const PODINFO_DIR: &str = "/etc/secretdrop";
pub const TOKEN_DIR: &str = "/var/run/secrets/secretdrop";
pub const DEFAULT_MOUNT_PATH: &str = "/mnt/secrets";
/// Where a converted Vault Agent pod's other secrets directories are mounted in our container.
pub const AGENT_CUSTOM_DIR: &str = "/mnt/secretdrop-custom";
/// The volume of a converted Vault Agent pod's `tls-secret`.
pub const AGENT_TLS_VOLUME: &str = "secretdrop-agent-tls";
pub(super) const NONROOT: u32 = 65532;

/// Settings of the webhook that shape every injection.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub image: String,
    pub vault_address: Option<String>,
    /// When non-empty, `vault-address` must be one of these.
    pub allowed_vault_addresses: Vec<String>,
    /// Audience of the projected service-account token, if the Vault role checks one.
    pub token_audience: Option<String>,
    pub size_limit: String,
    /// The Vault CA for pods that name none (`--ca-configmap`): a ConfigMap every namespace
    /// has, e.g. one a trust distributor keeps in each.
    pub ca_configmap: Option<ConfigMapKey>,
    /// Reads the SecretProviderClass of a CSI volume (see [`super::csi`]).
    pub classes: ClassSource,
    /// Reads a ServiceAccount, for its IRSA role (see [`super::aws`]).
    pub service_accounts: ClassSource,
    /// Reads an image pull Secret (see [`super::synced`]).
    pub secrets: ClassSource,
    /// Reads an image's entrypoint and cmd from its registry (see [`super::synced`]).
    pub images: ImageSource,
    /// The platform an image index is resolved to when the pod's nodeSelector names none
    /// (`--image-platform`, linux/amd64 by default).
    pub image_platform: crate::net::registry::Platform,
    /// `--aws-region`: the region of AWS volumes that name none (the cluster's region; the
    /// CSI provider would ask the node's), set as the injected container's `AWS_REGION`.
    pub aws_region: Option<String>,
    /// The review came to `/convert-vault-agent`: convert Vault Agent Injector pods
    /// ([`super::vault_agent`]) and nothing else.
    pub vault_agent: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            image: concat!("secretdrop:", env!("CARGO_PKG_VERSION")).into(),
            vault_address: None,
            allowed_vault_addresses: vec![],
            token_audience: None,
            size_limit: "1Mi".into(),
            ca_configmap: None,
            classes: Default::default(),
            service_accounts: Default::default(),
            secrets: Default::default(),
            images: Default::default(),
            image_platform: Default::default(),
            aws_region: None,
            vault_agent: false,
        }
    }
}

/// How the secrets get into the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One native sidecar (`restartPolicy: Always`) with a startupProbe.
    Sidecar,
    /// One init container (Jobs, CronJobs).
    Init,
    /// An init container plus a regular sidecar container (clusters without native sidecars).
    InitAndSidecar,
}

impl Mode {
    pub(super) fn parse(s: &str) -> Option<Mode> {
        match s {
            "sidecar" => Some(Mode::Sidecar),
            "init" => Some(Mode::Init),
            "init+sidecar" => Some(Mode::InitAndSidecar),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Mode::Sidecar => "sidecar",
            Mode::Init => "init",
            Mode::InitAndSidecar => "init+sidecar",
        }
    }
}

/// Reads an object (a SecretProviderClass, a ServiceAccount) by namespace and name, within the
/// time given. The webhook's server answers from what the review has read
/// ([`super::lookups`]), and `Err(KubeError::Deferred)` for an object not read yet.
pub type Lookup = dyn Fn(&str, &str, Duration) -> Result<Value, KubeError> + Send + Sync;

/// The webhook's way to read objects from the Kubernetes API; none when it has no access.
#[derive(Clone, Default)]
pub struct ClassSource(Option<Arc<Lookup>>);

impl ClassSource {
    pub fn new(
        f: impl Fn(&str, &str, Duration) -> Result<Value, KubeError> + Send + Sync + 'static,
    ) -> Self {
        ClassSource(Some(Arc::new(f)))
    }

    /// The lookup, if the webhook has API access.
    pub fn lookup(&self) -> Option<&Arc<Lookup>> {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for ClassSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "ClassSource(api)",
            None => "ClassSource(none)",
        })
    }
}

impl PartialEq for ClassSource {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// One image whose entrypoint and cmd a review needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageQuery {
    pub image: String,
    pub platform: crate::net::registry::Platform,
    /// The pull Secrets' credentials (only the one for the image's registry host is sent).
    pub credentials: Vec<crate::net::registry::Credential>,
}

impl PartialEq for crate::net::registry::Credential {
    fn eq(&self, other: &Self) -> bool {
        self.registry == other.registry
            && self.username.expose() == other.username.expose()
            && self.password.expose() == other.password.expose()
    }
}

/// Reads an image's process from its registry; `Err(None)` when not read yet (the server
/// reads it outside the review slots and decides again, as for Kubernetes objects),
/// `Err(Some(why))` when it cannot be.
pub type ImageLookup =
    dyn Fn(&ImageQuery) -> Result<crate::net::registry::Process, Option<String>> + Send + Sync;

/// The webhook's way to image registries; none in pure tests unless given.
#[derive(Clone, Default)]
pub struct ImageSource(Option<Arc<ImageLookup>>);

impl ImageSource {
    pub fn new(
        f: impl Fn(&ImageQuery) -> Result<crate::net::registry::Process, Option<String>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        ImageSource(Some(Arc::new(f)))
    }

    pub fn lookup(&self) -> Option<&Arc<ImageLookup>> {
        self.0.as_ref()
    }
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "ImageSource(registry)",
            None => "ImageSource(none)",
        })
    }
}

impl PartialEq for ImageSource {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
