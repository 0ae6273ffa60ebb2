//! Findings of the policy, certificate, owner, pod and sweep rules, raised by real reads with
//! the real daemon, each next to the benign read that must raise nothing.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use credwatch_tests::{
    Daemon, attribute,
    cgroups::read_file_inside,
    client::run_to_end,
    contract::assert_documented,
    encoding::jwt,
    findings::{FINDING, findings_of, wait_for_finding},
    scratch_dir,
    servers::openssl,
    unique, write_file,
};
use serde_json::Value;

/// The `detection` settings every test starts with. A developer's terminal makes every reader
/// interactive, so `interactive_use` is off to keep the benign reads free of findings.
const DETECTION: &str = "detection:\n  interactive_use: false\n";

/// Catalogue entry that makes a test file a service-account token.
const TOKEN_ENTRY: &str = "    - {id: test-sa-token, type: kubernetes_service_account_token, basenames: [sa-token-fixture]}\n";

/// Container id of the test pods' containers.
const CONTAINER_ID: &str = "4f3e2d1c0b0a09080706050403020100ffeeddccbbaa99887766554433221100";

/// Returns the types of the findings raised by the reads of process `pid`.
fn finding_types_of(daemon: &Daemon, pid: u32) -> Vec<String> {
    daemon
        .events_of(FINDING, pid)
        .iter()
        .map(|event| attribute(event, "credwatch.finding.type").to_owned())
        .collect()
}

/// Reads `file` with `program` and returns the reader's pid. Give the program's real path,
/// because a reader that exits before the daemon reads `/proc/PID/exe` is named by the path it
/// was started with.
fn read_with(program: &str, file: &Path) -> u32 {
    let finished = run_to_end(Command::new(program).arg(file));
    finished.assert_success();
    finished.pid
}

/// Returns the pid of the process that raised an access event.
fn pid_of(event: &Value) -> u32 {
    let pid = event["attributes"]["process.pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("event has no process.pid: {event}"));
    u32::try_from(pid).unwrap()
}

/// Panics when one of `secrets` appears in an event or in the daemon's standard error.
fn assert_no_secret(daemon: &Daemon, secrets: &[&str]) {
    let events = daemon
        .events()
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let stderr = daemon.stderr_text();
    for secret in secrets {
        assert!(!events.contains(secret), "an event contains {secret}");
        assert!(!stderr.contains(secret), "stderr contains {secret}");
    }
}

/// Writes a made-up AWS credentials file at `path`, with the key id `AKIAMADEUPFINDIN` followed
/// by `index` in four digits, and returns its secret access key.
fn aws_file(path: &Path, index: usize) -> String {
    let secret = format!("madeUpFindingSecret{index:021}");
    write_file(
        path,
        &format!(
            "[default]\naws_access_key_id = AKIAMADEUPFINDIN{index:04}\naws_secret_access_key = {secret}\n"
        ),
    );
    secret
}

/// Writes `text` to `path` through a temporary file and a rename, so that the daemon never
/// reads a half-written file.
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    write_file(&temporary, text);
    fs::rename(&temporary, path).unwrap_or_else(|error| {
        panic!(
            "failed to rename {} to {}: {error}",
            temporary.display(),
            path.display()
        )
    });
}

