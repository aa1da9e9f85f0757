//! From an image name to the stack of snapshot directories its containers start from.

use std::path::PathBuf;

use berth_image::images::Image;
use berth_image::store::Store;
use berth_image::unpack::{Snapshots, UnpackOptions};

use crate::error::{Error, Result};

/// An image ready to be a container's lower layers.
pub struct ImageRootfs {
    /// The image as stored (config, layers, chain ids).
    pub image: Image,
    /// The snapshot directories, bottom layer first.
    pub layers: Vec<PathBuf>,
}

/// Resolve `name` in the store and make sure every layer is unpacked (images that were
/// loaded or imported have blobs but maybe no snapshots yet).
pub fn prepare(store: &Store, snapshots: &Snapshots, name: &str) -> Result<ImageRootfs> {
    let found = berth_image::images::find(store, name)?;
    let named = found
        .into_iter()
        .next()
        .ok_or_else(|| Error::Invalid(format!("image {name:?} is not in the store (pull, load or import it first)")))?;
    let image = named.image;
    if image.chain.len() != image.layers.len() {
        return Err(Error::Invalid(format!(
            "image {name:?}: {} layers but {} diff_ids in its config",
            image.layers.len(),
            image.chain.len()
        )));
    }
    let mut layers = Vec::with_capacity(image.chain.len());
    for (i, chain) in image.chain.iter().enumerate() {
        if !snapshots.exists(chain) {
            let desc = &image.layers[i];
            let blob = store.open_blob(desc.digest())?;
            let opts = UnpackOptions {
                expected_digest: Some(desc.digest().clone()),
                expected_size: Some(desc.size()),
                expected_diff_id: Some(image.diff_ids[i].clone()),
                ..Default::default()
            };
            let parent = if i == 0 { None } else { Some(&image.chain[i - 1]) };
            snapshots.unpack(std::io::BufReader::new(blob), parent, &opts)?;
        }
        layers.push(snapshots.path(chain)?);
    }
    Ok(ImageRootfs { image, layers })
}
