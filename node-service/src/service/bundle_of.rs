//! Finding a bundle function's bundle in the node's bundles (the [`Bundles`] port), before
//! anything starts.

use super::*;

impl Node {
    /// The bundle `spec`'s function is made of (`None` for a built-in handler), read from
    /// this node's bundles; refused when the node has none or not this one.
    pub(super) fn bundle_of(&self, spec: &ContainerSpec) -> Result<Option<Bundle>, NodeError> {
        let hash = match bundle::parse_handler("function_meta.handler", &spec.handler) {
            None => return Ok(None),
            Some(Ok(hash)) => hash,
            Some(Err(message)) => return Err(NodeError::InvalidArgument(message)),
        };
        let bundles = self.bundles.as_ref().ok_or_else(|| NodeError::NoBundles {
            function: clip(&spec.function_name).into_owned(),
            hash: hash.to_string(),
            node: self.identity.node_id.clone(),
        })?;
        Ok(Some(bundles.find(hash)?))
    }
}
