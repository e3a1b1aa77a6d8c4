//! The client side of the control socket: connect to the node running in a
//! data directory, send one [`Request`], read its [`Reply`] lines.
//!
//! This module owns connecting and turning socket failures and node errors
//! into messages for the user; it never prints and never interprets a
//! reply's payload (the commands in [`crate::cmd_client`] do).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::control::{self, Reply, Request};

/// A connection to a node's control socket carrying one request.
pub struct Client {
    read: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the node in `data` and sends `request`.
    pub fn send(data: &Path, request: &Request) -> Result<Client> {
        Client::send_if_running(data, request)?.ok_or_else(|| {
            anyhow!(
                "no node is running in {} (no live control socket at {}); start one with \
                 `concord node --data {}`",
                data.display(),
                control::socket_path(data).display(),
                data.display()
            )
        })
    }

    /// Like [`Client::send`], but `None` when no node is running in `data`
    /// (no socket, or nobody listening on it).
    pub fn send_if_running(data: &Path, request: &Request) -> Result<Option<Client>> {
        let socket = control::socket_path(data);
        let mut stream = match UnixStream::connect(&socket) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => bail!("connecting to the control socket {}: {e}", socket.display()),
        };
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        stream
            .write_all(&line)
            .context("sending the request to the node")?;
        Ok(Some(Client {
            read: BufReader::new(stream),
        }))
    }

    /// Exactly `len` raw bytes following the last reply line.
    pub fn read_bytes(&mut self, len: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; len];
        self.read
            .read_exact(&mut bytes)
            .context("reading the node's bytes (did it stop?)")?;
        Ok(bytes)
    }

    /// A second handle on the connection, e.g. to shut its writing side
    /// down (the `lock` protocol's way of saying "done").
    pub fn stream(&self) -> Result<UnixStream> {
        self.read
            .get_ref()
            .try_clone()
            .context("cloning the control connection")
    }

    /// The next reply's payload; `None` when the node closed the connection.
    /// A [`Reply::Error`] becomes an error carrying the node's message.
    pub fn next(&mut self) -> Result<Option<Value>> {
        let mut line = String::new();
        let n = self
            .read
            .read_line(&mut line)
            .context("reading the node's reply")?;
        if n == 0 {
            return Ok(None);
        }
        match serde_json::from_str(&line).context("the node sent a malformed reply")? {
            Reply::Ok(value) => Ok(Some(value)),
            Reply::Error(message) => Err(anyhow!(message)),
        }
    }

    /// The next reply, decoded as `T`; the connection closing is an error.
    pub fn expect<T: DeserializeOwned>(&mut self) -> Result<T> {
        let Some(value) = self.next()? else {
            bail!("the node closed the connection without answering (did it stop?)");
        };
        serde_json::from_value(value).context("the node sent a reply of an unexpected shape")
    }
}

/// Sends one request to the node in `data` and decodes its single reply.
pub fn call<T: DeserializeOwned>(data: &Path, request: &Request) -> Result<T> {
    Client::send(data, request)?.expect()
}
