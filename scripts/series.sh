#!/usr/bin/env bash
# Move the kernel series between kernel-patches/ and a git branch in the
# pipeline's kernel tree, and turn it into a series you can post.
#
#   scripts/series.sh import [BRANCH] [WORKTREE]
#       (Re)create BRANCH (default neigh-state) at the pristine base from
#       kernel-patches/, in a worktree (default ~/linux-dev-<base>) of the
#       tree that `fibneigh vm build` unpacked, authored by your git
#       identity. The cover letter becomes the branch description and each
#       patch's changelog (the "Notes:" below its ---) a git note.
#   scripts/series.sh export [BRANCH]
#       Write BRANCH as kernel-patches/0000-cover-letter.patch,
#       0001-....patch, ... (format-patch --cover-letter --notes --base)
#       and rewrite kernel-patches/series. The committed copy carries no
#       identity: From: headers and the shortlog's author line are removed,
#       and there is no Signed-off-by.
#   scripts/series.sh post [-v N] [--tree PATH] [OUTDIR]
#       The postable series (default v3, into target/posting/v<N>-<base>):
#       applied on a throwaway branch authored by your git identity (user.name and
#       user.email, with --tree that checkout's, or GIT_AUTHOR_NAME/
#       GIT_AUTHOR_EMAIL), signed off by you
#       (format-patch --signoff: by running it you certify the DCO for your
#       contribution), -vN subjects, each patch's changelog below its ---,
#       To:/Cc: from the tree's scripts/get_maintainer.pl, then checked
#       with checkpatch.pl --strict --codespell, which must report nothing.
#       Nothing in kernel-patches/, in your branches, notes or git config
#       (the pipeline tree's, or your checkout's) changes. Send the
#       result with git send-email after reading it. OUTDIR must be new,
#       empty, or hold only an earlier post's v*-NNNN-*.patch files (which
#       are replaced); anything else there is refused, never removed.
#       --tree PATH: your bpf-next checkout. The series is applied (git am
#       -3) on its HEAD in a throwaway worktree of that repository, whose
#       commit becomes base-commit (a commit your tree and the list know);
#       W=1 filter.o is built there if PATH is configured (.config), and
#       checkpatch runs with that tree's script. Without --tree the base
#       is the pipeline's Debian import, and the cover letter says so.
#
# BASE=6.12 works on the downstream LTS backport instead: the
# linux-source-6.12 tree, kernel-patches/6.12/, branch neigh-state-6.12,
# prefix 'PATCH 6.12-downstream' (stable takes no new uAPI; the backport
# is for users who run 6.12 kernels of their own).
#
# The binary knows the bases, their series, the cache and who may post:
# FIBNEIGH names it, else target/debug/fibneigh is built. The tree is the
# one `fibneigh vm build` unpacked, as it is (`vm tree --print-path`
# applies, configures and builds nothing, so a build using the tree is
# not disturbed; this script works in worktrees and branches of it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
base=${BASE:-7.3}
if [ -n "${FIBNEIGH:-}" ]; then
	bin=$FIBNEIGH
else
	cargo build -q --bin fibneigh
	bin=$repo/target/debug/fibneigh
fi
series() { "$bin" vm series --base "$base" "$@"; }
patches=$(series --print dir)
prefix=$(series --print subject-prefix)
default_branch=$(series --print branch)
tree=$("$bin" vm tree --base "$base" --print-path)
git_t() { git -C "$tree" "$@"; }

# "Name <email>" of the user running this, or a clear error: the binary
# checks git's identity (a name; no placeholder email unless ANY is "any").
identity() {
	local ident any=()
	# with post --tree, the user's checkout: its own user.name and
	# user.email, if it has them, are the identity it commits with
	ident=$(git -C "${user_tree:-$tree}" var GIT_AUTHOR_IDENT 2>/dev/null) || ident=
	[ "${1:-}" != any ] || any=(--allow-placeholder)
	series --check-author "$ident" "${any[@]}"
}

