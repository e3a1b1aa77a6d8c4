//! The node's files: its ed25519 keypair and its incarnation number.
//!
//! The automerge actor id is derived from the identity plus an incarnation
//! (DESIGN §5): a node restarted after an unclean shutdown takes the next
//! incarnation, because a change it wrote but lost before fsync may already
//! be held by peers under the old sequence number. A clean shutdown keeps it.
//! A `running` marker file tells the two apart. This module never touches
//! the network or a replica.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use concord_net::identity::Keypair;
use concord_state::ActorId;

use crate::Error;

const KEY_FILE: &str = "identity.key";
const INCARNATION_FILE: &str = "incarnation";
const RUNNING_MARKER: &str = "running";

/// Identity and incarnation of a node, loaded from its data directory.
pub(crate) struct NodeIdentity {
    pub keypair: Keypair,
    pub incarnation: u32,
    pub dir: PathBuf,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    Ok(())
}

/// Loads the keypair in `dir`, creating it (and `dir`) on first use.
pub(crate) fn load_keypair(dir: &Path) -> Result<Keypair, Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let key_path = dir.join(KEY_FILE);
    match fs::read(&key_path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|_| Error::Identity(key_path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let k = Keypair::generate_ed25519();
            let bytes = k
                .to_protobuf_encoding()
                .map_err(|_| Error::Identity(key_path.display().to_string()))?;
            write_synced(&key_path, &bytes)?;
            Ok(k)
        }
        Err(e) => Err(Error::io("read", &key_path, e)),
    }
}

impl NodeIdentity {
    /// Loads (or creates) the identity in `dir` and decides the incarnation.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let keypair = load_keypair(dir)?;
        let inc_path = dir.join(INCARNATION_FILE);
        let mut incarnation = match fs::read_to_string(&inc_path) {
            Ok(s) => s.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        let marker = dir.join(RUNNING_MARKER);
        if marker.exists() {
            incarnation += 1;
            tracing::warn!(
                incarnation,
                "previous run did not shut down cleanly; new incarnation"
            );
        }
        write_synced(&inc_path, incarnation.to_string().as_bytes())?;
        write_synced(&marker, b"")?;
        Ok(NodeIdentity {
            keypair,
            incarnation,
            dir: dir.to_owned(),
        })
    }

    /// The automerge actor id: 12 bytes of the peer id's hash + the incarnation.
    pub fn actor(&self) -> ActorId {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.keypair.public().to_peer_id().to_bytes());
        let mut bytes = [0u8; 16];
        bytes[..12].copy_from_slice(&digest[..12]);
        bytes[12..].copy_from_slice(&self.incarnation.to_be_bytes());
        ActorId::from(&bytes[..])
    }

    /// Records a clean shutdown: the next start keeps the incarnation.
    pub fn mark_clean(&self) -> Result<(), Error> {
        let marker = self.dir.join(RUNNING_MARKER);
        match fs::remove_file(&marker) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &marker, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_restart_keeps_actor_unclean_bumps_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeIdentity::load(dir.path()).unwrap();
        let first = a.actor();
        a.mark_clean().unwrap();
        let b = NodeIdentity::load(dir.path()).unwrap();
        assert_eq!(b.actor(), first);
        assert_eq!(b.keypair.public(), a.keypair.public());
        // no mark_clean: crash
        let c = NodeIdentity::load(dir.path()).unwrap();
        assert_eq!(c.incarnation, 1);
        assert_ne!(c.actor(), first);
    }

    #[test]
    fn corrupt_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        assert!(matches!(
            NodeIdentity::load(dir.path()),
            Err(Error::Identity(_))
        ));
    }
}
