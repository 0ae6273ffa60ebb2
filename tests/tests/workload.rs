//! Container, pod and systemd attributes from real cgroup v2 hierarchies that the tests create
//! in each runtime's naming scheme. Every cgroup is removed again, also when a test fails.

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use credwatch_tests::{
    Daemon, attribute,
    cgroups::{TestCgroup, WaitingReader, read_file_inside},
    contract::assert_documented,
    encoding::jwt,
    servers::test_has_terminal,
    unique, write_file,
};
use serde_json::Value;

const ID: &str = "4f3e2d1c0b0a09080706050403020100ffeeddccbbaa99887766554433221100";
const POD_UID: &str = "0d1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8";

/// Writes a made-up AWS credentials file in the daemon's directory and returns it with its
/// path as text.
fn aws_file(daemon: &Daemon) -> (PathBuf, String) {
    let file = daemon.dir().join("home/.aws/credentials");
    write_file(
        &file,
        "[default]\naws_access_key_id = AKIAMADEUPEXAMPLE234\n",
    );
    let text = file.to_string_lossy().into_owned();
    (file, text)
}

/// Reads a credential from a process inside a cgroup at `relative` and returns its event.
fn read_inside(daemon: &Daemon, relative: &str) -> Value {
    let file = daemon
        .dir()
        .join(format!("home-{}/.aws/credentials", unique()));
    write_file(
        &file,
        "[default]\naws_access_key_id = AKIAMADEUPEXAMPLE234\n",
    );
    read_file_inside(daemon, &file, relative)
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn containerd_pod_with_systemd_driver() {
    let mut daemon = Daemon::start("");
    let uid = POD_UID.replace('-', "_");
    let event = read_inside(
        &daemon,
        &format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope"
        ),
    );
    assert!(daemon.stop().success());

    assert_eq!(attribute(&event, "container.id"), ID);
    assert_eq!(
        attribute(&event, "credwatch.container.runtime"),
        "containerd"
    );
    assert_eq!(attribute(&event, "k8s.pod.uid"), POD_UID);
    assert!(
        attribute(&event, "process.linux.cgroup").ends_with(&format!("cri-containerd-{ID}.scope")),
        "{event}"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn runtimes_and_drivers_are_recognised() {
    let mut daemon = Daemon::start("");
    let cases = [
        (
            format!("kubepods/besteffort/pod{POD_UID}/{ID}"),
            Some("unknown"),
            Some(POD_UID),
        ),
        (
            format!(
                "kubepods.slice/kubepods-pod{}.slice/crio-{ID}.scope",
                POD_UID.replace('-', "_")
            ),
            Some("cri-o"),
            Some(POD_UID),
        ),
        (
            format!("system.slice/docker-{ID}.scope"),
            Some("docker"),
            None,
        ),
        (
            format!("machine.slice/libpod-{ID}.scope"),
            Some("podman"),
            None,
        ),
    ];
    for (relative, runtime, pod) in &cases {
        let event = read_inside(&daemon, relative);
        assert_eq!(
            event["attributes"]["credwatch.container.runtime"].as_str(),
            *runtime,
            "{relative}: {event}"
        );
        assert_eq!(
            event["attributes"]["container.id"].as_str(),
            Some(ID),
            "{relative}"
        );
        assert_eq!(
            event["attributes"]["k8s.pod.uid"].as_str(),
            *pod,
            "{relative}"
        );
    }
    assert!(daemon.stop().success());
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn systemd_service_outside_containers() {
    let state = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with_state("", state.path());
    let event = read_inside(&daemon, "system.slice/credwatch-test-app.service");
    assert!(daemon.stop().success());

    assert_eq!(
        attribute(&event, "credwatch.systemd.unit"),
        "credwatch-test-app.service"
    );
    assert!(event["attributes"].get("container.id").is_none(), "{event}");

    // The inventory names the workload of each consumer.
    let output = Command::new(credwatch_tests::credwatch_binary())
        .args(["inventory", "--format", "json", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let inventory: Value = serde_json::from_slice(&output.stdout).unwrap();
    let workloads: Vec<&str> = inventory
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|credential| credential["consumers"].as_array().unwrap())
        .filter_map(|consumer| consumer["workload"].as_str())
        .collect();
    assert!(
        workloads.contains(&"systemd://credwatch-test-app.service"),
        "{inventory}"
    );
}

/// Catalogue entry that makes a test file a service-account token.
const TOKEN_ENTRY: &str = "    - {id: test-sa-token, type: kubernetes_service_account_token, basenames: [sa-token-fixture]}\n";

/// Returns the cgroup path of a containerd container in the pod `uid`.
fn pod_cgroup(uid: &str) -> String {
    format!(
        "kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope",
        uid.replace('-', "_")
    )
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn token_read_from_another_pod_is_flagged() {
    let mut daemon = Daemon::start(TOKEN_ENTRY);
    let claims = format!(
        r#"{{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:shop:cart","exp":4102444800,"kubernetes.io":{{"namespace":"shop","pod":{{"name":"cart-0","uid":"{POD_UID}"}},"serviceaccount":{{"name":"cart","uid":"5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b"}}}}}}"#
    );
    let token = jwt(r#"{"alg":"RS256"}"#, &claims, "madeUpSignature");
    let file = daemon.dir().join("pod-volume/sa-token-fixture");
    write_file(&file, &token);
    let other_pod = "9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0";

    let own = read_file_inside(&daemon, &file, &pod_cgroup(POD_UID));
    let foreign = read_file_inside(&daemon, &file, &pod_cgroup(other_pod));
    let host = read_file_inside(
        &daemon,
        &file,
        "system.slice/credwatch-test-node-agent.service",
    );
    assert!(daemon.stop().success());

    for event in [&own, &foreign, &host] {
        assert_eq!(
            attribute(event, "credwatch.token.bound_pod.uid"),
            POD_UID,
            "{event}"
        );
        assert_eq!(attribute(event, "credwatch.token.bound_pod.name"), "cart-0");
    }
    assert_eq!(
        own["attributes"]["credwatch.token.pod_mismatch"], false,
        "{own}"
    );
    assert_eq!(
        foreign["attributes"]["credwatch.token.pod_mismatch"], true,
        "{foreign}"
    );
    assert_eq!(attribute(&foreign, "k8s.pod.uid"), other_pod);
    assert!(
        host["attributes"]
            .get("credwatch.token.pod_mismatch")
            .is_none(),
        "a reader outside pods has no pod to compare: {host}"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn terminal_reader_is_interactive_and_setsid_reader_is_not() {
    let mut daemon = Daemon::start("");
    let (_, text) = aws_file(&daemon);

    // `script` runs the command on a new pseudo-terminal. The reader is python, whose start-up
    // keeps it alive long enough for the daemon to read its terminal from /proc at exec.
    let reader = format!("/usr/bin/python3 -c 'open(\"{text}\").read()'");
    let status = Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(&reader)
        .arg("/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run script");
    assert!(status.success());
    let on_terminal = daemon.wait_for("the read on a terminal", |event| {
        event["attributes"]["file.path"] == text.as_str()
            && event["attributes"]["credwatch.process.tty"] == true
    });
    let status = Command::new("setsid")
        .args(["--wait", "/usr/bin/python3", "-c"])
        .arg(format!("open({text:?}).read()"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("run setsid");
    assert!(status.success());
    let detached = daemon.wait_for("the read without a terminal", |event| {
        event["attributes"]["file.path"] == text.as_str()
            && event["attributes"]["credwatch.process.tty"] == false
    });
    assert!(daemon.stop().success());

    assert_documented(&on_terminal);
    assert_eq!(
        on_terminal["attributes"]["credwatch.process.interactive"],
        true
    );
    let ancestors = on_terminal["attributes"]["credwatch.process.ancestors"]
        .as_array()
        .unwrap_or_else(|| panic!("no ancestors: {on_terminal}"));
    assert!(
        ancestors.iter().any(|name| name == "script"),
        "{ancestors:?}"
    );
    // Without a terminal anywhere up the chain the reader is not interactive; under a
    // developer's terminal its ancestors have one.
    assert_eq!(
        detached["attributes"]["credwatch.process.interactive"],
        test_has_terminal(),
        "{detached}"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn pod_metadata_and_workload_ids() {
    let host = credwatch_tests::scratch_dir();
    fs::create_dir_all(
        host.path()
            .join(format!("var/log/pods/shop_cart-0_{POD_UID}/cart")),
    )
    .unwrap();
    let claims = r#"{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:shop:cart","exp":4102444800,"kubernetes.io":{"namespace":"shop","serviceaccount":{"name":"cart","uid":"5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b"}}}"#;
    write_file(
        &host.path().join(format!(
            "var/lib/kubelet/pods/{POD_UID}/volumes/kubernetes.io~projected/kube-api-access-x1/token"
        )),
        &jwt(r#"{"alg":"RS256"}"#, claims, "madeUpSignature"),
    );
    let mut daemon = Daemon::start_with_config(&format!(
        "kubernetes:\n  host_root: {}\n  trust_domain: example.test\n",
        host.path().display()
    ));

    let pod = read_inside(
        &daemon,
        &format!(
            "kubepods.slice/kubepods-pod{}.slice/cri-containerd-{ID}.scope",
            POD_UID.replace('-', "_")
        ),
    );
    let container = read_inside(&daemon, &format!("system.slice/docker-{ID}.scope"));
    let service = read_inside(&daemon, "system.slice/credwatch-test-app.service");
    assert!(daemon.stop().success());

    assert_eq!(attribute(&pod, "k8s.namespace.name"), "shop");
    assert_eq!(attribute(&pod, "k8s.pod.name"), "cart-0");
    assert_eq!(
        attribute(&pod, "credwatch.k8s.service_account.name"),
        "cart"
    );
    assert_eq!(
        attribute(&pod, "credwatch.workload.id"),
        "spiffe://example.test/ns/shop/sa/cart"
    );
    assert_eq!(
        attribute(&container, "credwatch.workload.id"),
        format!("container://docker/{ID}")
    );
    assert_eq!(
        attribute(&service, "credwatch.workload.id"),
        "systemd://credwatch-test-app.service"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn executable_hash_matches_sha256sum() {
    let mut daemon = Daemon::start("");
    let (file, text) = aws_file(&daemon);
    let cat = fs::canonicalize("/bin/cat").unwrap();
    let output = Command::new("sha256sum").arg(&cat).output().unwrap();
    let expected = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();

    // The hash is computed in the background after the first exec of the file, so the reads
    // repeat until an event carries it.
    let deadline = std::time::Instant::now() + credwatch_tests::TIMEOUT;
    let hashed = loop {
        let status = Command::new(&cat)
            .arg(&file)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        daemon.barrier();
        let found = daemon.events().into_iter().find(|event| {
            event["attributes"]["file.path"] == text.as_str()
                && event["attributes"]
                    .get("credwatch.process.executable.sha256")
                    .is_some()
        });
        if let Some(event) = found {
            break event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event carried an executable hash"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(daemon.stop().success());

    assert_eq!(
        attribute(&hashed, "credwatch.process.executable.sha256"),
        expected
    );
}

/// A kubelet stand-in on loopback that returns `response` to every request, until dropped.
struct FakeKubelet {
    port: u16,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKubelet {
    fn start(response: String) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        use std::io::Read as _;
                        stream.set_nonblocking(false).unwrap();
                        let mut request = [0_u8; 1024];
                        let _ = stream.read(&mut request);
                        counted.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.write_all(response.as_bytes());
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads a file inside the test pod until the event carries the kubelet's metadata, for at
/// most about two seconds. The first fetch runs in the background at start, and a read before
/// it finished goes without the metadata and requests a new fetch.
fn read_until_kubelet_answers(daemon: &Daemon) -> Value {
    let mut event = read_inside(daemon, &pod_cgroup(POD_UID));
    for _ in 0..20 {
        if event["attributes"].get("k8s.deployment.name").is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        event = read_inside(daemon, &pod_cgroup(POD_UID));
    }
    event
}

fn pod_list() -> String {
    format!(
        r#"{{"kind":"PodList","items":[{{"metadata":{{"name":"cart-7c9f8d6b5-x2k4q","namespace":"shop","uid":"{POD_UID}","labels":{{"app":"cart"}},"ownerReferences":[{{"kind":"ReplicaSet","name":"cart-7c9f8d6b5","controller":true}}]}},"spec":{{"serviceAccountName":"cart","containers":[{{"name":"app","image":"registry.example.test/cart:1.2"}}]}},"status":{{"containerStatuses":[{{"name":"app","containerID":"containerd://{ID}","imageID":"registry.example.test/cart@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}]}}}}]}}"#
    )
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn kubelet_pod_list_names_owner_container_and_image() {
    let body = pod_list();
    let kubelet = FakeKubelet::start(format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let mut daemon = Daemon::start_with_config(&format!(
        "kubernetes:\n  kubelet_address: 127.0.0.1:{}\n",
        kubelet.port
    ));

    let event = read_until_kubelet_answers(&daemon);
    assert!(daemon.stop().success());

    assert_eq!(attribute(&event, "k8s.deployment.name"), "cart", "{event}");
    assert_eq!(attribute(&event, "credwatch.k8s.owner.kind"), "Deployment");
    assert_eq!(attribute(&event, "k8s.container.name"), "app");
    assert_eq!(
        attribute(&event, "container.image.name"),
        "registry.example.test/cart:1.2"
    );
    assert!(attribute(&event, "credwatch.container.image.digest").starts_with("sha256:0123"));
    assert_eq!(
        event["attributes"]["credwatch.k8s.pod.labels"]["app"],
        "cart"
    );
    assert_eq!(attribute(&event, "k8s.pod.name"), "cart-7c9f8d6b5-x2k4q");
    assert_eq!(
        attribute(&event, "credwatch.workload.id"),
        "spiffe://cluster.local/ns/shop/sa/cart"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn broken_kubelet_never_blocks_events() {
    let garbage = FakeKubelet::start("HTTP/1.0 200 OK\r\n\r\n<html>not json".to_owned());
    let failing = FakeKubelet::start("HTTP/1.0 500 Internal Server Error\r\n\r\n".to_owned());
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    for port in [garbage.port, failing.port, closed] {
        let mut daemon = Daemon::start_with_config(&format!(
            "kubernetes:\n  kubelet_address: 127.0.0.1:{port}\n"
        ));
        let event = read_inside(&daemon, &pod_cgroup(POD_UID));
        assert!(daemon.stop().success(), "port {port}");

        assert_eq!(attribute(&event, "k8s.pod.uid"), POD_UID);
        assert!(
            event["attributes"].get("k8s.deployment.name").is_none(),
            "{event}"
        );
        assert!(
            daemon
                .stderr_text()
                .contains("failed to read pods from the kubelet"),
            "port {port}: {}",
            daemon.stderr_text()
        );
    }
}

/// A kubelet stand-in that speaks TLS on loopback: the system Python's `http.server` behind
/// `ssl`. It serves `/pods` after `delay` seconds, and only to the bearer token in the file
/// `token` of its directory.
const TLS_KUBELET: &str = r#"
import http.server, os, ssl, sys, time
directory, delay = sys.argv[1], float(sys.argv[2])
def read(name):
    with open(os.path.join(directory, name), "rb") as f:
        return f.read()
token, body = read("token").decode().strip(), read("pods.json")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(delay)
        if self.path != "/pods" or self.headers.get("Authorization") != "Bearer " + token:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(os.path.join(directory, "kubelet.crt"), os.path.join(directory, "kubelet.key"))
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(os.path.join(directory, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(directory, "port.tmp"), os.path.join(directory, "port"))
server.serve_forever()
"#;

/// The TLS kubelet stand-in, stopped on drop, with a made-up CA (`ca.crt`), a second CA that
/// did not sign its certificate (`other-ca.crt`) and its token (`token`).
struct TlsKubelet {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    token: String,
}

impl TlsKubelet {
    fn start(delay_seconds: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        make_kubelet_certificates(dir.path());
        let token = format!("credwatch-test-kubelet-token-{}", unique());
        write_file(&dir.path().join("token"), &format!("{token}\n"));
        write_file(&dir.path().join("pods.json"), &pod_list());
        let child = Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(TLS_KUBELET)
            .arg(dir.path())
            .arg(delay_seconds.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("failed to start /usr/bin/python3");
        let port_file = dir.path().join("port");
        for _ in 0..100 {
            if port_file.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let port = fs::read_to_string(&port_file)
            .expect("the TLS kubelet stand-in did not start")
            .trim()
            .parse()
            .unwrap();
        Self {
            child,
            port,
            dir,
            token,
        }
    }

    /// Returns the `kubernetes` section that reaches this kubelet with `ca` and `token`.
    fn section(&self, ca: &str, token: &Path) -> String {
        format!(
            "kubernetes:\n  kubelet_address: 127.0.0.1:{}\n  kubelet_tls: true\n  \
             kubelet_ca_file: {}\n  kubelet_token_file: {}\n",
            self.port,
            self.dir.path().join(ca).display(),
            token.display()
        )
    }
}

impl Drop for TlsKubelet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a made-up CA, a second CA, and a serving certificate for 127.0.0.1 signed by the first.
fn make_kubelet_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        credwatch_tests::servers::openssl(dir, args);
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for name in ["ca", "other-ca"] {
        let subject = format!("/CN=credwatch test {name}");
        let key = format!("{name}.key");
        let cert = format!("{name}.crt");
        let mut args = vec!["req", "-x509", "-days", "1", "-subj", &subject];
        args.extend(new_key);
        args.extend(["-keyout", &key, "-out", &cert]);
        openssl(&args);
    }
    let mut args = vec!["req", "-new", "-subj", "/CN=kubelet"];
    args.extend(new_key);
    args.extend(["-keyout", "kubelet.key", "-out", "kubelet.csr"]);
    openssl(&args);
    write_file(
        &dir.join("kubelet.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "kubelet.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "kubelet.ext",
        "-out",
        "kubelet.crt",
    ]);
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn kubelet_over_tls_fills_pod_metadata() {
    let kubelet = TlsKubelet::start(0);
    let token_file = kubelet.dir.path().join("token");
    let mut daemon = Daemon::start_with_config(&kubelet.section("ca.crt", &token_file));

    let event = read_until_kubelet_answers(&daemon);
    assert!(daemon.stop().success());

    assert_eq!(attribute(&event, "k8s.deployment.name"), "cart", "{event}");
    assert_eq!(attribute(&event, "k8s.container.name"), "app");
    assert!(!daemon.stderr_text().contains(&kubelet.token));
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn kubelet_tls_failures_keep_events_flowing() {
    let kubelet = TlsKubelet::start(0);
    let slow = TlsKubelet::start(8);
    let token_file = kubelet.dir.path().join("token");
    let wrong_token = kubelet.dir.path().join("wrong-token");
    let wrong_value = format!("credwatch-test-wrong-token-{}", unique());
    write_file(&wrong_token, &wrong_value);
    let cases = [
        (&kubelet, "other-ca.crt", &token_file, "certificate"),
        (&kubelet, "ca.crt", &wrong_token, "did not accept the token"),
        (&slow, "ca.crt", &slow.dir.path().join("token"), "timed out"),
    ];

    for (server, ca, token, expected) in cases {
        let mut daemon = Daemon::start_with_config(&server.section(ca, token));
        let event = read_inside(&daemon, &pod_cgroup(POD_UID));
        // The first fetch fails at once for the first two; the slow one times out after 3 s.
        std::thread::sleep(std::time::Duration::from_secs(4));
        assert!(daemon.stop().success(), "{expected}");

        let stderr = daemon.stderr_text();
        assert_eq!(attribute(&event, "k8s.pod.uid"), POD_UID);
        assert!(event["attributes"].get("k8s.deployment.name").is_none());
        assert!(
            stderr.contains("failed to read pods from the kubelet"),
            "{stderr}"
        );
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(!stderr.contains(&server.token), "{stderr}");
        assert!(!stderr.contains(&wrong_value), "{stderr}");
    }
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn kubelet_tls_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    write_file(
        &config,
        &format!(
            "kubernetes:\n  kubelet_address: 127.0.0.1:10250\n  kubelet_tls: true\n  \
             kubelet_ca_file: {}\n",
            dir.path().join("absent-ca.crt").display()
        ),
    );
    let output = Command::new(credwatch_tests::credwatch_binary())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kubernetes.kubelet_ca_file"), "{stderr}");
    assert!(stderr.contains("absent-ca.crt"), "{stderr}");
}

/// Starts `command` under `pid` by moving the kernel's last allocated pid just below it.
/// Another process on the host may take the pid first, so the start is retried, and a child
/// that got another pid is ended by its own pid. Returns `None` when every try missed.
fn spawn_with_pid(pid: u32, command: &mut Command) -> Option<Child> {
    for _ in 0..50 {
        fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .expect("failed to write /proc/sys/kernel/ns_last_pid (needs root)");
        let mut child = command.spawn().expect("failed to start the second reader");
        if child.id() == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn reused_pid_reports_the_new_process() {
    let mut daemon = Daemon::start("");
    let (file, text) = aws_file(&daemon);
    let from_file = |pid: u32| {
        let text = text.clone();
        move |event: &Value| {
            event["attributes"]["file.path"] == text.as_str()
                && event["attributes"]["process.pid"] == pid
        }
    };

    let first = Command::new("/bin/cat")
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(first.success());
    let cat_pid = daemon.wait_for("the first reader's event", |event| {
        event["attributes"]["file.path"] == text.as_str()
            && event["attributes"]["process.executable.name"] == "cat"
    })["attributes"]["process.pid"]
        .as_u64()
        .unwrap() as u32;

    let second = spawn_with_pid(
        cat_pid,
        Command::new("/usr/bin/head")
            .args(["-c", "1"])
            .arg(&file)
            .stdout(Stdio::null()),
    );
    let Some(mut second) = second else {
        panic!("pid {cat_pid} was taken by other processes 50 times in a row");
    };
    assert!(second.wait().unwrap().success());
    let event = daemon.wait_for("the second reader's event", |event| {
        from_file(cat_pid)(event) && event["attributes"]["process.executable.name"] == "head"
    });
    daemon.barrier();
    assert!(daemon.stop().success());

    assert_eq!(
        attribute(&event, "process.executable.path"),
        "/usr/bin/head"
    );
    assert!(
        attribute(&event, "process.command_line").starts_with("/usr/bin/head -c 1"),
        "{event}"
    );
    let events: Vec<Value> = daemon
        .events()
        .into_iter()
        .filter(from_file(cat_pid))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .filter_map(|event| event["attributes"]["process.executable.name"].as_str())
        .collect();
    assert_eq!(names, ["cat", "head"], "{events:#?}");
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn user_subtree_cannot_claim_a_pod_or_a_system_unit() {
    let mut daemon = Daemon::start("");
    let underscored = POD_UID.replace('-', "_");
    let user = "user.slice/user-1000.slice/user@1000.service";

    let faked_pod = read_inside(
        &daemon,
        &format!("{user}/kubepods.slice/kubepods-pod{underscored}.slice/cri-containerd-{ID}.scope"),
    );
    let user_unit = read_inside(&daemon, &format!("{user}/app.slice/nginx.service"));
    assert!(daemon.stop().success());

    assert!(
        faked_pod["attributes"].get("k8s.pod.uid").is_none(),
        "{faked_pod}"
    );
    assert_eq!(
        attribute(&faked_pod, "credwatch.workload.id"),
        format!("container://1000@containerd/{ID}")
    );
    assert_eq!(
        attribute(&user_unit, "credwatch.workload.id"),
        "systemd://1000@nginx.service"
    );
}

#[test]
#[ignore = "needs root and loads eBPF programs; run with `cargo xtask test`"]
fn unlisted_pod_does_not_flood_the_kubelet() {
    let body = r#"{"kind":"PodList","items":[]}"#;
    let kubelet = FakeKubelet::start(format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let mut daemon = Daemon::start_with_config(&format!(
        "kubernetes:\n  kubelet_address: 127.0.0.1:{}\n  kubelet_refresh: 60s\n",
        kubelet.port
    ));

    // Every read from a pod the kubelet does not list asks for a new list.
    let cgroup = TestCgroup::create(&pod_cgroup(POD_UID));
    let (file, _) = aws_file(&daemon);
    let started = std::time::Instant::now();
    let mut reads = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let reader = WaitingReader::start(&file);
        cgroup.enter(reader.pid());
        reader.go();
        reads += 1;
    }
    daemon.barrier();
    let seconds = started.elapsed().as_secs() + 1;
    assert!(daemon.stop().success());
    drop(cgroup);

    let fetches = kubelet.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(reads >= 10, "only {reads} reads");
    // One fetch at start, then at most one per second.
    assert!(
        fetches as u64 <= seconds + 2,
        "{fetches} fetches for {reads} reads in {seconds} s"
    );
}
