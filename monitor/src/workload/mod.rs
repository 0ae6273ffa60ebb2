//! Workloads: the cgroup a process runs in, and the container, pod or systemd unit its path
//! names.

pub mod cgroup;
pub mod container;
pub mod kubelet;
pub mod kubelet_client;
pub mod pods;
