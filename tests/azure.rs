//! `provider: azure` end to end against the Azure stand-in (tests/azure/standin.py, checked
//! with Azure's own SDKs here) at the real host names, inside a network namespace: the CSI
//! driver's own Azure classes byte for byte, rotation by the sidecar, the token kept across
//! processes and refreshed with the rotated token file, and `check`. The provider's output
//! rules are in azure_output.rs, refusals and hostile answers in azure_refusals.rs.

mod common;
#[path = "azure/scene.rs"]
mod scene;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::azure::{Azure, Workload, PUBLIC_LOGIN};
use common::cli::read;
use common::{unique, TestDir};
use scene::{base64_of, chain, class, envsubst, file, fixture, Scene};
use serde_json::json;

#[test]
fn the_drivers_e2e_classes_render_the_secret_and_the_key_with_one_exchange_and_one_get_each() {
    let s = Scene::new(&["secrets/get", "keys/get"]);
    s.secret("secret1", "test");
    let (key_version, public) = s.rsa_key("key1");
    let vars = [
        ("API_VERSION", "secrets-store.csi.x-k8s.io/v1"),
        ("KEYVAULT_NAME", s.vault.as_str()),
        ("SECRET_NAME", "secret1"),
        ("SECRET_VERSION", ""),
        ("KEY_NAME", "key1"),
        ("KEY_VERSION", key_version.as_str()),
        ("TENANT_ID", s.id.tenant.as_str()),
        ("AZURE_TENANT_ID", s.id.tenant.as_str()),
        ("IDENTITY_CLIENT_ID", s.id.client_id.as_str()),
    ];
    // Secret and key (the inline-volume test): one exchange, one GET per object.
    let spc = s.write(
        "v1alpha1.yaml",
        &envsubst(&fixture("azure_v1alpha1_secretproviderclass.yaml"), &vars),
    );
    let out = s.out("inline");
    let before = (s.exchanges(), s.vault_requests());
    s.init(&spc, &out, &[]).expect_code(0);
    assert_eq!(file(&out, "secret1"), "test");
    assert_eq!(
        file(&out, "key1"),
        public,
        "the key as PKIX PEM, as openssl writes it"
    );
    assert!(
        base64_of(&file(&out, "key1")).starts_with("LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K"),
        "azure.bats KEY_VALUE_CONTAINS"
    );
    assert_eq!(
        (s.exchanges() - before.0, s.vault_requests() - before.1),
        (1, 2),
        "{:#?}",
        s.az.requests_to(&s.host, "/")
    );
    let reads: Vec<String> =
        s.az.requests_to(&s.host, "/")
            .iter()
            .map(|r| {
                format!(
                    "{} {}?{}",
                    r["method"].as_str().unwrap(),
                    r["path"].as_str().unwrap(),
                    r["query"].as_str().unwrap()
                )
            })
            .collect();
    assert!(
        reads.contains(&"GET /secrets/secret1/?api-version=7.4".to_string()),
        "{reads:?}"
    );
    assert!(
        reads.contains(&format!("GET /keys/key1/{key_version}?api-version=7.4")),
        "{reads:?}"
    );
    assert!(
        s.az.requests_to(&s.host, "/")
            .iter()
            .all(|r| r["auth"] == true),
        "the token goes with the first request: the cloud is known, no challenge round trip"
    );

    // The sync class: alias for the secret; the v1 class: clientID in the class.
    // ... as the older v1alpha1 API the driver still serves.
    let mut alpha = vars;
    alpha[0] = ("API_VERSION", "secrets-store.csi.x-k8s.io/v1alpha1");
    let spc = s.write(
        "sync.yaml",
        &envsubst(
            &fixture("azure_synck8s_v1_secretproviderclass.yaml"),
            &alpha,
        ),
    );
    let out = s.out("sync");
    s.init(&spc, &out, &[]).expect_code(0);
    assert_eq!(file(&out, "secretalias"), "test");
    assert_eq!(file(&out, "key1"), public);
    let spc = s.write(
        "v1.yaml",
        &envsubst(&fixture("azure_v1_secretproviderclass.yaml"), &vars),
    );
    let out = s.out("v1");
    let mut env = s.env();
    env.retain(|(k, _)| k != "AZURE_CLIENT_ID" && k != "AZURE_TENANT_ID");
    s.run(
        &[
            "init",
            "--config",
            spc.to_str().unwrap(),
            "--dir",
            out.to_str().unwrap(),
        ],
        &env,
    )
    .expect_code(0);
    assert_eq!(file(&out, "secret1"), "test");
    common::cli::assert_layout(&out, &["secret1"]);
    assert_eq!(common::cli::mode_of(out.join("secret1")) & 0o777, 0o644);

    // The two classes of one file, as two volumes of one pod (the annotations a converted
    // pod carries, one per class).
    let both = envsubst(
        &fixture("azure_v1_multiple_secretproviderclass.yaml"),
        &vars,
    );
    let (first, second) = both.split_once("---\n").unwrap();
    let quoted = |t: &str| serde_json::to_string(t).unwrap();
    let config = s.write(
        "annotations",
        &format!(
            "csi.secretdrop.dev/spc-0={}\ncsi.secretdrop.dev/spc-1={}\n",
            quoted(first),
            quoted(second)
        ),
    );
    let (oa, ob) = (s.out("spc-0"), s.out("spc-1"));
    let before = s.exchanges();
    let va = format!("spc-0={}", oa.display());
    let vb = format!("spc-1={}", ob.display());
    let own = s.dir.join("own");
    s.run(
        &[
            "init",
            "--config",
            config.to_str().unwrap(),
            "--dir",
            own.to_str().unwrap(),
            "--volume",
            &va,
            "--volume",
            &vb,
        ],
        &env,
    )
    .expect_code(0);
    assert_eq!(
        (file(&oa, "secretalias"), file(&ob, "secretalias")),
        ("test".into(), "test".into())
    );
    assert_eq!(
        s.exchanges() - before,
        1,
        "two volumes of one vault and identity share one token"
    );
}

