//! `provider: aws` end to end against moto with SigV4 signatures and IAM policies enforced:
//! the AWS provider's own integration SecretProviderClass under IRSA and under EKS Pod
//! Identity, rotation through the sidecar, refusals, and hostile peers.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cli::{assert_layout, read, secretdrop, Run};
use common::hostile::{json_reply, redirect, Act, Proxy};
use common::moto::{call, irsa_env, pod_identity_agent, Moto};
use common::resident::Resident;
use common::{unique, TestDir};
use serde_json::{json, Value};

const REGION: &str = "us-west-2";
const FAILOVER: &str = "us-east-2";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/aws")
        .join(name)
}

/// The secrets and parameters of the provider's generate-test-files.py, in both regions.
fn create_provider_resources(moto: &Moto, suffix: &str) {
    let secrets = [
        ("SecretsManagerTest1", "SecretsManagerTest1Value"),
        ("SecretsManagerTest2", "SecretsManagerTest2Value"),
        ("SecretsManagerSync", "SecretUser"),
        ("SecretsManagerRotationTest", "BeforeRotation"),
        (
            "secretsManagerJson",
            r#"{"username": "SecretsManagerUser", "password": "PasswordForSecretsManager"}"#,
        ),
    ];
    let parameters = [
        ("ParameterStoreTest1", "ParameterStoreTest1Value"),
        ("ParameterStoreTestWithLongName", "ParameterStoreTest2Value"),
        ("ParameterStoreRotationTest", "BeforeRotation"),
        (
            "jsonSsm",
            r#"{"username": "ParameterStoreUser", "password": "PasswordForParameterStore"}"#,
        ),
    ];
    let mut calls = Vec::new();
    for region in [REGION, FAILOVER] {
        for (base, value) in secrets {
            calls.push(call(
                "secretsmanager",
                region,
                "create_secret",
                json!({"Name": format!("{base}-{suffix}"), "SecretString": value}),
            ));
        }
        for (base, value) in parameters {
            calls.push(call("ssm", region, "put_parameter",
                json!({"Name": format!("{base}-{suffix}"), "Value": value, "Type": "SecureString", "Overwrite": false})));
        }
    }
    moto.admin(Value::Array(calls));
}

/// Every file the provider's integration test expects, with its content.
fn expected_files(suffix: &str) -> Vec<(String, &'static str)> {
    vec![
        (
            format!("ParameterStoreTest1-{suffix}"),
            "ParameterStoreTest1Value",
        ),
        ("ParameterStoreTest2".into(), "ParameterStoreTest2Value"),
        (
            format!("ParameterStoreRotationTest-{suffix}"),
            "BeforeRotation",
        ),
        (
            format!("SecretsManagerRotationTest-{suffix}"),
            "BeforeRotation",
        ),
        (
            format!("SecretsManagerTest1-{suffix}"),
            "SecretsManagerTest1Value",
        ),
        ("SecretsManagerTest2".into(), "SecretsManagerTest2Value"),
        (format!("SecretsManagerSync-{suffix}"), "SecretUser"),
        ("ssmUsername".into(), "ParameterStoreUser"),
        ("ssmPassword".into(), "PasswordForParameterStore"),
        ("secretsManagerUsername".into(), "SecretsManagerUser"),
        ("secretsManagerPassword".into(), "PasswordForSecretsManager"),
    ]
}

fn run(args: &[&str], env: &[(String, String)]) -> Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    secretdrop(args, &env)
}

fn init(config: &Path, dir: &Path, env: &[(String, String)], extra: &[&str]) -> Run {
    let mut args = vec![
        "init",
        "--config",
        config.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args, env)
}

/// One admin call to moto in `REGION`.
fn admin(moto: &Moto, service: &str, op: &str, args: Value) {
    moto.admin(json!([call(service, REGION, op, args)]));
}

/// `dir/out`, created empty.
fn out_dir(dir: &TestDir) -> PathBuf {
    let out = dir.join("out");
    std::fs::create_dir(&out).unwrap();
    out
}

/// A `provider: aws` SecretProviderClass in `dir/spc.yaml` for `REGION`: `parameters` are more
/// lines under `parameters:`, `objects` the lines of the `objects` list.
fn spc(dir: &TestDir, parameters: &str, objects: &str) -> PathBuf {
    common::cli::write(dir.path(), "spc.yaml", &format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: aws-test}}\nspec:\n  provider: aws\n  parameters:\n    region: {REGION}\n{parameters}    objects: |\n{objects}"))
}

/// The sidecar rendering `config` into `out` with `env`, logging to `dir/log`.
fn sidecar(
    config: &Path,
    out: &Path,
    dir: &TestDir,
    env: &[(String, String)],
    args: &[&str],
) -> Resident {
    Resident::start_with(config, out, &dir.join("log"), args, |c| {
        c.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    })
}

/// `env` with the AWS endpoint moved to `proxy`.
fn through(mut env: Vec<(String, String)>, proxy: &Proxy) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    env.push(("AWS_ENDPOINT_URL".into(), proxy.addr()));
    env
}

/// What IRSA gives a pod: a fresh role (allowed to read when `read`) and a token file holding
/// a fresh token that moto's STS trusts: (role, token file, token).
fn irsa(moto: &Moto, dir: &TestDir, role: &str, read: bool) -> (String, PathBuf, String) {
    let role = moto.role(&unique(role), read);
    let token = format!("eyJ.{}.sig", unique("web-identity"));
    moto.trust_token(&token);
    let path = dir.join("token");
    std::fs::write(&path, &token).unwrap();
    (role, path, token)
}

