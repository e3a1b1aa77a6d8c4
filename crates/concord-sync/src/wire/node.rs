//! Node-level frames (kinds 9 to 12): what two nodes say about every space
//! they share at once, so that in-sync peers exchange one small summary
//! instead of one digest per space (DESIGN §5 "Many spaces"). See the
//! [parent module](super) for the byte layout and the sync hub
//! (`crate::hub`) for the protocol.
//!
//! A space appears here only as its **key**, a `u64` (the hub derives it
//! from the space's name); the keys are the leaves of a summary tree with
//! [`TREE_FANOUT`] children per bucket, one per hex digit of the key, so a
//! bucket is a [`Prefix`] of hex digits.
//!
//! This module owns [`NodeFrame`], [`Prefix`], [`BucketNode`] and
//! [`Child`] and their canonical encoding. Like the rest of the codec it is
//! pure: it never computes a key or a hash (the hub does), never panics on
//! any input and checks every count before allocating for it.

use super::{
    DecodeError, EncodeError, FrameKind, Header, Limit, MAX_BUCKET_NODES, MAX_LEAVES_PER_FRAME,
    Reader, TREE_FANOUT, WIRE_VERSION, check, encode_varint, open, too_large, varint_len,
};

/// Bytes of a space key on the wire (a big-endian `u64`).
pub const SPACE_KEY_BYTES: usize = 8;

/// Bytes of a leaf's, a bucket's or a summary's hash.
pub const TREE_HASH_BYTES: usize = 16;

/// Hex digits of a space key: the depth of a leaf of the summary tree.
pub const TREE_DEPTH: u8 = 16;

/// A hash of the summary tree.
pub type TreeHash = [u8; TREE_HASH_BYTES];

const FLAG_SUMMARY_REPLY: u8 = 0b1;

/// A bucket of the summary tree: the keys whose first `depth` hex digits
/// are `path`. The root (depth 0) holds every key; depth [`TREE_DEPTH`]
/// holds one key. Ordered by depth, then path (the order of
/// [`NodeFrame::Buckets`] nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    depth: u8,
    path: u64,
}

impl Prefix {
    /// The whole tree.
    pub const ROOT: Prefix = Prefix { depth: 0, path: 0 };

    /// `path` as the first `depth` hex digits of a key, if it has no more
    /// digits than that and `depth` is at most [`TREE_DEPTH`].
    pub const fn new(depth: u8, path: u64) -> Option<Prefix> {
        if depth > TREE_DEPTH || (depth < TREE_DEPTH && path >> (4 * depth as u32) != 0) {
            return None;
        }
        Some(Prefix { depth, path })
    }

    /// The bucket of `depth` digits (at most [`TREE_DEPTH`]) holding `key`.
    pub const fn of(key: u64, depth: u8) -> Prefix {
        let depth = if depth > TREE_DEPTH {
            TREE_DEPTH
        } else {
            depth
        };
        let path = if depth == 0 {
            0
        } else {
            key >> (64 - 4 * depth as u32)
        };
        Prefix { depth, path }
    }

    /// Hex digits fixed by this prefix.
    pub const fn depth(self) -> u8 {
        self.depth
    }

    /// The digits themselves.
    pub const fn path(self) -> u64 {
        self.path
    }

    /// The lowest key in the bucket.
    pub const fn first(self) -> u64 {
        if self.depth == 0 {
            0
        } else {
            self.path << (64 - 4 * self.depth as u32)
        }
    }

    /// The highest key in the bucket.
    pub const fn last(self) -> u64 {
        if self.depth >= TREE_DEPTH {
            self.path
        } else {
            self.first() | (u64::MAX >> (4 * self.depth as u32))
        }
    }

    /// Whether `key` is in the bucket.
    pub const fn contains(self, key: u64) -> bool {
        self.first() <= key && key <= self.last()
    }

    /// Which child of this bucket holds `key` (its next hex digit); `None`
    /// at [`TREE_DEPTH`] or for a key outside the bucket.
    pub const fn child_index(self, key: u64) -> Option<u8> {
        if self.depth >= TREE_DEPTH || !self.contains(key) {
            return None;
        }
        Some(((key >> (60 - 4 * self.depth as u32)) & 0xf) as u8)
    }

    /// Child `index` (below [`TREE_FANOUT`]) of this bucket; `None` at
    /// [`TREE_DEPTH`] or for a bad index.
    pub const fn child(self, index: u8) -> Option<Prefix> {
        if self.depth >= TREE_DEPTH || index as usize >= TREE_FANOUT {
            return None;
        }
        Some(Prefix {
            depth: self.depth + 1,
            path: (self.path << 4) | index as u64,
        })
    }
}

