//! `provider: gcp` end to end against the Google stand-in (tests/gcp/standin.py, validated by
//! tests/gcp_standin.rs) at Google's real host names inside a network namespace: the GCP
//! provider's e2e classes and the CSI driver's under Workload Identity Federation (with and
//! without impersonation) and the metadata server, rotation through the sidecar, the token kept
//! across processes, refusals, and hostile answers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cli::{assert_layout, current_version, mode_of, read, Run};
use common::gcp::{may_unshare, Federation, Google, LOCATION, METADATA_PORT, PROJECT_ID};
use common::resident::Resident;
use common::TestDir;
use serde_json::json;

const READER: &str = "reader@secretdrop-test.iam.gserviceaccount.com";

struct Scene {
    dir: TestDir,
    g: Google,
    out: PathBuf,
}

/// A stand-in and an empty output dir; None (the test skips) where namespaces are not allowed.
fn scene() -> Option<Scene> {
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
enum Identity {
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
    fn identity(&self, how: Identity) -> (Vec<(String, String)>, Option<Federation>) {
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
    fn class(&self, fixture: &str, secret_id: &str) -> PathBuf {
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
        common::cli::write(self.dir.path(), fixture, &text)
    }

    fn init(&self, config: &Path, env: &[(String, String)], extra: &[&str]) -> Run {
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

    fn sidecar(&self, config: &Path, env: &[(String, String)], args: &[&str]) -> Resident {
        let log = self
            .dir
            .join(format!("sidecar-{}.log", common::unique("s")));
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
    fn assert_no_secret(&self, text: &str, fed: Option<&Federation>, values: &[&str]) {
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

fn logged(stderr: &str, key: &str) -> Option<u64> {
    let at = stderr.find(&format!("{key}="))? + key.len() + 1;
    stderr[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The e2e suite's secrets for `id` (setupSmTestSuite and the extract, rotate and load tests).
fn create_e2e_secrets(g: &Google, id: &str) {
    g.add_version(None, id, id.as_bytes());
    g.add_version(Some(LOCATION), id, format!("{id}-regional").as_bytes());
    g.add_version(
        None,
        &format!("{id}-extract"),
        br#"{"user":"admin", "password":"password@1234"}"#,
    );
    for i in 1..=50 {
        g.add_version(
            None,
            &format!("{id}-{i}"),
            format!("value-{i}\n").as_bytes(),
        );
    }
}

fn e2e_classes_render_byte_for_byte(how: Identity) {
    let Some(s) = scene() else { return };
    let (env, fed) = s.identity(how);
    let id = "testsecret-1234";
    create_e2e_secrets(&s.g, id);
    let mut all_output = String::new();
    let check = |fixture: &str, files: &[(&str, &[u8], u32)], reads: u64| {
        let config = s.class(fixture, id);
        let _ = std::fs::remove_dir_all(&s.out);
        std::fs::create_dir(&s.out).unwrap();
        let (sts, iam, meta, access) = (
            s.g.count("sts"),
            s.g.count("iam"),
            s.g.count("metadata_token"),
            s.g.count("access"),
        );
        let r = s.init(&config, &env, &[]);
        r.expect_code(0);
        // The top level holds a link per first path element, as the kubelet's writer makes.
        let mut names: Vec<&str> = files
            .iter()
            .map(|(n, _, _)| n.split('/').next().unwrap())
            .collect();
        names.dedup();
        assert_layout(&s.out, &names);
        for (name, content, mode) in files {
            assert_eq!(
                std::fs::read(s.out.join(name)).unwrap(),
                *content,
                "{fixture}: {name}"
            );
            assert_eq!(mode_of(s.out.join(name)), *mode, "{fixture}: {name}");
        }
        // One token per process, one request per version.
        let exchanges = s.g.count("sts") - sts + s.g.count("metadata_token") - meta;
        assert_eq!(exchanges, 1, "{fixture} ({how:?}): one token exchange");
        let impersonations = s.g.count("iam") - iam;
        assert_eq!(
            impersonations,
            u64::from(matches!(how, Identity::Impersonating))
        );
        assert_eq!(
            s.g.count("access") - access,
            reads,
            "{fixture}: one GET per version"
        );
        assert_eq!(
            logged(&r.stderr, "gcp_requests"),
            Some(reads),
            "{}",
            r.stderr
        );
        assert_eq!(
            logged(&r.stderr, "token_exchanges"),
            Some(1),
            "{}",
            r.stderr
        );
        r.stdout.clone() + &r.stderr
    };
    let regional = format!("{id}-regional");
    all_output += &check(
        "test-pod.yaml",
        &[
            (id, id.as_bytes(), 0o644),
            (&regional, regional.as_bytes(), 0o644),
        ],
        2,
    );
    all_output += &check(
        "test-mode.yaml",
        &[
            (id, id.as_bytes(), 0o400),
            (&regional, regional.as_bytes(), 0o400),
        ],
        2,
    );
    let nested = format!("my/nested/path/{id}");
    all_output += &check("test-nested.yaml", &[(&nested, id.as_bytes(), 0o644)], 1);
    all_output += &check("test-extract-key.yaml", &[("extract", b"admin", 0o644)], 1);
    let many: Vec<(String, Vec<u8>)> = (1..=50)
        .map(|i| (format!("secret-{i}"), format!("value-{i}\n").into_bytes()))
        .collect();
    let many_files: Vec<(&str, &[u8], u32)> = many
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice(), 0o644))
        .collect();
    all_output += &check("load-many-secrets.yaml", &many_files, 50);
    // The CSI driver's own class (auth: provider-adc).
    all_output += &check(
        "gcp_v1_secretproviderclass.yaml",
        &[("secret", id.as_bytes(), 0o644)],
        1,
    );
    s.assert_no_secret(&all_output, fed.as_ref(), &["password@1234"]);
}

#[test]
fn e2e_classes_under_federation_with_impersonation() {
    e2e_classes_render_byte_for_byte(Identity::Impersonating);
}

#[test]
fn e2e_classes_under_federation_as_the_federated_principal() {
    e2e_classes_render_byte_for_byte(Identity::Federated);
}

#[test]
fn e2e_classes_under_the_metadata_server() {
    e2e_classes_render_byte_for_byte(Identity::Metadata);
}

#[test]
fn e2e_classes_under_the_metadata_server_at_gce_metadata_host() {
    e2e_classes_render_byte_for_byte(Identity::MetadataHost);
}

#[test]
fn the_sidecar_rotates_latest_versions_with_one_token_and_a_restart_adopts_it() {
    let Some(s) = scene() else { return };
    let (env, fed) = s.identity(Identity::Impersonating);
    let id = "testsecret-rot";
    let rotate = format!("{id}-rotate");
    s.g.add_version(None, &rotate, b"secreta");
    s.g.add_version(Some(LOCATION), &rotate, b"secreta");
    // A pinned version next to the fixture's two `latest` ones: it never changes.
    let config = s.class("test-rotate.yaml", id);
    let pinned = format!(
        "      - resourceName: \"projects/{PROJECT_ID}/secrets/{rotate}/versions/1\"\n        path: pinned\n"
    );
    std::fs::write(&config, read(&config) + &pinned).unwrap();
    let state = s.dir.join("state");
    let state_arg = state.to_str().unwrap().to_string();
    let first = s.init(&config, &env, &["--state-dir", &state_arg]);
    first.expect_code(0);
    assert_eq!(s.g.count("sts"), 1);
    let recorded = state.join("state.json");
    assert_eq!(mode_of(&recorded), 0o600, "the state file holds a token");

    // The sidecar after init: the recorded token, no exchange.
    let mut sidecar = s.sidecar(
        &config,
        &env,
        &["--poll-interval", "1s", "--state-dir", &state_arg],
    );
    sidecar.wait_ready(Duration::from_secs(20));
    assert!(
        sidecar
            .log_text()
            .contains("adopted the recorded Google access token"),
        "{}",
        sidecar.log_text()
    );
    let version = current_version(&s.out);
    let polls_before = s.g.count("access");
    assert!(
        sidecar.eventually(Duration::from_secs(10), || s.g.count("access")
            >= polls_before + 6)
    );
    assert_eq!(
        current_version(&s.out),
        version,
        "an unchanged store wrote a new version"
    );
    assert_eq!(
        s.g.count("sts"),
        1,
        "the sidecar exchanged a token per poll"
    );
    assert_eq!(s.g.count("iam"), 1);

    s.g.add_version(None, &rotate, b"secretb");
    s.g.add_version(Some(LOCATION), &rotate, b"secretb");
    assert!(
        sidecar.eventually(Duration::from_secs(15), || read(s.out.join("rotate"))
            == "secretb"
            && read(s.out.join("regional-rotate")) == "secretb"),
        "rotation never arrived:\n{}",
        sidecar.log_text()
    );
    assert_eq!(
        read(s.out.join("pinned")),
        "secreta",
        "a pinned version never changes"
    );
    let log = sidecar.log_text();
    assert!(log.contains("committed a new version"), "{log}");
    let (code, _) = sidecar.stop();
    assert_eq!(code, Some(0));

    // A restarted sidecar: still no exchange.
    let mut again = s.sidecar(
        &config,
        &env,
        &["--poll-interval", "1s", "--state-dir", &state_arg],
    );
    again.wait_ready(Duration::from_secs(20));
    assert_eq!(s.g.count("sts"), 1, "{}", again.log_text());
    let log2 = again.log_text();
    again.stop();
    s.assert_no_secret(
        &(first.stderr + &log + &log2),
        fed.as_ref(),
        &["secreta", "secretb"],
    );

    // A rotation that fails part-way (the new latest disabled) leaves every file in place.
    let mut third = s.sidecar(
        &config,
        &env,
        &["--poll-interval", "1s", "--state-dir", &state_arg],
    );
    third.wait_ready(Duration::from_secs(20));
    let before = common::cli::tree(&s.out);
    s.g.add_version(Some(LOCATION), &rotate, b"secretc");
    s.g.add_version(None, &rotate, b"secretc");
    s.g.admin(json!({"op": "set_state", "secret": rotate, "version": 3, "state": "DISABLED"}));
    assert!(
        third.eventually(Duration::from_secs(15), || third
            .log_text()
            .contains("FAILED_PRECONDITION")),
        "{}",
        third.log_text()
    );
    assert_eq!(
        common::cli::tree(&s.out),
        before,
        "a partial rotation touched the files"
    );
    third.stop();
}

#[test]
fn refusals_name_the_resource_exit_1_promptly_and_write_nothing() {
    let Some(s) = scene() else { return };
    let (env, fed) = s.identity(Identity::Impersonating);
    s.g.add_version(None, "granted", b"fine");
    // Denied: the identity may read the project, but not another one's secret... the stand-in
    // grants per project, so use a project the identity has no role on.
    let cases: Vec<(String, &[&str])> = vec![
        (
            "projects/other-project/secrets/x/versions/latest".into(),
            &[
                "PERMISSION_DENIED (HTTP 403)",
                "projects/other-project/secrets/x/versions/latest",
                "secretAccessor",
            ],
        ),
        (
            format!("projects/{PROJECT_ID}/secrets/absent/versions/latest"),
            &["NOT_FOUND (HTTP 404)", "not found or has no versions"],
        ),
        (
            format!("projects/{PROJECT_ID}/secrets/granted/versions/7"),
            &[
                "NOT_FOUND",
                "Secret Version [projects/123456789012/secrets/granted/versions/7] not found.",
            ],
        ),
    ];
    for (resource, says) in cases {
        let config = common::cli::write(s.dir.path(), "bad.yaml", &format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: x}}\nspec:\n  provider: gcp\n  parameters:\n    secrets: |\n      - resourceName: projects/{PROJECT_ID}/secrets/granted/versions/latest\n        path: ok\n      - resourceName: {resource}\n        path: bad\n"));
        let started = Instant::now();
        let r = s.init(&config, &env, &["--timeout", "60s"]);
        eprintln!("{}", r.stderr);
        r.expect_code(1)
            .expect_stderr(says)
            .expect_stderr(&["file \"bad\"", READER]);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not prompt: {:?}",
            started.elapsed()
        );
        assert!(
            common::cli::tree(&s.out).is_empty(),
            "something was written for {resource}"
        );
        s.assert_no_secret(&r.stderr, fed.as_ref(), &["fine"]);
    }
    // A disabled version.
    s.g.admin(json!({"op": "set_state", "secret": "granted", "version": 1, "state": "DISABLED"}));
    let config = s.class("test-pod.yaml", "granted");
    let r = s.init(&config, &env, &["--timeout", "60s"]);
    r.expect_code(1)
        .expect_stderr(&["FAILED_PRECONDITION", "is in DISABLED state"]);

    // STS refuses a token for another audience: its OAuth error, at once.
    let f = fed.unwrap();
    let wrong = s.g.admin(json!({"op": "mint", "sub": "system:serviceaccount:default:app", "aud": ["https://elsewhere.example"]}));
    std::fs::write(&f.token_file, wrong["token"].as_str().unwrap()).unwrap();
    let started = Instant::now();
    let r = s.init(&config, &env, &["--timeout", "60s"]);
    r.expect_code(1).expect_stderr(&[
        "invalid_grant",
        "does not match the expected audience",
        "sts.googleapis.com",
    ]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!r.stderr.contains(wrong["token"].as_str().unwrap()));

    // The federated principal may not impersonate another account: iamCredentials' 403.
    let other = s.g.federation(
        &s.dir.join("."),
        "app",
        Some("other@secretdrop-test.iam.gserviceaccount.com"),
    );
    let r = s.init(&config, &other.env, &["--timeout", "60s"]);
    r.expect_code(1)
        .expect_stderr(&["iam.serviceAccounts.getAccessToken", "workloadIdentityUser"]);
    assert!(common::cli::tree(&s.out).is_empty());
    s.assert_no_secret(&r.stderr, Some(&other), &[]);
}

#[test]
fn bad_classes_and_credentials_exit_2_before_anything_is_sent() {
    let Some(s) = scene() else { return };
    let (env, _) = s.identity(Identity::Metadata);
    let r = s.init(&s.class("test-invalid.yaml", "x"), &env, &[]);
    r.expect_code(2).expect_stderr(&[
        "invalid path: must not contain '..': my/invalid/../path/x",
        "secrets[0].path",
    ]);
    let write = |secrets: &str, extra: &str| {
        common::cli::write(s.dir.path(), "c.yaml", &format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: x}}\nspec:\n  provider: gcp\n  parameters:\n{extra}    secrets: |\n{secrets}"))
    };
    let g = format!("      - resourceName: projects/{PROJECT_ID}/secrets/s/versions/latest\n");
    for (secrets, extra, says) in [
        (format!("{g}        path: a\n        mode: \"0400\"\n"), "", "quoted string"),
        (format!("{g}        path: a\n"), "    auth: node-publish-secret\n", "unknown auth configuration"),
        (format!("{g}        path: /etc/passwd\n"), "", "absolute"),
        ("      - resourceName: projects/p/locations/x.evil/secrets/s/versions/1\n        path: a\n".to_string(), "", "not a Google Cloud location"),
    ] {
        let r = s.init(&write(&secrets, extra), &env, &[]);
        r.expect_code(2).expect_stderr(&[says]);
    }
    // A key file is not how a pod authenticates here.
    let key = common::cli::write(
        s.dir.path(),
        "key.json",
        r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}"#,
    );
    let r = s.init(
        &write(&format!("{g}        path: a\n"), ""),
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS".into(),
            key.display().to_string(),
        )],
        &[],
    );
    r.expect_code(2).expect_stderr(&[
        "type \"service_account\" is not supported",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ]);
    assert!(!r.stderr.contains("BEGIN PRIVATE KEY"));
    assert!(common::cli::tree(&s.out).is_empty());
    assert_eq!(
        s.g.count("access") + s.g.count("metadata_token"),
        0,
        "a request was sent"
    );
}

