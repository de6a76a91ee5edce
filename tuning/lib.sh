# shellcheck shell=bash
# Shared by tuning/apply, check, revert and irq-affinity; sourced, never run. What is installed
# where, how kernel settings are read and compared, and where apply keeps what it replaced.

TUNING_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname -- "$TUNING_DIR")
PROG=tuning/${0##*/}
STATE_DIR=${GAVEL_TUNING_STATE:-/var/lib/gavel-tuning}
SYSCTL_CONF=$TUNING_DIR/sysctl.d/60-gavel.conf
ALL_PARTS=(sysctl limits systemd postgresql redis)

# Kept per network namespace by every kernel Gavel supports (5.x and later), so a test can set
# them inside a namespace of its own without touching the host. net.core.rmem_max/wmem_max only
# became per namespace recently, netdev_max_backlog, fs.* and conntrack's maximum never are.
NETNS_KEYS=(net.core.somaxconn net.ipv4.tcp_max_syn_backlog net.ipv4.tcp_rmem net.ipv4.tcp_wmem
  net.ipv4.tcp_tw_reuse net.ipv4.tcp_fin_timeout net.ipv4.tcp_max_tw_buckets
  net.ipv4.ip_local_port_range)

# Ceilings that only ever need raising: a higher value already in force is kept, never lowered.
FLOOR_KEYS=(fs.file-max fs.nr_open)

# Unexpected failures are errors (exit 2), never mistaken for "differs" (1) or "not root" (1).
set -E
trap 'printf "%s: unexpected failure at line %s: %s\n" "$PROG" "$LINENO" "$BASH_COMMAND" >&2; exit 2' ERR

die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 2
}

note() { printf 'note: %s\n' "$*"; }

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    printf '%s: must be run as root: it reads and changes kernel settings and files under /etc\n' \
      "$PROG" >&2
    exit 1
  fi
}

# "tuning/sysctl.d/60-gavel.conf" rather than an absolute path, for messages.
shown() { printf '%s' "${1#"$REPO_DIR"/}"; }

# Collapses runs of blanks to one space and trims both ends: /proc shows tabs between the fields
# of tcp_rmem, the drop-in spaces.
normalize() {
  local -a words
  read -r -a words <<<"$1" || true
  printf '%s' "${words[*]}"
}

# --- Options shared by apply, check and revert ---------------------------------------------

PARTS=()
ROOT=""
NETNS_SAFE=0

# add_part PART [EXTRA_ALLOWED...]
add_part() {
  local want=$1 p
  shift
  for p in "${ALL_PARTS[@]}" "$@"; do
    if [ "$p" = "$want" ]; then
      PARTS+=("$want")
      return 0
    fi
  done
  die "--only takes one of: ${ALL_PARTS[*]} $* (got '$want')"
}

set_root() {
  [ -n "$1" ] || die "--root needs a directory"
  [ -d "$1" ] || die "--root $1: not a directory"
  ROOT=$(cd -- "$1" && pwd -P)
  [ "$ROOT" != / ] || ROOT=""
}

selected() {
  local p
  [ "${#PARTS[@]}" -gt 0 ] || return 0
  for p in "${PARTS[@]}"; do
    [ "$p" != "$1" ] || return 0
  done
  return 1
}

# --- Kernel settings -----------------------------------------------------------------------

S_KEYS=()
S_WANT=()

# Reads the drop-in: "key = value" lines; a leading "-" (skip when missing) needs no special
# handling here because every missing key is skipped with a note.
load_sysctl_conf() {
  local line key value n=0 name
  name=$(shown "$SYSCTL_CONF")
  [ -r "$SYSCTL_CONF" ] || die "cannot read $name"
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=$(normalize "$line")
    case $line in '' | '#'* | ';'*) continue ;; esac
    [[ $line == *=* ]] || die "$name:$n: not a 'key = value' line"
    key=$(normalize "${line%%=*}")
    value=$(normalize "${line#*=}")
    key=${key#-}
    [[ $key =~ ^[A-Za-z0-9_.-]+$ ]] || die "$name:$n: bad key '$key'"
    S_KEYS+=("$key")
    S_WANT+=("$value")
  done <"$SYSCTL_CONF"
  [ "${#S_KEYS[@]}" -gt 0 ] || die "$name: no settings"
}

sysctl_path() { printf '/proc/sys/%s' "${1//.//}"; }

in_list() {
  local want=$1 k
  shift
  for k in "$@"; do
    [ "$k" != "$want" ] || return 0
  done
  return 1
}

is_netns_key() { in_list "$1" "${NETNS_KEYS[@]}"; }
is_floor_key() { in_list "$1" "${FLOOR_KEYS[@]}"; }

