//! `provider: vault` (and `openbao`): the Vault HTTP client ([`client`]), logins ([`auth`]),
//! TLS ([`tls`]), login and deduplicated reads ([`fetch`]), and what the seam asks of a
//! provider (plan, files, sessions shared between volumes).

pub mod agent;
pub mod agent_command;
pub mod auth;
pub mod client;
pub mod fetch;
pub mod go_render;
pub mod kv_shim;
pub mod native;
pub mod objects;
pub mod params;
pub mod records;
pub mod render;
pub mod schedule;
pub mod session;
mod slots;
pub mod spec;
mod steps;
pub mod tls;

use std::collections::HashMap;
use std::path::Path;

use spec::{Auth, Encoding, Output, Read, VaultSpec};

use super::FileSpec;

pub fn files(spec: &VaultSpec) -> Vec<FileSpec> {
    spec.objects
        .iter()
        .map(|o| FileSpec {
            name: o.name.clone(),
            mode: o.mode,
            owner: o.owner,
            group: o.group,
        })
        .collect()
}

/// Volumes reaching the same Vault the same way, and logging in alike, share one login.
pub fn shares_session(a: &VaultSpec, b: &VaultSpec) -> bool {
    a.vault == b.vault && a.auth == b.auth
}

/// One spec reading every read of `specs` once; objects prefixed with their member's index.
pub fn merge(mut specs: Vec<VaultSpec>) -> VaultSpec {
    if specs.len() == 1 {
        return specs.remove(0);
    }
    let mut merged = VaultSpec {
        reads: Vec::new(),
        objects: Vec::new(),
        ..specs[0].clone()
    };
    let mut index: HashMap<Read, usize> = HashMap::new();
    for (member, spec) in specs.into_iter().enumerate() {
        // Every read of the member, not only those objects point at: a Go template reads
        // several.
        let moved: Vec<usize> = spec
            .reads
            .iter()
            .map(|read| {
                let next = merged.reads.len();
                *index.entry(read.clone()).or_insert_with(|| {
                    merged.reads.push(read.clone());
                    next
                })
            })
            .collect();
        for mut object in spec.objects {
            object.read = moved.get(object.read).copied().unwrap_or(0);
            object.name = super::member_prefix(member, &object.name);
            merged.objects.push(object);
        }
    }
    merged
}

/// The fingerprint of whom a Vault volume sends the pod's token to: the address's origin and
/// every TLS setting that decides whose certificate is accepted (see
/// [`super::ProviderSpec::pin`]). 128 bits of SHA-256, hex.
pub fn trust_pin(v: &spec::VaultSettings) -> String {
    let origin = client::origin_of(&v.address).unwrap_or_else(|| v.address.clone());
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let tls = &v.tls;
    let fp = crate::fingerprint::sha256(&[
        origin.as_bytes(),
        path(&tls.ca_cert).as_bytes(),
        tls.ca_pem.as_deref().unwrap_or("").as_bytes(),
        path(&tls.ca_directory).as_bytes(),
        tls.server_name.as_deref().unwrap_or("").as_bytes(),
        path(&tls.client_cert).as_bytes(),
        path(&tls.client_key).as_bytes(),
        if tls.skip_verify { b"skip" } else { b"verify" },
    ]);
    fp[..32].to_string()
}

/// A Kubernetes login naming an audience reads the token projected for that audience.
pub fn use_audience_token(spec: &mut VaultSpec, token_dir: &Path) {
    if let Auth::Kubernetes(login) = &mut spec.auth {
        if let (Some(aud), None) = (&login.audience, &login.token_path) {
            login.token_path = Some(token_dir.join(crate::config::names::audience_token_file(aud)));
        }
    }
}