#[test]
fn hostile_answers_are_bounded_and_the_token_never_leaves_google() {
    let Some(s) = scene() else { return };
    let (env, fed) = s.identity(Identity::Federated);
    s.g.add_version(None, "h", b"hostile-test-value");
    let config = common::cli::write(s.dir.path(), "h.yaml", &format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: x}}\nspec:\n  provider: gcp\n  parameters:\n    secrets: |\n      - resourceName: projects/{PROJECT_ID}/secrets/h/versions/latest\n        path: h\n"));
    let mut outputs = String::new();
    // A redirect to another origin: not followed, so the token stays home.
    s.g.misbehave(
        "access",
        json!({"mode": "redirect", "location": "https://attacker.example/v1/steal"}),
    );
    let r = s.init(&config, &env, &["--timeout", "20s"]);
    r.expect_code(1).expect_stderr(&["HTTP 302"]);
    assert_eq!(s.g.count("attacker"), 0, "the redirect was followed");
    outputs += &r.stderr;
    // A huge answer (no length announced): refused at the bound, promptly.
    s.g.misbehave("access", json!({"mode": "huge"}));
    let started = Instant::now();
    let r = s.init(&config, &env, &["--timeout", "20s"]);
    r.expect_code(1)
        .expect_stderr(&["larger than 262144 bytes"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    outputs += &r.stderr;
    // A body that never ends: bounded by --timeout.
    s.g.misbehave("access", json!({"mode": "slow"}));
    let started = Instant::now();
    let r = s.init(&config, &env, &["--timeout", "4s"]);
    r.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    outputs += &r.stderr;
    s.g.misbehave("access", json!({"mode": null}));
    // A payload whose checksum does not match: refused.
    s.g.admin(json!({"op": "misbehave", "target": "crc", "mode": "bad"}));
    let r = s.init(&config, &env, &["--timeout", "20s"]);
    r.expect_code(1)
        .expect_stderr(&["DATA_CORRUPTED", "CRC32C"]);
    outputs += &r.stderr;
    s.g.admin(json!({"op": "misbehave", "target": "crc", "mode": null}));
    assert!(
        common::cli::tree(&s.out).is_empty(),
        "a hostile answer wrote something"
    );
    // Transient failures are retried; a 401 gets one new token.
    s.g.misbehave(
        "access",
        json!({"mode": "status", "status": 503, "times": 2}),
    );
    let r = s.init(&config, &env, &["--timeout", "20s"]);
    r.expect_code(0);
    assert_eq!(read(s.out.join("h")), "hostile-test-value");
    let sts = s.g.count("sts");
    s.g.misbehave(
        "access",
        json!({"mode": "status", "status": 401, "times": 1}),
    );
    let r = s.init(&config, &env, &["--timeout", "20s"]);
    r.expect_code(0);
    assert_eq!(
        s.g.count("sts"),
        sts + 2,
        "a fresh process, then one renewal after the 401"
    );
    outputs += &r.stderr;
    s.assert_no_secret(&outputs, fed.as_ref(), &["hostile-test-value"]);
}

#[test]
fn the_metadata_server_is_retried_while_it_starts_and_its_404_explained() {
    let Some(s) = scene() else { return };
    let (env, _) = s.identity(Identity::Metadata);
    s.g.add_version(None, "m", b"meta-value");
    let config = s.class("test-nested.yaml", "m");
    s.g.misbehave(
        "metadata",
        json!({"mode": "status", "status": 503, "times": 2}),
    );
    let r = s.init(&config, &env, &["--timeout", "20s"]);
    r.expect_code(0);
    assert_eq!(read(s.out.join("my/nested/path/m")), "meta-value");
    assert_eq!(s.g.count("metadata_token"), 3);
    s.g.admin(json!({"op": "metadata_identity", "identity": null}));
    let out2 = s.dir.join("out2");
    std::fs::create_dir(&out2).unwrap();
    let r = s.g.secretdrop(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            out2.to_str().unwrap(),
            "--timeout",
            "30s",
        ],
        &env,
    );
    r.expect_code(1)
        .expect_stderr(&["metadata server", "HTTP 404", "Workload Identity"]);
    assert!(r.elapsed < Duration::from_secs(10));
}

