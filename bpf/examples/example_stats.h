/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The examples' only extra: a per-CPU count of each (path, action), which
 * is how a test (or an operator) sees which branch the loaded object takes.
 */
#ifndef __EXAMPLE_STATS_H
#define __EXAMPLE_STATS_H

#include "fib_neigh.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FIB_NEIGH_NR_PATHS * FIB_NEIGH_NR_ACTIONS);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Keep the enums in the BTF (the loader reads their values there). */
const volatile struct {
	enum fib_neigh_path	path;
	enum fib_neigh_action	action;
	enum fib_neigh_mode	mode;
	enum fib_neigh_fallback	fallback;
} example_enums = {};

static __always_inline void example_count(const struct fib_neigh *fn)
{
	__u32 key = fn->path * FIB_NEIGH_NR_ACTIONS + fn->action;
	__u64 *c = bpf_map_lookup_elem(&stats, &key);

	if (c)
		*c += 1;
}

#endif /* __EXAMPLE_STATS_H */