fn logged_number(stderr: &str, key: &str) -> Option<u64> {
    let at = stderr.find(&format!("{key}="))? + key.len() + 1;
    stderr[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[test]
fn the_providers_integration_class_renders_completely_under_irsa() {
    let moto = Moto::shared();
    create_provider_resources(moto, "x64-irsa");
    let dir = TestDir::new();
    let (role, token_file, token) = irsa(moto, &dir, "irsa-reader", true);
    let out = out_dir(&dir);
    let started = Instant::now();
    let r = init(
        &fixture("BasicTestMountSPC-irsa.yaml"),
        &out,
        &irsa_env(moto, &role, &token_file),
        &[],
    );
    r.expect_code(0).expect_no_leak(&[
        &token,
        "PasswordForSecretsManager",
        "PasswordForParameterStore",
    ]);
    let files = expected_files("x64-irsa");
    let mut names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    names.extend([
        "jsonSsm-x64-irsa".to_string(),
        "secretsManagerJson-x64-irsa".to_string(),
    ]);
    assert_layout(&out, &names.iter().map(String::as_str).collect::<Vec<_>>());
    for (name, value) in &files {
        assert_eq!(read(out.join(name)), *value, "{name}");
        assert_eq!(common::cli::mode_of(out.join(name)), 0o644, "{name}");
    }
    let whole: Value =
        serde_json::from_str(&read(out.join("secretsManagerJson-x64-irsa"))).unwrap();
    assert_eq!(whole["username"], "SecretsManagerUser");
    // One GetSecretValue per secret (5) and one GetParameters for the 4 parameters: the
    // failover region is never asked while the primary answers (the provider asks both).
    assert_eq!(
        logged_number(&r.stderr, "aws_requests"),
        Some(6),
        "{}",
        r.stderr
    );
    assert_eq!(
        logged_number(&r.stderr, "credential_exchanges"),
        Some(1),
        "{}",
        r.stderr
    );
    eprintln!(
        "init of the provider's class (IRSA): {:?}",
        started.elapsed()
    );
}

/// The Pod Identity variables: the agent's URL and the token file it wants.
fn agent_env(url: String, token_file: &Path) -> Vec<(String, String)> {
    vec![
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), url),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ),
    ]
}

fn pod_identity_env(moto: &Moto, agent: &Proxy, token_file: &Path) -> Vec<(String, String)> {
    let mut env = agent_env(format!("{}/v1/credentials", agent.addr()), token_file);
    env.push(("AWS_ENDPOINT_URL".into(), moto.endpoint()));
    env
}

#[test]
fn the_providers_integration_class_renders_completely_under_pod_identity() {
    let moto = Moto::shared();
    create_provider_resources(moto, "x64-pod-identity");
    let dir = TestDir::new();
    let role = moto.role(&unique("pod-identity-reader"), true);
    let keys = moto.assume(&role);
    let expected = dir.join("agent-expects");
    std::fs::write(&expected, "pod-identity-token-1").unwrap();
    let agent = pod_identity_agent(keys.clone(), expected.clone(), Duration::from_secs(3600));
    let token_file = dir.join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token-1\n").unwrap();
    let out = out_dir(&dir);
    let env = pod_identity_env(moto, &agent, &token_file);
    let secret_key = keys["SecretAccessKey"].as_str().unwrap().to_string();
    let r = init(
        &fixture("BasicTestMountSPC-pod-identity.yaml"),
        &out,
        &env,
        &[],
    );
    r.expect_code(0).expect_no_leak(&[
        "pod-identity-token-1",
        &secret_key,
        "PasswordForSecretsManager",
    ]);
    for (name, value) in expected_files("x64-pod-identity") {
        assert_eq!(read(out.join(&name)), value, "{name}");
    }
    let seen = agent.seen();
    assert_eq!(seen.len(), 1, "one credentials GET for the whole render");
    assert_eq!(
        seen[0].header("Authorization"),
        Some("pod-identity-token-1")
    );

    // A token the agent does not accept: exit 1, naming the agent, nothing new written.
    std::fs::write(&token_file, "stale-token").unwrap();
    let before = common::cli::current_version(&out);
    let r = init(
        &fixture("BasicTestMountSPC-pod-identity.yaml"),
        &out,
        &env,
        &["--timeout", "3s"],
    );
    r.expect_code(1)
        .expect_stderr(&["Pod Identity", "401"])
        .expect_no_leak(&["stale-token", &secret_key]);
    assert_eq!(common::cli::current_version(&out), before);
}

