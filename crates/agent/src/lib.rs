//! The node agent (Skiff's kubelet): registers its Node, renews its Lease, and runs the pods
//! bound to it through `skiff-runtime`.