#[test]
fn check_prints_the_plan_without_a_request() {
    let Some(s) = scene() else { return };
    let config = s.class("test-mode.yaml", "c");
    let fed = s.g.federation(s.dir.path(), "app", Some(READER));
    let mut cmd = Command::new(common::cli::bin());
    cmd.env_remove("GCE_METADATA_HOST");
    let r = s.g.run(
        cmd,
        &["check", "--config", config.to_str().unwrap()],
        &fed.env,
    );
    r.expect_code(0);
    for want in [
        "gcp: Secret Manager, auth pod-adc",
        "Workload Identity Federation",
        "sts.googleapis.com",
        &format!("service account {READER} impersonated"),
        "requests per render: 2 AccessSecretVersion",
        &format!("c 0400 <- projects/{PROJECT_ID}/secrets/c/versions/latest at secretmanager.googleapis.com"),
        &format!("c-regional 0400 <- projects/{PROJECT_ID}/locations/{LOCATION}/secrets/c/versions/latest at secretmanager.{LOCATION}.rep.googleapis.com"),
    ] {
        assert!(r.stdout.contains(want), "{want:?} missing:\n{}", r.stdout);
    }
    let r =
        s.g.secretdrop(&["check", "--config", config.to_str().unwrap()], &[]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("credentials: the metadata server at http://169.254.169.254"),
        "{}",
        r.stdout
    );
    assert_eq!(
        s.g.count("sts") + s.g.count("access") + s.g.count("metadata_token"),
        0
    );
}