#[test]
fn pod_identity_keys_are_refreshed_without_a_gap_and_the_token_file_is_read_again() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let name = unique("refresh");
    admin(
        moto,
        "ssm",
        "put_parameter",
        json!({"Name": name, "Value": "v1", "Type": "SecureString"}),
    );
    let role = moto.role(&unique("refresh-reader"), true);
    let expected = dir.join("agent-expects");
    std::fs::write(&expected, "token-A").unwrap();
    // Keys said to expire in 16 s are replaced after 8 s (half their life when that is shorter
    // than the usual five minutes).
    let agent = pod_identity_agent(
        moto.assume(&role),
        expected.clone(),
        Duration::from_secs(16),
    );
    let token_file = dir.join("token");
    std::fs::write(&token_file, "token-A").unwrap();
    let config = spc(
        &dir,
        "    usePodIdentity: \"true\"\n",
        &format!("      - objectName: {name}\n        objectType: ssmparameter\n"),
    );
    let out = out_dir(&dir);
    let env = pod_identity_env(moto, &agent, &token_file);
    let port = common::free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut sidecar = sidecar(
        &config,
        &out,
        &dir,
        &env,
        &["--poll-interval", "1s", "--listen", &listen],
    );
    sidecar.wait_ready(Duration::from_secs(20));
    // The kubelet rotates the projected token: the agent now wants token-B, and the file says so.
    std::fs::write(&expected, "token-B").unwrap();
    std::fs::write(&token_file, "token-B").unwrap();
    assert!(
        sidecar.eventually(Duration::from_secs(20), || agent
            .seen()
            .iter()
            .any(|s| s.header("Authorization") == Some("token-B"))),
        "the keys were never refreshed with the new token:\n{}",
        sidecar.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    let seen = agent.seen();
    assert!(seen
        .iter()
        .all(|s| matches!(s.header("Authorization"), Some("token-A" | "token-B"))));
    let log = sidecar.log_text();
    assert!(
        !log.contains("poll failed"),
        "no poll failed around the refresh:\n{log}"
    );
    assert!(
        sidecar
            .metric("secretdrop_reads_unchanged_total")
            .unwrap_or(0.0)
            >= 3.0,
        "{log}"
    );
    assert_eq!(read(out.join(&name)), "v1");
}

#[test]
fn rotations_of_a_secret_and_a_parameter_arrive_through_the_sidecar() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let (secret, param) = (unique("rot-secret"), unique("rot-param"));
    moto.admin(json!([
        call(
            "secretsmanager",
            REGION,
            "create_secret",
            json!({"Name": secret, "SecretString": "{\"password\":\"before-1\"}"})
        ),
        call(
            "ssm",
            REGION,
            "put_parameter",
            json!({"Name": format!("/app/{param}"), "Value": "before-2", "Type": "SecureString"})
        ),
    ]));
    let (role, token_file, _) = irsa(moto, &dir, "rot-reader", true);
    let config = spc(&dir, "", &format!("      - objectName: {secret}\n        objectType: secretsmanager\n        objectAlias: db.json\n        jmesPath:\n          - path: password\n            objectAlias: password\n            filePermission: \"0400\"\n      - objectName: /app/{param}\n        objectType: ssmparameter\n"));
    let out = out_dir(&dir);
    let env = irsa_env(moto, &role, &token_file);
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut sidecar = sidecar(
        &config,
        &out,
        &dir,
        &env,
        &["--poll-interval", "1s", "--listen", &listen],
    );
    sidecar.wait_ready(Duration::from_secs(20));
    let pfile = format!("_app_{param}");
    assert_eq!(read(out.join("password")), "before-1");
    assert_eq!(common::cli::mode_of(out.join("password")), 0o400);
    assert_eq!(read(out.join(&pfile)), "before-2");
    let first = common::cli::current_version(&out);
    // Unchanged versions write nothing.
    assert!(sidecar.eventually(Duration::from_secs(10), || sidecar
        .metric("secretdrop_reads_unchanged_total")
        .unwrap_or(0.0)
        >= 4.0));
    assert_eq!(
        common::cli::current_version(&out),
        first,
        "an unchanged poll wrote a new version"
    );

    moto.admin(json!([
        call("secretsmanager", REGION, "put_secret_value", json!({"SecretId": secret, "SecretString": "{\"password\":\"after-1\"}"})),
        call("ssm", REGION, "put_parameter", json!({"Name": format!("/app/{param}"), "Value": "after-2", "Type": "SecureString", "Overwrite": true})),
    ]));
    assert!(
        sidecar.eventually(Duration::from_secs(15), || read(out.join("password"))
            == "after-1"
            && read(out.join(&pfile)) == "after-2"),
        "rotation never arrived:\n{}",
        sidecar.log_text()
    );
    assert_eq!(read(out.join("db.json")), "{\"password\":\"after-1\"}");
    let log = sidecar.log_text();
    assert!(log.contains("committed a new version"), "{log}");
    assert!(
        !log.contains("after-1") && !log.contains("before-1"),
        "a value in the log:\n{log}"
    );
    let (code, _) = sidecar.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn a_role_without_a_read_policy_is_refused_with_object_region_and_role() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let secret = unique("denied");
    admin(
        moto,
        "secretsmanager",
        "create_secret",
        json!({"Name": secret, "SecretString": "denied-value"}),
    );
    let (role, token_file, token) = irsa(moto, &dir, "no-policy", false);
    let config = spc(
        &dir,
        &format!("    failoverRegion: {FAILOVER}\n"),
        &format!("      - objectName: {secret}\n        objectType: secretsmanager\n"),
    );
    let out = out_dir(&dir);
    let started = Instant::now();
    let r = init(&config, &out, &irsa_env(moto, &role, &token_file), &[]);
    r.expect_code(1)
        .expect_stderr(&[
            &format!("object {secret:?}"),
            &format!("secretsmanager {secret}"),
            "in us-west-2",
            &role,
            "AccessDenied",
        ])
        .expect_no_leak(&["denied-value", &token]);
    assert!(
        !r.stderr.contains(FAILOVER),
        "a 4xx must not fail over:\n{}",
        r.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refusal is not retried"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing written"
    );

    // An untrusted web identity token: STS refuses, exit 1, the token never printed.
    std::fs::write(&token_file, "not-trusted-token").unwrap();
    let r = init(&config, &out, &irsa_env(moto, &role, &token_file), &[]);
    r.expect_code(1)
        .expect_stderr(&["InvalidIdentityToken", &role])
        .expect_no_leak(&["not-trusted-token"]);
}