/// Returns a policy file that governs the AWS credentials below `governed` and allows the
/// workload `workload`, and the executables `executables` when not empty.
fn policy_text(governed: &Path, workload: &str, executables: &[&str]) -> String {
    let mut text = format!(
        "policies:\n  - name: test-service-key\n    credentials:\n      paths: [\"{}/*/.aws/credentials\"]\n    allow:\n      workloads: [\"{workload}\"]\n",
        governed.display()
    );
    if !executables.is_empty() {
        let quoted: Vec<String> = executables
            .iter()
            .map(|path| format!("\"{path}\""))
            .collect();
        text.push_str(&format!("      executables: [{}]\n", quoted.join(", ")));
    }
    text
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn policy_allows_only_the_service() {
    let dir = scratch_dir();
    let governed = dir.path().join("governed");
    let first_file = governed.join("first/.aws/credentials");
    let second_file = governed.join("second/.aws/credentials");
    let ungoverned_file = dir.path().join("ungoverned/.aws/credentials");
    let secrets = [
        aws_file(&first_file, 1),
        aws_file(&second_file, 2),
        aws_file(&ungoverned_file, 3),
    ];
    let unit = format!("credwatch-test-{}-{}.service", std::process::id(), unique());
    let workload = format!("systemd://{unit}");
    let policy = dir.path().join("policy.yaml");
    write_file(&policy, &policy_text(&governed, &workload, &[]));
    let mut daemon =
        Daemon::start_with_config(&format!("{DETECTION}  policy_file: {}\n", policy.display()));

    let service = read_file_inside(&daemon, &first_file, &format!("system.slice/{unit}"));
    let service_pid = pid_of(&service);
    let outside_reader = read_with("/usr/bin/cat", &first_file);
    let violation = wait_for_finding(&daemon, "policy_violation", outside_reader);
    let ungoverned = read_with("/usr/bin/cat", &ungoverned_file);
    daemon.barrier();

    // The daemon reads the policy file again at the first read that comes 2 s or more after
    // its last check. No event shows when that happened, so the test waits longer than 2 s.
    replace_file(
        &policy,
        &policy_text(&governed, &workload, &["/usr/bin/cat"]),
    );
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    // The second file is new to both readers, so no earlier finding can hide theirs as a
    // repeat. `cat` is allowed now, and `head` still is not.
    let allowed_cat = read_with("/usr/bin/cat", &second_file);
    let denied_head = read_with("/usr/bin/head", &second_file);
    let after_reload = wait_for_finding(&daemon, "policy_violation", denied_head);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_eq!(attribute(&service, "credwatch.workload.id"), workload);
    assert_eq!(finding_types_of(&daemon, service_pid), Vec::<String>::new());
    assert_eq!(finding_types_of(&daemon, ungoverned), Vec::<String>::new());
    assert_documented(&violation);
    assert_eq!(attribute(&violation, "credwatch.finding.severity"), "high");
    assert_eq!(
        attribute(&violation, "credwatch.finding.policy.name"),
        "test-service-key"
    );
    assert_eq!(
        attribute(&violation, "credwatch.finding.policy.file"),
        policy.to_str().unwrap()
    );
    assert_eq!(
        attribute(&violation, "credwatch.finding.policy.allowed"),
        format!("workloads {workload}")
    );
    assert_eq!(
        attribute(&violation, "credwatch.finding.credential.native_id"),
        "AKIAMADEUPFINDIN0001"
    );
    assert_eq!(
        attribute(&violation, "file.path"),
        first_file.to_str().unwrap()
    );
    assert_eq!(
        attribute(&violation, "process.executable.path"),
        "/usr/bin/cat"
    );
    assert!(
        attribute(&violation, "credwatch.finding.summary")
            .contains("which policy test-service-key allows only to workloads"),
        "{violation}"
    );

    assert_eq!(finding_types_of(&daemon, allowed_cat), Vec::<String>::new());
    assert_documented(&after_reload);
    assert_eq!(
        attribute(&after_reload, "credwatch.finding.policy.allowed"),
        format!("workloads {workload}; executables /usr/bin/cat")
    );
    assert_eq!(
        attribute(&after_reload, "credwatch.finding.credential.native_id"),
        "AKIAMADEUPFINDIN0002"
    );
    let violations = findings_of(&daemon, "policy_violation");
    assert_eq!(violations.len(), 2, "{violations:#?}");
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&daemon, &secrets);
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn invalid_policy_file_is_rejected() {
    let dir = scratch_dir();
    let policy = dir.path().join("broken-policy.yaml");
    // `path` is a misspelling of `paths`.
    write_file(
        &policy,
        "policies:\n  - name: test-broken\n    credentials:\n      path: [\"/etc/test/*\"]\n    allow:\n      executables: [\"/usr/bin/cat\"]\n",
    );
    let config = dir.path().join("config.yaml");
    write_file(
        &config,
        &format!("detection:\n  policy_file: {}\n", policy.display()),
    );

    let output = Command::new(credwatch_tests::credwatch_binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(policy.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("detection.policy_file"), "{stderr}");
    assert!(stderr.contains("policies[0].credentials"), "{stderr}");
    assert!(stderr.contains("unknown field `path`"), "{stderr}");
}

/// Writes a made-up self-signed certificate for `name`, valid for `days` days from now, to
/// `certificate`, with its key in `key`, and returns its expiry as credwatch writes it.
fn make_certificate(certificate: &Path, key: &Path, name: &str, days: u32) -> String {
    fs::create_dir_all(certificate.parent().unwrap()).unwrap();
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    let (certificate, key) = (certificate.to_str().unwrap(), key.to_str().unwrap());
    let days = days.to_string();
    let subject = format!("/CN={name}");
    openssl(
        Path::new("/"),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            &days,
            "-subj",
            &subject,
            "-keyout",
            key,
            "-out",
            certificate,
        ],
    );
    // `notAfter=2026-12-09 07:05:00Z`
    let end = openssl(
        Path::new("/"),
        &[
            "x509",
            "-noout",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-in",
            certificate,
        ],
    );
    let end = end
        .trim()
        .strip_prefix("notAfter=")
        .and_then(|end| end.strip_suffix('Z'))
        .unwrap_or_else(|| panic!("openssl printed {end:?}, expected `notAfter=<ISO 8601 time>Z`"));
    format!("{}.000000Z", end.replace(' ', "T"))
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn expiring_certificate_is_reported() {
    let dir = scratch_dir();
    let soon = dir.path().join("certificates/soon.pem");
    let later = dir.path().join("certificates/later.pem");
    let soon_expiry =
        make_certificate(&soon, &dir.path().join("keys/soon"), "soon.example.test", 5);
    make_certificate(
        &later,
        &dir.path().join("keys/later"),
        "later.example.test",
        400,
    );
    let entry = format!(
        "    - {{id: test-certificates, type: x509_certificate, paths: [{}, {}]}}\n",
        soon.display(),
        later.display()
    );
    let mut daemon = Daemon::start_with_entries_and_sections(&entry, DETECTION, None);

    let later_reader = read_with("/usr/bin/cat", &later);
    let soon_reader = read_with("/usr/bin/cat", &soon);
    let finding = wait_for_finding(&daemon, "certificate_expiring", soon_reader);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "low");
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.type"),
        "x509_certificate"
    );
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.expires_at"),
        soon_expiry
    );
    // The certificate was made moments ago, so at most 5 days are left, usually a little less.
    let days = finding["attributes"]["credwatch.finding.expires_in_days"].as_u64();
    assert!(matches!(days, Some(4 | 5)), "{finding}");
    assert_eq!(attribute(&finding, "file.path"), soon.to_str().unwrap());
    assert!(
        attribute(&finding, "credwatch.finding.summary")
            .contains("read the x509_certificate credential soon.example.test ("),
        "{finding}"
    );
    assert_eq!(
        finding_types_of(&daemon, later_reader),
        Vec::<String>::new()
    );
    let expiring = findings_of(&daemon, "certificate_expiring");
    assert_eq!(expiring.len(), 1, "{expiring:#?}");
}

