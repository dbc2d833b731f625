//! A stand-in for what kubelet does with an admitted pod spec, and nothing more: it lays out
//! the pod's volumes on the test's tmpfs (emptyDir: a directory, mode 0777 as kubelet makes
//! it; downwardAPI `metadata.annotations`: the Go-quoted file behind a `..data` link;
//! projected serviceAccountToken: a token minted for each source's audience, or the test's
//! own; configMap: the items of a ConfigMap the test says the cluster holds), resolves a
//! container's paths through its own volumeMounts (in args and env values), and runs a
//! container's command line with its env. So a test runs the injected containers from the admitted spec alone, and reads
//! what an app container would read at its mount path.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::{bin, scrub_env, secretdrop, Run};
use super::{spawn_tied_to_process, SaClaims, TokenReviewer};

pub struct Kubelet {
    root: PathBuf,
    pod: Value,
    namespace: String,
}

/// What `status.podIP` and `status.hostIP` resolve to in a container's env.
pub const POD_IP: &str = "10.244.1.7";
pub const HOST_IP: &str = "192.168.1.20";

/// ConfigMaps as the cluster holds them: name → key → text.
pub type ConfigMaps<'a> = BTreeMap<&'a str, BTreeMap<&'a str, &'a str>>;

/// What the cluster holds besides the pod spec, for [`Kubelet::with`].
#[derive(Default)]
pub struct Cluster<'a> {
    /// The ConfigMaps the pod's configMap volumes may name; one missing (or a key of it)
    /// panics, as kubelet would not start the pod.
    pub config_maps: ConfigMaps<'a>,
    /// Written into every projected serviceAccountToken in place of a minted token (a test's
    /// token without the audience the spec asks for, or not a token at all).
    pub token: Option<&'a str>,
}

impl Kubelet {
    /// Lays out the volumes of `pod` under `root`; tokens are minted for the pod's
    /// serviceAccountName in `namespace`.
    pub fn new(root: &Path, namespace: &str, pod: &Value) -> Kubelet {
        Kubelet::with(root, namespace, pod, &Cluster::default())
    }

    /// [`Kubelet::new`] with ConfigMaps to fill configMap volumes from, and a given token.
    pub fn with(root: &Path, namespace: &str, pod: &Value, cluster: &Cluster) -> Kubelet {
        let k = Kubelet {
            root: root.join("kubelet"),
            pod: pod.clone(),
            namespace: namespace.to_string(),
        };
        let sa = pod["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
            let dir = k.volume(v["name"].as_str().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            if v.get("emptyDir").is_some() {
                // What kubelet does whatever the umask: every container's uid may write it.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            }
            if v.get("downwardAPI").is_some() {
                k.project(1, pod);
            }
            if let Some(cm) = v.get("configMap") {
                fill_config_map(&dir, cm, &cluster.config_maps);
            }
            for s in v
                .pointer("/projected/sources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(t) = s.get("serviceAccountToken") else {
                    continue;
                };
                let mut claims = SaClaims::new(namespace, sa);
                if let Some(aud) = t["audience"].as_str() {
                    claims = claims.with_audiences(&[aud]);
                }
                let token = match cluster.token {
                    Some(t) => t.to_string(),
                    None => TokenReviewer::shared().mint(&claims),
                };
                std::fs::write(dir.join(t["path"].as_str().unwrap()), token).unwrap();
            }
        }
        k
    }

    /// The host directory behind the pod volume `name`.
    pub fn volume(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    /// Writes the downward-API annotations file as generation `generation` (values quoted like
    /// Go's strconv.Quote; JSON escaping agrees for these characters), into every downwardAPI
    /// volume of the pod.
    pub fn project(&self, generation: u32, pod: &Value) {
        for v in self.pod["spec"]["volumes"].as_array().into_iter().flatten() {
            if v.get("downwardAPI").is_some() {
                project_annotations(&self.volume(v["name"].as_str().unwrap()), generation, pod);
            }
        }
    }

    /// The container called `name`, among init and app containers.
    pub fn container(&self, name: &str) -> Value {
        container(&self.pod, name).clone()
    }

    /// What `container` reads at `path`.
    pub fn read(&self, container: &str, path: &str) -> String {
        let c = self.container(container);
        super::cli::read(self.host_path(&c, path).unwrap())
    }

    /// Where `path`, as `container` sees it, is on the host (through its volumeMounts; the
    /// longest mountPath wins, subPath honoured).
    pub fn host_path(&self, container: &Value, path: &str) -> Option<PathBuf> {
        let mounts = container["volumeMounts"].as_array()?;
        let best = mounts
            .iter()
            .filter(|m| {
                let mp = m["mountPath"].as_str().unwrap();
                path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')))
            })
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())?;
        let mp = best["mountPath"].as_str().unwrap();
        let mut host = self.volume(best["name"].as_str().unwrap());
        if let Some(sub) = best["subPath"].as_str() {
            host = host.join(sub);
        }
        let rest = path[mp.len()..].trim_start_matches('/');
        Some(if rest.is_empty() {
            host
        } else {
            host.join(rest)
        })
    }

    /// A command-line argument with every container path in it mapped to the host.
    fn map_arg(&self, container: &Value, arg: &str) -> String {
        let mut mounts: Vec<&str> = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        // NAME=PATH (e.g. --volume) and plain paths.
        let (prefix, value) = match arg.split_once('=') {
            Some((p, v)) if v.starts_with('/') => (format!("{p}="), v),
            _ => (String::new(), arg),
        };
        for m in mounts {
            if value == m || value.starts_with(&format!("{m}/")) {
                let host = self.host_path(container, value).unwrap();
                return format!("{prefix}{}", host.display());
            }
        }
        arg.to_string()
    }

    /// The container's args (or the given list), mapped.
    pub fn args(&self, container: &Value, list: &Value) -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|a| self.map_arg(container, a.as_str().unwrap()))
            .collect()
    }

    /// The container's `env`, values that are container paths mapped like args.
    pub fn env(&self, container: &Value) -> Vec<(String, String)> {
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let k = e["name"].as_str().unwrap();
                // The downward API's fields a test can know.
                let field = e
                    .pointer("/valueFrom/fieldRef/fieldPath")
                    .and_then(Value::as_str);
                let v = match field {
                    Some("metadata.namespace") => self.namespace.as_str(),
                    Some("status.podIP") => POD_IP,
                    Some("status.hostIP") => HOST_IP,
                    Some(other) => panic!("fieldRef {other} is not laid out by the stand-in"),
                    None => e["value"].as_str().unwrap_or(""),
                };
                (k.to_string(), self.map_arg(container, v))
            })
            .collect()
    }

    /// Runs the container to completion (an init container), as its args and env say.
    pub fn run(&self, name: &str) -> Run {
        let c = self.container(name);
        let args = self.args(&c, &c["args"]);
        let env = self.env(&c);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        secretdrop(&args, &env)
    }

    /// Starts the container (a sidecar), logging to `log`; killed with the test process.
    pub fn start(&self, name: &str, log: &Path) -> Running {
        self.start_with_env(name, log, &[])
    }

    /// [`Kubelet::start`] with environment variables added to the container's, as a pod
    /// author would add them to the spec (e.g. `SECRETDROP_LISTEN`).
    pub fn start_with_env(&self, name: &str, log: &Path, extra: &[(&str, &str)]) -> Running {
        let c = self.container(name);
        let mut cmd = Command::new(bin());
        scrub_env(&mut cmd);
        let file = std::fs::File::create(log).unwrap();
        cmd.args(self.args(&c, &c["args"]))
            .envs(self.env(&c))
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        Running {
            child: spawn_tied_to_process(cmd).expect("start the container"),
            log: log.to_path_buf(),
        }
    }

    /// Runs the container's startupProbe command once (its first word is the binary).
    pub fn probe(&self, name: &str) -> Run {
        let c = self.container(name);
        let cmd = self.args(&c, &c["startupProbe"]["exec"]["command"]);
        let args: Vec<&str> = cmd[1..].iter().map(String::as_str).collect();
        secretdrop(&args, &[])
    }

    /// Probes until it passes (as kubelet does before starting the app), or panics.
    pub fn wait_started(&self, name: &str, running: &Running, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.probe(name);
            if run.code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "startupProbe never passed: {}\n{}",
                run.stderr,
                super::cli::read(&running.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The entry called `name` of a JSON list (volumes, containers, mounts).
pub fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} in {list}"))
}

