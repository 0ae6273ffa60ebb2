//! Pod metadata from the kubelet's node-local directories, without any API.
//!
//! The kubelet keeps the logs of each pod in `/var/log/pods/<namespace>_<name>_<uid>/`, and
//! mounts its service-account token in
//! `/var/lib/kubelet/pods/<uid>/volumes/kubernetes.io~projected/<volume>/token`. The first
//! gives the namespace and name of a pod uid, the token's claims (read without verification)
//! its service account. Both are read below a host root, `/` on a host agent and the host's
//! file system mounted into a DaemonSet pod otherwise.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::credential::identify::identify;

/// Minimum time between two listings of the pod log directory for an unknown uid.
const RELIST_AFTER: Duration = Duration::from_secs(1);
/// Most pods remembered; the cache starts over when full.
const MAX_PODS: usize = 4096;

/// Metadata of a pod, as the node-local directories give it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Service account, from the pod's projected token, when one is mounted.
    pub service_account: Option<String>,
}

/// Pod metadata by uid, read from the node-local directories and cached.
#[derive(Debug)]
pub struct PodDirectory {
    host_root: PathBuf,
    pods: HashMap<String, PodMeta>,
    last_listing: Option<Instant>,
    /// When the token of each pod without a known service account was last looked for.
    account_checked: HashMap<String, Instant>,
}

impl PodDirectory {
    /// Reads the kubelet's directories below `host_root`.
    pub fn new(host_root: &Path) -> Self {
        Self {
            host_root: host_root.to_path_buf(),
            pods: HashMap::new(),
            last_listing: None,
            account_checked: HashMap::new(),
        }
    }

    /// Returns the metadata of the pod `uid`. An unknown uid lists the pod directories again,
    /// and a pod without a known service account has its token looked for again, each at
    /// most once per [`RELIST_AFTER`].
    pub fn lookup(&mut self, uid: &str) -> Option<&PodMeta> {
        if !self.pods.contains_key(uid)
            && self
                .last_listing
                .is_none_or(|at| at.elapsed() >= RELIST_AFTER)
        {
            self.list();
        }
        self.refresh_account(uid);
        self.pods.get(uid)
    }

    /// Returns whether the pod `uid`, which credwatch saw on this node, is gone: neither its
    /// kubelet directory nor its log directory exists any more. None for a pod never seen
    /// here, such as a pod of another node, whose state this node cannot know.
    pub fn is_gone(&mut self, uid: &str) -> Option<bool> {
        let meta = self.lookup(uid)?;
        let log_directory = format!("{}_{}_{uid}", meta.namespace, meta.name);
        let kubelet_directory = self.host_root.join("var/lib/kubelet/pods").join(uid);
        let log_directory = self.host_root.join("var/log/pods").join(log_directory);
        Some(!kubelet_directory.exists() && !log_directory.exists())
    }

    /// Looks again for the token of a known pod that had none, such as a pod whose token
    /// volume was mounted after its log directory appeared.
    fn refresh_account(&mut self, uid: &str) {
        let Some(meta) = self.pods.get(uid) else {
            return;
        };
        if meta.service_account.is_some() {
            return;
        }
        let due = self
            .account_checked
            .get(uid)
            .is_none_or(|at| at.elapsed() >= RELIST_AFTER);
        if !due {
            return;
        }
        self.account_checked.insert(uid.to_owned(), Instant::now());
        let account = service_account(&self.host_root, uid, &meta.namespace);
        if let Some(meta) = self.pods.get_mut(uid) {
            meta.service_account = account;
        }
    }

    fn list(&mut self) {
        self.last_listing = Some(Instant::now());
        let directory = self.host_root.join("var/log/pods");
        let Ok(entries) = fs::read_dir(&directory) else {
            return;
        };
        if self.pods.len() >= MAX_PODS {
            self.pods.clear();
            self.account_checked.clear();
        }
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some((uid, mut meta)) = name.to_str().and_then(parse_log_directory) else {
                continue;
            };
            if self.pods.contains_key(&uid) {
                continue;
            }
            meta.service_account = service_account(&self.host_root, &uid, &meta.namespace);
            self.pods.insert(uid, meta);
        }
    }
}

/// Parses a pod log directory name, `<namespace>_<name>_<uid>`. Namespaces and pod names are
/// DNS labels and subdomains, which contain no `_`, so the split is unambiguous.
fn parse_log_directory(name: &str) -> Option<(String, PodMeta)> {
    let mut parts = name.splitn(3, '_');
    let namespace = parts.next().filter(|part| !part.is_empty())?;
    let pod = parts.next().filter(|part| !part.is_empty())?;
    let uid = parts.next().filter(|part| part.len() == 36)?;
    Some((
        uid.to_owned(),
        PodMeta {
            namespace: namespace.to_owned(),
            name: pod.to_owned(),
            service_account: None,
        },
    ))
}