/// Returns a made-up service-account token of `shop:cart` bound to the pod `cart-0` with uid
/// `pod_uid`, with `signature` as its made-up signature.
fn bound_token(pod_uid: &str, signature: &str) -> String {
    let claims = format!(
        r#"{{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:shop:cart","exp":4102444800,"kubernetes.io":{{"namespace":"shop","pod":{{"name":"cart-0","uid":"{pod_uid}"}},"serviceaccount":{{"name":"cart","uid":"5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b"}}}}}}"#
    );
    jwt(r#"{"alg":"RS256"}"#, &claims, signature)
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn token_of_deleted_pod_is_orphaned() {
    let pod_uid = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f";
    let signature = format!("madeUpOrphanSignature{}", unique());
    let token = bound_token(pod_uid, &signature);
    let host = scratch_dir();
    let log_directory = host
        .path()
        .join(format!("var/log/pods/shop_cart-0_{pod_uid}"));
    let kubelet_directory = host.path().join(format!("var/lib/kubelet/pods/{pod_uid}"));
    fs::create_dir_all(log_directory.join("cart")).unwrap();
    write_file(
        &kubelet_directory.join("volumes/kubernetes.io~projected/kube-api-access-x1/token"),
        &token,
    );
    let mut daemon = Daemon::start_with_entries_and_sections(
        TOKEN_ENTRY,
        &format!(
            "kubernetes:\n  host_root: {}\n{DETECTION}",
            host.path().display()
        ),
        None,
    );
    // A copy of the pod's token, kept outside the pod.
    let copy = daemon.dir().join("copied/sa-token-fixture");
    write_file(&copy, &token);

    let while_running = read_with("/usr/bin/cat", &copy);
    daemon.barrier();
    let findings_while_running = finding_types_of(&daemon, while_running);
    // The daemon checks the pod's directories at every read, so no wait is needed.
    fs::remove_dir_all(&log_directory).unwrap();
    fs::remove_dir_all(&kubelet_directory).unwrap();
    let after_deletion = read_with("/usr/bin/cat", &copy);
    let finding = wait_for_finding(&daemon, "orphaned_use", after_deletion);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_eq!(findings_while_running, Vec::<String>::new());
    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "high");
    assert_eq!(
        attribute(&finding, "credwatch.finding.owner"),
        format!("pod cart-0 ({pod_uid})")
    );
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.native_id"),
        "system:serviceaccount:shop:cart"
    );
    assert_eq!(
        attribute(&finding, "credwatch.token.bound_pod.uid"),
        pod_uid
    );
    assert_eq!(attribute(&finding, "file.path"), copy.to_str().unwrap());
    assert!(
        attribute(&finding, "credwatch.finding.summary").contains("no longer exists"),
        "{finding}"
    );
    let orphaned = findings_of(&daemon, "orphaned_use");
    assert_eq!(orphaned.len(), 1, "{orphaned:#?}");
    assert_no_secret(&daemon, &[&token, &signature]);
}

