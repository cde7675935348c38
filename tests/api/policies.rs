//! Policies: loaded from `policies/` at start, changed over the API, strictly validated.

use crate::helpers::{spawn_app, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn policies_from_the_directory_are_loaded_at_start() {
    let app = spawn_app().await;

    let policy: Value = app
        .admin(Method::GET, "/api/v1/policies/checkout")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(policy["name"], "checkout");
    assert_eq!(policy["guard"][1]["metric"], "data_loss");
    assert_eq!(policy["guard"][1]["max_count"], 0);
    assert_eq!(
        policy["stages"]["percentages"],
        json!([1.0, 5.0, 25.0, 50.0, 100.0])
    );
    assert_eq!(policy["confidence"], 0.99);
}

#[tokio::test]
async fn a_policy_can_be_put_as_json_or_toml() {
    let app = spawn_app().await;
    let json_policy = json!({"name": "login", "guard": [{"metric": "login_error", "class": "core", "max_relative_increase": 0.0}]});
    let toml_policy = "name = \"complaints\"\n[[guard]]\nmetric = \"complaint\"\nclass = \"basic\"\nmax_relative_increase = 0.25\ngrace = \"30m\"\n";

    let created = app
        .admin(Method::PUT, "/api/v1/policies/login")
        .json(&json_policy)
        .send()
        .await
        .unwrap();
    let from_toml = app
        .admin(Method::PUT, "/api/v1/policies/complaints")
        .header("content-type", "application/toml")
        .body(toml_policy)
        .send()
        .await
        .unwrap();

    assert_eq!(created.status(), 201);
    assert_eq!(from_toml.status(), 201);
    let read: Value = app
        .admin(Method::GET, "/api/v1/policies/complaints")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["guard"][0]["grace"], "30m");
}

#[tokio::test]
async fn invalid_policies_are_rejected_naming_guard_and_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"name": "p", "guard": [{"metric": "e", "class": "core"}]}),
            "guard[0].metric",
        ),
        (
            json!({"name": "p", "guard": [{"metric": "e", "class": "basic", "max_rate": 0.1, "grace": "soon"}]}),
            "guard[0].grace",
        ),
        (
            json!({"name": "p", "confidence": 1.5, "guard": []}),
            "confidence",
        ),
        (
            json!({"name": "p", "stages": {"percentages": [5, 1], "min_duration": "1m"}}),
            "stages.percentages[1]",
        ),
        (json!({"name": "q"}), "name"),
    ];
    for (body, field) in cases {
        let r = app
            .admin(Method::PUT, "/api/v1/policies/p")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["field"],
            field,
            "{body}"
        );
    }
    let unknown = app
        .admin(Method::PUT, "/api/v1/policies/p")
        .json(&json!({"name": "p", "gaurd": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn the_server_refuses_to_start_on_an_invalid_policy_file_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("broken.toml"),
        "name = \"broken\"\n[[guard]]\nmetric = \"e\"\nclass = \"core\"\nmax_rate = \"high\"\n",
    )
    .unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollgate"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--policies-dir")
        .arg(&policies)
        .env("ROLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();

    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.toml"), "{stderr}");
    assert!(stderr.contains("guard[0].max_rate"), "{stderr}");
}

#[tokio::test]
async fn a_toml_syntax_error_answers_400_with_the_line_and_what_was_expected() {
    let app = spawn_app().await;

    let r = app
        .admin(Method::PUT, "/api/v1/policies/broken")
        .header("content-type", "application/toml")
        .body("name = ")
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("line 1"), "{body}");
    assert!(message.contains("value is missing"), "{body}");
    assert_eq!(body["error"]["field"], "name", "{body}");
}