#[test]
fn a_credentials_url_on_another_host_gets_no_token_and_no_redirect_is_followed() {
    let dir = TestDir::new();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "agent-token").unwrap();
    let out = out_dir(&dir);
    let spc = fixture("BasicTestMountSPC-pod-identity.yaml");
    for url in [
        "http://attacker.example/creds",
        "http://10.1.2.3/creds",
        "http://169.254.169.254/latest/meta-data/iam",
    ] {
        init(&spc, &out, &agent_env(url.to_string(), &token_file), &[])
            .expect_code(2)
            .expect_stderr(&["AWS_CONTAINER_CREDENTIALS_FULL_URI", "not sent"]);
    }
    // An allowed agent address that redirects elsewhere: not followed.
    let bystander = Proxy::start("127.0.0.2", None, |_| {
        Act::Reply(json_reply(200, &json!({})))
    });
    let target = format!("{}/steal", bystander.addr());
    let agent = Proxy::start("127.0.0.1", None, move |_| {
        Act::Reply(redirect(302, &target))
    });
    let mut env = agent_env(format!("{}/v1/credentials", agent.addr()), &token_file);
    env.push(("AWS_ENDPOINT_URL".into(), "http://127.0.0.1:9".into()));
    init(&spc, &out, &env, &["--timeout", "2s"])
        .expect_code(1)
        .expect_no_leak(&["agent-token"]);
    assert!(bystander.seen().is_empty(), "the redirect was followed");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

/// A proxy in front of moto that tampers with the answers to one operation.
fn tampering(moto: &Moto, target: &'static str, act: fn() -> Act) -> Proxy {
    Proxy::start("127.0.0.1", Some(moto.port()), move |seen| {
        let hit = seen
            .header("X-Amz-Target")
            .is_some_and(|t| t.ends_with(target))
            || String::from_utf8_lossy(&seen.body).contains(&format!("Action={target}"));
        if hit {
            act()
        } else {
            Act::Forward
        }
    })
}

fn one_secret_spc(dir: &TestDir, secret: &str, jmes: &str) -> PathBuf {
    spc(
        dir,
        "",
        &format!("      - objectName: {secret}\n        objectType: secretsmanager\n{jmes}"),
    )
}