/// Returns the cgroup path of a containerd container in the pod `uid`, with the systemd
/// cgroup driver's naming.
fn pod_cgroup(uid: &str) -> String {
    format!(
        "kubepods.slice/kubepods-pod{}.slice/cri-containerd-{CONTAINER_ID}.scope",
        uid.replace('-', "_")
    )
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn foreign_pod_token_read_is_flagged() {
    let pod_uid = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d";
    let other_pod = "9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0";
    let signature = format!("madeUpForeignSignature{}", unique());
    let token = bound_token(pod_uid, &signature);
    let mut daemon = Daemon::start_with_entries_and_sections(TOKEN_ENTRY, DETECTION, None);
    let file = daemon.dir().join("pod-volume/sa-token-fixture");
    write_file(&file, &token);

    let own = pid_of(&read_file_inside(&daemon, &file, &pod_cgroup(pod_uid)));
    let foreign = pid_of(&read_file_inside(&daemon, &file, &pod_cgroup(other_pod)));
    let node_agent = pid_of(&read_file_inside(
        &daemon,
        &file,
        &format!("system.slice/credwatch-test-agent-{}.service", unique()),
    ));
    let finding = wait_for_finding(&daemon, "foreign_workload", foreign);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "high");
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.type"),
        "kubernetes_service_account_token"
    );
    assert_eq!(
        attribute(&finding, "credwatch.token.bound_pod.uid"),
        pod_uid
    );
    assert_eq!(attribute(&finding, "k8s.pod.uid"), other_pod);
    assert_eq!(finding["attributes"]["credwatch.token.pod_mismatch"], true);
    assert!(
        attribute(&finding, "credwatch.finding.summary")
            .contains("which is bound to pod cart-0, from another pod"),
        "{finding}"
    );
    let own_types = finding_types_of(&daemon, own);
    assert!(
        !own_types.iter().any(|kind| kind == "foreign_workload"),
        "the pod's own read: {own_types:?}"
    );
    // A reader outside pods, such as a node agent, has no pod to compare.
    let agent_types = finding_types_of(&daemon, node_agent);
    assert!(
        !agent_types.iter().any(|kind| kind == "foreign_workload"),
        "the node agent's read: {agent_types:?}"
    );
    let foreign_findings = findings_of(&daemon, "foreign_workload");
    assert_eq!(foreign_findings.len(), 1, "{foreign_findings:#?}");
    assert_no_secret(&daemon, &[&token, &signature]);
}

/// Returns the access events of the children of process `parent`.
fn access_events_by_children(daemon: &Daemon, parent: u32) -> Vec<Value> {
    daemon
        .events()
        .into_iter()
        .filter(|event| event["event_name"] == "credwatch.credential.access")
        .filter(|event| event["attributes"]["process.parent_pid"] == parent)
        .collect()
}