/// The container named `name` among the init and app containers of `pod`.
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod["spec"][f].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// Writes the downward-API annotations file of `pod` into `dir` as generation `generation`
/// ([`project_file`]), values quoted like Go's strconv.Quote (JSON escaping agrees for these
/// characters).
pub fn project_annotations(dir: &Path, generation: u32, pod: &Value) {
    let mut lines: Vec<String> = pod["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                serde_json::to_string(v.as_str().unwrap()).unwrap()
            )
        })
        .collect();
    lines.sort();
    project_file(dir, generation, "annotations", &lines.join("\n"));
}

/// Writes `text` as the file `name` of a projected volume in `dir`, generation `generation`,
/// the way kubelet's atomic writer lays it out: `NAME -> ..data/NAME`, `..data -> ..vN`
/// swapped atomically. Returns the path of `NAME`.
pub fn project_file(dir: &Path, generation: u32, name: &str, text: &str) -> PathBuf {
    let version = dir.join(format!("..v{generation}"));
    std::fs::create_dir_all(&version).unwrap();
    std::fs::write(version.join(name), text).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..v{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join(name);
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
    }
    link
}

/// Fills a configMap volume's directory from `maps`: the volume's items (key → path), or every
/// key when it lists none. Panics, as kubelet would not start the pod, when the ConfigMap or
/// a listed key does not exist (unless the volume is `optional`).
fn fill_config_map(dir: &Path, volume: &Value, maps: &ConfigMaps) {
    let name = volume["name"].as_str().unwrap();
    let Some(data) = maps.get(name) else {
        assert!(
            volume["optional"] == true,
            "configmap {name:?} not found: kubelet would not start the pod"
        );
        return;
    };
    let items: Vec<(&str, &str)> = match volume["items"].as_array() {
        Some(items) => items
            .iter()
            .map(|i| (i["key"].as_str().unwrap(), i["path"].as_str().unwrap()))
            .collect(),
        None => data.keys().map(|k| (*k, *k)).collect(),
    };
    for (key, path) in items {
        let text = data
            .get(key)
            .unwrap_or_else(|| panic!("configmap {name:?} has no key {key:?}"));
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
}

/// A container process started by [`Kubelet::start`]; killed when dropped.
pub struct Running {
    child: Child,
    pub log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
