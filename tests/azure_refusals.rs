//! `provider: azure`: bad classes (exit 2, the field named, nothing written), Key Vault's and
//! Entra's refusals (exit 1, their words, nothing written, nothing secret printed), hostile
//! answers, and the other ways to a token and other clouds (IMDS, China, a custom cloud).

mod common;
#[path = "azure/scene.rs"]
mod scene;

use std::path::Path;
use std::time::Duration;

use common::azure::{Azure, PUBLIC_LOGIN};
use common::cli::{read, run_command};
use common::{unique, TestDir};
use scene::{as_refs, assert_empty, class, file, Scene};
use serde_json::json;

/// Mistakes in the class are exit 2, name the field and what is allowed, and write nothing.
#[test]
fn bad_classes_are_exit_2_naming_the_field_and_write_nothing() {
    let s = Scene::new(&["secrets/get"]);
    s.secret("s1", "v1");
    let ok = "objectName: s1\nobjectType: secret";
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "    usePodIdentity: \"true\"\n",
            &[ok],
            &[
                "spec.parameters.usePodIdentity",
                "retired",
                "Workload Identity",
            ],
        ),
        (
            "    useAzureTokenProxy: \"true\"\n",
            &[ok],
            &["spec.parameters.useAzureTokenProxy", "not supported"],
        ),
        (
            "    usePodIdentity: \"yes\"\n",
            &[ok],
            &["spec.parameters.usePodIdentity", "not a boolean"],
        ),
        (
            "    region: westeurope\n",
            &[ok],
            &[
                "spec.parameters.region",
                "unknown parameter for provider azure",
            ],
        ),
        (
            "    cloudName: AzureGermanCloud\n",
            &[ok],
            &["spec.parameters.cloudName", "AzureChinaCloud"],
        ),
        (
            "    cloudName: AzureStackCloud\n",
            &[ok],
            &["cloudEnvFileName", "AZURE_ENVIRONMENT_FILEPATH"],
        ),
        (
            "    cloudEnvFileName: /etc/env.json\n",
            &[ok],
            &[
                "spec.parameters.cloudEnvFileName",
                "only applies with cloudName: AzureStackCloud",
            ],
        ),
        (
            "    useVMManagedIdentity: \"true\"\n    clientID: abc\n",
            &[ok],
            &["spec.parameters.clientID", "not both"],
        ),
        (
            "    userAssignedIdentityID: abc\n",
            &[ok],
            &[
                "spec.parameters.userAssignedIdentityID",
                "useVMManagedIdentity",
            ],
        ),
        (
            "",
            &["objectName: s1\nobjectType: Secret"],
            &[
                "spec.parameters.objects.array[0].objectType",
                "secret, key, cert",
            ],
        ),
        (
            "",
            &["objectName: s1\nobjectType: key\nobjectFormat: pfx"],
            &[
                "array[0].objectFormat",
                "only applies to objectType: secret",
            ],
        ),
        (
            "",
            &["objectName: s1\nobjectType: key\nobjectEncoding: hex"],
            &["array[0].objectEncoding"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectAlias: ../../etc/passwd"],
            &["array[0].objectAlias", ".."],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectAlias: a..b"],
            &["array[0].objectAlias", ".."],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectAlias: /etc/x"],
            &["array[0].objectAlias", "absolute"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nfilePermission: \"0999\""],
            &["array[0].filePermission", "octal"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectVersionHistory: -1"],
            &["array[0].objectVersionHistory"],
        ),
        (
            "",
            &["objectName: s1\nobjectType: secret\nobjectname: typo"],
            &["array[0].objectname", "unknown field"],
        ),
        (
            "",
            &[ok, "objectName: s1\nobjectType: key"],
            &["array[1]", "collides"],
        ),
    ];
    for (i, (params, objects, fragments)) in cases.iter().enumerate() {
        let spc = s.write(&format!("bad-{i}.yaml"), &class(&s, params, objects));
        let out = s.out(&format!("bad-{i}"));
        let run = s.init(&spc, &out, &[]);
        run.expect_code(2).expect_stderr(fragments);
        assert_empty(&out);
    }
    // The tenant is the class's or AZURE_TENANT_ID's: without either, exit 2 before any request.
    let text = class(&s, "", &[ok]).replace(&format!("    tenantId: {}\n", s.id.tenant), "");
    let spc = s.write("no-tenant.yaml", &text);
    let out = s.out("no-tenant");
    let mut env = s.env();
    env.retain(|(k, _)| k != "AZURE_TENANT_ID");
    let args = [
        "init",
        "--config",
        spc.to_str().unwrap(),
        "--dir",
        out.to_str().unwrap(),
    ];
    s.run(&args, &env)
        .expect_code(2)
        .expect_stderr(&["tenantId", "AZURE_TENANT_ID"]);
    assert_empty(&out);
    // With it, the same class works.
    s.run(&args, &s.env()).expect_code(0);
}