/// One non-empty child of a bucket in [`NodeFrame::Buckets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Child {
    /// Which child (below [`TREE_FANOUT`]).
    pub index: u8,
    /// How many shared spaces it holds (1 to [`MAX_SPACE_KEYS`](super::MAX_SPACE_KEYS)).
    pub spaces: u64,
    /// Its hash.
    pub hash: TreeHash,
}

/// A bucket and its children as the sender sees them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketNode {
    /// The bucket (above [`TREE_DEPTH`]: a leaf has no children).
    pub prefix: Prefix,
    /// Its non-empty children by increasing index; a child left out holds
    /// no space.
    pub children: Vec<Child>,
}

/// What [`NodeFrame::Summary`] carries (by default: nothing shared, no
/// list held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Summary {
    /// The version of the sender's own list that its view is built on.
    pub version: u64,
    /// The version of the receiver's list that the sender holds (0: none).
    pub known: u64,
    /// How many spaces the sender counts as shared.
    pub spaces: u64,
    /// The hash of the whole tree of shared spaces.
    pub root: TreeHash,
    /// An answer to a summary: it is never answered with another one.
    pub reply: bool,
}

/// A frame about the node and every space it shares with the receiver.
///
/// Node-level frames name no space: their space field is empty. See the
/// [module documentation](super) for the byte layout and the limits, and
/// the sync hub for what each one means in the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeFrame {
    /// Every space the sender holds and offers the receiver, as keys in
    /// increasing order (at most [`MAX_SPACE_KEYS`](super::MAX_SPACE_KEYS)), and the list's
    /// version (it changes whenever the list does).
    Spaces {
        /// The list's version.
        version: u64,
        /// The keys, strictly increasing.
        keys: Vec<u64>,
    },
    /// The sender's view of every space the two share, in constant size.
    Summary(Summary),
    /// Buckets the receiver's last frame showed to differ, each with its
    /// children as the sender sees them (at most [`MAX_BUCKET_NODES`],
    /// strictly increasing).
    Buckets {
        /// The buckets.
        nodes: Vec<BucketNode>,
    },
    /// The spaces of small differing buckets, as (key, leaf hash), keys
    /// strictly increasing (at most [`MAX_LEAVES_PER_FRAME`]).
    Leaves {
        /// The leaves.
        leaves: Vec<(u64, TreeHash)>,
    },
}

/// Every bucket node takes at least three bytes (depth, path, child count).
const MIN_NODE_BYTES: usize = 3;
/// A child: index, a count of at least one byte, the hash.
const MIN_CHILD_BYTES: usize = 2 + TREE_HASH_BYTES;
const LEAF_BYTES: usize = SPACE_KEY_BYTES + TREE_HASH_BYTES;
/// Version, kind, the empty space name.
const HEADER_BYTES: usize = 3;

impl NodeFrame {
    /// The kind of this frame.
    pub fn kind(&self) -> FrameKind {
        match self {
            NodeFrame::Spaces { .. } => FrameKind::Spaces,
            NodeFrame::Summary(_) => FrameKind::Summary,
            NodeFrame::Buckets { .. } => FrameKind::Buckets,
            NodeFrame::Leaves { .. } => FrameKind::Leaves,
        }
    }

    /// Size in bytes of this frame's encoding, computed without encoding it
    /// (and without checking the limits).
    pub fn encoded_len(&self) -> usize {
        let body = match self {
            NodeFrame::Spaces { version, keys } => varint_len(*version)
                .saturating_add(varint_len(keys.len() as u64))
                .saturating_add(keys.len().saturating_mul(SPACE_KEY_BYTES)),
            NodeFrame::Summary(s) => {
                1 + varint_len(s.version)
                    + varint_len(s.known)
                    + varint_len(s.spaces)
                    + TREE_HASH_BYTES
            }
            NodeFrame::Buckets { nodes } => {
                nodes
                    .iter()
                    .fold(varint_len(nodes.len() as u64), |acc, node| {
                        let children = node.children.iter().fold(0usize, |acc, c| {
                            acc.saturating_add(1 + varint_len(c.spaces) + TREE_HASH_BYTES)
                        });
                        acc.saturating_add(
                            1 + varint_len(node.prefix.path)
                                + varint_len(node.children.len() as u64),
                        )
                        .saturating_add(children)
                    })
            }
            NodeFrame::Leaves { leaves } => varint_len(leaves.len() as u64)
                .saturating_add(leaves.len().saturating_mul(LEAF_BYTES)),
        };
        HEADER_BYTES.saturating_add(body)
    }

