//! A pod in a test: a service account allowed by a Vault role, its projected token in a file,
//! and a directory for config and output. Each pod gets unique names, so tests run in parallel
//! against one shared OpenBao. Helpers take any [`Server`]: the shared dev [`super::Bao`] or a
//! [`super::server::PersistentBao`].

use std::path::{Path, PathBuf};

use std::time::Duration;

use super::cli::{init, write, Run};
use super::resident::Resident;
use super::{enable_kubernetes_auth, free_port, unique, SaClaims, Server, TestDir, TokenReviewer};

/// The kubernetes auth mount the shared pods log in through.
pub const AUTH_MOUNT: &str = "kubernetes";

pub struct Pod {
    pub dir: TestDir,
    pub role: String,
    pub service_account: String,
    pub token: String,
    pub token_path: PathBuf,
}

impl Pod {
    /// A pod whose service account may log in as a fresh role holding `policy_hcl`.
    pub fn with_policy(bao: &impl Server, policy_hcl: &str) -> Pod {
        Pod::with_policy_ttl(bao, policy_hcl, "20m")
    }

    /// [`Pod::with_policy`] whose logins get tokens of `ttl` (e.g. `24s`), for tests that need
    /// token renewals to happen while they watch.
    pub fn with_policy_ttl(bao: &impl Server, policy_hcl: &str, ttl: &str) -> Pod {
        enable_kubernetes_auth(bao, AUTH_MOUNT);
        let role = unique("role");
        let service_account = unique("sa");
        let policy = unique("policy");
        bao.cli_stdin(&["policy", "write", &policy, "-"], policy_hcl);
        bao.cli(&[
            "write",
            &format!("auth/{AUTH_MOUNT}/role/{role}"),
            &format!("bound_service_account_names={service_account}"),
            "bound_service_account_namespaces=default",
            &format!("policies={policy}"),
            &format!("ttl={ttl}"),
        ]);
        let dir = TestDir::new();
        let token = TokenReviewer::shared().mint(&SaClaims::new("default", &service_account));
        let token_path = write(dir.path(), "token", &token);
        Pod {
            dir,
            role,
            service_account,
            token,
            token_path,
        }
    }

    /// A pod that may read the KV v2 secret `secret/<path>` and nothing else.
    pub fn reading(bao: &impl Server, path: &str) -> Pod {
        Pod::with_policy(
            bao,
            &format!("path \"secret/data/{path}\" {{ capabilities = [\"read\"] }}\n"),
        )
    }

    /// The output directory used by [`Pod::init`].
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Writes `config` and runs `secretdrop init` into [`Pod::out`] with extra flags.
    pub fn init(&self, config: &str, extra: &[&str]) -> Run {
        let cfg = write(
            self.dir.path(),
            &format!("{}.yaml", unique("config")),
            config,
        );
        self.init_file(&cfg, &self.out(), extra)
    }

    pub fn init_file(&self, config: &Path, out: &Path, extra: &[&str]) -> Run {
        init(config, out, Some(&self.token_path), extra)
    }

    /// Writes `config` and starts `secretdrop sidecar` for this pod, waiting for its first render.
    pub fn sidecar(&self, config: &str, extra: &[&str]) -> Resident {
        let cfg = write(
            self.dir.path(),
            &format!("{}.yaml", unique("sidecar")),
            config,
        );
        self.sidecar_file(&cfg, extra)
    }

    /// `secretdrop sidecar --config CONFIG` with this pod's token and output directory and
    /// `--listen` on a free port, logging to `sidecar.log`; waits for the first render.
    pub fn sidecar_file(&self, config: &Path, extra: &[&str]) -> Resident {
        self.sidecar_file_with(config, extra, |_| {})
    }

    /// [`Pod::sidecar_file`] with the command adjusted first (see [`Resident::start_with`]).
    pub fn sidecar_file_with(
        &self,
        config: &Path,
        extra: &[&str],
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> Resident {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--token-path",
            self.token_path.to_str().unwrap(),
            "--listen",
            &listen,
        ];
        args.extend_from_slice(extra);
        let log = self.dir.join("sidecar.log");
        let mut r = Resident::start_with(config, &self.out(), &log, &args, adjust);
        r.wait_ready(Duration::from_secs(20));
        r
    }

    /// A SecretProviderClass for this pod's role with the given `objects` YAML lines.
    pub fn spc(&self, bao: &impl Server, objects: &str) -> String {
        spc_text(&bao.addr(), &self.role, objects)
    }

    /// A native config header (vault address, kubernetes auth as this pod's role).
    pub fn native(&self, bao: &impl Server, rest: &str) -> String {
        format!(
            "apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nvault:\n  address: {}\nauth:\n  method: kubernetes\n  role: {}\n{rest}",
            bao.addr(),
            self.role
        )
    }
}

/// A SecretProviderClass with `objects` given as YAML list lines (indented by the caller or not).
pub fn spc_text(addr: &str, role: &str, objects: &str) -> String {
    let indented: String = objects.lines().map(|l| format!("      {l}\n")).collect();
    format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: test\nspec:\n  provider: vault\n  parameters:\n    roleName: {role}\n    vaultAddress: {addr}\n    objects: |\n{indented}"
    )
}