/// What Key Vault and Entra refuse is exit 1 with their code and message, the object and the
/// vault named, nothing written, no secret or token in the output.
#[test]
fn refusals_name_the_object_the_vault_and_the_services_words() {
    let s = Scene::new(&["secrets/get"]);
    s.secret("ok", "readable-value");
    let (_, _) = s.rsa_key("nokey");
    let disabled = s.secret("off", "disabled-value");
    s.az.admin(
        json!({"op": "enable", "host": s.host, "collection": "secrets", "name": "off",
        "version": disabled, "enabled": false}),
    );
    let token = read(&s.id.token_file);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["objectName: nokey\nobjectType: key"],
            &[
                "object \"nokey\" (key/nokey)",
                &s.vault,
                "HTTP 403 Forbidden (AccessDenied)",
                "does not have keys get permission",
                "grant this identity get",
            ],
        ),
        (
            &["objectName: absent\nobjectType: secret"],
            &[
                "object \"absent\" (secret/absent)",
                "HTTP 404 SecretNotFound",
                "A secret with (name/id) absent was not found",
            ],
        ),
        (
            &["objectName: off\nobjectType: secret"],
            &[
                "HTTP 403 Forbidden (SecretDisabled)",
                "not allowed on a disabled secret",
            ],
        ),
    ];
    for (i, (objects, fragments)) in cases.iter().enumerate() {
        let mut objects = objects.to_vec();
        objects.insert(0, "objectName: ok\nobjectType: secret");
        let spc = s.write(&format!("refused-{i}.yaml"), &class(&s, "", &objects));
        let out = s.out(&format!("refused-{i}"));
        s.init(&spc, &out, &["--timeout", "5s"])
            .expect_code(1)
            .expect_stderr(fragments)
            .expect_no_leak(&["readable-value", &token]);
        assert_empty(&out);
    }
    // A token of another service account: Entra's AADSTS700213, without the token.
    let wrong = common::TokenReviewer::shared().mint(
        &common::SaClaims::new("default", "intruder").with_audiences(&[common::azure::AUDIENCE]),
    );
    std::fs::write(&s.id.token_file, &wrong).unwrap();
    let spc = s.write(
        "wrong.yaml",
        &class(&s, "", &["objectName: ok\nobjectType: secret"]),
    );
    let out = s.out("wrong");
    s.init(&spc, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&[
            "Entra ID token exchange",
            "invalid_request: AADSTS700213: No matching federated identity record found for presented assertion subject 'system:serviceaccount:default:intruder'",
            "federated identity credential",
        ])
        .expect_no_leak(&[&wrong]);
    assert_empty(&out);
    // A token for the wrong audience: AADSTS700212.
    let aud = common::TokenReviewer::shared().mint(&common::SaClaims::new("default", "app"));
    std::fs::write(&s.id.token_file, &aud).unwrap();
    s.init(&spc, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["AADSTS700212"])
        .expect_no_leak(&[&aud]);
    assert_empty(&out);
}