# Why a key is left alone here, or nothing when it can be read and set.
sysctl_skip_reason() {
  local path
  if [ "$NETNS_SAFE" = 1 ] && ! is_netns_key "$1"; then
    printf 'not per network namespace; --netns-safe'
    return 0
  fi
  path=$(sysctl_path "$1")
  if [ ! -e "$path" ]; then
    case $1 in
      net.netfilter.nf_conntrack_*)
        printf 'not in this kernel or namespace (nf_conntrack is not loaded; nothing to size)' ;;
      *) printf 'not in this kernel or namespace' ;;
    esac
  elif [ ! -w "$path" ] && [ "$(id -u)" -eq 0 ]; then
    printf 'read-only in this namespace'
  fi
}

sysctl_read() {
  local v
  v=$(cat -- "$(sysctl_path "$1")" 2>/dev/null) || return 1
  normalize "$v"
}

# True when the current value already meets the wanted one.
sysctl_met() {
  local key=$1 cur=$2 want=$3
  if is_floor_key "$key" && [[ $cur =~ ^[0-9]+$ && $want =~ ^[0-9]+$ ]] &&
    [ "${#cur}" -le 19 ] && [ "${#want}" -le 19 ]; then
    ((cur >= want))
    return
  fi
  [ "$cur" = "$want" ]
}

sysctl_write() {
  sysctl -q -w "$1=$2" >/dev/null
}

# Other sysctl files read after ours at boot that set the same keys: they win over this drop-in.
sysctl_overrides() {
  local dir f name key pattern
  local -a files=()
  for dir in "$ROOT/etc/sysctl.d" "$ROOT/run/sysctl.d" "$ROOT/usr/local/lib/sysctl.d" \
    "$ROOT/usr/lib/sysctl.d" "$ROOT/lib/sysctl.d"; do
    [ -d "$dir" ] || continue
    for f in "$dir"/*.conf; do
      [ -f "$f" ] || continue
      name=${f##*/}
      if [[ $name > 60-gavel.conf ]]; then files+=("$f"); fi
    done
  done
  if [ -f "$ROOT/etc/sysctl.conf" ]; then files+=("$ROOT/etc/sysctl.conf"); fi
  [ "${#files[@]}" -gt 0 ] || return 0
  for key in "${S_KEYS[@]}"; do
    pattern="^[[:space:]]*-?${key//./[./]}[[:space:]]*="
    for f in "${files[@]}"; do
      if grep -Eq -- "$pattern" "$f" 2>/dev/null; then
        note "$key is also set in $f, which is read after 60-gavel.conf and wins at boot"
      fi
    done
  done
}

# --- Files ---------------------------------------------------------------------------------

# Prints "SOURCE<TAB>DEST" for what a part installs, or "-<TAB>REASON" when it is skipped.
part_files() {
  local confd
  case $1 in
    sysctl) printf '%s\t%s\n' "$SYSCTL_CONF" "$ROOT/etc/sysctl.d/60-gavel.conf" ;;
    limits) printf '%s\t%s\n' "$TUNING_DIR/limits.d/gavel.conf" "$ROOT/etc/security/limits.d/gavel.conf" ;;
    systemd) printf '%s\t%s\n' "$TUNING_DIR/systemd/gavel.service" "$ROOT/etc/systemd/system/gavel.service" ;;
    postgresql)
      confd=$(for d in "$ROOT"/etc/postgresql/*/main/conf.d; do
        if [ -d "$d" ]; then printf '%s\n' "$d"; fi
      done | sort -V | tail -n 1)
      if [ -n "$confd" ]; then
        printf '%s\t%s\n' "$TUNING_DIR/postgresql/60-gavel.conf" "$confd/60-gavel.conf"
      else
        printf -- '-\tno %s/etc/postgresql/<version>/main/conf.d (PostgreSQL not installed here?)\n' "$ROOT"
      fi
      ;;
    redis)
      if [ -d "$ROOT/etc/redis" ]; then
        printf '%s\t%s\n' "$TUNING_DIR/redis/gavel.conf" "$ROOT/etc/redis/gavel.conf"
      else
        printf -- '-\tno %s/etc/redis (redis-server not installed here?)\n' "$ROOT"
      fi
      ;;
  esac
}

# Debian's redis-server reads only redis.conf; gavel.conf counts once redis.conf includes it.
redis_include_note() {
  local conf="$ROOT/etc/redis/redis.conf"
  [ -r "$conf" ] || return 0
  if ! grep -Eq '^[[:space:]]*include[[:space:]]+/etc/redis/gavel\.conf[[:space:]]*$' "$conf"; then
    note "$conf does not include /etc/redis/gavel.conf yet: add the line" \
      "'include /etc/redis/gavel.conf' at its end (later lines win)"
  fi
}

# Debian's postgresql.conf reads conf.d/ through include_dir; a hand-edited one may not.
pg_include_note() {
  local conf
  conf="$(dirname -- "$(dirname -- "$1")")/postgresql.conf"
  [ -r "$conf" ] || return 0
  if ! grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\.d'" "$conf"; then
    note "$conf does not read conf.d/: add include_dir = 'conf.d' to it"
  fi
}

# Later files in the same conf.d are read after ours, and their settings win.
pg_override_note() {
  local confd param f
  confd=$(dirname -- "$1")
  for f in "$confd"/*.conf; do
    [ -f "$f" ] || continue
    if [[ ${f##*/} > 60-gavel.conf ]]; then
      while IFS= read -r param; do
        if grep -Eq "^[[:space:]]*${param}[[:space:]]*=" "$f" 2>/dev/null; then
          note "$param is also set in $f, which is read after 60-gavel.conf and wins"
        fi
      done < <(sed -nE 's/^([a-z_]+)[[:space:]]*=.*/\1/p' "$TUNING_DIR/postgresql/60-gavel.conf")
    fi
  done
}

