//! Pod metadata from the kubelet's `/pods` endpoint, on its read-only port or its
//! authenticated TLS port (see `kubelet_client`).
//!
//! A worker thread fetches the pod list when the daemon meets a pod uid it does not know and
//! at a fixed interval, and keeps the last good list. A kubelet that is down, slow or returns
//! garbage therefore never blocks events: they go without the attributes until a fetch
//! succeeds.

use std::{
    collections::HashMap,
    net::{SocketAddr, ToSocketAddrs as _},
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender},
    },
    time::{Duration, Instant},
};

use serde_json::Value;

use super::kubelet_client::Transport;
use crate::config::KubernetesConfig;

/// Shortest time between two fetches. A stream of reads from a pod the kubelet does not list
/// asks for a fetch at every read.
const MIN_FETCH_GAP: Duration = Duration::from_secs(1);

/// A container of a pod, as the kubelet reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeletContainer {
    /// Container name in the pod spec.
    pub name: String,
    /// Image as the spec names it.
    pub image: Option<String>,
    /// Image digest (`sha256:...`), from the image id the runtime reports.
    pub image_digest: Option<String>,
}

/// Metadata of a pod, as the kubelet reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KubeletPod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Service account.
    pub service_account: Option<String>,
    /// Labels.
    pub labels: serde_json::Map<String, Value>,
    /// The workload that owns the pod: kind (`Deployment`, `DaemonSet`, `StatefulSet`,
    /// `Job`, `CronJob`, or the direct owner's kind) and name.
    pub owner: Option<(String, String)>,
    /// Containers by container id (without the `containerd://` style prefix).
    pub containers: HashMap<String, KubeletContainer>,
}

/// The pods known from the last successful fetch, and the worker that refreshes them.
pub struct Kubelet {
    pods: Arc<Mutex<HashMap<String, KubeletPod>>>,
    refresh: SyncSender<()>,
}

impl Kubelet {
    /// Starts the worker for the kubelet at `address` (`host:port`) with the transport and
    /// refresh interval of `settings`. Returns an error text when the address does not
    /// resolve, the TLS files cannot be used, or the thread cannot start.
    pub fn start(address: &str, settings: &KubernetesConfig) -> Result<Self, String> {
        let transport = Transport::from_config(settings, address)?;
        let interval = settings.kubelet_refresh;
        let socket = address
            .to_socket_addrs()
            .map_err(|error| {
                format!("kubernetes.kubelet_address {address:?} does not resolve: {error}")
            })?
            .next()
            .ok_or_else(|| format!("kubernetes.kubelet_address {address:?} has no address"))?;
        let pods = Arc::new(Mutex::new(HashMap::new()));
        let (refresh, requests) = mpsc::sync_channel(1);
        let worker_pods = Arc::clone(&pods);
        std::thread::Builder::new()
            .name("kubelet".into())
            .spawn(move || run(socket, &transport, interval, &requests, &worker_pods))
            .map_err(|error| format!("failed to start the kubelet thread: {error}"))?;
        let _ = refresh.try_send(());
        Ok(Self { pods, refresh })
    }

