//! `secretdrop webhook`: the admission server (docs/webhook.md); see [`crate::webhook`].

use crate::cli::Args;
use crate::config;
use crate::error::Error;

/// `secretdrop webhook`: see [`crate::webhook::server`].
pub fn run(args: &Args) -> Result<(), Error> {
    let listen = crate::observe::parse_listen(args.get("listen").unwrap_or(":8443"))
        .map_err(|m| Error::Usage(format!("--listen: {m}")))?;
    let mut defaults = crate::webhook::mutate::Defaults::default();
    if let Some(image) = args.get("image") {
        defaults.image = image.to_string();
    }
    if let Some(addr) = args.get("vault-address") {
        let checked = config::check_address(std::path::Path::new("--vault-address"), "value", addr)
            .map_err(|e| Error::Usage(e.to_string()))?;
        defaults.vault_address = Some(checked);
    }
    if let Some(list) = args.get("allowed-vault-address") {
        defaults.allowed_vault_addresses =
            crate::cli::parse_address_list("allowed-vault-address", list)?;
    }
    defaults.token_audience = args.get("token-audience").map(str::to_string);
    if let Some(size) = args.get("size-limit") {
        defaults.size_limit = size.to_string();
    }
    if let Some(r) = args.get("aws-region") {
        // Checked as a class's region is: it becomes AWS_REGION, and endpoint host names.
        let checked = crate::provider::aws::params::check_region(
            std::path::Path::new("--aws-region"),
            "value",
            r,
        )
        .map_err(|e| Error::Usage(e.to_string()))?;
        defaults.aws_region = Some(checked);
    }
    if let Some(p) = args.get("image-platform") {
        defaults.image_platform = crate::net::registry::Platform::parse(p)
            .map_err(|m| Error::Usage(format!("--image-platform: {m}")))?;
    }
    if let Some(cm) = args.get("ca-configmap") {
        defaults.ca_configmap = Some(
            config::pod_settings::ConfigMapKey::parse(cm)
                .map_err(|m| Error::Usage(format!("--ca-configmap: {m}")))?,
        );
    }
    // The API is only needed for pods with CSI volumes: without it the webhook still serves
    // everything else, and rejects those pods saying why.
    let kube = match args.get("kubeconfig") {
        Some(file) => Some(
            crate::net::kube::Client::from_kubeconfig(std::path::Path::new(file))
                .map_err(|e| Error::Usage(format!("--kubeconfig: {e}")))?,
        ),
        None => match crate::net::kube::Client::in_cluster() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(reason = %e, "no Kubernetes API access: pods with Secrets Store CSI volumes will be rejected");
                None
            }
        },
    };
    if let Some(k) = &kube {
        tracing::info!(
            server = k.server(),
            "reading SecretProviderClasses from the Kubernetes API"
        );
    }
    crate::webhook::server::run(crate::webhook::server::Options {
        tls_cert: args.path("tls-cert", None)?,
        tls_key: args.path("tls-key", None)?,
        listen,
        defaults,
        kube,
    })
}
