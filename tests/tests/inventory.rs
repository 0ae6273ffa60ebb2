//! Credential identities, exposures and the durable inventory, with the real daemon and real
//! files. Every secret here is made up.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use credwatch_tests::{
    Daemon, attribute,
    client::{PYTHON3, client, run_to_end},
    contract::assert_documented,
    counter, credwatch_binary,
    encoding::{base64, base64url},
    run, scratch_dir,
    servers::TlsServer,
    unique, write_file,
};
use serde_json::Value;

/// Catalogue entry that makes a test file a service-account token.
const TOKEN_ENTRY: &str = "    - {id: test-sa-token, type: kubernetes_service_account_token, basenames: [sa-token-fixture]}\n";

/// Returns a made-up AWS credentials file with two profiles.
fn aws_credentials(secret_suffix: &str) -> String {
    format!(
        "[default]\naws_access_key_id = AKIAMADEUPEXAMPLE234\n\
         aws_secret_access_key = made/up+secret{secret_suffix}0000000000000\n\
         [ci]\naws_access_key_id = ASIAMADEUPEXAMPLE999\n\
         aws_secret_access_key = made/up+other{secret_suffix}11111111111111\n\
         aws_session_token = made-up-session-token-{secret_suffix}\n"
    )
}

/// Reads `path` with `cat` and returns the access event that names it.
fn read_with_cat(daemon: &Daemon, path: &Path) -> Value {
    let (pid, status) = run(Command::new("/bin/cat").arg(path));
    assert!(status.success());
    let text = path.to_string_lossy().into_owned();
    let event = daemon.wait_for("the access event of cat", |event| {
        event["attributes"]["file.path"] == text.as_str()
            && event["attributes"]["process.pid"] == pid
    });
    assert_documented(&event);
    event
}

