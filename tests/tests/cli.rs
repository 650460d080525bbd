//! The `quiver` binary as a user runs it: on registry files, and as a client of a running
//! server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use quiver_tests::fixtures::{registry_v2, start, SEC};
use quiver_tests::server::now_micros;
use quiver_tests::{quiver_bin, quiver_cli, quiver_command, workspace_root, TempDir};

#[test]
fn the_tests_run_the_binary_cargo_built_for_them() {
    assert_eq!(
        quiver_bin(),
        std::path::Path::new(env!("CARGO_BIN_EXE_quiver-e2e"))
    );
}

#[test]
fn check_accepts_the_example_registry() {
    let out = quiver_command()
        .arg("check")
        .arg(workspace_root().join("examples/registry.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("feature view user_stats on user: 20 features"),
        "{stdout}"
    );
    assert!(stdout.contains("feature view user_embedding on user: 1 features (1 vectors)"));
}

#[test]
fn check_names_the_bad_field_and_fails() {
    let dir = TempDir::new("cli");
    let path = dir.join("bad.toml");
    let text = std::fs::read_to_string(workspace_root().join("examples/registry.toml"))
        .unwrap()
        .replace("type = \"vector<64>\"", "type = \"vectr<64>\"");
    std::fs::write(&path, text).unwrap();
    let out = quiver_command().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("feature view \"user_embedding\" feature \"embedding\" field \"type\""),
        "{stderr}"
    );
    assert!(stderr.contains("unknown type \"vectr<64>\""), "{stderr}");
}

/// The `quiver` debugging client against a running server (with a token): apply, write from
/// JSON lines, get as a table, stats, checkpoint; a refused call exits 2 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_client_talks_to_the_server() {
    const TOKEN: &str = "cli-test-token-0123456789";
    let (dir, _spec, server) = start("e2e-cli", &format!("auth_token = {TOKEN:?}")).await;
    let common = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
        v.extend([
            "--server".into(),
            server.url(),
            "--token".into(),
            TOKEN.into(),
        ]);
        v
    };
    let v2 = dir.path().join("registry-v2.toml");
    std::fs::write(&v2, registry_v2()).unwrap();
    let v2 = v2.display().to_string();

    let (code, out, err) = quiver_cli(common(&["apply", &v2, "--dry-run"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("add feature user_stats:premium (bool)"),
        "{out}"
    );
    assert!(out.contains("not applied"), "{out}");
    let (code, out, err) = quiver_cli(common(&["apply", &v2])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("applied (registry version"), "{out}");

    // A compression change is allowed at any time and shows in the diff.
    let v3 = dir.path().join("registry-v3.toml");
    let text = registry_v2().replace(
        "name = \"user_stats\"\nentity = \"user\"\n",
        "name = \"user_stats\"\nentity = \"user\"\ncompression = \"zstd\"\ncompression_level = 9\n",
    );
    std::fs::write(&v3, text).unwrap();
    let (code, out, err) =
        quiver_cli(common(&["apply", &v3.display().to_string(), "--dry-run"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("change compression of user_stats from auto (level 3) to zstd (level 9)"),
        "{out}"
    );

    let rows = dir.path().join("rows.jsonl");
    let now = now_micros() / SEC;
    std::fs::write(
        &rows,
        format!(
            "{{\"user_id\": 1, \"event_timestamp\": {now}, \"clicks\": 11, \"country\": \"se\"}}\n\
             {{\"user_id\": 2, \"event_timestamp\": {now}, \"clicks\": 22, \"country\": null}}\n"
        ),
    )
    .unwrap();
    let (code, out, err) = quiver_cli(common(&[
        "write",
        "--view",
        "user_stats",
        &rows.display().to_string(),
    ]))
    .await;
    assert_eq!(code, Some(0), "{out}{err}");

    let (code, out, err) = quiver_cli(common(&[
        "get",
        "--features",
        "user_stats:clicks,user_stats:country",
        "--key",
        "user_id=1,2,99",
    ]))
    .await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["row", "user_id", "clicks", "country"],
            vec!["0", "1", "11", "se"],
            vec!["1", "2", "22", "null"],
            vec!["2", "99", "-", "-"],
        ],
        "{out}"
    );
    // The marks are explained on stderr, so stdout stays the table alone; nothing on a pipe
    // carries terminal colours.
    assert!(err.contains("not found: never written"), "{err}");
    assert!(err.contains("written as null"), "{err}");
    assert!(!err.contains("\x1b["), "{err:?}");

    // A misspelled feature or join key is answered with the nearest known name.
    for (features, key, hint) in [
        ("user_stats:clickz", "user_id=1", "\"user_stats:clicks\""),
        ("user_stats:clicks", "user_ids=1", "\"user_id\""),
    ] {
        let (code, _, err) =
            quiver_cli(common(&["get", "--features", features, "--key", key])).await;
        assert_eq!(code, Some(2));
        assert!(err.contains(&format!("did you mean {hint}?")), "{err}");
        assert!(!err.contains("\x1b["), "{err:?}");
    }

    let (code, out, err) = quiver_cli(common(&["stats"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("user_stats"), "{out}");
    let (code, out, err) = quiver_cli(common(&["checkpoint"])).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("checkpoint at sequence"), "{out}");
    assert!(out.contains("WAL bytes freed"), "{out}");
    // The checkpoint's snapshot says how its records are stored: two rows are too few to
    // pay for compression, so `auto` (the default) keeps them plain and says what it tried.
    let (code, out, err) = quiver_cli(common(&["stats"])).await;
    assert_eq!(code, Some(0), "{err}");
    let line = line_of(&out, "user_stats");
    assert!(line.contains("none (auto: best saves"), "{out}");
    let (code, out, err) = quiver_cli(vec![
        "snapshot".into(),
        "inspect".into(),
        dir.path().join("data").display().to_string(),
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let line = line_of(&out, "user_stats");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols.get(1..6),
        Some(&["2", cols[2], cols[2], "1.00x", "none"][..]),
        "{out}"
    );
    // `snapshot inspect FILE` prints times as RFC 3339 UTC.
    let snapshots = dir
        .path()
        .join("data")
        .join(quiver_engine::inspect::SNAPSHOT_DIR);
    let file = std::fs::read_dir(&snapshots)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.display().to_string().contains("user_stats"))
        .expect("a user_stats snapshot");
    let (code, out, err) = quiver_cli(vec![
        "snapshot".into(),
        "inspect".into(),
        file.display().to_string(),
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let created = line_of(&out, "created at");
    let time = created.split_whitespace().nth(2).unwrap_or_default();
    assert!(
        time.starts_with("20") && time.contains('T') && time.ends_with('Z'),
        "{out}"
    );

    // Refusals: exit code 2 and the server's message.
    let (code, _, err) = quiver_cli(common(&[
        "get",
        "--features",
        "user_stats:nope",
        "--key",
        "user_id=1",
    ]))
    .await;
    assert_eq!(code, Some(2));
    assert!(
        err.contains("NotFound") && err.contains("\"nope\""),
        "{err}"
    );
    let mut no_token = common(&["stats"]);
    no_token.truncate(no_token.len() - 2);
    let (code, _, err) = quiver_cli(no_token).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("Unauthenticated"), "{err}");
}

/// The first line of `out` that starts with `prefix` ("" if none).
fn line_of<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_default()
}
