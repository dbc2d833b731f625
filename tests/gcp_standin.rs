//! The Google stand-in (tests/gcp/standin.py) checked once with Google's own Python libraries
//! (tests/gcp/validate.py: google-auth's external_account and compute credentials,
//! google-cloud-secret-manager and google-cloud-parametermanager over REST), inside its network namespace at the real host names:
//! what secretdrop's GCP tests rely on is how Google answers, not how we think it does.

mod common;

use common::gcp::{may_unshare, Google, LOCATION, PROJECT_ID, PROJECT_NUMBER};
use common::TestDir;
use serde_json::{json, Value};
use std::process::Command;

#[test]
fn googles_libraries_read_through_the_standin_as_from_google() {
    if let Err(why) = may_unshare() {
        eprintln!("SKIPPED: network namespaces are not permitted here ({why})");
        return;
    }
    let dir = TestDir::new();
    let g = Google::start(&dir.join("google"));
    let reader = format!("reader@{PROJECT_ID}.iam.gserviceaccount.com");
    let node = format!("node@{PROJECT_ID}.iam.gserviceaccount.com");
    // Federation impersonating `reader`, who may read `validate` (global and regional).
    let fed = g.federation(dir.path(), "app", Some(&reader));
    g.admin(
        json!({"op": "workload_identity_user", "service_account": reader, "member": fed.principal}),
    );
    g.add_version(None, "validate", b"global-value\n");
    g.add_version(Some(LOCATION), "validate", b"regional\x00value");
    let disabled = g.add_version(None, "validate", b"second");
    g.admin(
        json!({"op": "set_state", "secret": "validate", "version": disabled, "state": "DISABLED"}),
    );
    g.grant_secret(None, "validate", &format!("serviceAccount:{reader}"));
    g.grant_secret(
        Some(LOCATION),
        "validate",
        &format!("serviceAccount:{reader}"),
    );
    g.add_version(None, "denied", b"nope");
    // Parameters: one global referencing the secret, one regional; `reader` may render them.
    g.add_parameter_version(
        "global",
        "cfg",
        "v1",
        &format!("db: __REF__(//secretmanager.googleapis.com/projects/{PROJECT_ID}/secrets/validate/versions/1)"),
    );
    g.add_parameter_version(LOCATION, "cfg", "v1", "{\"user\": \"regional\"}");
    g.admin(json!({"op": "grant_parameter", "location": "global", "parameter": "cfg", "member": format!("serviceAccount:{reader}")}));
    g.admin(json!({"op": "grant_parameter", "location": LOCATION, "parameter": "cfg", "member": format!("serviceAccount:{reader}")}));
    g.add_parameter_version("global", "secret-cfg", "v1", "x");
    // The metadata server answers for `node`, who may read the whole project.
    g.metadata_identity(&node);
    g.grant_project(&format!("serviceAccount:{node}"));
    // A federation file whose token names another audience.
    let bad_dir = dir.join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad = g.federation(&bad_dir, "app", None);
    let wrong = g.admin(json!({"op": "mint", "sub": "system:serviceaccount:default:app", "aud": ["https://elsewhere.example"]}));
    std::fs::write(&bad.token_file, wrong["token"].as_str().unwrap()).unwrap();

    let config = json!({
        "external": fed.file,
        "bad_external": bad.file,
        "global": format!("projects/{PROJECT_ID}/secrets/validate/versions/1"),
        "regional": format!("projects/{PROJECT_ID}/locations/{LOCATION}/secrets/validate/versions/latest"),
        "location": LOCATION,
        "denied": format!("projects/{PROJECT_ID}/secrets/denied/versions/latest"),
        "missing": format!("projects/{PROJECT_ID}/secrets/absent/versions/latest"),
        "disabled": format!("projects/{PROJECT_NUMBER}/secrets/validate/versions/latest"),
        "parameter": format!("projects/{PROJECT_ID}/locations/global/parameters/cfg/versions/v1"),
        "parameter_regional": format!("projects/{PROJECT_ID}/locations/{LOCATION}/parameters/cfg/versions/v1"),
        "parameter_denied": format!("projects/{PROJECT_ID}/locations/global/parameters/secret-cfg/versions/v1"),
    });
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gcp/validate.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    let run = g.run(
        cmd,
        &[&config.to_string()],
        &[("REQUESTS_CA_BUNDLE".into(), g.ca.display().to_string())],
    );
    assert_eq!(
        run.code,
        0,
        "validate.py failed:\n{}\nstand-in log:\n{}",
        run.stderr,
        std::fs::read_to_string(&g.log).unwrap_or_default()
    );
    let out: Value = serde_json::from_str(run.stdout.trim()).expect(&run.stdout);

    assert_eq!(
        out["external_type"],
        "google.auth.identity_pool.Credentials"
    );
    assert_eq!(out["external_global"]["data"], "global-value\n");
    assert_eq!(
        out["external_global"]["name"],
        format!("projects/{PROJECT_NUMBER}/secrets/validate/versions/1"),
        "answers name the project by number"
    );
    // google-cloud-secret-manager decodes dataCrc32c (an int64 sent as a string); the stand-in's
    // CRC32C agrees with secretdrop's.
    assert_eq!(
        out["external_global"]["crc"],
        secretdrop::provider::gcp::crc32c::crc32c(b"global-value\n") as u64
    );
    assert_eq!(out["external_regional"]["data"], "regional\u{0}value");
    assert_eq!(
        out["external_regional"]["name"],
        format!("projects/{PROJECT_NUMBER}/locations/{LOCATION}/secrets/validate/versions/1")
    );
    assert_eq!(
        out["external_regional_at_global"]["error"], "BadRequest",
        "{out}"
    );
    // Over REST the library names errors by HTTP status.
    assert_eq!(out["external_denied"]["error"], "Forbidden");
    assert!(out["external_denied"]["message"]
        .as_str()
        .unwrap()
        .contains("Permission 'secretmanager.versions.access' denied on resource"));
    assert_eq!(out["external_denied"]["code"], 403);
    assert_eq!(out["external_disabled"]["error"], "BadRequest", "{out}");
    assert!(out["external_disabled"]["message"]
        .as_str()
        .unwrap()
        .contains("is in DISABLED state"));
    assert_eq!(out["external_token_prefix"], "ya29.");
    // google-cloud-parametermanager renders, with the secret reference resolved.
    assert_eq!(
        out["external_parameter"]["rendered"], "db: global-value\n",
        "{out}"
    );
    assert_eq!(
        out["external_parameter"]["name"],
        format!("projects/{PROJECT_NUMBER}/locations/global/parameters/cfg/versions/v1")
    );
    assert_eq!(
        out["external_parameter_regional"]["rendered"],
        "{\"user\": \"regional\"}"
    );
    assert_eq!(out["external_parameter_denied"]["code"], 403, "{out}");
    let bad = out["bad_external"].as_str().unwrap();
    assert!(
        bad.contains("invalid_grant") && bad.contains("does not match the expected audience"),
        "{bad}"
    );

    assert_eq!(
        out["compute_type"],
        "google.auth.compute_engine.credentials.Credentials"
    );
    assert_eq!(out["compute_project"], PROJECT_ID);
    assert_eq!(out["compute_global"]["data"], "global-value\n");
    assert_eq!(out["compute_missing"]["error"], "NotFound", "{out}");
    assert_eq!(out["compute_email_after_refresh"], node);

    // The libraries made the exchanges a pod's would: STS, then the impersonation, once each
    // for the good file; the metadata server for the compute credentials.
    assert!(g.count("sts") >= 2, "STS for both files");
    assert!(g.count("iam") >= 1);
    assert!(g.count("metadata_token") >= 1);
}
