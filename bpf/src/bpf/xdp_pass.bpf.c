// SPDX-License-Identifier: GPL-2.0
/*
 * XDP_PASS for every frame. A veth accepts frames another device's XDP
 * program redirects into it only when its peer runs an XDP program (which
 * gives the peer's receive queue its NAPI context); the lab attaches this
 * one to the far ends of the DUT's veths when the XDP forwarder runs.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
