//! `provider: gcp` refusals and hostile answers against the Google stand-in (see tests/gcp.rs):
//! Google's errors with the resource named, exit 1 promptly and nothing written; bad classes
//! and credentials exit 2 before a request; redirects, huge and endless answers, checksum
//! mismatches; retries of what is transient.

mod common;

use std::time::{Duration, Instant};

use common::cli::read;
use common::gcp::PROJECT_ID;
use common::gcp_scene::{scene, Identity, READER};
use serde_json::json;

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