/// A class edited as a ConfigMap update lands live with the same token; two GCP volumes of one
/// pod, served by one sidecar with `--volume` flags, share one token.
#[test]
fn class_edits_reload_live_and_two_volumes_share_one_token() {
    let Some(s) = scene() else { return };
    let (env, _) = s.identity(Identity::Federated);
    s.g.add_version(None, "live-a", b"a-value");
    s.g.add_version(None, "live-b", b"b-value");
    let entry = |secret: &str| {
        format!("      - resourceName: projects/{PROJECT_ID}/secrets/{secret}/versions/latest\n        path: {secret}\n")
    };
    let class = |entries: String| {
        format!("apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: live}}\nspec:\n  provider: gcp\n  parameters:\n    secrets: |\n{entries}")
    };
    let config = common::cli::write(s.dir.path(), "live.yaml", &class(entry("live-a")));
    let mut running = s.sidecar(&config, &env, &["--poll-interval", "1s"]);
    running.wait_ready(Duration::from_secs(20));
    assert_eq!(read(s.out.join("live-a")), "a-value");
    let aside = s.dir.join("live.yaml.new");
    std::fs::write(&aside, class(entry("live-a") + &entry("live-b"))).unwrap();
    std::fs::rename(&aside, &config).unwrap();
    assert!(
        running.eventually(Duration::from_secs(15), || s.out.join("live-b").exists()),
        "the added secret did not arrive:\n{}",
        running.log_text()
    );
    assert_eq!(read(s.out.join("live-b")), "b-value");
    assert!(running.log_text().contains("config reloaded"));
    assert_eq!(s.g.count("sts"), 1, "a reload keeps the token");
    running.stop();

    // Two volumes, as a converted pod's downward-API file carries them.
    let quoted = |t: &str| serde_json::to_string(t).unwrap();
    let annotations = common::cli::write(
        s.dir.path(),
        "annotations",
        &format!(
            "csi.secretdrop.dev/first={}\ncsi.secretdrop.dev/second={}\n",
            quoted(&class(entry("live-a"))),
            quoted(&class(entry("live-b")))
        ),
    );
    let (first, second) = (s.dir.join("first"), s.dir.join("second"));
    for d in [&first, &second] {
        std::fs::create_dir(d).unwrap();
    }
    let volumes = [
        format!("first={}", first.display()),
        format!("second={}", second.display()),
    ];
    let sts = s.g.count("sts");
    let log = s.dir.join("two.log");
    let running = Resident::start_with(
        &annotations,
        &s.dir.join("no-files-of-its-own"),
        &log,
        &[
            "--volume",
            &volumes[0],
            "--volume",
            &volumes[1],
            "--poll-interval",
            "1s",
        ],
        |cmd| {
            for (k, _) in std::env::vars() {
                if k.starts_with("GOOGLE_") || k.starts_with("GCE_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("SSL_CERT_FILE", &s.g.ca);
            cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            s.g.enter(cmd);
        },
    );
    assert!(
        running.eventually(Duration::from_secs(20), || {
            std::fs::read_to_string(first.join("live-a")).is_ok_and(|v| v == "a-value")
                && std::fs::read_to_string(second.join("live-b")).is_ok_and(|v| v == "b-value")
        }),
        "{}",
        running.log_text()
    );
    assert_eq!(
        s.g.count("sts"),
        sts + 1,
        "two volumes, one token:\n{}",
        running.log_text()
    );
    assert!(
        running.log_text().contains("provider=\"gcp\""),
        "{}",
        running.log_text()
    );
}

/// The e2e suite's parameters (mount_parametermanager_test.go): a YAML and a JSON parameter,
/// global and regional, whose versions reference secrets.
fn create_e2e_parameters(g: &Google) -> Vec<(&'static str, String)> {
    let refs = [
        (None, "pmReferenceGlobalSecret1", "global-s3cr3t1"),
        (None, "pmReferenceGlobalSecret2", "global-s3cr3tReplica2"),
        (
            Some(LOCATION),
            "pmReferenceRegionalSecret1",
            "regional-s3cr3t1",
        ),
        (
            Some(LOCATION),
            "pmReferenceRegionalSecret2",
            "regional-s3cr3tReplica2",
        ),
    ];
    for (location, id, value) in refs {
        g.add_version(location, id, format!("{id}-{value}").as_bytes());
    }
    let r = |location: Option<&str>, id: &str| {
        match location {
        None => format!("__REF__(//secretmanager.googleapis.com/projects/{PROJECT_ID}/secrets/{id}/versions/1)"),
        Some(l) => format!("__REF__(//secretmanager.googleapis.com/projects/{PROJECT_ID}/locations/{l}/secrets/{id}/versions/1)"),
    }
    };
    let yaml = format!(
        "user: admin\nuser2: support\ndb_pwd: {}\nbackup_pwd: {}",
        r(None, "pmReferenceGlobalSecret1"),
        r(None, "pmReferenceGlobalSecret2")
    );
    let json = format!(
        "{{\n\t\"user\": \"admin\",\n\t\"user2\": \"support\",\n\t\"db_pwd\": \"{}\",\n\t\"backup_pwd\": \"{}\"\n}}",
        r(None, "pmReferenceGlobalSecret1"),
        r(None, "pmReferenceGlobalSecret2")
    );
    let l = Some(LOCATION);
    let regional_yaml = format!(
        "user: admin\nuser2: support\ndb_regional_pwd: {}\nbackup_regional_pwd: {}",
        r(l, "pmReferenceRegionalSecret1"),
        r(l, "pmReferenceRegionalSecret2")
    );
    let regional_json = format!(
        "{{\n\t\"user\": \"admin\",\n\t\"user2\": \"support\",\n\t\"db_regional_pwd\": \"{}\",\n\t\"backup_regional_pwd\": \"{}\"\n}}",
        r(l, "pmReferenceRegionalSecret1"),
        r(l, "pmReferenceRegionalSecret2")
    );
    g.add_parameter_version("global", "pyaml", "vyaml", &yaml);
    g.add_parameter_version("global", "pjson", "vjson", &json);
    g.add_parameter_version(LOCATION, "ryaml", "rvyaml", &regional_yaml);
    g.add_parameter_version(LOCATION, "rjson", "rvjson", &regional_json);
    let rendered = |t: &str| {
        t.replace(
            &r(None, "pmReferenceGlobalSecret1"),
            "pmReferenceGlobalSecret1-global-s3cr3t1",
        )
        .replace(
            &r(None, "pmReferenceGlobalSecret2"),
            "pmReferenceGlobalSecret2-global-s3cr3tReplica2",
        )
        .replace(
            &r(l, "pmReferenceRegionalSecret1"),
            "pmReferenceRegionalSecret1-regional-s3cr3t1",
        )
        .replace(
            &r(l, "pmReferenceRegionalSecret2"),
            "pmReferenceRegionalSecret2-regional-s3cr3tReplica2",
        )
    };
    vec![
        ("pyaml/global/vyaml", rendered(&yaml)),
        ("pjson/global/vjson", rendered(&json)),
        ("ryaml/us-central1/rvyaml", rendered(&regional_yaml)),
        ("rjson/us-central1/rvjson", rendered(&regional_json)),
    ]
}

/// The GCP provider's Parameter Manager e2e classes: rendered payloads (secret references
/// resolved) byte for byte, their modes, and extract keys on the rendered text.
#[test]
fn parameter_manager_e2e_classes_render_byte_for_byte() {
    let Some(s) = scene() else { return };
    let (env, _) = s.identity(Identity::Metadata);
    s.g.grant_project_parameters(&format!("serviceAccount:{READER}"));
    let files = create_e2e_parameters(&s.g);
    let class = |fixture: &str| {
        let path = s.class(fixture, "unused");
        let text = read(&path)
            .replace("$TEST_PARAMETER_ID_YAML", "pyaml")
            .replace("$TEST_VERSION_ID_YAML", "vyaml")
            .replace("$TEST_PARAMETER_ID_JSON", "pjson")
            .replace("$TEST_VERSION_ID_JSON", "vjson")
            .replace("$TEST_REGIONAL_PARAMETER_ID_YAML", "ryaml")
            .replace("$TEST_REGIONAL_VERSION_ID_YAML", "rvyaml")
            .replace("$TEST_REGIONAL_PARAMETER_ID_JSON", "rjson")
            .replace("$TEST_REGIONAL_VERSION_ID_JSON", "rvjson");
        std::fs::write(&path, text).unwrap();
        path
    };
    let fresh = || {
        let _ = std::fs::remove_dir_all(&s.out);
        std::fs::create_dir(&s.out).unwrap();
    };
    fresh();
    let r = s.init(&class("test-parameter-version-pod.yaml"), &env, &[]);
    r.expect_code(0);
    for (path, content) in &files {
        assert_eq!(read(s.out.join(path)), *content, "{path}");
        assert_eq!(mode_of(s.out.join(path)), 0o644, "{path}");
    }
    assert_eq!(s.g.count("render"), 4, "one render per version");
    assert_eq!(logged(&r.stderr, "gcp_requests"), Some(4), "{}", r.stderr);

    fresh();
    s.init(&class("test-parameter-version-pod-mode.yaml"), &env, &[])
        .expect_code(0);
    for ((path, _), mode) in files.iter().zip([0o420, 0o600, 0o400, 0o440]) {
        assert_eq!(mode_of(s.out.join(path)), mode, "{path}");
    }

    fresh();
    let r = s.init(
        &class("test-parameter-version-extract-keys.yaml"),
        &env,
        &[],
    );
    r.expect_code(0);
    for (path, want) in [
        (
            "pyaml/global/vyaml",
            "pmReferenceGlobalSecret1-global-s3cr3t1",
        ),
        ("pjson/global/vjson", "admin"),
        ("ryaml/us-central1/rvyaml", "support"),
        (
            "rjson/us-central1/db_regional_pwd/rvjson",
            "pmReferenceRegionalSecret1-regional-s3cr3t1",
        ),
        (
            "rjson/us-central1/backup_regional_pwd/rvjson",
            "pmReferenceRegionalSecret2-regional-s3cr3tReplica2",
        ),
    ] {
        assert_eq!(read(s.out.join(path)), want, "{path}");
    }
    // The same parameter version read once for its two extract keys.
    assert_eq!(s.g.count("render"), 4 + 4 + 4, "{}", r.stderr);
    s.assert_no_secret(&r.stderr, None, &["s3cr3t"]);

    // Without the parameter role: Parameter Manager's 403 with the resource and the role named.
    let other_env = vec![(
        "GCE_METADATA_HOST".to_string(),
        format!("127.0.0.1:{METADATA_PORT}"),
    )];
    s.g.metadata_identity("nobody@secretdrop-test.iam.gserviceaccount.com");
    fresh();
    let r = s.init(
        &class("test-parameter-version-pod.yaml"),
        &other_env,
        &["--timeout", "30s"],
    );
    r.expect_code(1).expect_stderr(&[
        "PERMISSION_DENIED",
        "parametermanager.parameterVersions.render",
        "roles/parametermanager.parameterAccessor",
        "projects/secretdrop-test/locations/global/parameters/pyaml/versions/vyaml",
    ]);
    assert!(common::cli::tree(&s.out).is_empty());
}
