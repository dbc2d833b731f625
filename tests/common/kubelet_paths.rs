//! A Kubelet stand-in for injected pods: what kubelet provides to the injected container, on the
//! test's disk — the downward-API annotations file (`annotations -> ..data/annotations`,
//! `..data` swapped on change), the projected token, the secrets volume, secretdrop's state
//! volume and the Vault CA ConfigMap volume — and the container's args and env with container
//! paths turned into these ([`Kubelet::map`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cli::{secretdrop, write, Run};

pub struct Kubelet {
    pub podinfo: PathBuf,
    pub token_dir: PathBuf,
    pub volume: PathBuf,
    pub state: PathBuf,
    pub ca: PathBuf,
}

impl Kubelet {
    pub fn new(dir: &Path, token: &str) -> Kubelet {
        let k = Kubelet {
            podinfo: dir.join("podinfo"),
            token_dir: dir.join("projected-token"),
            volume: dir.join("secrets-volume"),
            state: dir.join("state-volume"),
            ca: dir.join("ca-volume"),
        };
        std::fs::create_dir_all(&k.token_dir).unwrap();
        write(&k.token_dir, "token", token);
        k
    }

    /// Writes the pod's annotations as generation `generation` of the downward-API volume,
    /// values quoted like Go's strconv.Quote (JSON escaping agrees for these characters).
    pub fn project(&self, generation: u32, pod: &Value) {
        let mut lines: Vec<String> = pod["metadata"]["annotations"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    serde_json::to_string(v.as_str().unwrap()).unwrap()
                )
            })
            .collect();
        lines.sort();
        let version = self.podinfo.join(format!("..v{generation}"));
        std::fs::create_dir_all(&version).unwrap();
        std::fs::write(version.join("annotations"), lines.join("\n")).unwrap();
        let tmp = self.podinfo.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..v{generation}"), &tmp).unwrap();
        std::fs::rename(&tmp, self.podinfo.join("..data")).unwrap();
        let link = self.podinfo.join("annotations");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("..data/annotations", &link).unwrap();
        }
    }

    /// Fills the pod's `secretdrop-ca` ConfigMap volume from `maps` (name → key → text), the
    /// items as the volume lists them; panics, as kubelet would refuse to start the pod, when
    /// the ConfigMap or key does not exist.
    pub fn config_maps(&self, pod: &Value, maps: &BTreeMap<&str, BTreeMap<&str, &str>>) {
        let volume = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "secretdrop-ca")
            .expect("no secretdrop-ca volume");
        let name = volume["configMap"]["name"].as_str().unwrap();
        let data = maps
            .get(name)
            .unwrap_or_else(|| panic!("configmap {name:?} not found"));
        std::fs::create_dir_all(&self.ca).unwrap();
        for item in volume["configMap"]["items"].as_array().unwrap() {
            let key = item["key"].as_str().unwrap();
            let text = data
                .get(key)
                .unwrap_or_else(|| panic!("configmap {name:?} has no key {key:?}"));
            write(&self.ca, item["path"].as_str().unwrap(), text);
        }
    }

    /// A container path as the test's disk has it.
    pub fn map(&self, arg: &Value) -> String {
        let mut s = arg.as_str().unwrap().to_string();
        // Longest first: /etc/secretdrop is a prefix of /etc/secretdrop-ca.
        for (from, to) in [
            ("/etc/secretdrop-ca", &self.ca),
            ("/etc/secretdrop", &self.podinfo),
            ("/var/run/secrets/secretdrop", &self.token_dir),
            ("/mnt/secretdrop", &self.volume),
            ("/var/run/secretdrop-state", &self.state),
        ] {
            s = s.replace(from, to.to_str().unwrap());
        }
        s
    }

    pub fn args(&self, list: &Value) -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|a| self.map(a))
            .collect()
    }

    /// The container's `env`, values mapped like paths.
    pub fn env(&self, container: &Value) -> Vec<(String, String)> {
        container["env"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_string(),
                    self.map(&e["value"]),
                )
            })
            .collect()
    }

    /// Runs a run-to-completion container (`secretdrop init`) with its args and env.
    pub fn run(&self, container: &Value) -> Run {
        let args = self.args(&container["args"]);
        let env = self.env(container);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        secretdrop(&args, &env)
    }
}

/// The names of a pod's containers of one kind (`initContainers`, `containers`).
pub fn names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The container named `name` among init and app containers.
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod["spec"][f].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}