# "missing", "differs" or "same": the installed file against its source.
file_state() {
  if [ ! -e "$2" ] && [ ! -L "$2" ]; then
    printf missing
  elif [ -f "$2" ] && cmp -s -- "$1" "$2"; then
    printf same
  else
    printf differs
  fi
}

# --- Records of what apply replaced --------------------------------------------------------
# STATE/sysctl/KEY                  a kernel setting's value before apply first changed it
# STATE/files/PART/backup/DEST      a file apply overwrote, as it was before the first overwrite
# STATE/files/PART/absent/DEST      marks a file apply created
# STATE/files/PART/dirs             directories apply created, in creation order
# STATE/irq/orig/PATH               an IRQ/RPS/XPS setting before irq-affinity first changed it
# The first record always wins, so revert returns to the state before the first apply.

# Records may hold copies of configuration with secrets in it: private to root. Files and
# directories apply installs get their modes explicitly and are not affected by this umask. The
# record directories themselves are made on the first record, so a run that changes nothing
# leaves none behind.
state_private() {
  umask 077
}

record_sysctl() {
  local f="$STATE_DIR/sysctl/$1"
  if [ -e "$f" ]; then return 0; fi
  mkdir -p -- "$STATE_DIR/sysctl"
  printf '%s\n' "$2" >"$f.tmp"
  mv -f -- "$f.tmp" "$f"
}

record_file() {
  local part=$1 dest=$2 base="$STATE_DIR/files/$1"
  if [ -e "$base/backup$dest" ] || [ -L "$base/backup$dest" ] || [ -e "$base/absent$dest" ]; then
    return 0
  fi
  if [ -e "$dest" ] || [ -L "$dest" ]; then
    mkdir -p -- "$(dirname -- "$base/backup$dest")"
    cp -P -p -- "$dest" "$base/backup$dest"
  else
    mkdir -p -- "$(dirname -- "$base/absent$dest")"
    : >"$base/absent$dest"
  fi
}

# The directories that creating DIR would make, outermost first.
missing_dirs() {
  local d=$1
  local -a out=()
  while [ -n "$d" ] && [ "$d" != / ] && [ ! -d "$d" ]; do
    out=("$d" "${out[@]}")
    d=$(dirname -- "$d")
  done
  [ "${#out[@]}" -eq 0 ] || printf '%s\n' "${out[@]}"
}

make_dirs() {
  local part=$1 d list="$STATE_DIR/files/$1/dirs"
  while IFS= read -r d; do
    [ -n "$d" ] || continue
    mkdir -m 0755 -- "$d"
    mkdir -p -- "$STATE_DIR/files/$part"
    grep -qxF -- "$d" "$list" 2>/dev/null || printf '%s\n' "$d" >>"$list"
  done < <(missing_dirs "$2")
}

# Writes SOURCE to DEST through a temporary file in the same directory, so readers see the old
# file or the new one, never half of one.
put_file() {
  local tmp="$2.gavel-tuning.tmp"
  install -m 0644 -- "$1" "$tmp"
  mv -f -- "$tmp" "$2"
}

# --- CPU lists -----------------------------------------------------------------------------

# "0-3,6" -> "0 1 2 3 6"; at most 4096 CPUs, so every loop here is bounded.
expand_cpus() {
  local item a b c out=() list=${1//[[:space:]]/,}
  local -a items
  IFS=, read -r -a items <<<"$list"
  for item in "${items[@]}"; do
    [ -n "$item" ] || continue
    if [[ $item =~ ^([0-9]+)-([0-9]+)$ ]]; then
      a=$((10#${BASH_REMATCH[1]}))
      b=$((10#${BASH_REMATCH[2]}))
    elif [[ $item =~ ^[0-9]+$ ]]; then
      a=$((10#$item))
      b=$a
    else
      return 1
    fi
    ((a <= b && b < 4096)) || return 1
    for ((c = a; c <= b; c++)); do out+=("$c"); done
  done
  [ "${#out[@]}" -gt 0 ] || return 1
  printf '%s\n' "${out[@]}" | sort -n -u | tr '\n' ' ' | sed 's/ $//'
}