/// `secretdrop check` for a Vault spec: where, as whom, what is read and which files it makes.
pub fn plan(source: &Path, spec: &VaultSpec) -> String {
    let mut s = format!("config: {} (valid)\n", source.display());
    let tls = &spec.vault.tls;
    let mut tls_desc = vec![];
    if let Some(p) = &tls.ca_cert {
        tls_desc.push(format!("CA file {}", p.display()));
    }
    if tls.ca_pem.is_some() {
        tls_desc.push("CA from secretdrop.dev/ca-cert".into());
    }
    if let Some(p) = &tls.ca_directory {
        tls_desc.push(format!("CA directory {}", p.display()));
    }
    if let Some(n) = &tls.server_name {
        tls_desc.push(format!("server name {n}"));
    }
    if tls.client_cert.is_some() {
        tls_desc.push("client certificate".into());
    }
    if tls.skip_verify {
        tls_desc.push("VERIFICATION DISABLED".into());
    }
    s.push_str(&format!("vault: {}", spec.vault.address));
    if let Some(ns) = &spec.vault.namespace {
        s.push_str(&format!(" namespace {ns}"));
    }
    if spec.vault.address.starts_with("https://") {
        s.push_str(&format!(
            " (TLS: {})",
            if tls_desc.is_empty() {
                "system roots".into()
            } else {
                tls_desc.join(", ")
            }
        ));
    }
    s.push('\n');
    let auth = match &spec.auth {
        Auth::Kubernetes(l) | Auth::Jwt(l) => format!(
            "{} login at auth/{}/login as role {:?}, token from {}{}",
            spec.auth.method_name(),
            l.mount,
            l.role,
            l.token_path
                .as_ref()
                .map_or("--token-path".into(), |p| p.display().to_string()),
            l.audience
                .as_ref()
                .map_or(String::new(), |a| format!(", audience {a}"))
        ),
        Auth::AppRole {
            mount,
            role_id_file,
            secret_id_file,
        } => format!(
            "approle login at auth/{mount}/login, role_id from {}, secret_id from {}",
            role_id_file.display(),
            secret_id_file.display()
        ),
        Auth::Token { token_file } => format!("token from {}", token_file.display()),
    };
    s.push_str(&format!("auth: {auth}\n"));
    s.push_str(&format!("reads ({}):\n", spec.reads.len()));
    for r in &spec.reads {
        s.push_str(&format!("  {} {}", r.method, r.path));
        if let Some(body) = &r.body {
            let keys: Vec<String> =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(body)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
            s.push_str(&format!(" with secretArgs keys [{}]", keys.join(", ")));
        }
        if r.template && r.method == "GET" {
            s.push_str(" (a template's secret: a KV version 2 path gets data/ at its mount)");
        }
        s.push('\n');
    }
    s.push_str(&format!("files ({}):\n", spec.objects.len()));
    for o in &spec.objects {
        let what = match &o.output {
            Output::WholeResponse => "whole response as JSON".to_string(),
            Output::Key { key, encoding } => format!(
                "key {key:?}{}",
                match encoding {
                    Encoding::Utf8 => "",
                    Encoding::Base64 => ", base64-decoded",
                    Encoding::Hex => ", hex-decoded",
                }
            ),
            Output::Format { format, keys } => format!(
                "{} of {}",
                format.name(),
                keys.as_ref()
                    .map_or("all keys".into(), |k| format!("keys [{}]", k.join(", ")))
            ),
            Output::Template(t) => format!("template ({} lines)", t.lines().count().max(1)),
            Output::VaultToken => "the Vault token".to_string(),
            Output::GoTemplate(t) => match t.source.lines().count() {
                0 | 1 => format!("Go template from {} (1 line)", t.what),
                n => format!("Go template from {} ({n} lines)", t.what),
            },
        };
        let owner = match (o.owner, o.group) {
            (None, None) => String::new(),
            (u, g) => format!(
                " owner {}:{}",
                u.map_or("-".into(), |u| u.to_string()),
                g.map_or("-".into(), |g| g.to_string())
            ),
        };
        s.push_str(&format!(
            "  {} {:04o}{owner} <- {} {}\n",
            o.name, o.mode, spec.reads[o.read].path, what
        ));
    }
    s
}
