//! The CLI's output and server-less commands as the real binary: `--output table|json|yaml`,
//! colour only on a terminal, `policy list|show|validate`, `completions`.

use crate::cli::{run, run_as, stderr, stdout, success};
use crate::helpers::{bool_flag, policies_dir, spawn_app};
use reqwest::Method;
use serde_json::Value;
use std::process::Output;
use tokio::process::Command;

/// A URL where nothing listens: commands that need no server must not notice.
fn nowhere() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// The CLI without URL or token in its environment.
async fn offline(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rollgate"));
    command
        .args(args)
        .env_remove("ROLLGATE_URL")
        .env_remove("ROLLGATE_TOKEN")
        .kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(5), command.output())
        .await
        .expect("in time")
        .expect("run rollgate")
}

#[tokio::test]
async fn json_and_yaml_output_parse_back_to_the_servers_document() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 12.5)).await;
    let r = app
        .admin(Method::GET, "/api/v1/flags")
        .send()
        .await
        .unwrap();
    let served: Value = r.json().await.unwrap();

    for (args, yaml) in [
        (&["flags", "list", "--output", "json"][..], false),
        (&["flags", "list", "--json"][..], false),
        (&["flags", "list", "--output", "yaml"][..], true),
        (&["flags", "--output", "yaml", "list"][..], true),
    ] {
        let out = success(&run(&app, args).await);
        let printed: Value = if yaml {
            serde_yaml_ng::from_str(&out).expect("yaml")
        } else {
            serde_json::from_str(&out).expect("json")
        };
        assert_eq!(printed, served, "{args:?}");
    }
    let policies = success(&run(&app, &["policy", "list", "--output", "yaml"]).await);
    let policies: Value = serde_yaml_ng::from_str(&policies).unwrap();
    let r = app
        .admin(Method::GET, "/api/v1/policies")
        .send()
        .await
        .unwrap();
    assert_eq!(policies, r.json::<Value>().await.unwrap());
}

#[tokio::test]
async fn piped_output_carries_no_colour_and_a_terminal_gets_it_unless_no_color() {
    let app = spawn_app().await;
    app.put_flag(bool_flag("qr-ordering", 10.0)).await;
    success(&run(&app, &["flags", "kill", "qr-ordering"]).await);

    let piped = success(&run(&app, &["flags", "list"]).await);
    assert!(
        piped.contains("KILLED") && !piped.contains('\x1b'),
        "{piped:?}"
    );

    // `script` (util-linux) gives the CLI a pseudo-terminal as stdout.
    let on_terminal = |no_color: &str| {
        let mut command = Command::new("script");
        command
            .args([
                "-qec",
                &format!("{} flags list", env!("CARGO_BIN_EXE_rollgate")),
                "/dev/null",
            ])
            .env("ROLLGATE_URL", &app.address)
            .env("ROLLGATE_TOKEN", &app.admin_token)
            .env("NO_COLOR", no_color)
            .kill_on_drop(true);
        command.output()
    };
    let coloured = stdout(&on_terminal("").await.unwrap());
    assert!(coloured.contains("\x1b[31mKILLED\x1b[0m"), "{coloured:?}");
    let plain = stdout(&on_terminal("1").await.unwrap());
    assert!(
        plain.contains("KILLED") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

#[tokio::test]
async fn policy_list_and_show_read_the_servers_policies() {
    let app = spawn_app().await;

    let listed = success(&run(&app, &["policy", "list"]).await);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("checkout") && l.contains("payment_error (core)")),
        "{listed}"
    );

    let shown = success(&run(&app, &["policy", "show", "checkout"]).await);
    let policy = rollgate::policies::Policy::from_toml(&shown).expect("show prints a policy file");
    let file = std::fs::read_to_string(policies_dir().join("checkout.toml")).unwrap();
    assert_eq!(
        policy,
        rollgate::policies::Policy::from_toml(&file).unwrap()
    );

    let missing = run(&app, &["policy", "show", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn policy_validate_works_offline_and_names_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = policies_dir()
        .join("checkout.toml")
        .to_string_lossy()
        .into_owned();
    let bad = dir.path().join("strict.toml");
    std::fs::write(&bad, "name = \"strict\"\nconfidence = 1.5\n").unwrap();
    let bad = bad.to_string_lossy().into_owned();
    let typo = dir.path().join("typo.json");
    std::fs::write(
        &typo,
        r#"{"name": "typo", "guard": [{"metric": "x", "class": "core", "max_cont": 0}]}"#,
    )
    .unwrap();
    let typo = typo.to_string_lossy().into_owned();

    let out = offline(&["policy", "validate", &good]).await;
    assert!(success(&out).contains("checkout.toml: ok (policy checkout)"));

    let out = offline(&["policy", "validate", &good, &bad, &typo]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("strict.toml: confidence: must be in (0.5, 1)"),
        "{err}"
    );
    assert!(
        err.contains("typo.json: guard[0]") && err.contains("max_cont"),
        "{err}"
    );
    assert!(err.contains("2 of 3 policy file(s) invalid"), "{err}");
    assert!(
        stdout(&out).contains("checkout.toml: ok"),
        "good files are still reported"
    );

    let out = offline(&["policy", "validate", "/nonexistent/p.toml"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read /nonexistent/p.toml"),
        "{}",
        stderr(&out)
    );

    // A server URL that answers nothing changes nothing: validate never connects.
    let out = run_as(&nowhere(), "", &["policy", "validate", &good]).await;
    success(&out);
}

#[tokio::test]
async fn completions_are_scripts_for_each_shell_without_a_server() {
    let bash = offline(&["completions", "bash"]).await;
    let script = success(&bash);
    assert!(
        script.contains("segments") && script.contains("tokens"),
        "bash script names the commands"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollgate.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    for shell in ["zsh", "fish"] {
        let out = success(&offline(&["completions", shell]).await);
        assert!(
            out.contains("segments") && out.contains("completions"),
            "{shell}: {out}"
        );
    }
    let out = offline(&["completions", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown shell");
}