/// Hostile answers: a nextLink or a redirect to another origin gets no token (nothing at all
/// reaches it), a huge body and a trickling one are cut off in bounded time and memory,
/// throttling is waited out; nothing is written on failure.
#[test]
fn hostile_answers_are_bounded_and_the_token_stays_home() {
    let s = Scene::new(&["secrets/get", "secrets/list"]);
    for i in 0..3 {
        s.az.admin(json!({"op": "secret", "host": s.host, "name": "hist", "value": format!("v{i}"), "created": 1000 + i}));
    }
    s.secret("plain", "plain-value");
    let evil_before = s.az.requests_to(common::azure::EVIL, "/").len();
    let history = s.write(
        "history.yaml",
        &class(
            &s,
            "",
            &["objectName: hist\nobjectType: secret\nobjectVersionHistory: 2"],
        ),
    );
    let plain = s.write(
        "plain.yaml",
        &class(&s, "", &["objectName: plain\nobjectType: secret"]),
    );
    let rule = |path: &str, rule: serde_json::Value| {
        s.az.admin(json!({"op": "behave"}));
        let mut r = rule;
        r["host"] = json!(s.host);
        r["path"] = json!(path);
        s.az.admin(json!({"op": "misbehave", "rule": r}));
    };
    // nextLink elsewhere.
    rule(
        "/secrets/hist/versions",
        json!({"action": "nextlink", "to": format!("https://{}/secrets/hist/versions?api-version=7.4&$skiptoken=1", common::azure::EVIL)}),
    );
    let out = s.out("nextlink");
    s.init(&history, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&[
            "ForeignNextLink",
            "evil.example.com",
            "the token is not sent there",
        ]);
    assert_empty(&out);
    // nextLink on the vault's host but another path (another object's list) is refused too.
    rule(
        "/secrets/hist/versions",
        json!({"action": "nextlink", "to": format!("https://{}:443/secrets/plain/versions?api-version=7.4", s.host)}),
    );
    s.init(&history, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["ForeignNextLink"]);
    // A redirect.
    rule(
        "/secrets/plain",
        json!({"action": "redirect", "to": format!("https://{}/secrets/plain", common::azure::EVIL)}),
    );
    s.init(&plain, &out, &["--timeout", "5s"])
        .expect_code(1)
        .expect_stderr(&["HTTP 307 Redirect", "not followed"]);
    assert_empty(&out);
    assert_eq!(
        s.az.requests_to(common::azure::EVIL, "/").len(),
        evil_before,
        "nothing reached the other origin"
    );
    // 64 MiB of body: refused at 1 MiB, quickly.
    rule("/secrets/plain", json!({"action": "huge", "chunks": 1024}));
    let run = s.init(&plain, &out, &["--timeout", "5s"]);
    run.expect_code(1)
        .expect_stderr(&["larger than 1048576 bytes"]);
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
    assert_empty(&out);
    // One byte a second: init gives up at its timeout, not at the body's end.
    rule("/secrets/plain", json!({"action": "slow"}));
    let run = s.init(&plain, &out, &["--timeout", "3s"]);
    run.expect_code(1);
    assert!(run.elapsed < Duration::from_secs(8), "{:?}", run.elapsed);
    assert_empty(&out);
    // Entra ID's token endpoint answering 64 MiB, or redirecting the assertion elsewhere.
    s.az.admin(json!({"op": "behave"}));
    let token_path = format!("/{}/oauth2/v2.0/token", s.id.tenant);
    for (rule, want) in [
        (
            json!({"action": "huge", "chunks": 1024}),
            "larger than 65536 bytes",
        ),
        (
            json!({"action": "redirect", "to": format!("https://{}/steal", common::azure::EVIL)}),
            "HTTP 307",
        ),
    ] {
        let mut r = rule;
        r["host"] = json!(PUBLIC_LOGIN);
        r["path"] = json!(token_path);
        s.az.admin(json!({"op": "behave"}));
        s.az.admin(json!({"op": "misbehave", "rule": r}));
        let run = s.init(&plain, &out, &["--timeout", "5s"]);
        run.expect_code(1)
            .expect_stderr(&["Entra ID token exchange", want]);
        assert_empty(&out);
    }
    assert_eq!(
        s.az.requests_to(common::azure::EVIL, "/").len(),
        evil_before,
        "the assertion went nowhere else"
    );
    // Throttled twice (429 with Retry-After), then answered: the read succeeds.
    s.az.admin(json!({"op": "behave"}));
    s.az.admin(json!({"op": "misbehave", "rule": {"host": s.host, "path": "/secrets/plain", "action": "throttle", "retry_after": 1, "count": 2}}));
    let before = s.vault_requests();
    s.init(&plain, &out, &["--timeout", "20s"]).expect_code(0);
    assert_eq!(file(&out, "plain"), "plain-value");
    assert_eq!(
        s.vault_requests() - before,
        3,
        "two throttled, one answered"
    );
    s.az.admin(json!({"op": "behave"}));
}

