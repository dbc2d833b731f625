//! Several volumes from one config source, served by one process (docs/pod.md, "Several
//! volumes").
//!
//! A config file (SecretProviderClass or native) describes one volume, written to `--dir`. The
//! downward-API annotations file of an injected pod can describe several: the
//! `secretdrop.dev/objects` annotations (to `--dir`, as before) and one
//! `csi.secretdrop.dev/<volume>` annotation per CSI volume the webhook converted, holding that
//! volume's SecretProviderClass verbatim (to the directory `--volume <volume>=DIR` names).
//!
//! Volumes that one session can serve (the same provider reached and authenticated the same
//! way, [`ProviderSpec::shares_session_with`]) form one [`Unit`]: one login or one set of
//! credentials, reads deduplicated across its volumes, one render split into the volumes.
//! Volumes of different providers are different units of the same process. Invariants:
//! every source has exactly one directory and every `--volume` flag names a source, else the
//! error says which; inside a unit with several volumes, object names carry the member's index
//! as a `..N/` prefix (a form no object name can have), which [`crate::volume::set`] strips.

use std::path::{Path, PathBuf};

use super::names::{is_volume_name, CSI_PREFIX};
use super::{annotations, spc, ConfigError, ProviderSpec, Spec, VaultEnv};

/// One volume a config source describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// None: the config's own objects (written to `--dir`); Some: a converted CSI volume.
    pub volume: Option<String>,
    pub spec: Spec,
}

/// Where each volume goes, and the token file the flags name.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub dir: PathBuf,
    /// `--volume NAME=DIR`, in command-line order.
    pub volumes: Vec<(String, PathBuf)>,
    pub token_path: PathBuf,
}

/// Volumes that share one login.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The merged spec: every read once, object names prefixed `..N/` when there are several
    /// members.
    pub spec: Spec,
    /// The members' directories, in prefix order.
    pub dirs: Vec<PathBuf>,
    /// The members' volume names (None: `--dir`), for messages and reloads.
    pub volumes: Vec<Option<String>>,
    /// Views of its members (`secret.secretdrop.dev/<volume>`): the view, its directory, the
    /// member it shows.
    pub views: Vec<(super::views::ViewSpec, PathBuf, usize)>,
}

/// Every volume `text` describes.
pub fn sources(path: &Path, text: &str, env: &VaultEnv) -> Result<Vec<Source>, ConfigError> {
    if !annotations::looks_like_annotations(text) {
        return Ok(vec![Source {
            volume: None,
            spec: super::parse(path, text, env)?,
        }]);
    }
    let all = annotations::parse_file(path, text)?;
    sources_of_annotations(path, &all, env)
}

/// Every volume a pod's annotations describe (the downward-API file, parsed). The webhook
/// runs the same on the annotations it admits, so what it pins is what the sidecar will read.
pub fn sources_of_annotations(
    path: &Path,
    all: &std::collections::BTreeMap<String, String>,
    env: &VaultEnv,
) -> Result<Vec<Source>, ConfigError> {
    let ours = annotations::ours(path, all)?;
    if let Some(prefix) = ours.get("vault-agent") {
        return agent_sources(path, all, &ours, prefix, env);
    }
    let mut pod_settings = None;
    let mut out = Vec::new();
    if ours.contains_key("role") || ours.contains_key("objects") {
        out.push(Source {
            volume: None,
            spec: annotations::spec_from(path, &ours, env)?,
        });
    }
    for (key, value) in all {
        let Some(name) = key.strip_prefix(CSI_PREFIX) else {
            continue;
        };
        if !is_volume_name(name) {
            return Err(ConfigError::field(
                path,
                key.as_str(),
                "the part after csi.secretdrop.dev/ must be a volume name (lowercase letters, \
                 digits and '-', at most 63)",
            ));
        }
        // Only a SecretProviderClass, parsed as the CSI provider reads one (whichever providers
        // `spc` serves): an edited annotation gets no more than the class could say.
        let file = PathBuf::from(format!("{} ({key})", path.display()));
        let mut spec = spc::parse(&file, value, env)?;
        // A class has no sidecar settings: the pod's annotations (poll interval, notify)
        // apply to its converted volumes as to its own objects.
        if pod_settings.is_none() {
            pod_settings = Some(super::pod_settings::parse(path, &ours)?);
        }
        let settings = pod_settings.as_ref().expect("parsed above");
        spec.sidecar = super::SidecarSettings {
            poll_interval: settings.poll_interval,
            notify: settings.notify.clone(),
        };
        out.push(Source {
            volume: Some(name.to_string()),
            spec,
        });
    }
    if out.is_empty() {
        return Err(ConfigError::new(
            path,
            "nothing to render: no secretdrop.dev/role and secretdrop.dev/objects, and no \
             csi.secretdrop.dev/<volume> annotation",
        ));
    }
    Ok(out)
}