/// The driver's rotation class under the sidecar: a new version in Key Vault reaches the file
/// at the next poll, an unchanged vault leaves `..data` alone; init then the sidecar then a
/// restarted sidecar make one token exchange in all (the token kept in `--state-dir`).
#[test]
fn the_sidecar_rotates_and_init_sidecar_and_restart_share_one_token_exchange() {
    let s = Scene::new(&["secrets/get"]);
    let name = unique("rotated");
    s.secret(&name, "BeforeRotation");
    let vars = [
        ("API_VERSION", "secrets-store.csi.x-k8s.io/v1"),
        ("KEYVAULT_NAME", s.vault.as_str()),
        ("AUTO_ROTATE_SECRET_NAME", name.as_str()),
        ("TENANT_ID", s.id.tenant.as_str()),
    ];
    let spc = s.write(
        "rotation.yaml",
        &envsubst(
            &fixture("rotation_azure_synck8s_v1_secretproviderclass.yaml"),
            &vars,
        ),
    );
    let out = s.out("out");
    let state = s.dir.join("state");
    let state_arg = ["--state-dir", state.to_str().unwrap()];
    s.init(&spc, &out, &state_arg).expect_code(0);
    assert_eq!(file(&out, "secretalias"), "BeforeRotation");
    assert_eq!(s.exchanges(), 1);
    let saved = read(state.join("state.json"));
    assert!(saved.contains("secretdrop.dev/state/azure/v1"));
    assert_eq!(
        common::cli::mode_of(state.join("state.json")) & 0o777,
        0o600
    );

    let mut args = vec!["--poll-interval", "1s"];
    args.extend(state_arg);
    let mut sidecar = s.sidecar(&spc, &out, &args);
    sidecar.wait_ready(Duration::from_secs(20));
    let version = common::cli::current_version(&out);
    let gets = s.vault_requests();
    assert!(
        sidecar.eventually(Duration::from_secs(10), || s.vault_requests() >= gets + 2),
        "two more polls"
    );
    assert_eq!(
        common::cli::current_version(&out),
        version,
        "unchanged vault, ..data untouched"
    );
    s.secret(&name, "AfterRotation");
    assert!(
        sidecar.eventually(Duration::from_secs(10), || file(&out, "secretalias")
            == "AfterRotation"),
        "{}",
        sidecar.log_text()
    );
    assert_ne!(common::cli::current_version(&out), version);
    let (code, _) = sidecar.stop();
    assert_eq!(code, Some(0));
    let mut restarted = s.sidecar(&spc, &out, &args);
    restarted.wait_ready(Duration::from_secs(20));
    let log = sidecar.log_text() + &restarted.log_text();
    assert!(
        log.contains("adopted the recorded Key Vault token"),
        "{log}"
    );
    assert_eq!(
        s.exchanges(),
        1,
        "init, sidecar and restart: one exchange\n{log}"
    );
    let token = read(&s.id.token_file);
    for leak in [token.as_str(), "AfterRotation", "BeforeRotation"] {
        assert!(!log.contains(leak), "{leak} in the log");
    }
    let access: serde_json::Value = serde_json::from_str(&saved).unwrap();
    assert!(!log.contains(access["access_token"].as_str().unwrap()));
    restarted.stop();
}

