//! The scene every GCP integration test starts from (tests/gcp.rs, tests/gcp_refusals.rs): the
//! Google stand-in ([`super::gcp::Google`]), an empty output directory, the pod's identity in
//! one of the ways a pod gets one, and secretdrop run inside the stand-in's namespaces.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::cli::Run;
use super::gcp::{may_unshare, Federation, Google, LOCATION, METADATA_PORT, PROJECT_ID};
use super::resident::Resident;
use super::TestDir;

pub const READER: &str = "reader@secretdrop-test.iam.gserviceaccount.com";

pub struct Scene {
    pub dir: TestDir,
    pub g: Google,
    pub out: PathBuf,
}

/// A stand-in and an empty output dir; None (the test skips) where namespaces are not allowed.
pub fn scene() -> Option<Scene> {
    if let Err(why) = may_unshare() {
        eprintln!("SKIPPED: network namespaces are not permitted here ({why})");
        return None;
    }
    let dir = TestDir::new();
    let g = Google::start(&dir.join("google"));
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    Some(Scene { dir, g, out })
}

/// How the pod gets its token.
#[derive(Clone, Copy, Debug)]
pub enum Identity {
    /// external_account, impersonating READER.
    Impersonating,
    /// external_account, the federated principal itself.
    Federated,
    /// The metadata server at its default address.
    Metadata,
    /// The metadata server at GCE_METADATA_HOST.
    MetadataHost,
}

impl Scene {
    /// The pod's environment for `how`, its identity allowed to read the whole project.
    pub fn identity(&self, how: Identity) -> (Vec<(String, String)>, Option<Federation>) {
        match how {
            Identity::Impersonating | Identity::Federated => {
                let imp = matches!(how, Identity::Impersonating);
                let fed = self
                    .g
                    .federation(self.dir.path(), "app", imp.then_some(READER));
                if imp {
                    self.g.admin(json!({"op": "workload_identity_user", "service_account": READER, "member": fed.principal}));
                    self.g.grant_project(&format!("serviceAccount:{READER}"));
                } else {
                    self.g.grant_project(&fed.principal);
                }
                (fed.env.clone(), Some(fed))
            }
            Identity::Metadata | Identity::MetadataHost => {
                self.g.metadata_identity(READER);
                self.g.grant_project(&format!("serviceAccount:{READER}"));
                let env = match how {
                    Identity::MetadataHost => vec![(
                        "GCE_METADATA_HOST".to_string(),
                        format!("127.0.0.1:{METADATA_PORT}"),
                    )],
                    _ => Vec::new(),
                };
                (env, None)
            }
        }
    }

    /// A fixture of tests/fixtures/gcp with the e2e suite's variables replaced as text (and the
    /// CSI driver's: `envsubst` of RESOURCE_NAME, FILE_NAME defaulting to `secret`).
    pub fn class(&self, fixture: &str, secret_id: &str) -> PathBuf {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/gcp")
                .join(fixture),
        )
        .unwrap();
        let text = text
            .replace("$PROJECT_ID", PROJECT_ID)
            .replace("$TEST_SECRET_ID", secret_id)
            .replace("$LOCATION_ID", LOCATION)
            .replace(
                "$RESOURCE_NAME",
                &format!("projects/{PROJECT_ID}/secrets/{secret_id}/versions/latest"),
            )
            .replace("$FILE_NAME", "secret");
        super::cli::write(self.dir.path(), fixture, &text)
    }

    pub fn init(&self, config: &Path, env: &[(String, String)], extra: &[&str]) -> Run {
        let mut args = vec![
            "init",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            self.out.to_str().unwrap(),
        ];
        args.extend(extra);
        self.g.secretdrop(&args, env)
    }

    pub fn sidecar(&self, config: &Path, env: &[(String, String)], args: &[&str]) -> Resident {
        let log = self.dir.join(format!("sidecar-{}.log", super::unique("s")));
        Resident::start_with(config, &self.out, &log, args, |cmd| {
            for (k, _) in std::env::vars() {
                if k.starts_with("GOOGLE_") || k.starts_with("GCE_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("SSL_CERT_FILE", &self.g.ca);
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            self.g.enter(cmd);
        })
    }

    /// Nothing that should stay secret in `text`: access tokens issued, the subject token.
    pub fn assert_no_secret(&self, text: &str, fed: Option<&Federation>, values: &[&str]) {
        for t in self.g.tokens() {
            assert!(!text.contains(&t), "an access token in the output:\n{text}");
        }
        assert!(!text.contains("ya29."), "{text}");
        if let Some(f) = fed {
            assert!(
                !text.contains(&f.token),
                "the subject token in the output:\n{text}"
            );
            assert!(!text.contains("eyJ"), "a JWT in the output:\n{text}");
        }
        for v in values {
            assert!(!text.contains(v), "a secret value in the output:\n{text}");
        }
    }
}

/// The number logged as `KEY=N` (init's `gcp_requests`, `token_exchanges`).
pub fn logged(stderr: &str, key: &str) -> Option<u64> {
    let at = stderr.find(&format!("{key}="))? + key.len() + 1;
    stderr[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
