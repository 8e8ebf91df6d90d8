//! Who is calling: the calling user as the transport vouches for it, never as claimed.
//!
//! On a message bus the bus daemon knows each sender's uid
//! (`org.freedesktop.DBus.GetConnectionUnixUser`); on the peer-to-peer socket the kernel
//! does (`SO_PEERCRED`, which zbus reads when the connection is set up). The uid becomes a
//! user name through the passwd database, or `uid N` when it has no entry (a container's
//! user, a deleted account).

use std::ffi::CStr;

use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::Connection;

use super::ControlError;

/// The calling user's name, from the connection the call arrived on.
pub async fn user(connection: &Connection, header: &Header<'_>) -> Result<String, ControlError> {
    let uid = match header.sender() {
        Some(sender) => {
            let dbus = DBusProxy::new(connection).await?;
            dbus.get_connection_unix_user(sender.clone().into())
                .await
                .map_err(|e| ControlError::Failed(format!("cannot tell who is calling: {e}")))?
        }
        None => connection
            .peer_creds()
            .await
            .ok()
            .and_then(|creds| creds.unix_user_id())
            .ok_or_else(|| {
                ControlError::Failed("cannot tell who is calling: no peer credentials".into())
            })?,
    };
    Ok(user_name(uid))
}

/// The passwd name of `uid`, or `uid N`.
pub fn user_name(uid: u32) -> String {
    let mut buffer = vec![0u8; 1024];
    loop {
        // SAFETY: zeroed `passwd` is a valid out-parameter; getpwuid_r only writes into it
        // and `buffer`, whose length we pass, and `result` points at `entry` or is null.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let status = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut result,
            )
        };
        if status == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if status != 0 || result.is_null() || entry.pw_name.is_null() {
            return format!("uid {uid}");
        }
        // SAFETY: on success `pw_name` is a NUL-terminated string inside `buffer`.
        let name = unsafe { CStr::from_ptr(entry.pw_name) };
        return name.to_string_lossy().into_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_root_and_falls_back_to_the_number_for_unknown_uids() {
        assert_eq!(user_name(0), "root");
        assert_eq!(user_name(4_000_000_000), "uid 4000000000");
    }
}