#[test]
fn hostile_answers_are_bounded_and_never_half_written() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let secret = unique("hostile");
    admin(
        moto,
        "secretsmanager",
        "create_secret",
        json!({"Name": secret, "SecretString": "{\"n\": 5, \"s\": \"hostile-value\"}"}),
    );
    let (role, token_file, token) = irsa(moto, &dir, "hostile-reader", true);
    let out = out_dir(&dir);
    let with_endpoint = |p: &Proxy| through(irsa_env(moto, &role, &token_file), p);
    let config = one_secret_spc(&dir, &secret, "");

    // 64 MiB without a Content-Length: refused after 1 MiB, quickly.
    let huge = tampering(moto, "GetSecretValue", || Act::Flood {
        total: 64 << 20,
        announce: false,
    });
    let started = Instant::now();
    init(&config, &out, &with_endpoint(&huge), &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["larger than"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // An answer that never comes: init gives up at --timeout.
    let slow = tampering(moto, "GetSecretValue", || {
        std::thread::sleep(Duration::from_secs(30));
        Act::Reply(json_reply(200, &json!({})))
    });
    let started = Instant::now();
    init(&config, &out, &with_endpoint(&slow), &["--timeout", "2s"]).expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    // STS answers with two access keys, or markup inside a field: refused, nothing printed.
    let doubled = tampering(moto, "AssumeRoleWithWebIdentity", || {
        Act::Reply(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nConnection: close\r\n\r\n<R><Credentials><AccessKeyId>AKIA1</AccessKeyId><AccessKeyId>AKIA2</AccessKeyId><SecretAccessKey>sts-secret-xyz</SecretAccessKey><SessionToken>t</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials></R>".to_vec())
    });
    init(
        &config,
        &out,
        &with_endpoint(&doubled),
        &["--timeout", "2s"],
    )
    .expect_code(1)
    .expect_stderr(&["AccessKeyId"])
    .expect_no_leak(&["sts-secret-xyz", &token]);

    // Secrets Manager says 200 with something that is not JSON.
    let garbage = tampering(moto, "GetSecretValue", || {
        Act::Reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n<html".to_vec(),
        )
    });
    init(
        &config,
        &out,
        &with_endpoint(&garbage),
        &["--timeout", "2s"],
    )
    .expect_code(1)
    .expect_stderr(&["not JSON"]);
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing written by any of them"
    );

    // A jmesPath that selects a number: exit 1 naming the path, never the value.
    let config = one_secret_spc(
        &dir,
        &secret,
        "        jmesPath:\n          - path: n\n            objectAlias: n\n",
    );
    init(&config, &out, &irsa_env(moto, &role, &token_file), &[])
        .expect_code(1)
        .expect_stderr(&["jmesPath \"n\"", "number"])
        .expect_no_leak(&["hostile-value"]);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

/// The attack: one secret of about 1 MB whose JSON holds one large string, and 100 jmesPath
/// entries selecting that string. Each entry writes a file with it, so the render would be 101
/// files and about 100 MB in memory before anything is written (the sidecar's limit is 32 MiB).
/// `init` refuses it as the render grows, before it passes 4 MiB: exit 1 naming the object, the
/// entry and the limit, nothing written, peak RSS a fraction of the sidecar's limit. Three
/// entries (4 MB in all) still render.
#[test]
fn jmes_entries_repeating_a_large_string_are_refused_in_bounded_memory() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let secret = unique("jmes-bomb");
    let marker = unique("bomb-value");
    let big = format!("{marker}{}", "x".repeat(1_000_000 - marker.len()));
    admin(
        moto,
        "secretsmanager",
        "create_secret",
        json!({"Name": secret, "SecretString": json!({"big": big}).to_string()}),
    );
    let (role, token_file, _) = irsa(moto, &dir, "jmes-bomb-reader", true);
    let env = irsa_env(moto, &role, &token_file);
    let run = |entries: usize| {
        let jmes: String = (0..entries)
            .map(|i| format!("          - path: big\n            objectAlias: copy-{i}\n"))
            .collect();
        let config = one_secret_spc(&dir, &secret, &format!("        jmesPath:\n{jmes}"));
        let out = dir.join(format!("out-{entries}"));
        std::fs::create_dir(&out).unwrap();
        let mut cmd = std::process::Command::new(common::cli::bin());
        common::cli::scrub_env(&mut cmd);
        cmd.args(["init", "--config", config.to_str().unwrap()])
            .arg("--dir")
            .arg(&out)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let m = common::process::run_measured(cmd);
        let stderr = String::from_utf8_lossy(&m.output.stderr).into_owned();
        eprintln!(
            "{entries} jmesPath entries: {}, peak RSS {:.1} MiB, {:?} of CPU",
            m.output.status, m.peak_rss_mib, m.cpu
        );
        (m, stderr, out)
    };

    // The same secret without entries: what the process costs before the render multiplies
    // anything (this is the debug binary; the static one needs far less, docs/aws.md).
    let (baseline, stderr, _) = run(0);
    assert_eq!(baseline.output.status.code(), Some(0), "{stderr}");
    let bounded = baseline.peak_rss_mib + 8.0;

    let (bomb, stderr, out) = run(100);
    assert_eq!(bomb.output.status.code(), Some(1), "{stderr}");
    for want in [
        format!("{secret} jmesPath \"big\""),
        "this file (1000000 bytes) would take the render past 4194304 bytes (4 MiB)".into(),
        "nothing was written".into(),
    ] {
        assert!(stderr.contains(&want), "{want:?}: {stderr}");
    }
    assert!(!stderr.contains(&marker), "the value reached the output");
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "nothing was written"
    );
    // Within the 4 MiB payload bound and as much again for the allocator; before the bound
    // the render held all 101 files, 100 MB more than the baseline.
    assert!(
        bomb.peak_rss_mib < bounded,
        "peak RSS {:.1} MiB, {:.1} MiB without the entries",
        bomb.peak_rss_mib,
        baseline.peak_rss_mib
    );

    let (fits, stderr, out) = run(3);
    assert_eq!(fits.output.status.code(), Some(0), "{stderr}");
    assert_eq!(read(out.join("copy-2")), big);
    assert!(fits.peak_rss_mib < bounded, "{:.1} MiB", fits.peak_rss_mib);
}

