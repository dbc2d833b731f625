//! `provider: gcp` end to end against the Google stand-in (tests/gcp/standin.py, validated by
//! tests/gcp_standin.rs) at Google's real host names inside a network namespace: the GCP
//! provider's e2e classes (Secret Manager and Parameter Manager) and the CSI driver's under
//! Workload Identity Federation (with and without impersonation) and the metadata server,
//! rotation through the sidecar, the token kept across processes, reloads, `check`.
//! Refusals and hostile answers: tests/gcp_refusals.rs.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cli::{assert_layout, current_version, mode_of, read};
use common::gcp::{Google, LOCATION, METADATA_PORT, PROJECT_ID};
use common::gcp_scene::{logged, scene, Identity, READER};
use common::resident::Resident;
use serde_json::json;

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