/// The volumes of a pod converted from the Vault Agent Injector (docs/migrate-from-vault-agent.md):
/// `secretdrop.dev/vault-agent` names the injector prefix its annotations use. The global secrets
/// directory is `--dir`; each other `secret-volume-path-X` is the volume [`agent_volume`] names.
fn agent_sources(
    path: &Path,
    all: &std::collections::BTreeMap<String, String>,
    ours: &std::collections::BTreeMap<String, String>,
    prefix: &str,
    env: &VaultEnv,
) -> Result<Vec<Source>, ConfigError> {
    use crate::provider::vault::agent;
    let Some(prefix) = agent::PREFIXES.iter().copied().find(|p| *p == prefix) else {
        return Err(ConfigError::field(
            path,
            "secretdrop.dev/vault-agent",
            format!(
                "{:?} is not an injector prefix: allowed are {}",
                prefix.chars().take(64).collect::<String>(),
                agent::PREFIXES.join(", ")
            ),
        ));
    };
    if let Some(k) = ours
        .keys()
        .find(|k| ["role", "objects", "provider"].contains(&k.as_str()))
    {
        return Err(ConfigError::field(
            path,
            format!("secretdrop.dev/{k}"),
            "a pod converted from the Vault Agent Injector takes its secrets from the injector's \
             annotations only",
        ));
    }
    let settings = super::pod_settings::parse(path, ours)?;
    let pod = agent::parse(path, all, prefix, env, &|name| {
        std::env::var(name).unwrap_or_default()
    })?;
    let notify = agent_notify(path, &settings.notify, pod.notify.as_ref())?;
    Ok(pod
        .specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Source {
            volume: (i > 0).then(|| agent_volume(i - 1)),
            spec: Spec {
                source: path.to_path_buf(),
                sidecar: super::SidecarSettings {
                    poll_interval: settings.poll_interval.or(pod.render_interval),
                    notify: notify.clone(),
                },
                provider: ProviderSpec::Vault(spec),
            },
        })
        .collect())
}

/// A converted pod's notification: its `secretdrop.dev/notify-*` annotations or what its
/// `agent-inject-command-X` mapped to, not both.
pub fn agent_notify(
    path: &Path,
    ours: &super::NotifySettings,
    commands: Option<&super::NotifySettings>,
) -> Result<super::NotifySettings, ConfigError> {
    match commands {
        Some(_) if *ours != super::NotifySettings::default() => Err(ConfigError::field(
            path,
            "secretdrop.dev/notify-*",
            "the pod's agent-inject-command annotations already say how the app is told; \
             keep one of the two",
        )),
        Some(c) => Ok(c.clone()),
        None => Ok(ours.clone()),
    }
}

/// The volume of a converted pod's `n`th other secrets directory.
pub fn agent_volume(n: usize) -> String {
    format!("secretdrop-custom-{n}")
}