    /// Returns what the kubelet reported about the pod `uid`, asking for a new list when the
    /// uid is unknown.
    pub fn pod(&self, uid: &str) -> Option<KubeletPod> {
        let found = lock(&self.pods).get(uid).cloned();
        if found.is_none() {
            // A full queue means a fetch is already due.
            let _ = self.refresh.try_send(());
        }
        found
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the worker: fetches on request and at every interval, at most once per
/// [`MIN_FETCH_GAP`], and logs each change of state once.
fn run(
    address: SocketAddr,
    transport: &Transport,
    interval: Duration,
    requests: &Receiver<()>,
    pods: &Mutex<HashMap<String, KubeletPod>>,
) {
    let mut state = FetchState::Starting;
    let mut last_fetch: Option<Instant> = None;
    loop {
        match requests.recv_timeout(interval) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if let Some(gap) = last_fetch.map(|last| MIN_FETCH_GAP.saturating_sub(last.elapsed())) {
            std::thread::sleep(gap);
        }
        last_fetch = Some(Instant::now());
        let result = transport
            .fetch_pods(address)
            .and_then(|body| parse_pod_list(&body));
        state = state.next(&address, result, pods);
        // The fetch just made serves the requests that arrived during it.
        while requests.try_recv().is_ok() {}
    }
}

/// The outcome of the worker's last fetch, kept so that each change is logged once.
#[derive(Debug, PartialEq)]
enum FetchState {
    /// No fetch finished yet.
    Starting,
    /// The last fetch succeeded.
    Answering,
    /// The last fetch failed with this error.
    Failing(String),
}

impl FetchState {
    /// Stores a successful list and logs a change of state.
    fn next(
        self,
        address: &SocketAddr,
        result: Result<HashMap<String, KubeletPod>, String>,
        pods: &Mutex<HashMap<String, KubeletPod>>,
    ) -> Self {
        match result {
            Ok(list) => {
                match self {
                    Self::Failing(_) => {
                        tracing::info!(%address, pods = list.len(), "the kubelet responds again");
                    }
                    Self::Starting => {
                        tracing::info!(%address, pods = list.len(), "read the pod list from the kubelet");
                    }
                    Self::Answering => {}
                }
                *lock(pods) = list;
                Self::Answering
            }
            Err(error) => {
                if self != Self::Failing(error.clone()) {
                    let cached_pods = lock(pods).len();
                    tracing::warn!(%address, %error, pods_kept = cached_pods, "failed to read pods from the kubelet; events keep the last pod list read, and pods it lacks go without owners, labels and images until the kubelet responds");
                }
                Self::Failing(error)
            }
        }
    }
}

/// Parses a `PodList` into pods by uid.
pub fn parse_pod_list(body: &[u8]) -> Result<HashMap<String, KubeletPod>, String> {
    let list: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the pod list is no JSON: {error}"))?;
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .ok_or("the response is no pod list: it has no `items` array")?;
    Ok(items.iter().filter_map(parse_pod).collect())
}

fn parse_pod(item: &Value) -> Option<(String, KubeletPod)> {
    let text = |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let metadata = item.get("metadata")?;
    let uid = text(metadata, "uid")?;
    let spec = item.get("spec").cloned().unwrap_or(Value::Null);
    let mut containers: HashMap<String, KubeletContainer> = HashMap::new();
    // Init and ephemeral (debug) containers run as containers of the pod too.
    let statuses = [
        "/status/containerStatuses",
        "/status/initContainerStatuses",
        "/status/ephemeralContainerStatuses",
    ]
    .into_iter()
    .filter_map(|pointer| item.pointer(pointer).and_then(Value::as_array))
    .flatten();
    for status in statuses {
        let (Some(name), Some(id)) = (text(status, "name"), text(status, "containerID")) else {
            continue;
        };
        let id = id.rsplit("://").next().unwrap_or(&id).to_owned();
        let image = ["containers", "initContainers", "ephemeralContainers"]
            .into_iter()
            .filter_map(|key| spec.get(key).and_then(Value::as_array))
            .flatten()
            .find(|container| text(container, "name").as_deref() == Some(&name))
            .and_then(|container| text(container, "image"))
            .or_else(|| text(status, "image"));
        let image_digest = text(status, "imageID")
            .and_then(|image_id| image_id.rsplit('@').next().map(str::to_owned))
            .filter(|digest| digest.starts_with("sha256:"));
        containers.insert(
            id,
            KubeletContainer {
                name,
                image,
                image_digest,
            },
        );
    }
    let pod = KubeletPod {
        namespace: text(metadata, "namespace").unwrap_or_default(),
        name: text(metadata, "name").unwrap_or_default(),
        service_account: text(&spec, "serviceAccountName"),
        labels: metadata
            .get("labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        owner: owner(metadata),
        containers,
    };
    Some((uid, pod))
}

/// Returns the workload that owns a pod. A ReplicaSet made by a Deployment is named
/// `<deployment>-<pod-template-hash>` and a Job made by a CronJob `<cronjob>-<schedule time>`,
/// so the owner's owner is read from the name.
fn owner(metadata: &Value) -> Option<(String, String)> {
    let reference = metadata
        .get("ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|reference| reference.get("controller").and_then(Value::as_bool) == Some(true))
        .or_else(|| metadata.pointer("/ownerReferences/0"))?;
    let kind = reference.get("kind").and_then(Value::as_str)?;
    let name = reference.get("name").and_then(Value::as_str)?;
    let parent = |suffix_is: fn(&str) -> bool| {
        name.rsplit_once('-')
            .filter(|(_, suffix)| suffix_is(suffix))
            .map(|(parent, _)| parent.to_owned())
    };
    let owner = match kind {
        "ReplicaSet" => {
            parent(|suffix| suffix.len() >= 5 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()))
                .map(|deployment| ("Deployment".to_owned(), deployment))
        }
        "Job" => parent(|suffix| suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()))
            .map(|cronjob| ("CronJob".to_owned(), cronjob)),
        _ => None,
    };
    Some(owner.unwrap_or_else(|| (kind.to_owned(), name.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"kind":"PodList","items":[
      {"metadata":{"name":"cart-7c9f8d6b5-x2k4q","namespace":"shop","uid":"0d1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8",
        "labels":{"app":"cart"},
        "ownerReferences":[{"kind":"ReplicaSet","name":"cart-7c9f8d6b5","controller":true}]},
       "spec":{"serviceAccountName":"cart","containers":[{"name":"app","image":"registry.example.test/cart:1.2"}]},
       "status":{"containerStatuses":[{"name":"app","containerID":"containerd://4f3e2d1c","image":"registry.example.test/cart:1.2",
         "imageID":"registry.example.test/cart@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}]}},
      {"metadata":{"name":"report-28912345-abcde","namespace":"ops","uid":"9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0",
        "ownerReferences":[{"kind":"Job","name":"report-28912345","controller":true}]},
       "spec":{}},
      {"metadata":{"name":"agent-x","namespace":"kube-system","uid":"11111111-2222-3333-4444-555555555555",
        "ownerReferences":[{"kind":"DaemonSet","name":"agent","controller":true}]}},
      {"metadata":{"name":"no-uid"}}
    ]}"#;

    #[test]
    fn pod_list_gives_owners_containers_and_images() {
        let pods = parse_pod_list(LIST.as_bytes()).unwrap();

        assert_eq!(pods.len(), 3);
        let cart = &pods["0d1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8"];
        assert_eq!(cart.namespace, "shop");
        assert_eq!(cart.service_account.as_deref(), Some("cart"));
        assert_eq!(cart.owner, Some(("Deployment".into(), "cart".into())));
        assert_eq!(cart.labels["app"], "cart");
        let container = &cart.containers["4f3e2d1c"];
        assert_eq!(container.name, "app");
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example.test/cart:1.2")
        );
        assert!(
            container
                .image_digest
                .as_deref()
                .unwrap()
                .starts_with("sha256:0123")
        );
        let report = &pods["9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0"];
        assert_eq!(report.owner, Some(("CronJob".into(), "report".into())));
        let agent = &pods["11111111-2222-3333-4444-555555555555"];
        assert_eq!(agent.owner, Some(("DaemonSet".into(), "agent".into())));
    }

    #[test]
    fn init_and_debug_containers_are_named() {
        let list = r#"{"items":[{"metadata":{"name":"web-0","namespace":"shop","uid":"u-1"},
          "spec":{"initContainers":[{"name":"setup","image":"registry.example.test/setup:1"}],
                  "ephemeralContainers":[{"name":"debugger","image":"registry.example.test/debug:2"}]},
          "status":{"initContainerStatuses":[{"name":"setup","containerID":"cri-o://aa11"}],
                    "ephemeralContainerStatuses":[{"name":"debugger","containerID":"containerd://bb22"}]}}]}"#;
        let pods = parse_pod_list(list.as_bytes()).unwrap();

        let pod = &pods["u-1"];
        assert_eq!(pod.containers["aa11"].name, "setup");
        assert_eq!(
            pod.containers["aa11"].image.as_deref(),
            Some("registry.example.test/setup:1")
        );
        assert_eq!(pod.containers["bb22"].name, "debugger");
        assert_eq!(
            pod.containers["bb22"].image.as_deref(),
            Some("registry.example.test/debug:2")
        );
    }

    #[test]
    fn failures_keep_the_last_list() {
        let pods = Mutex::new(HashMap::new());
        let address: SocketAddr = "127.0.0.1:10255".parse().unwrap();
        let list = parse_pod_list(LIST.as_bytes()).unwrap();

        let state = FetchState::Starting.next(&address, Ok(list), &pods);
        assert_eq!(state, FetchState::Answering);
        let state = state.next(&address, Err("connect: refused".into()), &pods);
        assert_eq!(state, FetchState::Failing("connect: refused".into()));
        assert_eq!(lock(&pods).len(), 3);
        let state = state.next(&address, Ok(HashMap::new()), &pods);
        assert_eq!(state, FetchState::Answering);
        assert!(lock(&pods).is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_pod_list(b"<html>").unwrap_err().contains("no JSON"));
        assert!(parse_pod_list(b"{}").unwrap_err().contains("items"));
        assert!(parse_pod_list(b"{\"items\": []}").unwrap().is_empty());
    }
}
