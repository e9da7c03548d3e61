//! The pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, with the content kubelet (and
//! containerd, for resolv.conf) gives them.