/// The stand-in against Azure's own Python SDKs (tests/azure/sdk_check.py): they take its
/// challenge, its token endpoint, its answers, its paging and its errors as the real
/// services'. What they read is compared with what the stand-in was given.
#[test]
fn the_stand_in_satisfies_azures_own_sdks() {
    let s = Scene::new(&[
        "secrets/get",
        "secrets/list",
        "secrets/set",
        "keys/get",
        "certificates/get",
    ]);
    s.az.admin(json!({"op": "vault", "name": s.vault, "tenant": s.id.tenant, "authority": PUBLIC_LOGIN,
        "policies": {&s.id.client_id: ["secrets/get", "secrets/list", "secrets/set", "keys/get", "certificates/get"]},
        "page_size": 2}));
    let name = "sdk-secret";
    let versions: Vec<String> = (0..5)
        .map(|i| s.secret(name, &format!("value-{i}")))
        .collect();
    let (key_version, _) = s.rsa_key("sdk-key");
    let c = chain(s.dir.path(), "sdk", None);
    let cert_version = s.az.admin(
        json!({"op": "certificate", "host": s.host, "name": "sdk-cert",
        "private_key": c.key, "certificates": [c.leaf], "contentType": "application/x-pkcs12"}),
    )["version"]
        .as_str()
        .unwrap()
        .to_string();
    let denied =
        s.az.workload(s.dir.path(), &s.id.tenant, "default", "other");
    let wrong = common::TokenReviewer::shared().mint(
        &common::SaClaims::new("default", "not-the-app").with_audiences(&[common::azure::AUDIENCE]),
    );
    let wrong_file = s.write("wrong.token", &wrong);
    // The custom cloud.
    let stack_tenant = unique("tenant");
    let stack_id = s.az.workload(s.dir.path(), &stack_tenant, "default", "app");
    let stack_vault = unique("kv");
    let stack_host = s.az.vault(
        &stack_vault,
        &stack_tenant,
        common::azure::STACK_LOGIN,
        json!({&stack_id.client_id: ["secrets/get"]}),
    );
    s.az.admin(json!({"op": "secret", "host": stack_host, "name": "stack-secret", "value": "from-the-stack"}));

    let cfg = json!({
        "vault_url": format!("https://{}/", s.host), "tenant": s.id.tenant, "client_id": s.id.client_id,
        "token_file": s.id.token_file, "secret": name, "missing": "no-such-secret", "key": "sdk-key",
        "cert": "sdk-cert", "denied_client_id": denied.client_id, "denied_token_file": denied.token_file,
        "wrong_token_file": wrong_file,
        "stack": {"vault_url": format!("https://{stack_host}/"), "tenant": stack_tenant,
            "client_id": stack_id.client_id, "token_file": stack_id.token_file,
            "authority": common::azure::STACK_LOGIN, "secret": "stack-secret"},
    });
    let mut cmd = s.az.command("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/azure/sdk_check.py"))
        .env("REQUESTS_CA_BUNDLE", &s.az.ca)
        .env("SSL_CERT_FILE", &s.az.ca)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("AZURE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cfg.to_string().as_bytes())
        .unwrap();
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "sdk_check.py (pip install the SDKs with scripts/tools.sh):\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(got["secret"], "value-4");
    let mut sorted = versions.clone();
    sorted.sort();
    assert_eq!(
        got["versions"],
        json!(sorted),
        "five versions over three pages (nextLink)"
    );
    assert!(
        s.az.requests_to(&s.host, &format!("/secrets/{name}/versions"))
            .iter()
            .filter(|r| r["status"] == 200)
            .count()
            == 3
    );
    assert_eq!(got["after_write"], "written-by-the-sdk");
    assert!(!versions.contains(&got["written_version"].as_str().unwrap().to_string()));
    assert_eq!(
        got["missing"],
        json!({"status": 404, "code": "SecretNotFound"})
    );
    assert_eq!(got["key"]["kty"], "RSA");
    assert_eq!(got["key"]["version"], key_version.as_str());
    assert_eq!(got["cert"]["version"], cert_version.as_str());
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(s.dir.join("sdk/leaf.crt"))
        .output()
        .unwrap()
        .stdout;
    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(got["cert"]["cer"], hex);
    assert_eq!(
        got["cert"]["secret_id"],
        format!("https://{}/secrets/sdk-cert/{cert_version}", s.host)
    );
    assert_eq!(got["cert_secret_content_type"], "application/x-pkcs12");
    assert_eq!(got["forbidden"]["status"], 403);
    assert_eq!(got["forbidden"]["code"], "Forbidden");
    assert!(
        got["wrong_subject"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS700213"),
        "{}",
        got["wrong_subject"]
    );
    assert_eq!(got["stack_secret"], "from-the-stack");
    // The SDKs' first request to a vault is unauthenticated, answered with the challenge.
    let first = &s.az.requests_to(&s.host, "/")[0];
    assert_eq!(
        (first["auth"].clone(), first["status"].clone()),
        (json!(false), json!(401))
    );
}

/// `secretdrop check` prints the plan of an Azure class: vault, cloud, identity, requests and
/// every file with its object, never contacting anything.
#[test]
fn check_prints_the_plan_without_contacting_anything() {
    let dir = TestDir::new();
    let spc = common::cli::write(
        dir.path(),
        "spc.yaml",
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: t\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: kv-plan\n    tenantId: 72f988bf\n    clientID: 5c1d\n    cloudName: AzureChinaCloud\n    objects: |\n      array:\n        - |\n          objectName: db\n          objectType: secret\n          filePermission: \"0600\"\n        - |\n          objectName: web\n          objectType: cert\n          objectAlias: web.crt\n        - |\n          objectName: rot\n          objectType: secret\n          objectVersionHistory: 2\n",
    );
    let run = common::cli::secretdrop(&["check", "--config", spc.to_str().unwrap()], &[]);
    run.expect_code(0);
    let want = format!(
        "config: {} (valid)\n\
         azure: key vault https://kv-plan.vault.azure.cn/ in AzureChinaCloud\n\
         token: scope https://vault.azure.cn/.default from https://login.chinacloudapi.cn/\n\
         identity: workload identity, client 5c1d in tenant 72f988bf (the projected token of AZURE_FEDERATED_TOKEN_FILE or --token-path, audience api://AzureADTokenExchange)\n\
         requests per render: 2 GET, 1 version list plus one GET per version kept\n\
         files (5):\n  db 0600 <- secret/db\n  web.crt 0644 <- cert/web as certificate PEM\n  rot/0 .. rot/2 0644 <- secret/rot, newest 3 enabled versions\n",
        spc.display()
    );
    assert!(run.stdout.contains(&want), "{}", run.stdout);
}

/// A short-lived access token is replaced ahead of its expiry with the token file read afresh
/// (the kubelet rotates it): after the rotation only the new service-account token is
/// trusted, and reads go on without a gap.
#[test]
fn tokens_are_refreshed_ahead_of_expiry_with_the_rotated_token_file() {
    let az = Azure::shared();
    let dir = TestDir::new();
    let tenant = unique("tenant");
    let client = unique("client");
    let federated = |sa: &str| {
        json!([{"issuer": common::K8S_ISSUER, "subject": format!("system:serviceaccount:default:{sa}"),
            "audience": common::azure::AUDIENCE}])
    };
    az.admin(json!({"op": "app", "client_id": client, "tenant": tenant, "federated": federated("before"), "token_lifetime": 4}));
    let mint = |sa: &str| {
        common::TokenReviewer::shared()
            .mint(&common::SaClaims::new("default", sa).with_audiences(&[common::azure::AUDIENCE]))
    };
    let token_file = dir.join("token");
    std::fs::write(&token_file, mint("before")).unwrap();
    let vault = unique("kv");
    let host = az.vault(
        &vault,
        &tenant,
        PUBLIC_LOGIN,
        json!({&client: ["secrets/get"]}),
    );
    az.admin(json!({"op": "secret", "host": host, "name": "s", "value": "one"}));
    let s = Scene {
        az,
        dir,
        vault,
        host,
        id: Workload {
            tenant,
            client_id: client.clone(),
            token_file: token_file.clone(),
        },
    };
    let spc = s.write(
        "spc.yaml",
        &class(&s, "", &["objectName: s\nobjectType: secret"]),
    );
    let out = s.out("out");
    let mut sidecar = s.sidecar(&spc, &out, &["--poll-interval", "1s"]);
    sidecar.wait_ready(Duration::from_secs(20));
    // The kubelet rotates the file; Entra now trusts only the new token's subject.
    az.admin(json!({"op": "app", "client_id": client, "tenant": s.id.tenant, "federated": federated("after"), "token_lifetime": 4}));
    let rotated = mint("after");
    std::fs::write(&token_file, &rotated).unwrap();
    // Past the first token's life: reads only work with a token from the new file.
    std::thread::sleep(Duration::from_secs(5));
    az.admin(json!({"op": "secret", "host": s.host, "name": "s", "value": "two"}));
    assert!(
        sidecar.eventually(Duration::from_secs(10), || file(&out, "s") == "two"),
        "{}",
        sidecar.log_text()
    );
    assert!(az.exchanges(&client) >= 2);
    let log = sidecar.log_text();
    assert!(!log.contains(&rotated) && !log.contains("two"));
    sidecar.stop();
}

/// An adopted token Key Vault no longer takes (401) is dropped and exchanged anew, once: the
/// read succeeds with one more exchange.
#[test]
fn a_token_key_vault_refuses_is_exchanged_anew_once() {
    let s = Scene::new(&["secrets/get"]);
    s.secret("s", "v");
    let spc = s.write(
        "spc.yaml",
        &class(&s, "", &["objectName: s\nobjectType: secret"]),
    );
    let state = s.dir.join("state");
    let state_arg = ["--state-dir", state.to_str().unwrap()];
    s.init(&spc, &s.out("first"), &state_arg).expect_code(0);
    assert_eq!(s.exchanges(), 1);
    s.az.admin(json!({"op": "revoke", "client_id": s.id.client_id}));
    let run = s.init(&spc, &s.out("second"), &state_arg);
    run.expect_code(0);
    assert!(
        run.stderr.contains("adopted the recorded Key Vault token"),
        "{}",
        run.stderr
    );
    assert_eq!(s.exchanges(), 2, "one new exchange after the 401");
    let statuses: Vec<i64> =
        s.az.requests_to(&s.host, "/secrets/s")
            .iter()
            .map(|r| r["status"].as_i64().unwrap())
            .collect();
    assert_eq!(statuses, [200, 401, 200]);
}
