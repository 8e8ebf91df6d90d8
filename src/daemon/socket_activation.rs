//! Sockets passed by systemd (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`; see
//! `sd_listen_fds(3)`), sorted by their `FileDescriptorName=`.
//!
//! Parsing is a pure function of the three variables and our pid, so it is tested without a
//! service manager; taking ownership of the descriptors happens once, in `take`. A variable
//! that is present but malformed is an error: silently binding our own port 80 next to
//! systemd's would fail anyway, with a far less useful message.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// The name systemd gives descriptors when `LISTEN_FDNAMES` is absent (`sd_listen_fds_with_names`).
pub const UNNAMED: &str = "unknown";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedFd {
    pub fd: RawFd,
    pub name: String,
}

/// The descriptors meant for process `own_pid`, named. None when the variables are absent
/// or meant for another process (a parent that forgot to unset them).
pub fn parse(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    own_pid: u32,
) -> Result<Vec<PassedFd>, String> {
    let (Some(pid), Some(count)) = (listen_pid, listen_fds) else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("invalid LISTEN_PID \"{pid}\""))?;
    if pid != own_pid {
        return Ok(Vec::new());
    }
    let count: RawFd = count
        .parse()
        .ok()
        .filter(|count| (0..=4096).contains(count))
        .ok_or_else(|| format!("invalid LISTEN_FDS \"{count}\""))?;
    let names: Vec<&str> = match listen_fdnames {
        Some(names) if !names.is_empty() || count == 0 => names.split(':').collect(),
        _ => vec![UNNAMED; count as usize],
    };
    if names.len() != count as usize && count > 0 {
        return Err(format!(
            "LISTEN_FDNAMES names {} sockets but LISTEN_FDS passes {count}",
            names.len()
        ));
    }
    Ok((0..count)
        .map(|index| PassedFd {
            fd: LISTEN_FDS_START + index,
            name: names[index as usize].to_string(),
        })
        .collect())
}

/// Takes ownership of the descriptors systemd passed to this process, marked close-on-exec.
pub fn take() -> Result<Vec<(OwnedFd, String)>, String> {
    let var = |name| std::env::var(name).ok();
    let passed = parse(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?;
    passed
        .into_iter()
        .map(|PassedFd { fd, name }| {
            // SAFETY: systemd passed this descriptor to this process (LISTEN_PID is ours) and
            // nothing else in the process has taken it: `take` runs once, at start-up.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: F_SETFD on a descriptor we own.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
                return Err(format!(
                    "cannot use socket {name} passed by systemd: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok((owned, name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(fd: RawFd, name: &str) -> PassedFd {
        PassedFd {
            fd,
            name: name.to_string(),
        }
    }

    #[test]
    fn names_descriptors_from_three_when_the_pid_is_ours() {
        assert_eq!(
            parse(Some("42"), Some("3"), Some("http:https:http"), 42).unwrap(),
            [fd(3, "http"), fd(4, "https"), fd(5, "http")]
        );
    }

    #[test]
    fn calls_descriptors_unknown_when_names_are_absent() {
        assert_eq!(
            parse(Some("42"), Some("2"), None, 42).unwrap(),
            [fd(3, UNNAMED), fd(4, UNNAMED)]
        );
    }

    #[test]
    fn ignores_descriptors_meant_for_another_process_or_absent() {
        assert!(parse(Some("41"), Some("2"), Some("http:https"), 42)
            .unwrap()
            .is_empty());
        assert!(parse(None, None, None, 42).unwrap().is_empty());
        assert!(parse(Some("42"), None, None, 42).unwrap().is_empty());
        assert!(parse(Some("42"), Some("0"), Some(""), 42)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refuses_malformed_variables_with_their_name() {
        assert!(parse(Some("x"), Some("1"), None, 42)
            .unwrap_err()
            .contains("LISTEN_PID"));
        assert!(parse(Some("42"), Some("-1"), None, 42)
            .unwrap_err()
            .contains("LISTEN_FDS"));
        assert!(parse(Some("42"), Some("2"), Some("http"), 42)
            .unwrap_err()
            .contains("LISTEN_FDNAMES"));
    }
}
