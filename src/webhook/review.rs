//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out: the pure part of the webhook
//! server. Anything but a pod CREATE is allowed unchanged; an unparseable review is an error the
//! server answers with 400.

use base64::Engine;
use serde_json::{json, Value};

use super::mutate::{self, Decision, Defaults};
use super::patch;

/// What happened to one review, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected(&'static str),
    Skipped(&'static str),
    Rejected,
}

/// Answers a review; `Err` when the body is not an AdmissionReview.
pub fn answer(review: &Value, defaults: &Defaults) -> Result<(Value, Outcome), String> {
    let request = review
        .get("request")
        .ok_or("no request in the AdmissionReview")?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or("no request.uid")?;
    let is_pod_create = request.pointer("/kind/kind").and_then(Value::as_str) == Some("Pod")
        && request.get("operation").and_then(Value::as_str) == Some("CREATE");
    let pod = request.get("object").filter(|_| is_pod_create);
    let (response, outcome) = match pod.map(|p| mutate::mutate(p, defaults)) {
        None => (
            json!({"uid": uid, "allowed": true}),
            Outcome::Skipped("not a pod create"),
        ),
        Some(Decision::Skip(why)) => (json!({"uid": uid, "allowed": true}), Outcome::Skipped(why)),
        Some(Decision::Reject(message)) => (
            json!({"uid": uid, "allowed": false, "status": {
                "code": 400, "reason": "BadRequest",
                "message": format!("secretdrop: {message}")
            }}),
            Outcome::Rejected,
        ),
        Some(Decision::Inject {
            pod: injected,
            mode,
        }) => {
            let ops = patch::diff(pod.unwrap_or(&Value::Null), &injected);
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&ops).unwrap_or_default());
            (
                json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": encoded}),
                Outcome::Injected(mode.name()),
            )
        }
    };
    Ok((
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
        outcome,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(operation: &str, annotations: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": operation,
                "object": {"metadata": {"name": "p", "annotations": annotations},
                           "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
            }
        })
    }

    #[test]
    fn injects_with_a_base64_json_patch_and_echoes_the_uid() {
        let d = Defaults {
            vault_address: Some("http://vault:8200".into()),
            ..Defaults::default()
        };
        let annotations = json!({"secretdrop.dev/inject": "true", "secretdrop.dev/role": "r",
            "secretdrop.dev/objects": "- {objectName: a, secretPath: secret/data/x, secretKey: k}"});
        let r = review("CREATE", annotations.clone());
        let (out, outcome) = answer(&r, &d).unwrap();
        assert_eq!(outcome, Outcome::Injected("sidecar"));
        assert_eq!(
            out["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        let patch = base64::engine::general_purpose::STANDARD
            .decode(out["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&patch).unwrap();
        let pod = &r["request"]["object"];
        let patched = patch::apply(pod, &ops).unwrap();
        assert_eq!(patched["spec"]["initContainers"][0]["name"], "secretdrop");
        // UPDATE is not ours to mutate.
        let (out, outcome) = answer(&review("UPDATE", annotations), &d).unwrap();
        assert_eq!(
            (out["response"]["allowed"].as_bool(), outcome),
            (Some(true), Outcome::Skipped("not a pod create"))
        );
        assert!(answer(&json!({"kind": "nope"}), &d).is_err());
    }

    #[test]
    fn rejections_carry_the_message_to_kubectl() {
        let d = Defaults::default();
        let r = review("CREATE", json!({"secretdrop.dev/inject": "true"}));
        let (out, outcome) = answer(&r, &d).unwrap();
        assert_eq!(outcome, Outcome::Rejected);
        assert_eq!(out["response"]["allowed"], false);
        let message = out["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("secretdrop: ") && message.contains("secretdrop.dev/role"),
            "{message}"
        );
    }
}