/// The shell loop that starts one `cat` per argument.
const LOOP_OVER_ARGUMENTS: &str = r#"for f in "$@"; do /usr/bin/cat "$f" >/dev/null; done"#;

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn shell_loop_over_files_is_a_sweep() {
    let dir = scratch_dir();
    let files: Vec<PathBuf> = (0..10)
        .map(|index| dir.path().join(format!("home-{index}/.aws/credentials")))
        .collect();
    let secrets: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(index, file)| aws_file(file, 100 + index))
        .collect();
    let mut daemon = Daemon::start_with_config(DETECTION);

    // One file read ten times is an application, not a sweep.
    let repeated = run_to_end(
        Command::new("/bin/sh")
            .args(["-c", LOOP_OVER_ARGUMENTS, "sh"])
            .args(std::iter::repeat_n(&files[0], 10)),
    );
    repeated.assert_success();
    let sweeper = run_to_end(
        Command::new("/bin/sh")
            .args(["-c", LOOP_OVER_ARGUMENTS, "sh"])
            .args(&files),
    );
    sweeper.assert_success();
    let finding = daemon.wait_for("a credential_sweep finding", |event| {
        event["event_name"] == FINDING
            && event["attributes"]["credwatch.finding.type"] == "credential_sweep"
            && event["attributes"]["process.parent_pid"] == sweeper.pid
    });
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "high");
    // Each `cat` reads one file, so only the count of the shell's children reaches 10.
    assert_eq!(
        attribute(&finding, "credwatch.finding.sweep.scope"),
        "children"
    );
    assert_eq!(finding["attributes"]["credwatch.finding.sweep.count"], 10);
    assert_eq!(
        attribute(&finding, "process.executable.path"),
        "/usr/bin/cat"
    );
    assert_eq!(attribute(&finding, "file.path"), files[9].to_str().unwrap());
    let last_reads: Vec<Value> = access_events_by_children(&daemon, sweeper.pid)
        .into_iter()
        .filter(|event| event["attributes"]["file.path"] == files[9].to_str().unwrap())
        .collect();
    assert_eq!(last_reads.len(), 1, "{last_reads:#?}");
    assert_eq!(pid_of(&finding), pid_of(&last_reads[0]));
    assert!(
        attribute(&finding, "credwatch.finding.summary").contains(&format!(
            "processes started by pid {} read 10 distinct credentials",
            sweeper.pid
        )),
        "{finding}"
    );
    let sweeps = findings_of(&daemon, "credential_sweep");
    assert_eq!(sweeps.len(), 1, "{sweeps:#?}");
    // The repeated reads were seen, each by a child of its shell, and raised nothing.
    let repeated_reads = access_events_by_children(&daemon, repeated.pid);
    assert_eq!(repeated_reads.len(), 10, "{repeated_reads:#?}");
    let from_repeated: Vec<Value> = daemon
        .events()
        .into_iter()
        .filter(|event| event["event_name"] == FINDING)
        .filter(|event| event["attributes"]["process.parent_pid"] == repeated.pid)
        .collect();
    assert!(from_repeated.is_empty(), "{from_repeated:#?}");
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret(&daemon, &secrets);
}

/// Writes a made-up self-signed certificate for `name` that expired on 2020-01-02 to
/// `certificate`, signed by `openssl ca` with a fixed validity in `work`.
fn make_expired_certificate(work: &Path, certificate: &Path, name: &str) {
    fs::create_dir_all(work).unwrap();
    fs::write(work.join("index.txt"), "").unwrap();
    fs::write(work.join("serial"), "01\n").unwrap();
    fs::write(
        work.join("ca.cnf"),
        "[ca]\ndefault_ca = made_up\n[made_up]\ndatabase = index.txt\nnew_certs_dir = .\n\
         serial = serial\ndefault_md = sha256\npolicy = any_name\n[any_name]\n\
         commonName = supplied\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        openssl(work, args);
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "request.pem",
        "-subj",
        &format!("/CN={name}"),
    ]);
    run(&[
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-selfsign",
        "-keyfile",
        "key.pem",
        "-in",
        "request.pem",
        "-out",
        "certificate.pem",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
    ]);
    fs::create_dir_all(certificate.parent().unwrap()).unwrap();
    fs::copy(work.join("certificate.pem"), certificate).unwrap();
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn expired_certificate_raises_expired_use() {
    let dir = scratch_dir();
    let expired = dir.path().join("certificates/expired.pem");
    let valid = dir.path().join("certificates/valid.pem");
    make_expired_certificate(&dir.path().join("ca"), &expired, "expired.example.test");
    make_certificate(
        &valid,
        &dir.path().join("keys/valid"),
        "valid.example.test",
        400,
    );
    let entry = format!(
        "    - {{id: test-certificates, type: x509_certificate, paths: [{}, {}]}}\n",
        expired.display(),
        valid.display()
    );
    let mut daemon = Daemon::start_with_entries_and_sections(&entry, DETECTION, None);

    let valid_reader = read_with("/usr/bin/cat", &valid);
    let expired_reader = read_with("/usr/bin/cat", &expired);
    let finding = wait_for_finding(&daemon, "expired_use", expired_reader);
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_documented(&finding);
    assert_eq!(attribute(&finding, "credwatch.finding.severity"), "medium");
    assert_eq!(
        attribute(&finding, "credwatch.finding.credential.expires_at"),
        "2020-01-02T00:00:00.000000Z"
    );
    assert!(
        attribute(&finding, "credwatch.finding.summary")
            .contains("read the x509_certificate credential expired.example.test ("),
        "{finding}"
    );
    // An expired certificate is past the warning: it raises expired_use alone.
    assert_eq!(
        finding_types_of(&daemon, expired_reader),
        vec!["expired_use".to_owned()]
    );
    assert_eq!(
        finding_types_of(&daemon, valid_reader),
        Vec::<String>::new()
    );
}
