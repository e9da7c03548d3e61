//! Unpacking layer tars into a directory safely: gzip/zstd/plain, OCI whiteouts, ownership,
//! modes, xattrs, links and device nodes, and no path, symlink or hard link that escapes.
//! OWNER: helper "image-store". Signatures are the contract; keep them.

use std::io::Read;
use std::path::Path;

use super::digest::Digest;
use super::Result;

/// Layer compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From an OCI or Docker layer media type; None when the type says nothing (sniff then).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let _ = media_type;
        todo!("image-store helper")
    }

    /// From the first bytes of a blob.
    pub fn sniff(head: &[u8]) -> Self {
        let _ = head;
        todo!("image-store helper")
    }
}

/// The result of unpacking: the uncompressed tar's digest and the bytes written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    pub diff_id: Digest,
    pub size: u64,
}

/// Unpacks one layer stream into `dest` (an empty directory the caller owns), applying
/// whiteouts as the OCI image spec says, for use as an overlay lower directory: a `.wh.NAME`
/// becomes an overlay whiteout (character device 0/0) and `.wh..wh..opq` the opaque xattr
/// (`trusted.overlay.opaque=y`). `layer` names the layer in errors.
pub fn unpack(
    layer: &str,
    reader: &mut dyn Read,
    compression: Compression,
    dest: &Path,
) -> Result<Unpacked> {
    let _ = (layer, reader, compression, dest);
    todo!("image-store helper")
}
