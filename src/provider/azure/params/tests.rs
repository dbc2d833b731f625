use super::*;
use crate::config::{self, VaultEnv};
use crate::provider::ProviderSpec;

fn parse(parameters: &str, objects: &str) -> Result<AzureSpec, ConfigError> {
    let text = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: a}}\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: kv-test\n{parameters}    objects: |\n      array:\n{objects}"
    );
    config::parse(Path::new("spc.yaml"), &text, &VaultEnv::default()).map(|s| match s.provider {
        ProviderSpec::Azure(a) => a,
        _ => panic!("not azure"),
    })
}

fn one(fields: &str) -> String {
    let lines: String = fields.lines().map(|l| format!("          {l}\n")).collect();
    format!("        - |\n{lines}")
}

#[test]
fn every_field_with_the_go_structs_empty_values_means_the_defaults() {
    // What the provider's own e2e tests generate from its Go struct: every field, "" and 0.
    let spec = parse(
        "    tenantId: \"t1\"\n    tenantID: \"t2\"\n    clientID: \"c1\"\n    cloudName: \"\"\n    useVMManagedIdentity: \"false\"\n    userAssignedIdentityID: \"\"\n    usePodIdentity: \"false\"\n    csi.storage.k8s.io/pod.name: p\n",
        &one("objectName: secret1\nobjectAlias: \"\"\nobjectVersion: \"\"\nobjectVersionHistory: 0\nobjectType: secret\nobjectFormat: \"\"\nobjectEncoding: \"\"\nfilePermission: \"\""),
    )
    .unwrap();
    assert_eq!(spec.tenant_id.as_deref(), Some("t2"), "tenantID wins");
    assert_eq!(
        spec.identity,
        Identity::Workload {
            client_id: Some("c1".into())
        }
    );
    assert!(matches!(
        spec.cloud,
        CloudChoice::Named {
            explicit: false,
            ..
        }
    ));
    let o = &spec.objects[0];
    assert_eq!(
        (o.file.as_str(), o.mode, o.history, o.version.clone()),
        ("secret1", 0o644, None, None)
    );
    assert_eq!(
        (o.format, o.encoding),
        (ObjectFormat::Pem, ObjectEncoding::Utf8)
    );
}

#[test]
fn fields_are_trimmed_null_is_empty_and_formats_are_case_insensitive() {
    let spec = parse(
        "    tenantId: \" t1 \"\n",
        &one("objectName: \" s1 \"\nobjectType: secret\nobjectAlias: null\nobjectVersion: latest\nobjectFormat: PFX\nobjectEncoding: Base64\nfilePermission: \"0755\"\nobjectVersionHistory: 3"),
    )
    .unwrap();
    let o = &spec.objects[0];
    assert_eq!(spec.tenant_id.as_deref(), Some("t1"));
    assert_eq!(o.file, "s1");
    assert_eq!(o.version, None, "latest is the current version");
    assert_eq!(
        (o.format, o.encoding, o.mode, o.history),
        (ObjectFormat::Pfx, ObjectEncoding::Base64, 0o755, Some(3))
    );
    assert_eq!(o.file_names(), ["s1/0", "s1/1", "s1/2", "s1/3"]);
}

#[test]
fn identities_and_clouds() {
    let spec = parse(
        "    useVMManagedIdentity: \"TRUE\"\n    userAssignedIdentityID: u1\n    cloudName: AzureUSGovernment\n",
        &one("objectName: k\nobjectType: key"),
    )
    .unwrap();
    assert_eq!(
        spec.identity,
        Identity::VmManaged {
            client_id: Some("u1".into())
        }
    );
    match spec.cloud {
        CloudChoice::Named { cloud, explicit } => {
            assert!(explicit);
            assert_eq!(cloud.dns_suffix, "vault.usgovcloudapi.net");
        }
        _ => panic!(),
    }
    let spec = parse(
        "    cloudName: azurestackcloud\n    cloudEnvFileName: /etc/kubernetes/azurestackcloud.json\n",
        &one("objectName: k\nobjectType: key"),
    )
    .unwrap();
    assert_eq!(
        spec.cloud,
        CloudChoice::Stack {
            file: Some("/etc/kubernetes/azurestackcloud.json".into())
        }
    );
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        (
            "    keyvaultName: ab\n",
            "objectName: s\nobjectType: secret",
            "spec.parameters.keyvaultName",
        ),
        (
            "    keyvaultName: kv_under\n",
            "objectName: s\nobjectType: secret",
            "spec.parameters.keyvaultName",
        ),
        (
            "    tenantId: \"a/b\"\n",
            "objectName: s\nobjectType: secret",
            "spec.parameters.tenantId",
        ),
        (
            "",
            "objectName: s\nobjectType: cert\nobjectFormat: pfx",
            "array[0].objectFormat",
        ),
        (
            "",
            "objectName: s\nobjectType: secret\nobjectEncoding: utf-16",
            "array[0].objectEncoding",
        ),
        (
            "",
            "objectName: s/x\nobjectType: secret",
            "array[0].objectName",
        ),
        (
            "",
            "objectName: s\nobjectType: secret\nobjectVersion: ../x",
            "array[0].objectVersion",
        ),
        (
            "",
            "objectName: s\nobjectType: secret\nobjectVersionHistory: 101",
            "array[0].objectVersionHistory",
        ),
        (
            "",
            "objectName: s\nobjectType: secret\nobjectVersionHistory: two",
            "array[0].objectVersionHistory",
        ),
        (
            "",
            "objectName: s\nobjectType: secret\nfilePermission: rw",
            "array[0].filePermission",
        ),
        ("", "objectType: secret", "array[0].objectName"),
    ];
    for (params, fields, field) in cases {
        // keyvaultName given twice is a YAML error; replace the default instead.
        let e = if params.contains("keyvaultName") {
            let text = format!(
                "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: a}}\nspec:\n  provider: azure\n  parameters:\n{params}    objects: |\n      array:\n{}",
                one(fields)
            );
            config::parse(Path::new("spc.yaml"), &text, &VaultEnv::default()).unwrap_err()
        } else {
            parse(params, &one(fields)).unwrap_err()
        };
        let f = e.field.clone().unwrap_or_default();
        assert!(f.ends_with(field), "{field}: got {f}: {}", e.message);
    }
    // The objects string: `array:` only, of strings.
    let text = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: a}\nspec:\n  provider: azure\n  parameters:\n    keyvaultName: kv1\n    objects: |\n      - objectName: s\n";
    let e = config::parse(Path::new("spc.yaml"), text, &VaultEnv::default()).unwrap_err();
    assert!(e.message.contains("array:"), "{}", e.message);
    let e = parse("", "        - {objectName: s, objectType: secret}\n").unwrap_err();
    assert!(e.message.contains("YAML string"), "{}", e.message);
    let e = parse("", "").unwrap_err();
    assert!(e.message.contains("at least one object"), "{}", e.message);
}

#[test]
fn a_history_directory_and_a_file_of_the_same_name_collide() {
    let e = parse(
        "",
        &format!(
            "{}{}",
            one("objectName: a\nobjectType: secret\nobjectVersionHistory: 2"),
            one("objectName: b\nobjectType: secret\nobjectAlias: a/0")
        ),
    )
    .unwrap_err();
    assert!(e.message.contains("collides"), "{}", e.message);
}