    /// Checks every limit and rule that [`NodeFrame::encode`] checks,
    /// without encoding.
    pub fn validate(&self) -> Result<(), EncodeError> {
        let canonical = |ok: bool, what| {
            if ok {
                Ok(())
            } else {
                Err(EncodeError::NotCanonical(what))
            }
        };
        match self {
            NodeFrame::Spaces { keys, .. } => {
                check(Limit::SpaceKeys, keys.len())?;
                canonical(increasing(keys), KEYS_ORDER)?;
            }
            NodeFrame::Summary(s) => {
                check_count(s.spaces)?;
            }
            NodeFrame::Buckets { nodes } => {
                check(Limit::BucketNodes, nodes.len())?;
                canonical(
                    nodes.windows(2).all(|w| w[0].prefix < w[1].prefix),
                    NODES_ORDER,
                )?;
                for node in nodes {
                    canonical(node.prefix.depth < TREE_DEPTH, LEAF_BUCKET)?;
                    check(Limit::BucketChildren, node.children.len())?;
                    let indices: Vec<u64> =
                        node.children.iter().map(|c| u64::from(c.index)).collect();
                    canonical(increasing(&indices), CHILDREN_ORDER)?;
                    for c in &node.children {
                        canonical(usize::from(c.index) < TREE_FANOUT, CHILD_INDEX)?;
                        canonical(c.spaces > 0, EMPTY_CHILD)?;
                        check_count(c.spaces)?;
                    }
                }
            }
            NodeFrame::Leaves { leaves } => {
                check(Limit::Leaves, leaves.len())?;
                let keys: Vec<u64> = leaves.iter().map(|(k, _)| *k).collect();
                canonical(increasing(&keys), KEYS_ORDER)?;
            }
        }
        check(Limit::Frame, self.encoded_len())
    }

    /// Encodes this frame, or says which limit or rule it breaks.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.validate()?;
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&[WIRE_VERSION, self.kind().code(), 0]);
        match self {
            NodeFrame::Spaces { version, keys } => {
                encode_varint(*version, &mut out);
                encode_varint(keys.len() as u64, &mut out);
                for key in keys {
                    out.extend_from_slice(&key.to_be_bytes());
                }
            }
            NodeFrame::Summary(s) => {
                out.push(if s.reply { FLAG_SUMMARY_REPLY } else { 0 });
                encode_varint(s.version, &mut out);
                encode_varint(s.known, &mut out);
                encode_varint(s.spaces, &mut out);
                out.extend_from_slice(&s.root);
            }
            NodeFrame::Buckets { nodes } => {
                encode_varint(nodes.len() as u64, &mut out);
                for node in nodes {
                    out.push(node.prefix.depth);
                    encode_varint(node.prefix.path, &mut out);
                    encode_varint(node.children.len() as u64, &mut out);
                    for c in &node.children {
                        out.push(c.index);
                        encode_varint(c.spaces, &mut out);
                        out.extend_from_slice(&c.hash);
                    }
                }
            }
            NodeFrame::Leaves { leaves } => {
                encode_varint(leaves.len() as u64, &mut out);
                for (key, hash) in leaves {
                    out.extend_from_slice(&key.to_be_bytes());
                    out.extend_from_slice(hash);
                }
            }
        }
        debug_assert_eq!(out.len(), self.encoded_len());
        Ok(out)
    }

    /// Decodes one node-level frame that must fill `bytes` exactly.
    ///
    /// Never panics, and allocates only for counts already checked against
    /// the remaining input and the limits. A frame of a space gives
    /// [`DecodeError::NotANodeFrame`].
    pub fn decode(bytes: &[u8]) -> Result<NodeFrame, DecodeError> {
        let (mut r, Header { kind, .. }) = open(bytes)?;
        let frame = match kind {
            FrameKind::Spaces => {
                let version = r.varint("list version")?;
                let count = r.count("space key count", Limit::SpaceKeys, SPACE_KEY_BYTES)?;
                let mut keys = Vec::with_capacity(count);
                for _ in 0..count {
                    keys.push(r.key()?);
                }
                not_canonical(increasing(&keys), KEYS_ORDER)?;
                NodeFrame::Spaces { version, keys }
            }
            FrameKind::Summary => {
                let flags = r.u8("summary flags")?;
                if flags & !FLAG_SUMMARY_REPLY != 0 {
                    return Err(DecodeError::UnknownFlags(flags));
                }
                let version = r.varint("list version")?;
                let known = r.varint("known list version")?;
                let spaces = r.bounded("summary space count", Limit::SpaceKeys)?;
                let root = r.array::<TREE_HASH_BYTES>("summary root")?;
                NodeFrame::Summary(Summary {
                    version,
                    known,
                    spaces,
                    root,
                    reply: flags & FLAG_SUMMARY_REPLY != 0,
                })
            }
            FrameKind::Buckets => {
                let count = r.count("bucket node count", Limit::BucketNodes, MIN_NODE_BYTES)?;
                let mut nodes: Vec<BucketNode> = Vec::with_capacity(count);
                for _ in 0..count {
                    let node = r.bucket_node()?;
                    let ordered = nodes.last().is_none_or(|last| last.prefix < node.prefix);
                    not_canonical(ordered, NODES_ORDER)?;
                    nodes.push(node);
                }
                NodeFrame::Buckets { nodes }
            }
            FrameKind::Leaves => {
                let count = r.count("leaf count", Limit::Leaves, LEAF_BYTES)?;
                let mut leaves = Vec::with_capacity(count);
                for _ in 0..count {
                    let key = r.key()?;
                    leaves.push((key, r.array::<TREE_HASH_BYTES>("leaf hash")?));
                }
                let keys: Vec<u64> = leaves.iter().map(|(k, _)| *k).collect();
                not_canonical(increasing(&keys), KEYS_ORDER)?;
                NodeFrame::Leaves { leaves }
            }
            other => return Err(DecodeError::NotANodeFrame(other.code())),
        };
        r.finish()?;
        Ok(frame)
    }
}