/// The same bound in the sidecar: a secret that grows past it while 100 jmesPath entries
/// select it is not rendered; the previous version stays, and the log names the entry.
#[test]
fn a_secret_growing_past_the_bound_leaves_the_sidecars_files_in_place() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let secret = unique("jmes-grow");
    admin(
        moto,
        "secretsmanager",
        "create_secret",
        json!({"Name": secret, "SecretString": "{\"big\": \"small\"}"}),
    );
    let (role, token_file, _) = irsa(moto, &dir, "jmes-grow-reader", true);
    let jmes: String = (0..100)
        .map(|i| format!("          - path: big\n            objectAlias: copy-{i}\n"))
        .collect();
    let config = one_secret_spc(&dir, &secret, &format!("        jmesPath:\n{jmes}"));
    let out = out_dir(&dir);
    let env = irsa_env(moto, &role, &token_file);
    let mut sidecar = sidecar(&config, &out, &dir, &env, &["--poll-interval", "1s"]);
    sidecar.wait_ready(Duration::from_secs(20));
    let first = common::cli::current_version(&out);
    assert_eq!(read(out.join("copy-99")), "small");

    let marker = unique("grown-value");
    let big = format!("{marker}{}", "x".repeat(100_000));
    admin(
        moto,
        "secretsmanager",
        "put_secret_value",
        json!({"SecretId": secret, "SecretString": json!({"big": big}).to_string()}),
    );
    let refused = sidecar.eventually(Duration::from_secs(15), || {
        sidecar
            .log_text()
            .contains("cannot commit the new version; the previous one stays")
    });
    let log = sidecar.log_text();
    assert!(refused, "{log}");
    assert!(
        log.contains("would take the render past 4194304 bytes"),
        "{log}"
    );
    assert!(!log.contains(&marker), "the value reached the log");
    assert_eq!(common::cli::current_version(&out), first);
    assert_eq!(read(out.join("copy-99")), "small");
    let (code, _) = sidecar.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn check_prints_the_plan_and_bad_classes_exit_2() {
    let r = secretdrop(
        &[
            "check",
            "--config",
            fixture("BasicTestMountSPC-irsa.yaml").to_str().unwrap(),
        ],
        &[],
    );
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("aws: region us-west-2, failover region us-east-2"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("requests per render: 5 secretsmanager:GetSecretValue, 1 ssm:GetParameters"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("ssmUsername 0644 <- jmesPath \"username\" of jsonSsm-x64-irsa"),
        "{}",
        r.stdout
    );
    let dir = TestDir::new();
    let text = std::fs::read_to_string(fixture("BasicTestMountSPC-irsa.yaml")).unwrap();
    let bad = common::cli::write(
        dir.path(),
        "bad.yaml",
        &text.replace("us-east-2:123456789012", "eu-west-1:123456789012"),
    );
    secretdrop(&["check", "--config", bad.to_str().unwrap()], &[])
        .expect_code(2)
        .expect_stderr(&[
            "bad.yaml",
            "failoverObject.objectName",
            "must match region us-east-2",
        ]);
    // exec --config without credentials in the environment: exit 2 before any request.
    secretdrop(
        &[
            "exec",
            "--config",
            fixture("BasicTestMountSPC-irsa.yaml").to_str().unwrap(),
            "--env",
            "U=ssmUsername",
            "--",
            "true",
        ],
        &[],
    )
    .expect_code(2)
    .expect_stderr(&["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]);
    // No credentials in the environment: exit 2 before any request.
    let out = out_dir(&dir);
    secretdrop(
        &[
            "init",
            "--config",
            fixture("BasicTestMountSPC-irsa.yaml").to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ],
        &[],
    )
    .expect_code(2)
    .expect_stderr(&["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]);
}

#[test]
fn moto_checks_our_signatures_a_wrong_secret_key_is_refused() {
    // The positive renders above only prove SigV4 right if moto really verifies signatures.
    let moto = Moto::shared();
    let dir = TestDir::new();
    let role = moto.role(&unique("sig-reader"), true);
    let mut keys = moto.assume(&role);
    keys["SecretAccessKey"] = json!("wJalrXUtnFEMI/K7MDENG+bPxRfiCYWRONGKEY");
    let expected = dir.join("agent-expects");
    std::fs::write(&expected, "t").unwrap();
    let agent = pod_identity_agent(keys, expected.clone(), Duration::from_secs(3600));
    let out = out_dir(&dir);
    let r = init(
        &fixture("BasicTestMountSPC-pod-identity.yaml"),
        &out,
        &pod_identity_env(moto, &agent, &expected),
        &["--timeout", "3s"],
    );
    r.expect_code(1)
        .expect_stderr(&["Signature"])
        .expect_no_leak(&["WRONGKEY"]);
}

/// moto behind a proxy that answers 503 for every signed request to `down` (the region is in
/// SigV4's credential scope) and passes everything else on with its `Host` intact.
fn region_outage(moto: &Moto, down: &'static str) -> Proxy {
    Proxy::start("127.0.0.1", Some(moto.port()), move |seen| {
        let scope = format!("/{down}/");
        if seen
            .header("Authorization")
            .is_some_and(|a| a.contains(&scope))
        {
            Act::Reply(json_reply(
                503,
                &json!({"__type": "InternalServiceError", "message": "region down"}),
            ))
        } else {
            Act::ForwardKeepingHost
        }
    })
}

#[test]
fn failover_happens_only_when_the_primary_fails_with_a_non_4xx_error() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let (secret, param) = (unique("fo-secret"), unique("fo-param"));
    let mut calls = Vec::new();
    for region in [REGION, FAILOVER] {
        calls.push(call(
            "secretsmanager",
            region,
            "create_secret",
            json!({"Name": secret, "SecretString": format!("secret-from-{region}")}),
        ));
        calls.push(call(
            "ssm",
            region,
            "put_parameter",
            json!({"Name": param, "Value": format!("param-from-{region}"), "Type": "SecureString"}),
        ));
    }
    moto.admin(Value::Array(calls));
    let (role, token_file, _) = irsa(moto, &dir, "fo-reader", true);
    let arn = |region: &str| {
        format!(
            "arn:aws:secretsmanager:{region}:{}:secret:{secret}",
            common::moto::ACCOUNT
        )
    };
    let config = spc(&dir, &format!("    failoverRegion: {FAILOVER}\n"), &format!("      - objectName: {}\n        objectAlias: secret\n        failoverObject:\n          objectName: {}\n      - objectName: {param}\n        objectType: ssmparameter\n", arn(REGION), arn(FAILOVER)));
    let env_via = |p: &Proxy| through(irsa_env(moto, &role, &token_file), p);

    // Both regions up: the primary answers, the failover region is never asked.
    let healthy = region_outage(moto, "nowhere-1");
    let out = dir.join("healthy");
    std::fs::create_dir(&out).unwrap();
    let r = init(&config, &out, &env_via(&healthy), &[]);
    r.expect_code(0);
    assert_eq!(read(out.join("secret")), "secret-from-us-west-2");
    assert_eq!(read(out.join(&param)), "param-from-us-west-2");
    assert!(healthy.seen().iter().all(|s| !s
        .header("Authorization")
        .unwrap_or("")
        .contains("/us-east-2/")));

    // The primary answers 503: after a few attempts, the failover region and failoverObject.
    let outage = region_outage(moto, REGION);
    let out = dir.join("outage");
    std::fs::create_dir(&out).unwrap();
    let r = init(&config, &out, &env_via(&outage), &[]);
    r.expect_code(0);
    assert_eq!(read(out.join("secret")), "secret-from-us-east-2");
    assert_eq!(read(out.join(&param)), "param-from-us-east-2");
    let failover_bodies: Vec<String> = outage
        .seen()
        .iter()
        .filter(|s| {
            s.header("Authorization")
                .unwrap_or("")
                .contains("/us-east-2/secretsmanager/")
        })
        .map(|s| String::from_utf8_lossy(&s.body).into_owned())
        .collect();
    assert!(
        !failover_bodies.is_empty() && failover_bodies.iter().all(|b| b.contains(&arn(FAILOVER))),
        "{failover_bodies:?}"
    );
}

#[test]
fn versions_labels_binary_values_and_parameter_batches() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let (secret, binary, param) = (
        unique("ver-secret"),
        unique("bin-secret"),
        unique("ver-param"),
    );
    let raw: Vec<u8> = vec![0, 159, 146, 150, 255, b'\n', 1];
    use base64::Engine as _;
    let created = moto.admin(json!([
        call("secretsmanager", REGION, "create_secret", json!({"Name": secret, "SecretString": "first"})),
        call("secretsmanager", REGION, "put_secret_value", json!({"SecretId": secret, "SecretString": "second"})),
        call("secretsmanager", REGION, "create_secret", json!({"Name": binary, "SecretBinary": {"base64": base64::engine::general_purpose::STANDARD.encode(&raw)}})),
        call("ssm", REGION, "put_parameter", json!({"Name": param, "Value": "p-one", "Type": "SecureString"})),
        call("ssm", REGION, "put_parameter", json!({"Name": param, "Value": "p-two", "Type": "SecureString", "Overwrite": true})),
    ]));
    let first_id = created[0]["VersionId"].as_str().unwrap().to_string();
    // Twelve more parameters: with the versioned one, 14 SSM objects in two GetParameters.
    let many: Vec<String> = (0..12).map(|i| format!("{param}-{i}")).collect();
    moto.admin(Value::Array(
        many.iter()
            .map(|n| {
                call(
                    "ssm",
                    REGION,
                    "put_parameter",
                    json!({"Name": n, "Value": format!("value-of-{n}"), "Type": "String"}),
                )
            })
            .collect(),
    ));
    let mut objects = format!(
        "      - objectName: {secret}\n        objectType: secretsmanager\n\
         \x20     - objectName: {secret}\n        objectType: secretsmanager\n        objectVersionLabel: AWSPREVIOUS\n        objectAlias: previous\n\
         \x20     - objectName: {secret}\n        objectType: secretsmanager\n        objectVersion: {first_id}\n        objectAlias: by-id\n\
         \x20     - objectName: {binary}\n        objectType: secretsmanager\n\
         \x20     - objectName: {param}\n        objectType: ssmparameter\n\
         \x20     - objectName: {param}\n        objectType: ssmparameter\n        objectVersion: \"1\"\n        objectAlias: param-v1\n");
    for n in &many {
        objects.push_str(&format!(
            "      - objectName: {n}\n        objectType: ssmparameter\n"
        ));
    }
    let config = spc(&dir, "", &objects);
    let (role, token_file, _) = irsa(moto, &dir, "ver-reader", true);
    let out = out_dir(&dir);
    let r = init(&config, &out, &irsa_env(moto, &role, &token_file), &[]);
    r.expect_code(0);
    assert_eq!(read(out.join(&secret)), "second");
    assert_eq!(read(out.join("previous")), "first");
    assert_eq!(read(out.join("by-id")), "first");
    assert_eq!(
        std::fs::read(out.join(&binary)).unwrap(),
        raw,
        "SecretBinary is written as its raw bytes"
    );
    assert_eq!(read(out.join(&param)), "p-two");
    assert_eq!(read(out.join("param-v1")), "p-one");
    for n in &many {
        assert_eq!(read(out.join(n)), format!("value-of-{n}"));
    }
    // 4 GetSecretValue + ceil(14 / 10) GetParameters.
    assert_eq!(
        logged_number(&r.stderr, "aws_requests"),
        Some(6),
        "{}",
        r.stderr
    );
}

#[test]
fn sighup_makes_the_sidecar_poll_at_once_instead_of_ending_it() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let param = unique("hup-param");
    admin(
        moto,
        "ssm",
        "put_parameter",
        json!({"Name": param, "Value": "one", "Type": "String"}),
    );
    let (role, token_file, _) = irsa(moto, &dir, "hup-reader", true);
    let config = spc(
        &dir,
        "",
        &format!("      - objectName: {param}\n        objectType: ssmparameter\n"),
    );
    let out = out_dir(&dir);
    let env = irsa_env(moto, &role, &token_file);
    let mut sidecar = sidecar(&config, &out, &dir, &env, &["--poll-interval", "1h"]);
    sidecar.wait_ready(Duration::from_secs(20));
    admin(
        moto,
        "ssm",
        "put_parameter",
        json!({"Name": param, "Value": "two", "Type": "String", "Overwrite": true}),
    );
    sidecar.signal(libc::SIGHUP);
    assert!(
        sidecar.eventually(Duration::from_secs(10), || read(out.join(&param)) == "two"),
        "{}",
        sidecar.log_text()
    );
    assert_eq!(
        sidecar.stop().0,
        Some(0),
        "still running after SIGHUP, and stops cleanly"
    );
}

/// `--state-dir` keeps the session credentials: a second process of the same role signs with
/// them (no STS exchange, counted by secretdrop and visible in moto's answers), a process of
/// another role exchanges its own; the file is 0600 and its keys reach no log line.
#[test]
fn state_dir_keeps_the_session_credentials_for_the_next_process() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let secret = unique("kept-creds");
    admin(
        moto,
        "secretsmanager",
        "create_secret",
        json!({"Name": secret, "SecretString": "v1-value"}),
    );
    let (role, token_file, token) = irsa(moto, &dir, "state-reader", true);
    let config = spc(
        &dir,
        "",
        &format!("      - objectName: {secret}\n        objectType: secretsmanager\n"),
    );
    let out = out_dir(&dir);
    let state = dir.join("state");
    let env = irsa_env(moto, &role, &token_file);
    let first = init(
        &config,
        &out,
        &env,
        &["--state-dir", state.to_str().unwrap()],
    );
    first.expect_code(0).expect_no_leak(&[&token, "v1-value"]);
    assert_eq!(
        logged_number(&first.stderr, "credential_exchanges"),
        Some(1),
        "{}",
        first.stderr
    );
    let file = state.join("state.json");
    assert_eq!(common::cli::mode_of(&file), 0o600);
    let recorded: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let key = recorded["secret_access_key"].as_str().unwrap().to_string();
    assert!(!key.is_empty());

    // The next process (the sidecar after init, a restart): no exchange at all.
    let second = init(
        &config,
        &out,
        &env,
        &["--state-dir", state.to_str().unwrap()],
    );
    second
        .expect_code(0)
        .expect_no_leak(&[&token, &key, "v1-value"]);
    assert_eq!(
        logged_number(&second.stderr, "credential_exchanges"),
        Some(0),
        "{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains("adopted the recorded AWS credentials"),
        "{}",
        second.stderr
    );
    assert_eq!(read(out.join(&secret)), "v1-value");

    // Another role's process does not take them: it exchanges its own.
    let (other_role, other_token_file, _) = irsa(moto, &dir, "other-reader", true);
    let third = init(
        &config,
        &out,
        &irsa_env(moto, &other_role, &other_token_file),
        &["--state-dir", state.to_str().unwrap()],
    );
    third.expect_code(0).expect_no_leak(&[&key]);
    assert_eq!(
        logged_number(&third.stderr, "credential_exchanges"),
        Some(1),
        "{}",
        third.stderr
    );
}

/// `exec --config` fetches an AWS class straight into the app's environment.
#[test]
fn exec_with_an_aws_config_puts_the_value_in_the_environment() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let secret = unique("exec-aws");
    admin(
        moto,
        "secretsmanager",
        "create_secret",
        json!({"Name": secret, "SecretString": "exec-value"}),
    );
    let (role, token_file, _) = irsa(moto, &dir, "exec-reader", true);
    let config = spc(&dir, "", &format!("      - objectName: {secret}\n        objectAlias: pw\n        objectType: secretsmanager\n"));
    let r = run(
        &[
            "exec",
            "--config",
            config.to_str().unwrap(),
            "--env",
            "APP_PASSWORD=pw",
            "--",
            "/bin/sh",
            "-c",
            "printf %s \"$APP_PASSWORD\"",
        ],
        &irsa_env(moto, &role, &token_file),
    );
    r.expect_code(0);
    assert_eq!(r.stdout, "exec-value");
}

