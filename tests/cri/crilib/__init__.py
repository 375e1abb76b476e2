"""gvshim's CRI test library: CRI v1 stubs (protos), a kubelet-like client (client), the streaming client for
exec/attach (stream), the private containerd set up for the CRI (env) and the case runner (runner)."""