/// Groups the sources into units and gives each volume its directory.
pub fn units(path: &Path, sources: Vec<Source>, layout: &Layout) -> Result<Vec<Unit>, ConfigError> {
    for (name, _) in &layout.volumes {
        if !sources.iter().any(|s| s.volume.as_deref() == Some(name)) {
            let known: Vec<String> = sources.iter().filter_map(|s| s.volume.clone()).collect();
            return Err(ConfigError::new(
                path,
                format!(
                    "--volume {name}=...: the config describes no volume {name:?}; its volumes \
                     are {}",
                    if known.is_empty() {
                        "none (only --dir)".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
    }
    let token_dir = layout.token_path.parent().unwrap_or(Path::new("/"));
    /// Members (volume, directory) and their specs, which log in alike.
    type Group = (Vec<(Option<String>, PathBuf)>, Vec<Spec>);
    let mut groups: Vec<Group> = Vec::new();
    for mut source in sources {
        let dir = match &source.volume {
            None => layout.dir.clone(),
            Some(name) => layout
                .volumes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| d.clone())
                .ok_or_else(|| {
                    ConfigError::field(
                        path,
                        format!("{CSI_PREFIX}{name}"),
                        format!(
                            "no directory for volume {name:?}: add --volume {name}=DIR (where \
                             this container mounts it)"
                        ),
                    )
                })?,
        };
        // A converted volume whose class names an audience logs in with the token the webhook
        // projected for that audience.
        if source.volume.is_some() {
            source.spec.provider.use_audience_token(token_dir);
        }
        let spec = source.spec;
        match groups
            .iter_mut()
            .find(|(_, specs)| specs[0].provider.shares_session_with(&spec.provider))
        {
            Some((members, specs)) => {
                members.push((source.volume, dir));
                specs.push(spec);
            }
            None => groups.push((vec![(source.volume, dir)], vec![spec])),
        }
    }
    Ok(groups
        .into_iter()
        .map(|(members, mut specs)| {
            let first = specs[0].clone();
            let merged = ProviderSpec::merge(specs.drain(..).map(|s| s.provider).collect());
            Unit {
                spec: Spec {
                    provider: merged,
                    ..first
                },
                dirs: members.iter().map(|(_, d)| d.clone()).collect(),
                volumes: members.into_iter().map(|(v, _)| v).collect(),
                views: Vec::new(),
            }
        })
        .collect())
}

/// Every unit of the config at `path`: [`sources`] then [`units`].
pub fn load_units(
    path: &Path,
    text: &str,
    env: &VaultEnv,
    layout: &Layout,
) -> Result<Vec<Unit>, ConfigError> {
    let views = match annotations::looks_like_annotations(text) {
        true => super::views::of_annotations(path, &annotations::parse_file(path, text)?)?,
        false => Vec::new(),
    };
    let is_view = |name: &str| views.iter().any(|v| v.volume == name);
    // A view's directory comes with `--volume` like a member's.
    let members = Layout {
        volumes: layout
            .volumes
            .iter()
            .filter(|(n, _)| !is_view(n))
            .cloned()
            .collect(),
        ..layout.clone()
    };
    let mut units = units(path, sources(path, text, env)?, &members)?;
    for view in views {
        let key = format!("{}{}", super::views::VIEW_PREFIX, view.volume);
        let dir = layout
            .volumes
            .iter()
            .find(|(n, _)| *n == view.volume)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| {
                ConfigError::field(
                    path,
                    key.as_str(),
                    format!(
                        "no directory for volume {:?}: add --volume {}=DIR",
                        view.volume, view.volume
                    ),
                )
            })?;
        let found = units.iter_mut().find_map(|u| {
            let member = u
                .volumes
                .iter()
                .position(|v| v.as_deref() == Some(view.from.as_str()))?;
            Some((u, member))
        });
        let Some((unit, member)) = found else {
            return Err(ConfigError::field(
                path,
                key.as_str(),
                format!(
                    "shows volume {:?}, which no csi.secretdrop.dev/ annotation describes",
                    view.from
                ),
            ));
        };
        // Names in the member's share: prefixed in a unit of several members.
        let known = unit.spec.provider.files();
        let prefixed = |o: &str| match unit.dirs.len() {
            1 => o.to_string(),
            _ => crate::provider::member_prefix(member, o),
        };
        for f in &view.files {
            if !known.iter().any(|k| k.name == prefixed(&f.object)) {
                return Err(ConfigError::field(
                    path,
                    key.as_str(),
                    format!("volume {:?} has no object {:?}", view.from, f.object),
                ));
            }
        }
        unit.views.push((view, dir, member));
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::names::audience_token_file;

    const SPC: &str = r#"{"apiVersion":"secrets-store.csi.x-k8s.io/v1","kind":"SecretProviderClass","metadata":{"name":"a"},"spec":{"provider":"vault","parameters":{"roleName":"r","vaultAddress":"http://v:8200","objects":"- {objectName: myPassword, secretPath: secret/data/app, secretKey: password}\n"}}}"#;

    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn layout() -> Layout {
        Layout {
            dir: "/mnt/secretdrop".into(),
            volumes: vec![
                ("one".into(), "/mnt/csi/one".into()),
                ("two".into(), "/mnt/csi/two".into()),
            ],
            token_path: "/var/run/secrets/secretdrop/token".into(),
        }
    }

    #[test]
    fn two_classes_with_one_login_form_one_unit_with_shared_reads() {
        let other = SPC.replace("myPassword", "pw");
        let text = format!(
            "csi.secretdrop.dev/one={}\ncsi.secretdrop.dev/two={}\n",
            quoted(SPC),
            quoted(&other)
        );
        let units = load_units(Path::new("a"), &text, &VaultEnv::default(), &layout()).unwrap();
        assert_eq!(units.len(), 1);
        let u = &units[0];
        assert_eq!(
            u.spec.vault().unwrap().reads.len(),
            1,
            "one GET for both volumes"
        );
        let names: Vec<&str> = u
            .spec
            .vault()
            .unwrap()
            .objects
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(names, ["..0/myPassword", "..1/pw"]);
        assert_eq!(
            u.dirs,
            [PathBuf::from("/mnt/csi/one"), PathBuf::from("/mnt/csi/two")]
        );
    }

    #[test]
    fn another_role_or_audience_is_another_login() {
        let other = SPC.replace(r#""roleName":"r""#, r#""roleName":"r","audience":"vault""#);
        let text = format!(
            "csi.secretdrop.dev/one={}\ncsi.secretdrop.dev/two={}\n",
            quoted(SPC),
            quoted(&other)
        );
        let units = load_units(Path::new("a"), &text, &VaultEnv::default(), &layout()).unwrap();
        assert_eq!(units.len(), 2);
        let crate::config::Auth::Kubernetes(l) = &units[1].spec.vault().unwrap().auth else {
            panic!()
        };
        assert_eq!(
            l.token_path.as_deref(),
            Some(
                Path::new("/var/run/secrets/secretdrop")
                    .join(audience_token_file("vault"))
                    .as_path()
            )
        );
    }

    #[test]
    fn the_pods_poll_interval_and_notify_apply_to_its_converted_volumes() {
        let text = format!(
            "secretdrop.dev/poll-interval=\"7s\"\nsecretdrop.dev/notify-url=\"http://127.0.0.1:9/r\"\ncsi.secretdrop.dev/one={}\n",
            quoted(SPC)
        );
        let found = sources(Path::new("a"), &text, &VaultEnv::default()).unwrap();
        assert_eq!(
            found[0].spec.sidecar.poll_interval,
            Some(std::time::Duration::from_secs(7))
        );
        assert_eq!(
            found[0].spec.sidecar.notify.url.as_deref(),
            Some("http://127.0.0.1:9/r")
        );
        // Without them, the defaults.
        let text = format!("csi.secretdrop.dev/one={}\n", quoted(SPC));
        let found = sources(Path::new("a"), &text, &VaultEnv::default()).unwrap();
        assert_eq!(found[0].spec.sidecar.poll_interval, None);
    }

    #[test]
    fn volumes_and_flags_must_match() {
        let text = format!("csi.secretdrop.dev/three={}\n", quoted(SPC));
        let e = load_units(Path::new("a"), &text, &VaultEnv::default(), &layout()).unwrap_err();
        assert!(
            e.to_string()
                .contains("--volume one=...: the config describes no volume"),
            "{e}"
        );
        let mut l = layout();
        l.volumes.clear();
        let e = load_units(Path::new("a"), &text, &VaultEnv::default(), &l).unwrap_err();
        assert!(e.to_string().contains("add --volume three=DIR"), "{e}");
        let e = load_units(Path::new("a"), "x.y/z=\"1\"\n", &VaultEnv::default(), &l).unwrap_err();
        assert!(e.to_string().contains("nothing to render"), "{e}");
        let bad = format!("csi.secretdrop.dev/Bad_Name={}\n", quoted(SPC));
        let e = load_units(Path::new("a"), &bad, &VaultEnv::default(), &l).unwrap_err();
        assert!(e.to_string().contains("must be a volume name"), "{e}");
    }

    #[test]
    fn audience_token_files_are_stable_and_distinct() {
        assert_eq!(audience_token_file("vault"), audience_token_file("vault"));
        assert_ne!(audience_token_file("vault"), audience_token_file("bao"));
        assert!(audience_token_file("https://x/y").starts_with("token-"));
    }
}
