//! Workloads: the cgroup a process runs in. Containers, pods and systemd units build on this.

pub mod cgroup;