fn ids(event: &Value) -> Vec<String> {
    event["attributes"]["credwatch.credential.id"]
        .as_array()
        .unwrap_or_else(|| panic!("no credential ids: {event}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

/// Runs `credwatch inventory` and returns its exit code, stdout and stderr.
fn inventory(state_dir: &Path, format: &str) -> (Option<i32>, String, String) {
    let output = Command::new(credwatch_binary())
        .args(["inventory", "--format", format, "--state-dir"])
        .arg(state_dir)
        .output()
        .expect("run credwatch inventory");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn inventory_json(state_dir: &Path) -> Vec<Value> {
    let (code, stdout, stderr) = inventory(state_dir, "json");
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str::<Value>(&stdout)
        .unwrap_or_else(|error| panic!("invalid inventory JSON {stdout:?}: {error}"))
        .as_array()
        .unwrap()
        .clone()
}

fn entry<'a>(inventory: &'a [Value], id: &str) -> &'a Value {
    inventory
        .iter()
        .find(|entry| entry["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in the inventory: {inventory:?}"))
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn aws_profiles_are_identified_and_listed() {
    let state = scratch_dir();
    let mut daemon = Daemon::start_with_state("", state.path());
    let file = daemon.dir().join("home/.aws/credentials");
    write_file(&file, &aws_credentials("Listed"));

    let event = read_with_cat(&daemon, &file);
    assert!(daemon.stop().success());

    assert_eq!(
        attribute(&event, "credwatch.identify.result"),
        "identified",
        "{event}"
    );
    assert_eq!(event["attributes"]["credwatch.credential.count"], 2);
    assert_eq!(
        event["attributes"]["credwatch.credential.native_id"],
        serde_json::json!(["AKIAMADEUPEXAMPLE234", "ASIAMADEUPEXAMPLE999"])
    );
    let credentials = event["attributes"]["credwatch.credentials"]
        .as_array()
        .unwrap();
    assert_eq!(credentials[0]["label"], "default");
    assert_eq!(credentials[1]["label"], "ci");
    assert_eq!(credentials[1]["type"], "aws_access_key");
    let ids = ids(&event);
    assert_eq!(ids.len(), 2);
    assert!(
        ids.iter()
            .all(|id| id.starts_with("cw1:") && id.len() == 36),
        "{ids:?}"
    );

    let listed = inventory_json(state.path());
    let first = entry(&listed, &ids[0]);
    assert_eq!(first["native_id"], "AKIAMADEUPEXAMPLE234");
    assert_eq!(first["use_count"], 1);
    // The executable is `/proc/PID/exe`, or the path `cat` was run by when it had exited.
    let consumer = first["consumers"][0]["executable"].as_str().unwrap();
    assert_eq!(
        fs::canonicalize(consumer).unwrap(),
        fs::canonicalize("/bin/cat").unwrap()
    );
    assert_eq!(first["paths"][0], file.to_string_lossy().as_ref());

    let (code, table, stderr) = inventory(state.path(), "table");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(table.starts_with("TYPE"), "{table}");
    assert!(table.contains("ASIAMADEUPEXAMPLE999"), "{table}");
    assert!(table.contains("cat"), "{table}");

    // Just read, so nothing is stale after 30 days, and everything is after 0 days.
    let stale = |days: &str| {
        Command::new(credwatch_binary())
            .args([
                "inventory",
                "--format",
                "json",
                "--stale",
                days,
                "--state-dir",
            ])
            .arg(state.path())
            .output()
            .expect("run credwatch inventory --stale")
    };
    let none = stale("30");
    assert!(none.status.success(), "{none:?}");
    assert_eq!(String::from_utf8_lossy(&none.stdout).trim(), "[]");
    let all: Value = serde_json::from_slice(&stale("0").stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), listed.len());
    let negative = stale("-3");
    assert_eq!(negative.status.code(), Some(2), "{negative:?}");
}

/// Reads the file in `argv[1]`, then makes a TLS handshake with `argv[3]` as the server name to
/// 127.0.0.1 port `argv[2]`, without verifying the made-up certificate.
const READ_THEN_CONNECT: &str = r#"
import socket, ssl, sys
open(sys.argv[1]).read()
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as plain:
    with context.wrap_socket(plain, server_hostname=sys.argv[3]) as tls:
        print(tls.version())
"#;

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn destinations_follow_the_reader() {
    let state = scratch_dir();
    let mut daemon = Daemon::start_with_state("network:\n  dedup_window: 0s\n", state.path());
    let file = daemon.dir().join("home/.aws/credentials");
    write_file(&file, &aws_credentials("Destination"));
    let server = TlsServer::start();

    let python = run_to_end(
        client(PYTHON3)
            .args(["-c", READ_THEN_CONNECT])
            .arg(&file)
            .arg(server.port().to_string())
            .arg("vault.example.test"),
    );
    python.assert_success();
    let pid = python.pid;
    daemon.wait_for("the handshake of the reader", |event| {
        event["event_name"] == "credwatch.tls.handshake"
            && event["attributes"]["process.pid"] == pid
    });
    assert!(daemon.stop().success());

    let listed = inventory_json(state.path());
    let aws = listed
        .iter()
        .find(|entry| entry["native_id"] == "AKIAMADEUPEXAMPLE234")
        .unwrap_or_else(|| panic!("the key is not in the inventory: {listed:?}"));
    let destinations = aws["destinations"].as_array().unwrap();
    let port = u64::from(server.port());
    let servers: Vec<(&str, u64)> = destinations
        .iter()
        .map(|destination| {
            (
                destination["server"].as_str().unwrap(),
                destination["port"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        servers.contains(&("vault.example.test", port)),
        "{servers:?}"
    );
    assert!(servers.contains(&("127.0.0.1", port)), "{servers:?}");
    let consumers: Vec<&str> = aws["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|consumer| consumer["executable"].as_str().unwrap())
        .collect();
    assert!(
        consumers
            .iter()
            .any(|executable| executable.contains("python3")),
        "{aws}"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn inventory_survives_restart_and_kill() {
    let state = scratch_dir();
    let mut first = Daemon::start_with_state("", state.path());
    let file = first.dir().join("home/.aws/credentials");
    write_file(&file, &aws_credentials("Restart"));
    let before = ids(&read_with_cat(&first, &file));
    first.kill();

    // After kill -9 the inventory is still readable and complete.
    let listed = inventory_json(state.path());
    assert_eq!(entry(&listed, &before[0])["use_count"], 1);
    assert_eq!(entry(&listed, &before[1])["use_count"], 1);

    let mut second = Daemon::start_with_state("", state.path());
    let after = ids(&read_with_cat(&second, &file));
    assert!(second.stop().success());

    assert_eq!(before, after, "ids must not change across restarts");
    let listed = inventory_json(state.path());
    assert_eq!(entry(&listed, &before[0])["use_count"], 2);
    let mode = fs::metadata(state.path().join("state.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn fleet_key_gives_equal_ids_on_two_hosts() {
    let keys = scratch_dir();
    let fleet_key = keys.path().join("fleet.key");
    fs::write(&fleet_key, "made-up-fleet-secret-0123456789abcdef\n").unwrap();
    fs::set_permissions(&fleet_key, fs::Permissions::from_mode(0o600)).unwrap();
    let fleet = format!("credentials:\n  fleet_key_file: {}\n", fleet_key.display());

    let mut ids_by_host = Vec::new();
    for config in [fleet.as_str(), fleet.as_str(), ""] {
        let state = scratch_dir();
        let mut daemon = Daemon::start_with_state(config, state.path());
        let file = daemon.dir().join("home/.aws/credentials");
        write_file(&file, &aws_credentials("Fleet"));
        ids_by_host.push(ids(&read_with_cat(&daemon, &file)));
        assert!(daemon.stop().success());
        assert_eq!(
            state.path().join("install.key").exists(),
            config.is_empty(),
            "the install key is made only without a fleet key"
        );
    }

    assert_eq!(
        ids_by_host[0], ids_by_host[1],
        "two hosts with one fleet key"
    );
    assert_ne!(
        ids_by_host[0], ids_by_host[2],
        "a host with its own install key"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn bad_fleet_key_stops_start_with_its_path() {
    let dir = scratch_dir();
    let fleet_key = dir.path().join("short.key");
    fs::write(&fleet_key, "short\n").unwrap();
    let config = dir.path().join("config.yaml");
    fs::write(
        &config,
        format!("credentials:\n  fleet_key_file: {}\n", fleet_key.display()),
    )
    .unwrap();

    let output = Command::new(credwatch_binary())
        .args(["run", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--json-file")
        .arg(dir.path().join("events.jsonl"))
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("short.key"), "{stderr}");
    assert!(stderr.contains("at least 16"), "{stderr}");
    assert!(!stderr.contains("short\n"), "the key leaked: {stderr}");

    let check = Command::new(credwatch_binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("short.key"), "{stderr}");
}

#[test]
#[ignore = "needs the release binary; run with `cargo xtask test`"]
fn inventory_without_database_fails() {
    let dir = scratch_dir();
    let (code, _, stderr) = inventory(dir.path(), "table");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("state.db"), "{stderr}");
    assert!(stderr.contains("--state-dir"), "{stderr}");
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn exposures_name_the_place_not_the_value() {
    let mut daemon = Daemon::start("");
    let env_secret = format!("made-up-env-token-{}", unique());
    let arg_secret = format!("made-up-arg-secret-{}", unique());

    // The shell sleeps so that the daemon can read its environment; its child inherits the
    // variable and must not be reported again.
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "sleep 0.5; /bin/true", "sh"])
        .arg(format!("--password={arg_secret}"))
        .env("API_TOKEN", &env_secret)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = shell.id();
    assert!(shell.wait().unwrap().success());

    let by_source = |source: &str| {
        daemon.wait_for("an exposure event", |event| {
            event["event_name"] == "credwatch.credential.exposure"
                && event["attributes"]["process.pid"] == pid
                && event["attributes"]["credwatch.exposure.source"] == source
        })
    };
    let environment = by_source("environment");
    let argument = by_source("argument");
    daemon.barrier();

    assert_documented(&environment);
    assert_documented(&argument);
    assert_eq!(
        attribute(&environment, "credwatch.exposure.variable"),
        "API_TOKEN"
    );
    assert_eq!(environment["severity_text"], "INFO");
    assert_eq!(
        argument["attributes"]["credwatch.exposure.argument_index"],
        4
    );
    assert_eq!(
        attribute(&argument, "credwatch.exposure.variable"),
        "password"
    );
    assert_eq!(argument["severity_text"], "WARN");
    assert_eq!(
        attribute(&argument, "credwatch.credential.type"),
        "argument_secret"
    );
    let exposures: Vec<Value> = daemon
        .events()
        .into_iter()
        .filter(|event| event["event_name"] == "credwatch.credential.exposure")
        .filter(|event| event["attributes"]["credwatch.exposure.variable"] == "API_TOKEN")
        .collect();
    assert_eq!(
        exposures.len(),
        1,
        "the child inherited the variable: {exposures:?}"
    );
    let health = daemon.request_health();
    assert!(
        counter(&health, "credwatch.daemon.exposures_inherited") >= 1,
        "{health}"
    );
    assert!(daemon.stop().success());

    let everything =
        fs::read_to_string(daemon.dir().join("events.jsonl")).unwrap() + &daemon.stderr_text();
    assert!(
        !everything.contains(&env_secret),
        "the environment secret leaked"
    );
    assert!(
        !everything.contains(&arg_secret),
        "the argument secret leaked"
    );
}

/// Made-up credential files of every type that needs no external tool, each with a unique
/// canary in its secret. Returns the files and the canaries.
fn canary_fixtures(home: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let canary = |name: &str| format!("CANARY{name}{:08x}", unique() * 7919 + 12345);
    let mut canaries = Vec::new();
    let mut files = Vec::new();
    let mut add = |relative: &str, contents: String, secrets: Vec<String>| {
        let path = home.join(relative);
        write_file(&path, &contents);
        files.push(path);
        canaries.extend(secrets);
    };

    let aws = canary("aws");
    add(
        ".aws/credentials",
        format!(
            "[default]\naws_access_key_id = AKIAMADEUPEXAMPLE234\naws_secret_access_key = {aws}made/up+secret000000\n"
        ),
        vec![aws],
    );
    let env = canary("env");
    add(".env", format!("DATABASE_PASSWORD={env}\n"), vec![env]);
    let netrc = canary("netrc");
    add(
        ".netrc",
        format!("machine git.example.test login builder password {netrc}\n"),
        vec![netrc],
    );
    let git = canary("git");
    add(
        ".git-credentials",
        format!("https://builder:{git}@git.example.test\n"),
        vec![git],
    );
    let vault = canary("vault");
    add(
        ".vault-token",
        format!("hvs.{vault}AAAAAAAAAAAAAAAAAAAA\n"),
        vec![vault],
    );
    let npm = canary("npm");
    add(
        ".npmrc",
        format!("//registry.example.test/:_authToken=npm_{npm}AAAAAAAAAAAAAAAAAAAAAAAA\n"),
        vec![npm],
    );
    let pypi = canary("pypi");
    add(
        ".pypirc",
        format!(
            "[pypi]\nusername = __token__\npassword = pypi-{pypi}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
        ),
        vec![pypi],
    );
    let terraform = canary("tf");
    add(
        ".terraform.d/credentials.tfrc.json",
        format!(
            "{{\"credentials\": {{\"app.terraform.io\": {{\"token\": \"{terraform}.atlasv1.madeup\"}}}}}}\n"
        ),
        vec![terraform],
    );
    let docker = canary("docker");
    let auth = base64(format!("builder:{docker}").as_bytes());
    add(
        ".docker/config.json",
        format!("{{\"auths\": {{\"registry.example.test\": {{\"auth\": \"{auth}\"}}}}}}\n"),
        vec![docker, auth],
    );
    let kube = canary("kube");
    add(
        ".kube/config",
        format!(
            "apiVersion: v1\nkind: Config\nusers:\n- name: builder\n  user:\n    token: {kube}\n"
        ),
        vec![kube],
    );
    let signature = canary("jwt");
    let header = base64url(br#"{"alg":"RS256","kid":"made-up"}"#);
    let claims = base64url(
        br#"{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:shop:cart","aud":["https://kubernetes.default.svc"],"exp":4102444800,"iat":1764900000}"#,
    );
    let token = format!("{header}.{claims}.{signature}");
    add("sa-token-fixture", token.clone(), vec![signature, token]);
    (files, canaries)
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn canary_secrets_never_leave_the_daemon() {
    let state = scratch_dir();
    let mut daemon =
        Daemon::start_with_entries_and_sections(TOKEN_ENTRY, "", Some(state.path().to_path_buf()));
    let home = daemon.dir().join("home");
    let (mut files, mut canaries) = canary_fixtures(&home);

    // Keys made by the real tools: an OpenSSL private key and an SSH key.
    let tls_key = home.join("tls/server.key");
    fs::create_dir_all(tls_key.parent().unwrap()).unwrap();
    let (_, status) = run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&tls_key));
    assert!(status.success(), "openssl genpkey failed");
    files.push(tls_key.clone());
    let ssh_key = home.join(".ssh/id_ed25519");
    fs::create_dir_all(ssh_key.parent().unwrap()).unwrap();
    let (_, status) = run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "made-up@example.test",
            "-f",
        ])
        .arg(&ssh_key));
    assert!(status.success(), "ssh-keygen failed");
    files.push(ssh_key.clone());
    for key in [&tls_key, &ssh_key] {
        // Every base64 line of a private key is secret.
        let text = fs::read_to_string(key).unwrap();
        canaries.extend(
            text.lines()
                .filter(|line| !line.starts_with("-----") && line.len() >= 16)
                .map(str::to_owned),
        );
    }

    for file in &files {
        let event = read_with_cat(&daemon, file);
        assert_eq!(
            attribute(&event, "credwatch.identify.result"),
            "identified",
            "{}: {event}",
            file.display()
        );
    }
    let env_canary = format!("CANARYenv{}", unique());
    let arg_canary = format!("CANARYarg{}", unique());
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "sleep 0.5", "sh"])
        .arg(format!("--token={arg_canary}"))
        .env("SERVICE_PASSWORD", &env_canary)
        .spawn()
        .unwrap();
    let pid = shell.id();
    assert!(shell.wait().unwrap().success());
    daemon.wait_for("the environment exposure", |event| {
        event["event_name"] == "credwatch.credential.exposure"
            && event["attributes"]["process.pid"] == pid
            && event["attributes"]["credwatch.exposure.source"] == "environment"
    });
    canaries.push(env_canary);
    canaries.push(arg_canary);
    assert!(daemon.stop().success());

    let mut outputs = vec![
        (
            "events",
            fs::read(daemon.dir().join("events.jsonl")).unwrap(),
        ),
        ("stdout", fs::read(daemon.dir().join("stdout.log")).unwrap()),
        ("log", daemon.stderr_text().into_bytes()),
        (
            "inventory json",
            inventory(state.path(), "json").1.into_bytes(),
        ),
        (
            "inventory table",
            inventory(state.path(), "table").1.into_bytes(),
        ),
    ];
    for entry in fs::read_dir(state.path()).unwrap() {
        let path = entry.unwrap().path();
        outputs.push(("state file", fs::read(&path).unwrap()));
    }
    for (name, bytes) in &outputs {
        for canary in &canaries {
            assert!(
                !bytes
                    .windows(canary.len())
                    .any(|window| window == canary.as_bytes()),
                "a secret ({} bytes) leaked into the {name}",
                canary.len()
            );
        }
    }
}
