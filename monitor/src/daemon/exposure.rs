//! Secrets in the arguments and environment of new processes.
//!
//! At each exec the daemon scans the new process's arguments and `/proc/PID/environ` for
//! secrets (see [`identify_environment`] and [`identify_arguments`]) and reports each one as
//! `credwatch.credential.exposure`, with its id and where it sits, never its value.
//!
//! Children inherit their parent's environment, so a shell with a secret variable would
//! report it again for every command. An exposure is therefore reported only when the
//! parent process (or the previous program of the same process) did not have the same
//! secret in the same place. The others are counted. The processes running at start are
//! scanned too, and their exposures are reported once, marked `at_start`.

use std::collections::{HashMap, HashSet};

use crate::credential::{
    fingerprint::CredentialKey,
    identify::{Identified, identify_arguments, identify_environment},
};

/// Location of a secret in a process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// An environment variable.
    Environment {
        /// The variable's name.
        variable: String,
    },
    /// An argument.
    Argument {
        /// Its index in `argv`, 0 being the program.
        index: usize,
        /// The option or variable name the value belongs to, when there is one.
        name: Option<String>,
    },
}

impl Location {
    /// `environment` or `argument`.
    pub fn source(&self) -> &'static str {
        match self {
            Self::Environment { .. } => "environment",
            Self::Argument { .. } => "argument",
        }
    }
}

/// One secret found in a process.
#[derive(Clone, Debug)]
pub struct Exposure {
    /// Its location.
    pub location: Location,
    /// Keyed credential id.
    pub id: String,
    /// Specific type.
    pub credential_type: String,
    /// The issuer's id.
    pub native_id: Option<String>,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Non-secret metadata.
    pub details: serde_json::Value,
}

/// Counters for the health event.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExposureStats {
    /// Exposures reported.
    pub reported: u64,
    /// Exposures a process inherited from its parent, counted and not reported.
    pub inherited: u64,
    /// New processes whose environment could not be read (most had already exited).
    pub environments_unreadable: u64,
}

/// A process running when the daemon starts, as read from `/proc`.
pub struct RunningProcess {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: Option<u32>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment, when it could be read.
    pub environ: Option<zeroize::Zeroizing<Vec<u8>>>,
}

/// The exposures of each live process.
#[derive(Default)]
pub struct Exposures {
    by_pid: HashMap<u32, HashSet<(String, Location)>>,
    /// Counters.
    pub stats: ExposureStats,
}

impl Exposures {
    /// Scans a new program of process `pid` and returns the exposures to report.
    /// `environ` is `None` when `/proc/PID/environ` could not be read.
    pub fn exec(
        &mut self,
        key: &CredentialKey,
        pid: u32,
        ppid: Option<u32>,
        args: &[String],
        environ: Option<&[u8]>,
    ) -> Vec<Exposure> {
        if environ.is_none() {
            self.stats.environments_unreadable += 1;
        }
        let found = scan(key, args, environ);
        let previous = self.by_pid.remove(&pid);
        let parent = ppid.and_then(|ppid| self.by_pid.get(&ppid));
        let mut report = Vec::new();
        for exposure in &found {
            let place = (exposure.id.clone(), exposure.location.clone());
            let inherited = previous.as_ref().is_some_and(|set| set.contains(&place))
                || parent.is_some_and(|set| set.contains(&place));
            if inherited {
                self.stats.inherited += 1;
            } else {
                report.push(exposure.clone());
            }
        }
        self.stats.reported += report.len() as u64;
        self.remember(pid, &found);
        report
    }

    /// Scans the processes running at start and returns each process's exposures that its
    /// parent does not share.
    pub fn scan_running(
        &mut self,
        key: &CredentialKey,
        processes: &[RunningProcess],
    ) -> Vec<(u32, Vec<Exposure>)> {
        let scanned: Vec<(u32, Option<u32>, Vec<Exposure>)> = processes
            .iter()
            .map(|process| {
                let environ = process.environ.as_deref().map(Vec::as_slice);
                (process.pid, process.ppid, scan(key, &process.args, environ))
            })
            .collect();
        for (pid, _, found) in &scanned {
            self.remember(*pid, found);
        }
        let mut report = Vec::new();
        for (pid, ppid, found) in scanned {
            let parent = ppid.and_then(|ppid| self.by_pid.get(&ppid));
            let own: Vec<Exposure> = found
                .into_iter()
                .filter(|exposure| {
                    let place = (exposure.id.clone(), exposure.location.clone());
                    let inherited = parent.is_some_and(|set| set.contains(&place));
                    self.stats.inherited += u64::from(inherited);
                    !inherited
                })
                .collect();
            if !own.is_empty() {
                self.stats.reported += own.len() as u64;
                report.push((pid, own));
            }
        }
        report
    }

    /// Forgets an exited process.
    pub fn process_exited(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }

    fn remember(&mut self, pid: u32, found: &[Exposure]) {
        if found.is_empty() {
            return;
        }
        let places = found
            .iter()
            .map(|exposure| (exposure.id.clone(), exposure.location.clone()))
            .collect();
        self.by_pid.insert(pid, places);
    }
}

/// Finds the secrets of one program.
fn scan(key: &CredentialKey, args: &[String], environ: Option<&[u8]>) -> Vec<Exposure> {
    let mut found = Vec::new();
    for (index, item) in identify_arguments(args) {
        let name = item.label.clone();
        found.push(exposure(key, Location::Argument { index, name }, item));
    }
    for item in environ.map(identify_environment).unwrap_or_default() {
        let variable = item.label.clone().unwrap_or_default();
        found.push(exposure(key, Location::Environment { variable }, item));
    }
    found
}

fn exposure(key: &CredentialKey, location: Location, item: Identified) -> Exposure {
    Exposure {
        location,
        id: key.credential_id(&item.material),
        credential_type: item.credential_type,
        native_id: item.native_id,
        expires_at: item.expires_at,
        details: serde_json::to_value(&item.details).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CredentialKey {
        CredentialKey::from_fleet_secret(b"made-up fleet secret for tests").unwrap()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_string()).collect()
    }

    const ENVIRON: &[u8] = b"HOME=/root\0DB_PASSWORD=made-up-db-password\0";

    #[test]
    fn inherited_environment_not_reported() {
        let key = key();
        let mut exposures = Exposures::default();

        let shell = exposures.exec(&key, 100, Some(1), &args(&["sh"]), Some(ENVIRON));
        let child = exposures.exec(&key, 101, Some(100), &args(&["ls"]), Some(ENVIRON));
        let changed = exposures.exec(
            &key,
            102,
            Some(100),
            &args(&["ls"]),
            Some(b"DB_PASSWORD=another-made-up-password\0"),
        );

        assert_eq!(shell.len(), 1);
        assert_eq!(
            shell[0].location,
            Location::Environment {
                variable: "DB_PASSWORD".into()
            }
        );
        assert_eq!(shell[0].credential_type, "environment_secret");
        assert!(child.is_empty());
        assert_eq!(changed.len(), 1);
        assert_ne!(changed[0].id, shell[0].id);
        assert_eq!(exposures.stats.inherited, 1);
        assert_eq!(exposures.stats.reported, 2);
    }

    #[test]
    fn arguments_are_reported_with_their_index() {
        let key = key();
        let mut exposures = Exposures::default();

        let found = exposures.exec(
            &key,
            200,
            None,
            &args(&["mysql", "--password=made-up-password"]),
            None,
        );

        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].location,
            Location::Argument {
                index: 1,
                name: Some("password".into())
            }
        );
        assert_eq!(exposures.stats.environments_unreadable, 1);
        // The same secret in an environment has the same id.
        let environment = exposures.exec(
            &key,
            201,
            None,
            &[],
            Some(b"MYSQL_PASSWORD=made-up-password\0"),
        );
        assert_eq!(environment[0].id, found[0].id);
    }

    #[test]
    fn aws_key_is_named_after_its_secret() {
        let key = key();
        let mut exposures = Exposures::default();
        let environ = b"AWS_ACCESS_KEY_ID=AKIAMADEUPEXAMPLE234\0\
                        AWS_SECRET_ACCESS_KEY=made/up+secret0000000000000000000000000\0";

        let found = exposures.exec(&key, 300, None, &[], Some(environ));

        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].location,
            Location::Environment {
                variable: "AWS_SECRET_ACCESS_KEY".into()
            }
        );
        assert_eq!(found[0].native_id.as_deref(), Some("AKIAMADEUPEXAMPLE234"));
        assert_eq!(found[0].credential_type, "aws_access_key");
    }

    #[test]
    fn running_processes_report_what_their_parent_lacks() {
        let key = key();
        let mut exposures = Exposures::default();
        let running = |pid, ppid, program: &str, environ: Option<&[u8]>| RunningProcess {
            pid,
            ppid: Some(ppid),
            args: args(&[program]),
            environ: environ.map(|bytes| zeroize::Zeroizing::new(bytes.to_vec())),
        };
        let processes = vec![
            running(10, 1, "init", Some(b"PATH=/bin\0")),
            running(11, 10, "app", Some(ENVIRON)),
            running(12, 11, "worker", Some(ENVIRON)),
            running(13, 11, "helper", None),
        ];

        let report = exposures.scan_running(&key, &processes);

        let pids: Vec<u32> = report.iter().map(|(pid, _)| *pid).collect();
        assert_eq!(pids, [11]);
        let later = exposures.exec(&key, 12, Some(11), &args(&["worker"]), Some(ENVIRON));
        assert!(later.is_empty());
        exposures.process_exited(12);
        exposures.process_exited(11);
        let orphan = exposures.exec(&key, 14, Some(11), &args(&["x"]), Some(ENVIRON));
        assert_eq!(orphan.len(), 1);
    }
}