/// Managed identity through IMDS (`useVMManagedIdentity`), the China cloud, and a custom
/// cloud from its environment file (`cloudEnvFileName`, or `AZURE_ENVIRONMENT_FILEPATH`).
#[test]
fn imds_and_other_clouds() {
    let az = Azure::shared();
    let dir = TestDir::new();
    let tenant = unique("tenant");
    let (a, b) = (unique("uami"), unique("uami"));
    for c in [&a, &b] {
        az.admin(json!({"op": "app", "client_id": c, "tenant": tenant}));
    }
    az.admin(json!({"op": "vm_identities", "user": [a, b]}));
    let vault = unique("kv");
    let host = az.vault(&vault, &tenant, PUBLIC_LOGIN, json!({&a: ["secrets/get"]}));
    az.admin(json!({"op": "secret", "host": host, "name": "s", "value": "from-imds"}));
    let ca = az.ca.display().to_string();
    let env = [("SSL_CERT_FILE", ca.as_str())];
    let spc = |params: &str, vault: &str, tenant: &str| {
        format!("apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata:\n  name: t\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: {vault}\n    tenantId: {tenant}\n{params}    objects: |\n      array:\n        - |\n          objectName: s\n          objectType: secret\n")
    };
    let run = |config: &Path, out: &Path, env: &[(&str, &str)]| {
        run_command(
            az.command(common::cli::bin()),
            &[
                "init",
                "--config",
                config.to_str().unwrap(),
                "--dir",
                out.to_str().unwrap(),
                "--timeout",
                "5s",
            ],
            env,
        )
    };
    let uami = common::cli::write(
        dir.path(),
        "uami.yaml",
        &spc(
            &format!("    useVMManagedIdentity: \"true\"\n    userAssignedIdentityID: {a}\n"),
            &vault,
            &tenant,
        ),
    );
    let out = dir.join("uami");
    std::fs::create_dir(&out).unwrap();
    run(&uami, &out, &env).expect_code(0);
    assert_eq!(read(out.join("s")), "from-imds");
    assert_eq!(az.exchanges(&a), 1);
    let imds = az.requests_to("169.254.169.254", "/metadata/identity/oauth2/token");
    let last = imds.last().unwrap();
    assert!(
        last["query"]
            .as_str()
            .unwrap()
            .contains(&format!("client_id={a}")),
        "{last}"
    );
    // Two identities on the node and none named: IMDS's own words.
    let system = common::cli::write(
        dir.path(),
        "system.yaml",
        &spc("    useVMManagedIdentity: \"true\"\n", &vault, &tenant),
    );
    let out = dir.join("system");
    std::fs::create_dir(&out).unwrap();
    run(&system, &out, &env)
        .expect_code(1)
        .expect_stderr(&["IMDS", "Multiple user assigned identities exist"]);
    assert_empty(&out);

    // China: its authority and its vault suffix; the public authority would not do.
    let id = az.workload(dir.path(), &tenant, "default", "app");
    let cn = unique("kv");
    let cn_host = az.vault(
        &cn,
        &tenant,
        common::azure::CHINA_LOGIN,
        json!({&id.client_id: ["secrets/get"]}),
    );
    assert!(cn_host.ends_with(".vault.azure.cn"));
    az.admin(json!({"op": "secret", "host": cn_host, "name": "s", "value": "from-china"}));
    let wi_env = |extra: &[(&'static str, String)]| {
        let mut e = vec![
            ("SSL_CERT_FILE", ca.clone()),
            ("AZURE_CLIENT_ID", id.client_id.clone()),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                id.token_file.display().to_string(),
            ),
        ];
        e.extend(extra.iter().cloned());
        e
    };
    let china = common::cli::write(
        dir.path(),
        "china.yaml",
        &spc("    cloudName: azurechinacloud\n", &cn, &tenant),
    );
    let out = dir.join("china");
    std::fs::create_dir(&out).unwrap();
    // AZURE_AUTHORITY_HOST does not move a named cloud's authority.
    let e = wi_env(&[(
        "AZURE_AUTHORITY_HOST",
        "https://login.microsoftonline.com/".into(),
    )]);
    run(&china, &out, &as_refs(&e)).expect_code(0);
    assert_eq!(read(out.join("s")), "from-china");
    assert_eq!(
        az.requests_to(
            common::azure::CHINA_LOGIN,
            &format!("/{tenant}/oauth2/v2.0/token")
        )
        .len(),
        1
    );

    // A custom cloud from its environment file, named by the class or by the environment.
    let st = unique("kv");
    let st_host = az.vault(
        &st,
        &tenant,
        common::azure::STACK_LOGIN,
        json!({&id.client_id: ["secrets/get"]}),
    );
    az.admin(json!({"op": "secret", "host": st_host, "name": "s", "value": "from-the-stack"}));
    let envfile = common::cli::write(dir.path(), "stack.json", &json!({
        "name": "AzureStackCloud", "managementPortalURL": "https://portal.stack.example/",
        "activeDirectoryEndpoint": format!("https://{}/", common::azure::STACK_LOGIN),
        "keyVaultEndpoint": "https://vault.stack.example/", "keyVaultDNSSuffix": common::azure::STACK_SUFFIX,
        "resourceManagerEndpoint": "https://management.stack.example/"}).to_string());
    let stack = common::cli::write(
        dir.path(),
        "stack.yaml",
        &spc(
            &format!(
                "    cloudName: AzureStackCloud\n    cloudEnvFileName: {}\n",
                envfile.display()
            ),
            &st,
            &tenant,
        ),
    );
    let out = dir.join("stack");
    std::fs::create_dir(&out).unwrap();
    run(&stack, &out, &as_refs(&wi_env(&[]))).expect_code(0);
    assert_eq!(read(out.join("s")), "from-the-stack");
    let by_env = common::cli::write(
        dir.path(),
        "stack-env.yaml",
        &spc("    cloudName: AzureStackCloud\n", &st, &tenant),
    );
    let out = dir.join("stack-env");
    std::fs::create_dir(&out).unwrap();
    run(
        &by_env,
        &out,
        &as_refs(&wi_env(&[(
            "AZURE_ENVIRONMENT_FILEPATH",
            envfile.display().to_string(),
        )])),
    )
    .expect_code(0);
    assert_eq!(read(out.join("s")), "from-the-stack");
}
