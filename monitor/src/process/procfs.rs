//! Reading process facts from `/proc`. Every read may race with the process exiting, so each
//! returns `Option` or an error naming the pid, and callers fall back to what the kernel record
//! carried.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// Where `/proc` is mounted. Tests of the parsers use strings, not this path.
pub const PROC: &str = "/proc";

/// Fields of `/proc/PID/stat` that the cache uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Parent process id (field 4).
    pub ppid: u32,
    /// Start time in clock ticks since boot (field 22).
    pub start_ticks: u64,
    /// Controlling terminal device number (field 7); 0 when the process has none.
    pub tty_nr: u32,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself contain
/// spaces and `)`, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so field N is at index N - 3.
    let ppid = fields.get(4 - 3)?.parse().ok()?;
    let start_ticks = fields.get(22 - 3)?.parse().ok()?;
    let tty_nr = fields.get(7 - 3)?.parse::<i64>().ok()? as u32;
    Some(Stat {
        ppid,
        start_ticks,
        tty_nr,
    })
}

/// Reads the real user id from `/proc/PID/status` text (the first value of `Uid:`).
pub fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

/// Directory of one process in `/proc`.
pub fn pid_dir(pid: u32) -> PathBuf {
    Path::new(PROC).join(pid.to_string())
}

/// Target of `/proc/PID/exe`, without the ` (deleted)` marker the kernel appends for a
/// replaced executable.
pub fn read_exe(pid: u32) -> io::Result<PathBuf> {
    let target = fs::read_link(pid_dir(pid).join("exe"))?;
    Ok(strip_deleted(target))
}

/// Target of `/proc/PID/cwd`.
pub fn read_cwd(pid: u32) -> io::Result<PathBuf> {
    fs::read_link(pid_dir(pid).join("cwd"))
}

/// Target of `/proc/PID/fd/FD`.
pub fn read_fd_path(pid: u32, fd: i32) -> io::Result<PathBuf> {
    fs::read_link(pid_dir(pid).join("fd").join(fd.to_string()))
}

/// Raw `/proc/PID/cmdline` bytes.
pub fn read_cmdline(pid: u32) -> io::Result<Vec<u8>> {
    fs::read(pid_dir(pid).join("cmdline"))
}

/// Returns the cgroup v2 id of a process: the inode of its directory below `root`, the cgroup v2
/// mount, taken from the `0::PATH` line of `/proc/PID/cgroup`.
pub fn read_cgroup_id(pid: u32, root: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let text = fs::read_to_string(pid_dir(pid).join("cgroup")).ok()?;
    let path = text.lines().find_map(|line| line.strip_prefix("0::"))?;
    let directory = root.join(path.trim_start_matches('/'));
    fs::metadata(directory).ok().map(|metadata| metadata.ino())
}

/// Largest environment read from `/proc/PID/environ`. Linux limits a single string to 128 KiB
/// but the whole environment only by the stack size, so the read is capped.
pub const MAX_ENVIRON_BYTES: u64 = 1024 * 1024;

/// Raw `/proc/PID/environ` bytes, at most [`MAX_ENVIRON_BYTES`]. The buffer is wiped when
/// dropped, because environments often contain secrets.
pub fn read_environ(pid: u32) -> io::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read as _;
    let file = fs::File::open(pid_dir(pid).join("environ"))?;
    let mut buffer = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_ENVIRON_BYTES).read_to_end(&mut buffer)?;
    Ok(buffer)
}

/// Parsed `/proc/PID/stat`.
pub fn read_stat(pid: u32) -> io::Result<Stat> {
    let text = fs::read_to_string(pid_dir(pid).join("stat"))?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat format"),
        )
    })
}

/// Real user id from `/proc/PID/status`.
pub fn read_uid(pid: u32) -> io::Result<u32> {
    let text = fs::read_to_string(pid_dir(pid).join("status"))?;
    parse_status_uid(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no Uid line in /proc/{pid}/status"),
        )
    })
}

/// Ids of all processes in `/proc`.
pub fn list_pids() -> io::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for dirent in fs::read_dir(PROC)? {
        let Ok(dirent) = dirent else { continue };
        if let Some(pid) = dirent
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        {
            pids.push(pid);
        }
    }
    Ok(pids)
}

fn strip_deleted(target: PathBuf) -> PathBuf {
    match target
        .to_str()
        .and_then(|text| text.strip_suffix(" (deleted)"))
    {
        Some(stripped) => PathBuf::from(stripped),
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_name() {
        let text = "4242 (my (odd) prog) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.ppid, 17);
        assert_eq!(stat.start_ticks, 987654);
        assert_eq!(stat.tty_nr, 0);
        let on_terminal = text.replace("4242 4242 0 -1", "4242 4242 34816 4242");
        assert_eq!(parse_stat(&on_terminal).unwrap().tty_nr, 34816);
    }

    #[test]
    fn stat_truncated_is_none() {
        assert_eq!(parse_stat("1 (init) S 0 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_uid_is_real_uid() {
        let text = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_status_uid(text), Some(1000));
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
    }

    #[test]
    fn deleted_marker_is_stripped() {
        assert_eq!(
            strip_deleted(PathBuf::from("/usr/bin/app (deleted)")),
            PathBuf::from("/usr/bin/app")
        );
        assert_eq!(
            strip_deleted(PathBuf::from("/usr/bin/app")),
            PathBuf::from("/usr/bin/app")
        );
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(read_exe(pid).unwrap().is_absolute());
        assert!(read_stat(pid).unwrap().ppid > 0);
        assert!(list_pids().unwrap().contains(&pid));
    }
}