/// Reads the service account from the pod's first projected token of the right namespace.
fn service_account(host_root: &Path, uid: &str, namespace: &str) -> Option<String> {
    let volumes = host_root
        .join("var/lib/kubelet/pods")
        .join(uid)
        .join("volumes/kubernetes.io~projected");
    let mut directories: Vec<PathBuf> = fs::read_dir(volumes)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .collect();
    directories.sort();
    directories.into_iter().find_map(|directory| {
        let token = fs::read(directory.join("token")).ok()?;
        let found = identify("kubernetes_service_account_token", &token).ok()?;
        let details = &found.first()?.details;
        let text = |key: &str| details.get(key).and_then(serde_json::Value::as_str);
        (text("namespace") == Some(namespace))
            .then(|| text("service_account").map(str::to_owned))
            .flatten()
    })
}

/// Returns the workload id of a pod: `spiffe://<trust domain>/ns/<namespace>/sa/<account>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::identify::fixtures::make_jwt;

    const UID: &str = "0d1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8";

    fn jwt(claims: &str) -> String {
        let claims: serde_json::Value = serde_json::from_str(claims).unwrap();
        make_jwt(&serde_json::json!({"alg": "RS256"}), &claims)
    }

    fn host_with_pod(account_namespace: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(
            root.path()
                .join(format!("var/log/pods/shop_cart-0_{UID}/cart")),
        )
        .unwrap();
        fs::create_dir_all(root.path().join("var/log/pods/not-a-pod")).unwrap();
        let volume = root.path().join(format!(
            "var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~projected/kube-api-access-x1"
        ));
        fs::create_dir_all(&volume).unwrap();
        let claims = format!(
            r#"{{"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:{account_namespace}:cart","exp":4102444800,"kubernetes.io":{{"namespace":"{account_namespace}","serviceaccount":{{"name":"cart","uid":"5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b"}}}}}}"#
        );
        fs::write(volume.join("token"), jwt(&claims)).unwrap();
        root
    }

    #[test]
    fn pod_is_found_with_its_service_account() {
        let root = host_with_pod("shop");
        let mut pods = PodDirectory::new(root.path());

        let pod = pods.lookup(UID).unwrap();

        assert_eq!(pod.namespace, "shop");
        assert_eq!(pod.name, "cart-0");
        assert_eq!(pod.service_account.as_deref(), Some("cart"));
        assert_eq!(
            spiffe_id("cluster.local", &pod.namespace, "cart"),
            "spiffe://cluster.local/ns/shop/sa/cart"
        );
    }

    #[test]
    fn token_of_another_namespace_is_ignored() {
        let root = host_with_pod("elsewhere");
        let mut pods = PodDirectory::new(root.path());
        assert_eq!(pods.lookup(UID).unwrap().service_account, None);
    }

    #[test]
    fn token_mounted_later_is_found() {
        let root = host_with_pod("shop");
        let projected = root.path().join(format!(
            "var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~projected"
        ));
        let hidden = root.path().join("hidden-volumes");
        fs::rename(&projected, &hidden).unwrap();
        let mut pods = PodDirectory::new(root.path());
        assert_eq!(pods.lookup(UID).unwrap().service_account, None);

        fs::rename(&hidden, &projected).unwrap();
        // Within the interval the pod is served from the cache.
        assert_eq!(pods.lookup(UID).unwrap().service_account, None);
        pods.account_checked
            .insert(UID.to_owned(), Instant::now() - RELIST_AFTER);

        assert_eq!(
            pods.lookup(UID).unwrap().service_account.as_deref(),
            Some("cart")
        );
    }

    #[test]
    fn unknown_pod_and_missing_directories() {
        let root = tempfile::tempdir().unwrap();
        let mut pods = PodDirectory::new(root.path());
        assert_eq!(pods.lookup(UID), None);
        let root = host_with_pod("shop");
        let mut pods = PodDirectory::new(root.path());
        assert_eq!(pods.lookup("9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0"), None);
    }

    #[test]
    fn log_directory_names() {
        assert_eq!(
            parse_log_directory(&format!("kube-system_coredns-5d78c9869d-abcde_{UID}"))
                .map(|(uid, meta)| (uid, meta.namespace, meta.name)),
            Some((
                UID.to_owned(),
                "kube-system".to_owned(),
                "coredns-5d78c9869d-abcde".to_owned()
            ))
        );
        assert_eq!(parse_log_directory("only_two"), None);
        assert_eq!(parse_log_directory("__x"), None);
    }
}