# The patch files of the series, in order, into the array `files`: the
# binary reads `series` (a named patch that does not exist is an error).
series_files() {
	local list
	list=$(series --print patches)
	files=()
	[ -z "$list" ] || mapfile -t files <<<"$list"
}

# Apply a committed patch with AUTHOR as its author (the committed copy
# names none) in worktree WT, and attach its changelog as a git note.
am_as() {
	local wt=$1 author=$2 patch=$3 notes
	awk -v from="From: $author" '
		NR == 1 && /^From / { print; print from; done = 1; next }
		!done && !hdr && /^$/ { hdr = 1 }
		/^From: / && !hdr { next }
		{ print }' "$patch" | git -C "$wt" am -q -3 --keep-cr
	notes=$(changelog "$patch")
	if [ -n "$notes" ]; then
		git -C "$wt" notes add -f -m "$notes" HEAD
	fi
}

# The changelog of a format-patch --notes file: the indented lines of its
# "Notes:" block below the first ---.
changelog() {
	awk '/^---$/ && !cut { cut = 1; next }
	     cut == 1 && /^Notes:$/ { cut = 2; next }
	     cut == 2 && /^    / { sub(/^    /, ""); print; next }
	     cut == 2 && /^$/ { exit }
	     cut == 1 && /^ / { exit }' "$1"
}

# The cover letter's subject and body, without the shortlog and diffstat.
cover_description() {
	awk '/^Subject: /{sub(/^Subject: \[PATCH[^]]*\] /,""); subj=$0; next}
	     subj && !body && /^ / {sub(/^ /,""); subj=subj " " $0; next}
	     subj && !body && /^$/ {body=1; print subj; print ""; next}
	     body && /^-- *$/ {exit}
	     body && /^\(no author\) \([0-9]+\):$/ {exit}
	     body && /^[A-Za-z].* \([0-9]+\):$/ {exit}
	     body {print}' "$1"
}

# Remove every identity from format-patch output: the From: header (and
# its folded continuation) and the cover letter's shortlog author.
strip_identity() {
	local f
	for f in "$@"; do
		awk '!hdr && /^$/ { hdr = 1 }
		     !hdr && /^From: / { skip = 1; next }
		     !hdr && skip && /^[ \t]/ { next }
		     { skip = 0 }
		     hdr && !short && /^[^ ].* \([0-9]+\):$/ { sub(/^.* \(/, "(no author) ("); short = 1 }
		     { print }' "$f" > "$f.tmp" && mv "$f.tmp" "$f"
	done
}

case ${1:-} in
import)
	branch=${2:-$default_branch}
	wt=${3:-$HOME/linux-dev-$base}
	author=$(identity any)
	series_files
	if [ ! -d "$wt" ] || [ -z "$(ls -A "$wt")" ]; then
		git_t worktree add -q -B "$branch" "$wt" fibneigh-base
	elif [ "$(git -C "$wt" rev-parse --show-toplevel 2>/dev/null)" != "$(realpath "$wt")" ] ||
		[ "$(git -C "$wt" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)" != \
			"$(git_t rev-parse --path-format=absolute --git-common-dir)" ]; then
		# Another repository's, a directory inside one, or a worktree of
		# a tree unpacked again since (an emptied cache): what is in it
		# may be someone's work, so it is neither reset nor removed.
		echo "series.sh: $wt is not a git worktree of $tree (a worktree of a tree unpacked again since, or another repository's directory); move it away or remove it, then import again" >&2
		exit 1
	else
		git -C "$wt" checkout -q -B "$branch" fibneigh-base
	fi
	for p in "${files[@]}"; do am_as "$wt" "$author" "$p"; done
	if [ -f "$patches/0000-cover-letter.patch" ]; then
		git -C "$wt" config "branch.$branch.description" \
			"$(cover_description "$patches/0000-cover-letter.patch")"
	fi
	echo "branch $branch in $wt: $(git -C "$wt" rev-list --count fibneigh-base..HEAD) patch(es)"
	;;