/// Splits bucket nodes (in increasing order) into frames of at most
/// [`MAX_BUCKET_NODES`]; no nodes give no frames.
pub fn chunk_buckets(nodes: Vec<BucketNode>) -> Vec<NodeFrame> {
    chunks(nodes, MAX_BUCKET_NODES, |nodes| NodeFrame::Buckets {
        nodes,
    })
}

/// Splits leaves (keys in increasing order) into frames of at most
/// [`MAX_LEAVES_PER_FRAME`]; no leaves give no frames.
pub fn chunk_leaves(leaves: Vec<(u64, TreeHash)>) -> Vec<NodeFrame> {
    chunks(leaves, MAX_LEAVES_PER_FRAME, |leaves| NodeFrame::Leaves {
        leaves,
    })
}

fn chunks<T>(items: Vec<T>, max: usize, frame: impl Fn(Vec<T>) -> NodeFrame) -> Vec<NodeFrame> {
    let mut frames = Vec::with_capacity(items.len().div_ceil(max));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        frames.push(frame(items.by_ref().take(max).collect()));
    }
    frames
}

const KEYS_ORDER: &str = "space keys not strictly increasing";
const NODES_ORDER: &str = "bucket nodes not strictly increasing";
const CHILDREN_ORDER: &str = "bucket children not strictly increasing";
const CHILD_INDEX: &str = "bucket child index past the fan-out";
const EMPTY_CHILD: &str = "empty bucket child";
const LEAF_BUCKET: &str = "bucket at a leaf's depth";
const BAD_PREFIX: &str = "bucket path longer than its depth";

/// Checks a count of spaces against [`Limit::SpaceKeys`].
fn check_count(spaces: u64) -> Result<(), EncodeError> {
    check(
        Limit::SpaceKeys,
        usize::try_from(spaces).unwrap_or(usize::MAX),
    )
}

fn increasing(values: &[u64]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

fn not_canonical(ok: bool, what: &'static str) -> Result<(), DecodeError> {
    if ok {
        Ok(())
    } else {
        Err(DecodeError::NotCanonical(what))
    }
}

impl Reader<'_> {
    fn key(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.array::<SPACE_KEY_BYTES>("space key")?,
        ))
    }

    /// A varint of at most `limit`'s value.
    fn bounded(&mut self, what: &'static str, limit: Limit) -> Result<u64, DecodeError> {
        let value = self.varint(what)?;
        if value > limit.max() as u64 {
            return Err(too_large(limit, value));
        }
        Ok(value)
    }

    fn bucket_node(&mut self) -> Result<BucketNode, DecodeError> {
        let depth = self.u8("bucket depth")?;
        let path = self.varint("bucket path")?;
        not_canonical(depth < TREE_DEPTH, LEAF_BUCKET)?;
        let prefix = Prefix::new(depth, path).ok_or(DecodeError::NotCanonical(BAD_PREFIX))?;
        let count = self.count("bucket child count", Limit::BucketChildren, MIN_CHILD_BYTES)?;
        let mut children: Vec<Child> = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.u8("bucket child index")?;
            not_canonical(usize::from(index) < TREE_FANOUT, CHILD_INDEX)?;
            let ordered = children.last().is_none_or(|last| last.index < index);
            not_canonical(ordered, CHILDREN_ORDER)?;
            let spaces = self.bounded("bucket child space count", Limit::SpaceKeys)?;
            not_canonical(spaces > 0, EMPTY_CHILD)?;
            let hash = self.array::<TREE_HASH_BYTES>("bucket child hash")?;
            children.push(Child {
                index,
                spaces,
                hash,
            });
        }
        Ok(BucketNode { prefix, children })
    }
}
