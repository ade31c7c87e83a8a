//! One --instance SPEC: a server locked together with the others. The spec
//! is `mysql://user@host:port/?socket=PATH` (named after the socket file, or
//! host and port) or an option file whose [client] group says where the
//! server is (named after the file); `NAME=SPEC` names it.

use crate::exit;
use crate::server::connect::{ConnectSpec, ConnectionArgs};
use std::path::Path;

pub use crate::server::instance::{Instance, InstanceName};

/// Every `scheme://user:PASSWORD@host...` in `text` with the password
/// replaced by `*****`.
pub fn mask_url_password(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '`'
            })
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":*****");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Parse one --instance SPEC; credentials not in it come from `base` (the
/// ordinary connection options).
pub fn parse(base: &ConnectionArgs, spec: &str) -> anyhow::Result<Instance> {
    // Messages never repeat a password someone put in the URL.
    let shown = mask_url_password(spec);
    let bad = |why: String| {
        exit::fail(
            exit::CONFIG,
            format!("--instance={shown}: {}", mask_url_password(&why)),
        )
    };
    // NAME=SPEC names the instance explicitly.
    let (explicit, spec) = match spec.split_once('=') {
        Some((n, rest))
            if !n.is_empty() && n.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') =>
        {
            (Some(n), rest)
        }
        _ => (None, spec),
    };
    let (args, derived) = if spec.starts_with("mysql://") {
        from_url(base, spec).map_err(bad)?
    } else {
        from_option_file(base, Path::new(spec)).map_err(bad)?
    };
    let name = InstanceName::from_raw(explicit.unwrap_or(&derived))
        .ok_or_else(|| bad("cannot derive a name from it".into()))?;
    Ok(Instance {
        name: Some(name),
        spec: ConnectSpec::new(&args)?,
    })
}

/// Where a URL says the server is, and the name it gives.
fn from_url(base: &ConnectionArgs, spec: &str) -> Result<(ConnectionArgs, String), String> {
    let opts = mysql::Opts::from_url(spec).map_err(|e| e.to_string())?;
    if opts.get_pass().is_some() {
        return Err(
            "do not put the password in the URL (it would show in `ps`); use --password, MYSQL_PWD or an option file"
                .into(),
        );
    }
    let mut args = ConnectionArgs {
        user: opts.get_user().map(str::to_string).or(base.user.clone()),
        password: base.password.clone(),
        connect_timeout: base.connect_timeout,
        ssl_mode: base.ssl_mode,
        ssl_ca: base.ssl_ca.clone(),
        ssl_cert: base.ssl_cert.clone(),
        ssl_key: base.ssl_key.clone(),
        ..ConnectionArgs::default()
    };
    let name = match opts.get_socket() {
        Some(socket) => {
            args.socket = Some(socket.into());
            args.protocol = Some(crate::cli::Protocol::Socket);
            Path::new(socket)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        }
        None => {
            let host = opts.get_ip_or_hostname().to_string();
            args.port = Some(opts.get_tcp_port());
            args.protocol = Some(crate::cli::Protocol::Tcp);
            let name = format!("{host}_{}", opts.get_tcp_port());
            args.host = Some(host);
            name
        }
    };
    Ok((args, name))
}

/// Where an option file's [client] group says the server is, and the name it
/// gives. Where the server is comes from this file alone: inheriting the main
/// connection's socket would lock a different server. Credentials may be shared.
fn from_option_file(
    base: &ConnectionArgs,
    path: &Path,
) -> Result<(ConnectionArgs, String), String> {
    let client = crate::options::client_group(path).map_err(|e| format!("{e:#}"))?;
    if client.host.is_none() && client.port.is_none() && client.socket.is_none() {
        return Err(format!(
            "{} does not say where the server is: its [client] group needs socket=, host= or port=",
            path.display()
        ));
    }
    let args = ConnectionArgs {
        host: client.host,
        port: client.port,
        port_origin: client.port_origin,
        socket: client.socket,
        socket_on_command_line: false,
        user: client.user.or(base.user.clone()),
        password: client.password.or(base.password.clone()),
        protocol: client.protocol,
        connect_timeout: base.connect_timeout,
        ssl_mode: base.ssl_mode,
        ssl_ca: base.ssl_ca.clone(),
        ssl_cert: base.ssl_cert.clone(),
        ssl_key: base.ssl_key.clone(),
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((args, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_an_instance_url_is_never_repeated_in_messages() {
        assert_eq!(
            mask_url_password("mysql://u:s3cr@t@db:3306/?socket=/s"),
            "mysql://u:*****@db:3306/?socket=/s"
        );
        assert_eq!(mask_url_password("mysql://u@db/"), "mysql://u@db/");
        assert_eq!(mask_url_password("/etc/a.cnf"), "/etc/a.cnf");
        let base = ConnectionArgs {
            connect_timeout: 10.0,
            ..ConnectionArgs::default()
        };
        for spec in [
            "mysql://u:hunter2@db:3306/",
            "N=mysql://u:hunter2@db:99999999/",
        ] {
            let err = parse(&base, spec).unwrap_err();
            assert_eq!(exit::code_of(&err), exit::CONFIG);
            assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
        }
    }

    #[test]
    fn names_are_uppercase_with_underscores_and_never_empty() {
        assert_eq!(
            InstanceName::from_raw("db-b.sock").unwrap().as_str(),
            "DB_B_SOCK"
        );
        assert_eq!(InstanceName::from_raw(""), None);
    }
}