/// STS's `<Code>` and `<Message>` (or whoever answers in its place) reach the log and the
/// terminal escaped and capped: no terminal escape, BEL or CR passes through.
#[test]
fn sts_error_text_reaches_the_terminal_escaped_and_capped() {
    let moto = Moto::shared();
    let dir = TestDir::new();
    let (role, token_file, token) = irsa(moto, &dir, "escaped", true);
    let code = "Evil\u{1b}[2J\u{7}Code";
    let message = format!("\u{1b}]0;owned\u{7}\rforged\u{202e}{}", "y".repeat(30_000));
    let xml = format!(
        "<ErrorResponse><Error><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
    );
    let body = xml.clone();
    let sts = common::hostile::Proxy::start("127.0.0.1", None, move |_| {
        common::hostile::Act::Reply(
            format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
    });
    let mut env = irsa_env(moto, &role, &token_file);
    env.push(("AWS_ENDPOINT_URL_STS".into(), sts.addr()));
    let config = spc(
        &dir,
        "",
        "      - objectName: anything\n        objectType: secretsmanager\n",
    );
    let r = init(&config, &out_dir(&dir), &env, &["--timeout", "5s"]);
    assert_ne!(r.code, 0);
    r.expect_no_leak(&[&token]);
    for raw in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(
            !r.stderr.contains(raw),
            "{raw:?} reached the terminal: {:?}",
            r.stderr
        );
    }
    assert!(
        r.stderr.contains("Evil\\u{1b}[2J\\u{7}Code"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.len() < 8_000, "{} bytes", r.stderr.len());
}