export)
	branch=${2:-$default_branch}
	rm -f "$patches"/0*.patch
	git_t format-patch -q --cover-letter --cover-from-description=subject \
		--notes --subject-prefix="$prefix" --base=fibneigh-base \
		-o "$patches" "fibneigh-base..$branch"
	strip_identity "$patches"/0*.patch
	# The cover letter's date is the branch tip's, not the hour of the
	# export: exporting an unchanged branch changes nothing.
	date=$(git_t log -1 --format=%aD "$branch")
	sed -i "1,/^Date: /s/^Date: .*/Date: $date/" "$patches/0000-cover-letter.patch"
	{
		echo "# Applied in order by fibneigh vm build (git am). Generated by"
		echo "# scripts/series.sh export; the cover letter is not applied."
		for f in "$patches"/0*.patch; do
			[ "${f##*/}" = 0000-cover-letter.patch ] || echo "${f##*/}"
		done
	} > "$patches/series"
	ls "$patches"
	;;
post)
	shift
	version=3
	user_tree=
	while [ $# -gt 0 ]; do
		case $1 in
		-v | --tree)
			[ $# -ge 2 ] || { echo "series.sh post: $1 needs a value" >&2; exit 2; } ;;
		esac
		case $1 in
		-v)
			case $2 in
			[1-9] | [1-9][0-9]) version=$2 ;;
			*) echo "series.sh post: -v takes a version number (1-99), not '$2'" >&2; exit 2 ;;
			esac
			shift 2 ;;
		--tree) user_tree=$(cd "$2" && pwd) || { echo "series.sh: --tree $2: no such directory" >&2; exit 2; }; shift 2 ;;
		-*) echo "series.sh post: unknown option $1" >&2; exit 2 ;;
		*) break ;;
		esac
	done
	[ $# -le 1 ] || { echo "series.sh post: one OUTDIR at most, not: $*" >&2; exit 2; }
	out=${1:-$repo/target/posting/v$version-$base}
	# OUTDIR gets the series' files and nothing else: what an earlier post
	# wrote there is replaced, a directory holding anything else is
	# refused, and nothing is removed before the series is made.
	posted='v[0-9]*-[0-9][0-9][0-9][0-9]-*.patch'
	if [ -e "$out" ] && [ ! -d "$out" ]; then
		echo "series.sh post: $out is not a directory" >&2
		exit 2
	fi
	if [ -d "$out" ]; then
		other=$(find "$out" -mindepth 1 -maxdepth 1 ! -name "$posted" -print -quit)
		if [ -n "$other" ]; then
			echo "series.sh post: $out holds files post did not write ($other); name an empty or new directory" >&2
			exit 2
		fi
	fi
	if [ -n "$user_tree" ]; then
		git -C "$user_tree" rev-parse --verify -q HEAD >/dev/null ||
			{ echo "series.sh: --tree $user_tree is not a git checkout" >&2; exit 2; }
		git_t() { git -C "$user_tree" "$@"; }
		base_rev=$(git -C "$user_tree" rev-parse HEAD)
	else
		base_rev=fibneigh-base
	fi
	author=$(identity)
	series_files
	name=${author%% <*}
	email=${author#*<}
	email=${email%>}
	wt=$(mktemp -d /tmp/fibneigh-post.XXXXXX)
	branch=fibneigh-post-$$
	# The identity and the changelog notes of the throwaway branch live in
	# this process's environment and in a notes ref of its own: git config
	# written in a worktree is the whole repository's (the pipeline's tree,
	# or with --tree the user's checkout), and refs/notes/commits may be
	# the user's. Nothing of the post stays in either repository.
	export GIT_AUTHOR_NAME=$name GIT_AUTHOR_EMAIL=$email \
		GIT_COMMITTER_NAME=$name GIT_COMMITTER_EMAIL=$email
	export GIT_NOTES_REF=refs/notes/$branch
	cleanup() {
		git_t worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"
		git_t worktree prune
		git_t branch -q -D "$branch" >/dev/null 2>&1 || true
		git_t update-ref -d "$GIT_NOTES_REF" >/dev/null 2>&1 || true
	}
	trap cleanup EXIT
	git_t worktree add -q -b "$branch" "$wt" "$base_rev"
	for p in "${files[@]}"; do
		am_as "$wt" "$author" "$p" || {
			echo "series.sh: $(basename "$p") does not apply on $base_rev; rebase the series (import, fix, export) first" >&2
			exit 1
		}
	done
	description=$(cover_description "$patches/0000-cover-letter.patch")
	if [ -z "$user_tree" ]; then
		description+=$'\n\n'"Based on and tested with $(git_t log -1 --format=%s fibneigh-base | sed 's/^base: //'); base-commit below is that import, not a bpf-next commit."
	fi
	git -C "$wt" config "branch.$branch.description" "$description"
	if [ -n "$user_tree" ] && [ -f "$user_tree/.config" ]; then
		obj=$(mktemp -d /tmp/fibneigh-post-obj.XXXXXX)
		cp "$user_tree/.config" "$obj/.config"
		if ! (cd "$wt" && make -s O="$obj" olddefconfig >/dev/null && make -s O="$obj" W=1 net/core/filter.o) 2>"$obj/w1.log" ||
			grep -q 'warning:' "$obj/w1.log"; then
			echo "series.sh: W=1 build of net/core/filter.o on $base_rev:" >&2
			cat "$obj/w1.log" >&2
			rm -rf "$obj"
			exit 1
		fi
		rm -rf "$obj"
		echo "series.sh post: W=1 net/core/filter.o builds clean on $base_rev"
	fi
	# To: the maintainers of what the series touches; Cc: reviewers and lists.
	mbox=$(mktemp /tmp/fibneigh-post.XXXXXX.mbox)
	git -C "$wt" format-patch -q --stdout "$base_rev..HEAD" > "$mbox"
	gm() { (cd "$wt" && ./scripts/get_maintainer.pl --no-rolestats --nogit --nogit-fallback "$@" "$mbox"); }
	to=() cc=()
	while read -r m; do [ -n "$m" ] && to+=(--to="$m"); done < <(gm --nol --nor)
	while read -r m; do
		[ -n "$m" ] || continue
		case " ${to[*]} " in *" --to=$m "*) continue ;; esac
		cc+=(--cc="$m")
	done < <(gm --nom)
	rm -f "$mbox"
	mkdir -p "$out"
	find "$out" -mindepth 1 -maxdepth 1 -name "$posted" -delete
	git -C "$wt" format-patch -q -v "$version" --signoff --notes --thread \
		--cover-letter --cover-from-description=subject \
		--subject-prefix="$prefix" --base="$base_rev" \
		"${to[@]}" "${cc[@]}" -o "$out" "$base_rev..HEAD"
	# format-patch names a notes ref other than refs/notes/commits in the
	# changelog's heading; the list expects the plain one
	sed -i "s|^Notes (${GIT_NOTES_REF#refs/notes/}):\$|Notes:|" "$out"/*.patch
	echo "series.sh post: $(ls "$out" | wc -l) file(s) in $out, authored and signed off by $author"
	dict=
	for d in /usr/share/codespell/dictionary.txt \
		/usr/lib/python3/dist-packages/codespell_lib/data/dictionary.txt; do
		[ -f "$d" ] && { dict=$d; break; }
	done
	[ -n "$dict" ] || { echo "series.sh: no codespell dictionary (scripts/setup.sh installs codespell)" >&2; exit 1; }
	status=0
	for f in "$out"/*.patch; do
		case $f in *-0000-cover-letter.patch) continue ;; esac
		if ! report=$(cd "$wt" && ./scripts/checkpatch.pl --strict --codespell --codespellfile "$dict" -q "$f" 2>&1) || [ -n "$report" ]; then
			echo "checkpatch --strict --codespell: $(basename "$f"):"
			echo "$report"
			status=1
		fi
	done
	[ $status = 0 ] && echo "checkpatch --strict --codespell: clean"
	exit $status
	;;
*)
	sed -n '2,39p' "$0"
	exit 2
	;;
esac
